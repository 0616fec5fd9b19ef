//! The gRPC services over the shared [`State`]: the worker protocol ([`worker`]) and the
//! operators' control API ([`control`]). Errors map to statuses in [`crate::error`].

mod control;
mod worker;

use std::sync::{Arc, Mutex, MutexGuard};

use orchestrator_proto::v1 as pb;
use tokio::sync::Notify;

use crate::checkpoints::CheckpointStore;
use crate::state::{Grant, State};

/// Shared by every handler. A std `Mutex`: critical sections are short and never await.
#[derive(Clone)]
pub struct Shared {
    state: Arc<Mutex<State>>,
    /// Woken on every change of job state, for progress display and the finish check.
    pub changed: Arc<Notify>,
    /// Woken when a lease is granted, for the expiry task's next deadline.
    pub leases_changed: Arc<Notify>,
    pub heartbeat_seconds: u32,
    pub checkpoints: Arc<CheckpointStore>,
}

impl Shared {
    pub fn new(state: State, heartbeat_seconds: u32, checkpoints: CheckpointStore) -> Shared {
        Shared {
            state: Arc::new(Mutex::new(state)),
            changed: Arc::new(Notify::new()),
            leases_changed: Arc::new(Notify::new()),
            heartbeat_seconds,
            checkpoints: Arc::new(checkpoints),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug in State; keep serving what is there.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A granted lease as sent to the worker (from LeaseJob, or with CompleteJob's reply).
    fn started(&self, worker: &domain::WorkerId, g: Grant) -> pb::Lease {
        tracing::info!(job_id = %g.job.id, worker_id = %worker, lease_id = %g.lease, attempt = g.attempt, "job started");
        self.changed.notify_waiters();
        self.leases_changed.notify_waiters();
        pb::Lease {
            job: Some(pb::JobSpec::from(&g.job.spec)),
            lease_id: g.lease.get(),
            attempt: g.attempt,
        }
    }
}
