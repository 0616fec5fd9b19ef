//! The heartbeat: renews every running lease, and stops the jobs whose leases the coordinator
//! has revoked (expired and given to another worker, or cancelled).

use std::time::Duration;

use common::LeaseId;
use orchestrator_proto::v1 as pb;

use super::session::Session;

/// Runs until the session stops (or the task is aborted).
pub async fn run(session: Session, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let req = pb::HeartbeatRequest {
            worker_id: session.worker.to_string(),
            lease_ids: session.leases().into_iter().map(LeaseId::get).collect(),
        };
        match session.client.clone().heartbeat(req).await {
            Ok(r) => {
                for id in r
                    .into_inner()
                    .revoked_lease_ids
                    .into_iter()
                    .map(LeaseId::new)
                {
                    if session.cancel(id) {
                        tracing::warn!(lease_id = %id, "lease revoked by the coordinator; stopping job");
                    }
                }
            }
            Err(e) => tracing::debug!(error = ?e.message(), "heartbeat failed"),
        }
        if session.stopping() {
            return;
        }
    }
}
