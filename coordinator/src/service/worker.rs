//! The worker protocol: register, lease, report, complete, heartbeat, hand back, and move
//! checkpoints. Every call is idempotent (see `orchestrator.proto`).
//!
//! Every call after Register must carry the worker's session (`x-worker-session`), and may
//! act only on leases that worker holds: anything else is PERMISSION_DENIED, logged with the
//! peer's address and counted ([`Shared::denied`]).

use std::pin::Pin;
use std::time::Instant;

use common::{JobId, LeaseId, Outcome, TrainOutcome, WorkerId, WorkerInfo};
use orchestrator_proto::v1 as pb;
use orchestrator_proto::v1::worker_service_server::WorkerService;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::Shared;
use crate::error::ServiceError;
use crate::scheduler::Identity;

impl Shared {
    /// Refuses a call: PERMISSION_DENIED, logged with who asked, counted.
    pub(super) fn deny<T>(&self, req: &Request<T>, worker: &WorkerId, why: String) -> Status {
        self.metrics.denied.inc();
        let peer = req.remote_addr().map(|a| a.to_string());
        tracing::warn!(peer = peer.as_deref().unwrap_or("local"), worker_id = ?worker.as_str(), why, "worker call refused");
        Status::permission_denied(why)
    }

    /// Whether the call's session is `worker`'s, and that none of `leases` is another
    /// worker's; refuses the call otherwise. Both read under one lock. `Unknown` is
    /// returned (not refused) only where `unknown_ok`.
    pub(super) fn verify<T>(
        &self,
        req: &Request<T>,
        worker: &WorkerId,
        leases: &[LeaseId],
        unknown_ok: bool,
    ) -> Result<Identity, Status> {
        let (id, foreign) = {
            let state = self.lock();
            let id = state.identify(worker, orchestrator_proto::session_of(req));
            let foreign = leases
                .iter()
                .copied()
                .find(|&l| !state.may_act_on(worker, l));
            (id, foreign)
        };
        match (id, foreign) {
            (Identity::Verified, Some(lease)) => Err(self.deny(
                req,
                worker,
                format!("lease {lease} is held by another worker"),
            )),
            (Identity::Verified, None) => Ok(id),
            (Identity::Unknown, _) if unknown_ok => Ok(id),
            (Identity::Unknown, _) => Err(self.deny(
                req,
                worker,
                format!("unknown worker {:?}: register first", worker.as_str()),
            )),
            (Identity::Denied, _) => Err(self.deny(
                req,
                worker,
                format!("the call does not carry worker {worker}'s session"),
            )),
        }
    }

    /// [`Shared::verify`] of a call acting on `lease`.
    fn verify_lease<T>(
        &self,
        req: &Request<T>,
        worker: &WorkerId,
        lease: LeaseId,
    ) -> Result<(), Status> {
        self.verify(req, worker, &[lease], false).map(|_| ())
    }
}

/// A job id as sent by a worker; also a file name in the checkpoint folder, so checked against
/// the id format before anything else.
pub(super) fn job_id(s: String) -> Result<JobId, ServiceError> {
    JobId::parse(&s).map_err(|e| ServiceError::InvalidArgument(e.to_string()))
}

/// Metrics that cannot be true, refused (and logged: a worker with a bug, or someone else).
pub(super) fn invalid(job: &JobId, why: String) -> ServiceError {
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
        // Over the local socket (no peer address): a worker this coordinator started.
        let local = req.remote_addr().is_none();
        if let Some(ip) = req.remote_addr().map(|a| a.ip()) {
            if !self.registrations.admit(ip) {
                tracing::warn!(peer = %ip, "registration refused: too many from this address");
                return Err(Status::resource_exhausted(
                    "too many registrations from this address; retry later",
                ));
            }
        }
        let info = req
            .into_inner()
            .info
            .ok_or_else(|| ServiceError::InvalidArgument("info is required".into()))?;
        let info = WorkerInfo::try_from(info).map_err(ServiceError::from)?;
        let name = info.name.clone();
        let (((worker, session), lease_seconds), seq) = self.with_state(|state| {
            let registered = state.register(info, local, Instant::now())?;
            Ok((registered, state.lease_ttl().as_secs() as u32))
        })?;
        self.settle(seq).await?;
        tracing::info!(worker_id = %worker, name, "worker registered");
        Ok(Response::new(pb::RegisterResponse {
            worker_id: worker.to_string(),
            lease_seconds,
            heartbeat_seconds: self.heartbeat_seconds,
            session,
        }))
    }

    async fn lease_job(
        &self,
        req: Request<pb::LeaseJobRequest>,
    ) -> Result<Response<pb::LeaseJobResponse>, Status> {
        let worker = WorkerId::from_stored(req.get_ref().worker_id.clone());
        self.verify(&req, &worker, &[], false)?;
        let req = req.into_inner();
        check_request_id(&req.request_id)?;
        let ((grant, finished), seq) = self.with_state(|state| {
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
        let (meta, ext, report) = req.into_parts();
        let req = Request::from_parts(meta, ext, ());
        let mut results = self.record_epochs(&req, vec![report]).await?;
        let r = results.pop().unwrap_or_default();
        if !r.invalid.is_empty() {
            return Err(ServiceError::InvalidArgument(r.invalid).into());
        }
        Ok(Response::new(pb::ReportEpochResponse {
            accepted: r.accepted,
        }))
    }

    async fn report_epochs(
        &self,
        req: Request<pb::ReportEpochsRequest>,
    ) -> Result<Response<pb::ReportEpochsResponse>, Status> {
        let (meta, ext, batch) = req.into_parts();
        let req = Request::from_parts(meta, ext, ());
        if batch.reports.len() > orchestrator_proto::REPORT_BATCH {
            return Err(ServiceError::InvalidArgument(format!(
                "{} reports in one call; at most {}",
                batch.reports.len(),
                orchestrator_proto::REPORT_BATCH
            ))
            .into());
        }
        let results = self.record_epochs(&req, batch.reports).await?;
        Ok(Response::new(pb::ReportEpochsResponse { results }))
    }

    async fn complete_job(
        &self,
        req: Request<pb::CompleteJobRequest>,
    ) -> Result<Response<pb::CompleteJobResponse>, Status> {
        let worker = WorkerId::from_stored(req.get_ref().worker_id.clone());
        let lease = LeaseId::new(req.get_ref().lease_id);
        self.verify_lease(&req, &worker, lease)?;
        let req = req.into_inner();
        let outcome = TrainOutcome::try_from(&req).map_err(ServiceError::from)?;
        let status = outcome.status;
        let error_line = outcome
            .error
            .as_deref()
            .and_then(|e| e.lines().next())
            .map(str::to_string);
        let job = job_id(req.job_id)?;
        check_request_id(&req.next_request_id)?;
        let now = Instant::now();
        let ((accepted, counts, next, grid_finished), seq) = self.with_state(|state| {
            state
                .check_outcome(&job, lease, &outcome)
                .map_err(|why| invalid(&job, why))?;
            let accepted = state.complete(&worker, &job, lease, outcome, now)?;
            let counts = state.counts();
            let next = if req.next_request_id.is_empty() {
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
            if status == Outcome::Failed {
                // On the console as it happens (a warning shows above the live display too),
                // not only in the report. Quoted: the text came from a worker.
                let error = error_line.as_deref().unwrap_or("no error given");
                tracing::warn!(job_id = %job, error = ?error, "job failed");
            }
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
        let worker = WorkerId::from_stored(req.get_ref().worker_id.clone());
        // An unknown worker (the coordinator's state was lost) is told so, to register again;
        // every lease it names is revoked.
        let known_worker = self.verify(&req, &worker, &[], true)? == Identity::Verified;
        let leases: Vec<LeaseId> = req
            .into_inner()
            .lease_ids
            .into_iter()
            .map(LeaseId::new)
            .collect();
        let (revoked, seq) =
            self.with_state(|state| Ok(state.heartbeat(&worker, &leases, Instant::now())))?;
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
        let worker = WorkerId::from_stored(req.get_ref().worker_id.clone());
        let lease = LeaseId::new(req.get_ref().lease_id);
        self.verify_lease(&req, &worker, lease)?;
        let req = req.into_inner();
        let job = job_id(req.job_id)?;
        let (accepted, seq) =
            self.with_state(|state| Ok(state.release(&worker, &job, lease, Instant::now())?))?;
        self.settle(seq).await?;
        if accepted {
            tracing::info!(job_id = %job, lease_id = %lease, "job handed back; queued again");
            self.metrics.leases_released.inc();
            self.changed.notify_waiters();
        }
        Ok(Response::new(pb::ReleaseJobResponse { accepted }))
    }

    async fn upload_checkpoint(
        &self,
        req: Request<Streaming<pb::CheckpointChunk>>,
    ) -> Result<Response<pb::UploadCheckpointResponse>, Status> {
        let (meta, ext, mut stream) = req.into_parts();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| ServiceError::InvalidArgument("empty checkpoint upload".into()))?;
        let (job, lease, epoch) = (
            job_id(first.job_id.clone())?,
            LeaseId::new(first.lease_id),
            first.epoch,
        );
        let worker = WorkerId::from_stored(first.worker_id.clone());
        self.verify_lease(&Request::from_parts(meta, ext, ()), &worker, lease)?;
        if !self.lock().is_current(&job, lease) {
            return Ok(Response::new(pb::UploadCheckpointResponse {
                accepted: false,
            }));
        }
        let received = self.checkpoints.receive(&job, first, &mut stream).await?;
        if let Err(e) = self.checkpoints.check(&job, &received).await {
            self.checkpoints.discard(received).await;
            tracing::warn!(job_id = %job, worker_id = %worker, error = %e, "checkpoint upload refused");
            return Err(e.into());
        }
        let size = received.size;
        // The lease may have moved on while the bytes travelled: keep only the current one's.
        let accepted = self.lock().is_current(&job, lease);
        if accepted {
            self.checkpoints.keep(&job, received).await?;
            self.metrics.checkpoint_bytes.inc_by(size);
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
        let worker = WorkerId::from_stored(req.get_ref().worker_id.clone());
        let lease = LeaseId::new(req.get_ref().lease_id);
        self.verify_lease(&req, &worker, lease)?;
        let job = job_id(req.into_inner().job_id)?;
        if !self.lock().is_current(&job, lease) {
            return Err(ServiceError::NotCurrentLease.into());
        }
        let stream = self.checkpoints.send(&job).await?;
        Ok(Response::new(Box::pin(stream) as ChunkStream))
    }
}

/// A lease request id: an idempotency key, at most [`MAX_REQUEST_ID`] bytes.
fn check_request_id(id: &str) -> Result<(), Status> {
    if id.len() > MAX_REQUEST_ID {
        return Err(ServiceError::InvalidArgument(format!(
            "request id of {} bytes; at most {MAX_REQUEST_ID}",
            id.len()
        ))
        .into());
    }
    Ok(())
}

/// The longest lease request id taken (workers send `<worker id>/<n>`).
const MAX_REQUEST_ID: usize = 128;
