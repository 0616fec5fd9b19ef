//! gRPC services over the shared [`State`]: the worker-facing protocol and the control API.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use common::report::WorkerEnv;
use common::JobStatus;
use orchestrator_proto::v1::control_service_server::ControlService;
use orchestrator_proto::v1::worker_service_server::WorkerService;
use orchestrator_proto::v1::{self as pb};
use tokio::sync::Notify;
use tonic::{Request, Response, Status};

use crate::state::{Completion, State, StateError};

/// Shared by every handler. A std `Mutex`: critical sections are short and never await.
#[derive(Clone)]
pub struct Shared {
    pub state: Arc<Mutex<State>>,
    /// Woken on every change of job state, for progress display and the finish check.
    pub changed: Arc<Notify>,
    pub heartbeat_seconds: u32,
}

impl Shared {
    pub fn new(state: State, heartbeat_seconds: u32) -> Shared {
        Shared {
            state: Arc::new(Mutex::new(state)),
            changed: Arc::new(Notify::new()),
            heartbeat_seconds,
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug in State; keep serving what is there.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn internal(e: StateError) -> Status {
    tracing::error!(error = %e, "state error");
    Status::internal(e.to_string())
}

fn known(state: &State, worker_id: &str) -> Result<(), Status> {
    if state.knows_worker(worker_id) {
        Ok(())
    } else {
        Err(Status::failed_precondition(format!(
            "unknown worker `{worker_id}`: register first"
        )))
    }
}

#[tonic::async_trait]
impl WorkerService for Shared {
    async fn register(
        &self,
        req: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let info = req
            .into_inner()
            .info
            .ok_or_else(|| Status::invalid_argument("info is required"))?;
        let env = WorkerEnv {
            id: String::new(),
            name: info.name,
            hostname: info.hostname,
            device: info.device,
            device_name: info.device_name,
            libtorch_version: info.libtorch_version,
            slots: info.slots.max(1),
        };
        let mut state = self.lock();
        let name = env.name.clone();
        let worker_id = state.register(env, Instant::now()).map_err(internal)?;
        tracing::info!(worker_id, name, "worker registered");
        Ok(Response::new(pb::RegisterResponse {
            worker_id,
            lease_seconds: state.lease_ttl().as_secs() as u32,
            heartbeat_seconds: self.heartbeat_seconds,
        }))
    }

    async fn lease_job(
        &self,
        req: Request<pb::LeaseJobRequest>,
    ) -> Result<Response<pb::LeaseJobResponse>, Status> {
        let req = req.into_inner();
        let mut state = self.lock();
        known(&state, &req.worker_id)?;
        let grant = state
            .lease(&req.worker_id, &req.request_id, Instant::now())
            .map_err(internal)?;
        let finished = grant.is_none() && state.tell_finished(&req.worker_id);
        drop(state);
        let lease = grant.map(|g| {
            tracing::info!(job_id = %g.job.id, worker_id = req.worker_id, lease_id = g.lease_id, attempt = g.attempt, "job started");
            self.changed.notify_waiters();
            let mut spec = pb::JobSpec::from(&g.job.spec);
            spec.job_id = g.job.id.to_string();
            pb::Lease {
                job: Some(spec),
                lease_id: g.lease_id,
                attempt: g.attempt,
            }
        });
        Ok(Response::new(pb::LeaseJobResponse {
            lease,
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
            .ok_or_else(|| Status::invalid_argument("metrics are required"))?;
        let accepted = self
            .lock()
            .report_epoch(
                &req.worker_id,
                &req.job_id,
                req.lease_id,
                m.into(),
                Instant::now(),
            )
            .map_err(internal)?;
        if accepted {
            tracing::info!(
                job_id = req.job_id,
                epoch = m.epoch,
                test_accuracy = format_args!("{:.4}", m.test_accuracy),
                train_seconds = format_args!("{:.1}", m.train_seconds),
                "epoch"
            );
            self.changed.notify_waiters();
        } else {
            tracing::warn!(
                job_id = req.job_id,
                lease_id = req.lease_id,
                "stale epoch report rejected"
            );
        }
        Ok(Response::new(pb::ReportEpochResponse { accepted }))
    }

    async fn complete_job(
        &self,
        req: Request<pb::CompleteJobRequest>,
    ) -> Result<Response<pb::CompleteJobResponse>, Status> {
        let req = req.into_inner();
        let status = match pb::Outcome::try_from(req.outcome) {
            Ok(pb::Outcome::Succeeded) => JobStatus::Succeeded,
            Ok(pb::Outcome::Diverged) => JobStatus::Diverged,
            Ok(pb::Outcome::Failed) => JobStatus::Failed,
            _ => return Err(Status::invalid_argument("outcome is required")),
        };
        let c = Completion {
            status,
            device: req.device,
            param_count: req.param_count,
            epochs: req.epochs.iter().map(Into::into).collect(),
            latency_ms_per_sample: req.latency_ms_per_sample,
            error: (!req.error.is_empty()).then_some(req.error),
        };
        let mut state = self.lock();
        let accepted = state
            .complete(&req.worker_id, &req.job_id, req.lease_id, c, Instant::now())
            .map_err(internal)?;
        let counts = state.counts();
        let grid_finished = state.tell_finished(&req.worker_id);
        drop(state);
        if accepted {
            tracing::info!(
                job_id = req.job_id,
                %status,
                done = counts.finished(),
                total = counts.total(),
                running = counts.running,
                "job finished"
            );
            self.changed.notify_waiters();
        } else {
            tracing::warn!(
                job_id = req.job_id,
                lease_id = req.lease_id,
                "stale result rejected"
            );
        }
        Ok(Response::new(pb::CompleteJobResponse {
            accepted,
            grid_finished,
        }))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let req = req.into_inner();
        let mut state = self.lock();
        let known_worker = state.knows_worker(&req.worker_id);
        let revoked_lease_ids = state.heartbeat(&req.worker_id, &req.lease_ids, Instant::now());
        Ok(Response::new(pb::HeartbeatResponse {
            revoked_lease_ids,
            known_worker,
        }))
    }
}

#[tonic::async_trait]
impl ControlService for Shared {
    async fn grid_status(
        &self,
        _req: Request<pb::GridStatusRequest>,
    ) -> Result<Response<pb::GridStatusResponse>, Status> {
        let state = self.lock();
        let c = state.counts();
        let jobs = state
            .records()
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
        let workers = state
            .workers()
            .into_iter()
            .map(|(w, since, running)| pb::WorkerStatus {
                worker_id: w.id,
                name: w.name,
                device: w.device,
                slots: w.slots,
                running,
                seconds_since_seen: since.map_or(-1.0, |d| d.as_secs_f64()),
            })
            .collect();
        Ok(Response::new(pb::GridStatusResponse {
            grid_name: state.grid().name.clone(),
            pending: c.pending,
            running: c.running,
            succeeded: c.succeeded,
            failed: c.failed,
            diverged: c.diverged,
            jobs,
            workers,
        }))
    }
}

/// Server-side bearer-token check; the health service is mounted without it.
#[derive(Clone)]
pub struct RequireToken(pub Option<Arc<str>>);

impl tonic::service::Interceptor for RequireToken {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let Some(token) = &self.0 else {
            return Ok(req);
        };
        let given = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match given {
            Some(t) if constant_time_eq(t.as_bytes(), token.as_bytes()) => Ok(req),
            Some(_) => Err(Status::unauthenticated("invalid bearer token")),
            None => Err(Status::unauthenticated(
                "missing `authorization: Bearer <token>`",
            )),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
