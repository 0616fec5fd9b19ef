//! One slot: leases a job, runs it, reports it, and takes the next, until the grid is finished
//! or the daemon stops.

use std::time::Duration;

use common::{JobId, LeaseId};
use orchestrator_proto::v1 as pb;

use super::lease;
use super::retry::retry;
use super::session::Session;
use crate::job_process::Launcher;

pub async fn run(slot: usize, session: Session, launcher: Launcher) -> anyhow::Result<()> {
    // The next job, when the coordinator handed it over with the last one's completion.
    let mut next: Option<pb::Lease> = None;
    loop {
        if session.stopping() {
            if let Some(l) = next {
                let job = JobId::from_stored(l.job.map(|j| j.job_id).unwrap_or_default());
                session.release(&job, LeaseId::new(l.lease_id)).await;
            }
            return Ok(());
        }
        if let Some(l) = next.take() {
            let ended = lease::run(&session, &launcher, l).await?;
            if ended.grid_finished {
                tracing::info!(slot, "grid finished; slot stops");
                return Ok(());
            }
            next = ended.next;
            continue;
        }
        let request_id = session.next_request_id();
        let resp = retry("lease job", &session.stop, || {
            let mut c = session.client.clone();
            let req = pb::LeaseJobRequest {
                worker_id: session.worker.to_string(),
                request_id: request_id.clone(),
            };
            async move { c.lease_job(req).await }
        })
        .await?;
        match resp.lease {
            Some(l) => next = Some(l),
            None if resp.grid_finished => {
                tracing::info!(slot, "grid finished; slot stops");
                return Ok(());
            }
            None => {
                let wait = Duration::from_millis(resp.retry_after_ms.clamp(50, 10_000) as u64);
                let mut stop = session.stop.clone();
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }
}
