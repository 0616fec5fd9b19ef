//! One registration with the coordinator: the client (and its epoch reporter), the worker id it
//! issued, the leases running now (each with its cancel switch), and the daemon's stop signal.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use common::{JobId, LeaseId, WorkerId};
use orchestrator_proto::client::WorkerClient;
use orchestrator_proto::reporter::Reporter;
use orchestrator_proto::v1 as pb;
use tokio::sync::watch;

/// Shared by the slots and the heartbeat; cheap to clone.
#[derive(Clone)]
pub struct Session {
    pub client: WorkerClient,
    /// The slots' epoch reports, batched into one call while another is in flight.
    pub reporter: Reporter,
    pub worker: WorkerId,
    /// True once the daemon is shutting down.
    pub stop: watch::Receiver<bool>,
    running: Arc<Mutex<HashMap<LeaseId, watch::Sender<bool>>>>,
    requests: Arc<AtomicU64>,
}

impl Session {
    pub fn new(client: WorkerClient, worker: WorkerId, stop: watch::Receiver<bool>) -> Session {
        Session {
            reporter: Reporter::spawn(client.clone()),
            client,
            worker,
            stop,
            running: Arc::default(),
            requests: Arc::default(),
        }
    }

    pub fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// A fresh idempotency key for a lease request; the caller reuses it on every retry, so a
    /// lease granted to a request whose answer was lost is handed back, not a second job.
    pub fn next_request_id(&self) -> String {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        format!("{}/{n}", self.worker)
    }

    fn running(&self) -> MutexGuard<'_, HashMap<LeaseId, watch::Sender<bool>>> {
        // No code panics while holding this lock; if one did, the map is still usable.
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes that `lease` runs now; setting `cancel` stops it.
    pub fn started(&self, lease: LeaseId, cancel: watch::Sender<bool>) {
        self.running().insert(lease, cancel);
    }

    pub fn ended(&self, lease: LeaseId) {
        self.running().remove(&lease);
    }

    /// The leases running now.
    pub fn leases(&self) -> Vec<LeaseId> {
        self.running().keys().copied().collect()
    }

    /// Stops the job of `lease`, if it runs here.
    pub fn cancel(&self, lease: LeaseId) -> bool {
        self.running()
            .get(&lease)
            .map(|c| c.send(true).is_ok())
            .unwrap_or(false)
    }

    /// Hands a lease back, so its job goes to another worker at once instead of after the
    /// lease expires.
    pub async fn release(&self, job: &JobId, lease: LeaseId) {
        let req = pb::ReleaseJobRequest {
            worker_id: self.worker.to_string(),
            job_id: job.to_string(),
            lease_id: lease.get(),
        };
        match self.client.clone().release_job(req).await {
            Ok(_) => tracing::info!(job_id = %job, lease_id = %lease, "lease handed back"),
            Err(e) => {
                tracing::warn!(job_id = %job, error = ?format!("{e:#}"), "could not hand the lease back; it will expire")
            }
        }
    }
}
