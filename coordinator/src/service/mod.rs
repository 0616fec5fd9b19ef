//! The gRPC services over the shared [`State`]: the worker protocol ([`worker`]) and the
//! operators' control API ([`control`]). Errors map to statuses in [`crate::error`].

mod control;
mod reports;
mod worker;

use std::sync::{Arc, Mutex, MutexGuard};

use orchestrator_proto::v1 as pb;
use tokio::sync::{watch, Notify};
use tonic::Status;

use crate::checkpoints::CheckpointStore;
use crate::limits::Registrations;
use crate::metrics::Metrics;
use crate::state::{Grant, State};

/// How far the state is on disk (announced by [`crate::writer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durable {
    /// Every batch up to this number is committed.
    UpTo(u64),
    /// A commit failed: nothing more will be; the coordinator stops.
    Failed,
}

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
    /// Woken when changes are queued for the writer ([`crate::writer`]).
    pub queued: Arc<Notify>,
    /// How far the queued changes are on disk.
    pub durable: Arc<watch::Sender<Durable>>,
    /// What `/metrics` exposes (also the count of refused worker calls).
    pub metrics: Arc<Metrics>,
    /// Registrations allowed per peer address.
    pub registrations: Arc<Registrations>,
    /// `--launcher slurm`: the worker jobs SLURM holds, with their SLURM state.
    pub slurm_jobs: Arc<std::sync::Mutex<Vec<(u64, String)>>>,
}

impl Shared {
    pub fn new(state: State, heartbeat_seconds: u32, checkpoints: CheckpointStore) -> Shared {
        Shared {
            state: Arc::new(Mutex::new(state)),
            changed: Arc::new(Notify::new()),
            leases_changed: Arc::new(Notify::new()),
            heartbeat_seconds,
            checkpoints: Arc::new(checkpoints),
            queued: Arc::new(Notify::new()),
            durable: Arc::new(watch::channel(Durable::UpTo(0)).0),
            metrics: Arc::default(),
            registrations: Arc::new(Registrations::default()),
            slurm_jobs: Arc::default(),
        }
    }

    /// Runs `f` on the state under its lock; returns its value and the batch of queued changes
    /// an answer depending on it must wait for ([`Shared::settle`]).
    pub fn with_state<T>(
        &self,
        f: impl FnOnce(&mut State) -> Result<T, crate::error::ServiceError>,
    ) -> Result<(T, u64), crate::error::ServiceError> {
        let mut state = self.lock();
        let value = f(&mut state)?;
        Ok((value, state.enqueued()))
    }

    /// Waits until batch `seq` of queued changes (see [`State::enqueued`]) is on disk, so an
    /// answer that depends on it may be given.
    pub async fn settle(&self, seq: u64) -> Result<(), Status> {
        if seq == 0 {
            return Ok(());
        }
        self.queued.notify_one();
        let mut durable = self.durable.subscribe();
        let settled = durable
            .wait_for(|d| match d {
                Durable::UpTo(n) => *n >= seq,
                Durable::Failed => true,
            })
            .await
            .map(|d| *d);
        match settled {
            Ok(Durable::UpTo(_)) => Ok(()),
            _ => Err(Status::unavailable(
                "the coordinator cannot write its state; see its log",
            )),
        }
    }

    /// Removes the checkpoints of cancelled jobs: nobody will resume them.
    pub fn remove_cancelled_checkpoints(&self) {
        for job in self.lock().cancelled_ids() {
            self.checkpoints.remove(&job);
        }
    }

    /// Whether the writer has failed (the run must stop).
    pub fn write_failed(&self) -> bool {
        *self.durable.borrow() == Durable::Failed
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug in State; keep serving what is there.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A granted lease as sent to the worker (from LeaseJob, or with CompleteJob's reply).
    fn started(&self, worker: &common::WorkerId, g: Grant) -> pb::Lease {
        tracing::info!(job_id = %g.job.id, worker_id = %worker, lease_id = %g.lease, attempt = g.attempt, "job started");
        self.changed.notify_waiters();
        self.leases_changed.notify_waiters();
        pb::Lease {
            job: Some(pb::JobSpec::from(&g.job)),
            lease_id: g.lease.get(),
            attempt: g.attempt,
        }
    }
}
