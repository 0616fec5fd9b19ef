//! gRPC services over the shared [`State`]: the worker-facing protocol and the control API.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::Stream;

use common::report::WorkerEnv;
use common::JobStatus;
use orchestrator_proto::v1::control_service_server::ControlService;
use orchestrator_proto::v1::worker_service_server::WorkerService;
use orchestrator_proto::v1::{self as pb};
use tokio::sync::Notify;
use tonic::{Request, Response, Status, Streaming};

use crate::state::{Grant, State, StateError};

/// Shared by every handler. A std `Mutex`: critical sections are short and never await.
#[derive(Clone)]
pub struct Shared {
    pub state: Arc<Mutex<State>>,
    /// Woken on every change of job state, for progress display and the finish check.
    pub changed: Arc<Notify>,
    pub heartbeat_seconds: u32,
    pub checkpoints: Arc<CheckpointStore>,
}

/// Where the coordinator keeps each job's latest checkpoint: `<dir>/<job id>.ckpt`.
pub struct CheckpointStore {
    pub dir: PathBuf,
    pub max_bytes: u64,
}

impl CheckpointStore {
    pub fn path(&self, job_id: &str) -> PathBuf {
        self.dir.join(format!("{job_id}.ckpt"))
    }

    /// Drops a job's checkpoint once the job has finished for good.
    pub fn remove(&self, job_id: &str) {
        let _ = std::fs::remove_file(self.path(job_id));
    }
}

impl Shared {
    pub fn new(state: State, heartbeat_seconds: u32, checkpoints: CheckpointStore) -> Shared {
        Shared {
            state: Arc::new(Mutex::new(state)),
            changed: Arc::new(Notify::new()),
            heartbeat_seconds,
            checkpoints: Arc::new(checkpoints),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug in State; keep serving what is there.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A granted lease as sent to the worker (from LeaseJob, or with CompleteJob's reply).
    fn started(&self, worker_id: &str, g: Grant) -> pb::Lease {
        tracing::info!(job_id = %g.job.id, worker_id, lease_id = g.lease_id, attempt = g.attempt, "job started");
        self.changed.notify_waiters();
        let mut spec = pb::JobSpec::from(&g.job.spec);
        spec.job_id = g.job.id.to_string();
        pb::Lease {
            job: Some(spec),
            lease_id: g.lease_id,
            attempt: g.attempt,
        }
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
            memory_mb: info.memory_mb,
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
        let lease = grant.map(|g| self.started(&req.worker_id, g));
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
        let c = common::TrainOutcome {
            status,
            device: req.device,
            param_count: req.param_count,
            epochs: req.epochs.iter().map(Into::into).collect(),
            latency_ms_per_sample: req.latency_ms_per_sample,
            error: (!req.error.is_empty()).then_some(req.error),
        };
        let mut state = self.lock();
        let now = Instant::now();
        let accepted = state
            .complete(&req.worker_id, &req.job_id, req.lease_id, c, now)
            .map_err(internal)?;
        let counts = state.counts();
        let next = if req.next_request_id.is_empty() || !state.knows_worker(&req.worker_id) {
            None
        } else {
            state
                .lease(&req.worker_id, &req.next_request_id, now)
                .map_err(internal)?
        };
        let grid_finished = next.is_none() && state.tell_finished(&req.worker_id);
        drop(state);
        let next = next.map(|g| self.started(&req.worker_id, g));
        if accepted {
            if status != JobStatus::Failed {
                self.checkpoints.remove(&req.job_id);
            }
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
            next,
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

    async fn release_job(
        &self,
        req: Request<pb::ReleaseJobRequest>,
    ) -> Result<Response<pb::ReleaseJobResponse>, Status> {
        let req = req.into_inner();
        let accepted = self
            .lock()
            .release(&req.worker_id, &req.job_id, req.lease_id, Instant::now())
            .map_err(internal)?;
        if accepted {
            tracing::info!(
                job_id = req.job_id,
                lease_id = req.lease_id,
                "job handed back; queued again"
            );
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
            .ok_or_else(|| Status::invalid_argument("empty checkpoint upload"))?;
        let (job_id, lease_id, epoch) = (first.job_id.clone(), first.lease_id, first.epoch);
        if job_id.is_empty() || job_id.contains(['/', '\\']) || job_id.starts_with('.') {
            return Err(Status::invalid_argument("invalid job id"));
        }
        if !self.lock().is_current(&job_id, lease_id) {
            return Ok(Response::new(pb::UploadCheckpointResponse {
                accepted: false,
            }));
        }
        let store = &self.checkpoints;
        tokio::fs::create_dir_all(&store.dir)
            .await
            .map_err(|e| Status::internal(format!("{}: {e}", store.dir.display())))?;
        let tmp = store.dir.join(format!(".{job_id}.{lease_id}.part"));
        let mut file = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| Status::internal(format!("{}: {e}", tmp.display())))?;
        let mut size = 0u64;
        let mut chunk = Some(first);
        while let Some(c) = chunk {
            size += c.data.len() as u64;
            if size > store.max_bytes {
                drop(file);
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(Status::resource_exhausted(format!(
                    "checkpoint of {job_id} exceeds the limit of {} bytes",
                    store.max_bytes
                )));
            }
            file.write_all(&c.data)
                .await
                .map_err(|e| Status::internal(format!("{}: {e}", tmp.display())))?;
            chunk = stream.message().await?;
        }
        file.sync_all()
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        drop(file);
        // The lease may have moved on while the bytes travelled: keep only the current one's.
        let accepted = self.lock().is_current(&job_id, lease_id);
        if accepted {
            tokio::fs::rename(&tmp, store.path(&job_id))
                .await
                .map_err(|e| Status::internal(e.to_string()))?;
            tracing::debug!(job_id, epoch, size, "checkpoint stored");
        } else {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        Ok(Response::new(pb::UploadCheckpointResponse { accepted }))
    }

    type DownloadCheckpointStream =
        Pin<Box<dyn Stream<Item = Result<pb::CheckpointChunk, Status>> + Send>>;

    async fn download_checkpoint(
        &self,
        req: Request<pb::DownloadCheckpointRequest>,
    ) -> Result<Response<Self::DownloadCheckpointStream>, Status> {
        let req = req.into_inner();
        if !self.lock().is_current(&req.job_id, req.lease_id) {
            return Err(Status::permission_denied("not the job's current lease"));
        }
        let path = self.checkpoints.path(&req.job_id);
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Status::not_found("no checkpoint stored for this job"))
            }
            Err(e) => return Err(Status::internal(format!("{}: {e}", path.display()))),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let mut buf = vec![0u8; orchestrator_proto::CHECKPOINT_CHUNK];
            loop {
                match file.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => {
                        let chunk = pb::CheckpointChunk {
                            data: buf[..n].to_vec(),
                            ..Default::default()
                        };
                        if tx.send(Ok(chunk)).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(Status::internal(e.to_string()))).await;
                        break;
                    }
                }
            }
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        Ok(Response::new(
            Box::pin(stream) as Self::DownloadCheckpointStream
        ))
    }
}

#[tonic::async_trait]
impl ControlService for Shared {
    async fn cancel_jobs(
        &self,
        req: Request<pb::CancelJobsRequest>,
    ) -> Result<Response<pb::CancelJobsResponse>, Status> {
        let req = req.into_inner();
        if !req.all && req.job_ids.is_empty() {
            return Err(Status::invalid_argument("name jobs to cancel, or set all"));
        }
        let ids = (!req.all).then_some(req.job_ids.as_slice());
        let cancelled = self.lock().cancel(ids).map_err(internal)?;
        tracing::warn!(cancelled, "jobs cancelled by the operator");
        self.changed.notify_waiters();
        Ok(Response::new(pb::CancelJobsResponse { cancelled }))
    }

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
