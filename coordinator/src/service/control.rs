//! The operators' API: grid status and cancellation.

use std::time::Instant;

use common::JobId;
use orchestrator_proto::v1 as pb;
use orchestrator_proto::v1::control_service_server::ControlService;
use tonic::{Request, Response, Status};

use super::Shared;

/// Jobs per GridStatus page unless the client asks otherwise, and the most it may ask for:
/// 10,000 jobs are about 1 MB, well under gRPC's 4 MiB default message limit.
const DEFAULT_PAGE: usize = 1000;
const MAX_PAGE: usize = 10_000;
use crate::error::ServiceError;

#[tonic::async_trait]
impl ControlService for Shared {
    async fn cancel_jobs(
        &self,
        req: Request<pb::CancelJobsRequest>,
    ) -> Result<Response<pb::CancelJobsResponse>, Status> {
        let req = req.into_inner();
        if !req.all && req.job_ids.is_empty() {
            let why = "name jobs to cancel, or set all".into();
            return Err(ServiceError::InvalidArgument(why).into());
        }
        let ids: Vec<JobId> = req.job_ids.into_iter().map(JobId::from_stored).collect();
        let chosen = (!req.all).then_some(ids.as_slice());
        let (cancelled, seq) = self.with_state(|state| {
            let unknown: Vec<&JobId> = ids.iter().filter(|id| !state.knows_job(id)).collect();
            if !req.all && !unknown.is_empty() {
                let shown: Vec<String> = unknown.iter().take(5).map(|id| format!("{:?}", id.as_str())).collect();
                let more = unknown.len().saturating_sub(5);
                let more = if more > 0 { format!(" and {more} more") } else { String::new() };
                let why = format!(
                    "unknown job id(s) {}{more}: nothing cancelled (`coordinator status` lists the ids)",
                    shown.join(", ")
                );
                return Err(ServiceError::InvalidArgument(why));
            }
            Ok(state.cancel(chosen, Instant::now())?)
        })?;
        self.settle(seq).await?;
        tracing::warn!(cancelled, "jobs cancelled by the operator");
        self.changed.notify_waiters();
        Ok(Response::new(pb::CancelJobsResponse { cancelled }))
    }

    async fn grid_status(
        &self,
        req: Request<pb::GridStatusRequest>,
    ) -> Result<Response<pb::GridStatusResponse>, Status> {
        let req = req.into_inner();
        let size = match req.page_size {
            0 => DEFAULT_PAGE,
            n => (n as usize).min(MAX_PAGE),
        };
        let from = match req.page_token.as_str() {
            "" => 0,
            token => token.parse::<usize>().map_err(|_| {
                ServiceError::InvalidArgument(format!("invalid page_token `{token}`"))
            })?,
        };
        let state = self.lock();
        let c = state.counts();
        let total = state.job_count();
        let progress = (from == 0).then(|| state.progress(std::time::Instant::now()));
        let eta_seconds = progress
            .as_ref()
            .and_then(|p| p.eta)
            .map(|d| d.as_secs_f64());
        let running = progress
            .map(|p| running_jobs(p.running))
            .unwrap_or_default();
        let next = from.saturating_add(size);
        let jobs = state
            .records_page(from, size)
            .into_iter()
            .map(|r| pb::JobStatus {
                job_id: r.id.to_string(),
                state: r.status.to_string(),
                attempts: r.attempts,
                worker: r.worker.unwrap_or_default(),
                epochs_done: r.epochs.len() as u32,
                epochs_total: r.spec.epochs,
                last_test_accuracy: r.epochs.last().map(|e| e.test_accuracy),
            })
            .collect();
        let slurm_jobs = if from == 0 {
            self.slurm_status()
        } else {
            Vec::new()
        };
        let workers = state
            .worker_statuses(Instant::now())
            .into_iter()
            .map(|w| pb::WorkerStatus {
                worker_id: w.env.id.to_string(),
                name: w.env.info.name,
                device: w.env.info.device.to_string(),
                slots: w.env.info.slots,
                running: w.running,
                seconds_since_seen: w.since.map_or(-1.0, |d| d.as_secs_f64()),
            })
            .collect();
        Ok(Response::new(pb::GridStatusResponse {
            grid_name: state.grid().name().to_string(),
            pending: c.pending,
            running: c.running,
            succeeded: c.succeeded,
            failed: c.failed,
            diverged: c.diverged,
            cancelled: c.cancelled,
            held: c.held,
            jobs,
            workers,
            next_page_token: if next < total {
                next.to_string()
            } else {
                String::new()
            },
            total_jobs: total as u32,
            denied_calls: self.metrics.denied.get(),
            eta_seconds,
            running_jobs: running,
            slurm_jobs,
        }))
    }
}

impl Shared {
    /// `--launcher slurm`'s worker jobs as GridStatus sends them.
    fn slurm_status(&self) -> Vec<pb::SlurmWorkerJob> {
        let held = self.slurm_jobs.lock().unwrap_or_else(|p| p.into_inner());
        held.iter()
            .map(|(id, s)| pb::SlurmWorkerJob {
                job_id: *id,
                state: s.clone(),
            })
            .collect()
    }
}

/// The running jobs as GridStatus sends them, each with its worker's name.
fn running_jobs(running: Vec<crate::state::RunningJob>) -> Vec<pb::JobStatus> {
    running
        .into_iter()
        .map(|j| pb::JobStatus {
            job_id: j.id.to_string(),
            state: "running".into(),
            worker: j.worker,
            epochs_done: j.epochs_done,
            epochs_total: j.epochs,
            last_test_accuracy: j.accuracy,
            ..Default::default()
        })
        .collect()
}
