//! The worker protocol: register, lease, report, complete, heartbeat, hand back, and move
//! checkpoints. Every call is idempotent (see `orchestrator.proto`).

use std::pin::Pin;
use std::time::Instant;

use domain::{EpochMetrics, JobId, LeaseId, Outcome, TrainOutcome, WorkerId, WorkerInfo};
use orchestrator_proto::v1 as pb;
use orchestrator_proto::v1::worker_service_server::WorkerService;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::Shared;
use crate::error::ServiceError;
use crate::state::State;

/// Refuses calls from a worker id the coordinator never issued.
fn known(state: &State, worker: &WorkerId) -> Result<(), ServiceError> {
    if state.knows_worker(worker) {
        Ok(())
    } else {
        Err(ServiceError::UnknownWorker(worker.clone()))
    }
}

/// A job id as sent by a worker; also a file name in the checkpoint folder, so no paths.
fn job_id(s: String) -> Result<JobId, ServiceError> {
    if s.is_empty() || s.contains(['/', '\\']) || s.starts_with('.') {
        return Err(ServiceError::InvalidArgument("invalid job id".into()));
    }
    Ok(JobId::from_stored(s))
}

/// Metrics that cannot be true, refused (and logged: a worker with a bug, or someone else).
fn invalid(job: &JobId, why: String) -> ServiceError {
    tracing::warn!(job_id = %job, why, "invalid metrics refused");
    ServiceError::InvalidArgument(format!("job {job}: {why}"))
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<pb::CheckpointChunk, Status>> + Send>>;

#[tonic::async_trait]
impl WorkerService for Shared {
    async fn register(
        &self,
        req: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let info = req
            .into_inner()
            .info
            .ok_or_else(|| ServiceError::InvalidArgument("info is required".into()))?;
        let info = WorkerInfo::try_from(info).map_err(ServiceError::from)?;
        let name = info.name.clone();
        let ((worker, lease_seconds), seq) = self.with_state(|state| {
            let worker = state.register(info, Instant::now())?;
            Ok((worker, state.lease_ttl().as_secs() as u32))
        })?;
        self.settle(seq).await?;
        tracing::info!(worker_id = %worker, name, "worker registered");
        Ok(Response::new(pb::RegisterResponse {
            worker_id: worker.to_string(),
            lease_seconds,
            heartbeat_seconds: self.heartbeat_seconds,
        }))
    }

    async fn lease_job(
        &self,
        req: Request<pb::LeaseJobRequest>,
    ) -> Result<Response<pb::LeaseJobResponse>, Status> {
        let req = req.into_inner();
        let worker = WorkerId::from_stored(req.worker_id);
        let ((grant, finished), seq) = self.with_state(|state| {
            known(state, &worker)?;
            let grant = state.lease(&worker, &req.request_id, Instant::now())?;
            let finished = grant.is_none() && state.tell_finished(&worker);
            Ok((grant, finished))
        })?;
        self.settle(seq).await?;
        Ok(Response::new(pb::LeaseJobResponse {
            lease: grant.map(|g| self.started(&worker, g)),
            grid_finished: finished,
            retry_after_ms: 1000,
        }))
    }

    async fn report_epoch(
        &self,
        req: Request<pb::ReportEpochRequest>,
    ) -> Result<Response<pb::ReportEpochResponse>, Status> {
        let req = req.into_inner();
        let m = req
            .metrics
            .as_ref()
            .ok_or_else(|| ServiceError::InvalidArgument("metrics are required".into()))?;
        let (worker, job) = (WorkerId::from_stored(req.worker_id), job_id(req.job_id)?);
        let lease = LeaseId::new(req.lease_id);
        let metrics: EpochMetrics = m.into();
        let (accepted, seq) = self.with_state(|state| {
            state
                .check_epoch(&job, lease, &metrics)
                .map_err(|why| invalid(&job, why))?;
            Ok(state.report_epoch(&worker, &job, lease, metrics, Instant::now())?)
        })?;
        self.settle(seq).await?;
        if accepted {
            tracing::info!(
                job_id = %job,
                epoch = m.epoch,
                test_accuracy = format_args!("{:.4}", m.test_accuracy),
                train_seconds = format_args!("{:.1}", m.train_seconds),
                "epoch"
            );
            self.changed.notify_waiters();
        } else {
            tracing::warn!(job_id = %job, lease_id = %lease, "stale epoch report rejected");
        }
        Ok(Response::new(pb::ReportEpochResponse { accepted }))
    }

    async fn complete_job(
        &self,
        req: Request<pb::CompleteJobRequest>,
    ) -> Result<Response<pb::CompleteJobResponse>, Status> {
        let req = req.into_inner();
        let outcome = TrainOutcome::try_from(&req).map_err(ServiceError::from)?;
        let status = outcome.status;
        let (worker, job) = (WorkerId::from_stored(req.worker_id), job_id(req.job_id)?);
        let lease = LeaseId::new(req.lease_id);
        let now = Instant::now();
        let ((accepted, counts, next, grid_finished), seq) = self.with_state(|state| {
            state
                .check_outcome(&job, lease, &outcome)
                .map_err(|why| invalid(&job, why))?;
            let accepted = state.complete(&worker, &job, lease, outcome, now)?;
            let counts = state.counts();
            let next = if req.next_request_id.is_empty() || !state.knows_worker(&worker) {
                None
            } else {
                state.lease(&worker, &req.next_request_id, now)?
            };
            let grid_finished = next.is_none() && state.tell_finished(&worker);
            Ok((accepted, counts, next, grid_finished))
        })?;
        self.settle(seq).await?;
        let next = next.map(|g| self.started(&worker, g));
        if accepted {
            if status != Outcome::Failed {
                self.checkpoints.remove(&job);
            }
            tracing::info!(job_id = %job, %status, done = counts.finished(), total = counts.total(), running = counts.running, "job finished");
            self.changed.notify_waiters();
        } else {
            tracing::warn!(job_id = %job, lease_id = %lease, "stale result rejected");
        }
        Ok(Response::new(pb::CompleteJobResponse {
            accepted,
            grid_finished,
            next,
        }))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let req = req.into_inner();
        let worker = WorkerId::from_stored(req.worker_id);
        let leases: Vec<LeaseId> = req.lease_ids.into_iter().map(LeaseId::new).collect();
        let ((known_worker, revoked), seq) = self.with_state(|state| {
            let known_worker = state.knows_worker(&worker);
            Ok((
                known_worker,
                state.heartbeat(&worker, &leases, Instant::now()),
            ))
        })?;
        self.settle(seq).await?;
        Ok(Response::new(pb::HeartbeatResponse {
            revoked_lease_ids: revoked.into_iter().map(LeaseId::get).collect(),
            known_worker,
        }))
    }

    async fn release_job(
        &self,
        req: Request<pb::ReleaseJobRequest>,
    ) -> Result<Response<pb::ReleaseJobResponse>, Status> {
        let req = req.into_inner();
        let (worker, job) = (WorkerId::from_stored(req.worker_id), job_id(req.job_id)?);
        let lease = LeaseId::new(req.lease_id);
        let (accepted, seq) =
            self.with_state(|state| Ok(state.release(&worker, &job, lease, Instant::now())?))?;
        self.settle(seq).await?;
        if accepted {
            tracing::info!(job_id = %job, lease_id = %lease, "job handed back; queued again");
            self.changed.notify_waiters();
        }
        Ok(Response::new(pb::ReleaseJobResponse { accepted }))
    }

    async fn upload_checkpoint(
        &self,
        req: Request<Streaming<pb::CheckpointChunk>>,
    ) -> Result<Response<pb::UploadCheckpointResponse>, Status> {
        let mut stream = req.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| ServiceError::InvalidArgument("empty checkpoint upload".into()))?;
        let (job, lease, epoch) = (
            job_id(first.job_id.clone())?,
            LeaseId::new(first.lease_id),
            first.epoch,
        );
        if !self.lock().is_current(&job, lease) {
            return Ok(Response::new(pb::UploadCheckpointResponse {
                accepted: false,
            }));
        }
        let received = self.checkpoints.receive(&job, first, &mut stream).await?;
        let size = received.size;
        // The lease may have moved on while the bytes travelled: keep only the current one's.
        let accepted = self.lock().is_current(&job, lease);
        if accepted {
            self.checkpoints.keep(&job, received).await?;
            tracing::debug!(job_id = %job, epoch, size, "checkpoint stored");
        } else {
            self.checkpoints.discard(received).await;
        }
        Ok(Response::new(pb::UploadCheckpointResponse { accepted }))
    }

    type DownloadCheckpointStream = ChunkStream;

    async fn download_checkpoint(
        &self,
        req: Request<pb::DownloadCheckpointRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        let req = req.into_inner();
        let (job, lease) = (job_id(req.job_id)?, LeaseId::new(req.lease_id));
        if !self.lock().is_current(&job, lease) {
            return Err(ServiceError::NotCurrentLease.into());
        }
        let stream = self.checkpoints.send(&job).await?;
        Ok(Response::new(Box::pin(stream) as ChunkStream))
    }
}
