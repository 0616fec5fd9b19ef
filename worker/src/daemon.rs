//! The worker daemon: register with the coordinator, lease jobs into `slots` parallel slots,
//! run each in a child process, stream its epochs back, report its outcome, heartbeat.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use common::{JobStatus, TrainSpec};
use orchestrator_proto::v1::worker_service_client::WorkerServiceClient;
use orchestrator_proto::v1::{self as pb};
use orchestrator_proto::BearerAuth;
use tokio::sync::{mpsc, watch};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::job_process::Launcher;

type Client = WorkerServiceClient<InterceptedService<Channel, BearerAuth>>;

#[derive(Debug, Clone)]
pub struct Config {
    /// e.g. `http://127.0.0.1:50051`
    pub coordinator: String,
    pub name: String,
    pub slots: usize,
    pub launcher: Launcher,
    pub token: Option<String>,
    pub device_name: String,
    pub memory_mb: u64,
    pub libtorch_version: String,
}

/// Leases of the jobs running now, and how to cancel each.
type Running = Arc<Mutex<HashMap<u64, watch::Sender<bool>>>>;

/// Runs until the coordinator says the grid is finished (then returns Ok) or `shutdown`
/// completes (running jobs are stopped; their leases expire and the jobs run elsewhere).
pub async fn run(cfg: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let channel = Endpoint::from_shared(cfg.coordinator.clone())
        .with_context(|| format!("invalid --coordinator URL `{}`", cfg.coordinator))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .connect_lazy();
    let auth = BearerAuth::new(cfg.token.as_deref()).map_err(anyhow::Error::msg)?;
    let client: Client = WorkerServiceClient::with_interceptor(channel, auth);

    let (stop_tx, stop_rx) = watch::channel(false);
    let work = serve(cfg, client, stop_rx);
    tokio::pin!(work);
    tokio::select! {
        r = &mut work => r,
        _ = shutdown => {
            tracing::info!("shutting down: stopping running jobs");
            let _ = stop_tx.send(true);
            work.await
        }
    }
}

async fn serve(cfg: Config, client: Client, stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let info = pb::WorkerInfo {
        name: cfg.name.clone(),
        device: cfg.launcher.device.clone(),
        device_name: cfg.device_name.clone(),
        slots: cfg.slots as u32,
        hostname: crate::hostname(),
        libtorch_version: cfg.libtorch_version.clone(),
        worker_version: env!("CARGO_PKG_VERSION").into(),
        memory_mb: cfg.memory_mb,
    };
    let reg = retry("register", &stop, || {
        let mut c = client.clone();
        let req = pb::RegisterRequest {
            info: Some(info.clone()),
        };
        async move { c.register(req).await }
    })
    .await?;
    tracing::info!(worker_id = %reg.worker_id, coordinator = %cfg.coordinator, slots = cfg.slots, "registered");
    let worker_id = reg.worker_id;
    let running: Running = Arc::default();

    let heartbeat = tokio::spawn(heartbeat_loop(
        client.clone(),
        worker_id.clone(),
        Duration::from_secs(reg.heartbeat_seconds.max(1) as u64),
        running.clone(),
        stop.clone(),
    ));

    let requests = Arc::new(AtomicU64::new(0));
    let mut slots = tokio::task::JoinSet::new();
    for slot in 0..cfg.slots {
        slots.spawn(slot_loop(
            slot,
            client.clone(),
            worker_id.clone(),
            cfg.launcher.clone(),
            running.clone(),
            requests.clone(),
            stop.clone(),
        ));
    }
    let mut result = Ok(());
    while let Some(r) = slots.join_next().await {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = Err(e),
            Err(e) => result = Err(anyhow::anyhow!("slot task failed: {e}")),
        }
    }
    heartbeat.abort();
    result
}

async fn slot_loop(
    slot: usize,
    client: Client,
    worker_id: String,
    launcher: Launcher,
    running: Running,
    requests: Arc<AtomicU64>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    // The next job, when the coordinator handed it over with the last one's completion.
    let mut next: Option<pb::Lease> = None;
    loop {
        if *stop.borrow() {
            if let Some(lease) = next {
                release(&client, &worker_id, &lease_job_id(&lease), lease.lease_id).await;
            }
            return Ok(());
        }
        if let Some(lease) = next.take() {
            let (grid_finished, following) = run_lease(
                &client, &worker_id, &launcher, &running, lease, &requests, &stop,
            )
            .await?;
            if grid_finished {
                tracing::info!(slot, "grid finished; slot stops");
                return Ok(());
            }
            next = following;
            continue;
        }
        // The same request id on every retry, so a lease granted to a request whose answer was
        // lost is handed back instead of a second job.
        let request_id = format!("{worker_id}/{}", requests.fetch_add(1, Ordering::Relaxed));
        let resp = retry("lease job", &stop, || {
            let mut c = client.clone();
            let req = pb::LeaseJobRequest {
                worker_id: worker_id.clone(),
                request_id: request_id.clone(),
            };
            async move { c.lease_job(req).await }
        })
        .await?;
        match resp.lease {
            Some(lease) => next = Some(lease),
            None if resp.grid_finished => {
                tracing::info!(slot, "grid finished; slot stops");
                return Ok(());
            }
            None => {
                let wait = Duration::from_millis(resp.retry_after_ms.clamp(50, 10_000) as u64);
                let mut stop = stop.clone();
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }
}

fn lease_job_id(lease: &pb::Lease) -> String {
    lease
        .job
        .as_ref()
        .map(|j| j.job_id.clone())
        .unwrap_or_default()
}

/// Hands a lease back, so its job goes to another worker at once instead of after the lease
/// expires.
async fn release(client: &Client, worker_id: &str, job_id: &str, lease_id: u64) {
    let mut c = client.clone();
    let req = pb::ReleaseJobRequest {
        worker_id: worker_id.to_string(),
        job_id: job_id.to_string(),
        lease_id,
    };
    match c.release_job(req).await {
        Ok(_) => tracing::info!(job_id, lease_id, "lease handed back"),
        Err(e) => {
            tracing::warn!(job_id, error = %e, "could not hand the lease back; it will expire")
        }
    }
}

/// Runs one leased job to its end and reports it. Returns whether the grid is finished, and
/// the next job when the coordinator handed one over with the completion.
async fn run_lease(
    client: &Client,
    worker_id: &str,
    launcher: &Launcher,
    running: &Running,
    lease: pb::Lease,
    requests: &AtomicU64,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<(bool, Option<pb::Lease>)> {
    let job = lease.job.unwrap_or_default();
    let job_id = job.job_id.clone();
    let lease_id = lease.lease_id;
    let (cancel_tx, cancel_rx) = watch::channel(false);
    running
        .lock()
        .expect("no code panics while holding this lock")
        .insert(lease_id, cancel_tx.clone());
    tracing::info!(job_id, lease_id, attempt = lease.attempt, "job leased");

    let outcome = match TrainSpec::try_from(&job) {
        Err(e) => common::TrainOutcome::failed(
            launcher.device.clone(),
            format!("this worker cannot run the job: {e}"),
            vec![],
        ),
        Ok(spec) => {
            let checkpoint = launcher.checkpoint_path(&spec);
            match download_checkpoint(client, worker_id, &job_id, lease_id, &checkpoint).await {
                Ok(true) => tracing::info!(
                    job_id,
                    "resuming from the checkpoint stored with the coordinator"
                ),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(job_id, error = %e, "could not fetch the stored checkpoint")
                }
            }
            let (epoch_tx, mut epoch_rx) = mpsc::channel::<common::EpochMetrics>(64);
            let forwarder = {
                let client = client.clone();
                let (worker_id, job_id) = (worker_id.to_string(), job_id.clone());
                let cancel_tx = cancel_tx.clone();
                let stop = stop.clone();
                let checkpoint = checkpoint.clone();
                tokio::spawn(async move {
                    while let Some(m) = epoch_rx.recv().await {
                        let req = pb::ReportEpochRequest {
                            worker_id: worker_id.clone(),
                            job_id: job_id.clone(),
                            lease_id,
                            metrics: Some((&m).into()),
                        };
                        let r = retry("report epoch", &stop, || {
                            let mut c = client.clone();
                            let req = req.clone();
                            async move { c.report_epoch(req).await }
                        })
                        .await;
                        match r {
                            Ok(r) if !r.accepted => {
                                tracing::warn!(
                                    job_id,
                                    lease_id,
                                    "lease no longer valid; stopping job"
                                );
                                let _ = cancel_tx.send(true);
                            }
                            Ok(_) => {
                                tracing::debug!(job_id, epoch = m.epoch, "epoch reported");
                                // The child wrote this epoch's checkpoint before reporting it.
                                if let Err(e) = upload_checkpoint(
                                    &client,
                                    &worker_id,
                                    &job_id,
                                    lease_id,
                                    m.epoch,
                                    &checkpoint,
                                )
                                .await
                                {
                                    tracing::warn!(job_id, error = %e, "checkpoint upload failed");
                                }
                            }
                            Err(e) => tracing::warn!(job_id, error = %e, "epoch report failed"),
                        }
                    }
                })
            };
            let mut stop_watch = stop.clone();
            let cancel_on_stop = {
                let cancel_tx = cancel_tx.clone();
                tokio::spawn(async move {
                    if stop_watch.wait_for(|s| *s).await.is_ok() {
                        let _ = cancel_tx.send(true);
                    }
                })
            };
            let outcome = launcher.run(&spec, epoch_tx, cancel_rx).await;
            cancel_on_stop.abort();
            let _ = forwarder.await;
            outcome
        }
    };
    running
        .lock()
        .expect("no code panics while holding this lock")
        .remove(&lease_id);
    if *cancel_tx.borrow() {
        if *stop.borrow() {
            // Draining: hand the lease back so the job resumes elsewhere from its last
            // checkpoint right away.
            release(client, worker_id, &job_id, lease_id).await;
        } else {
            // Revoked: the coordinator has already moved on; nothing to report.
            tracing::info!(job_id, lease_id, "job stopped");
        }
        return Ok((false, None));
    }
    tracing::info!(job_id, status = %outcome.status, error = outcome.error.as_deref().unwrap_or(""), "job finished");
    let req = pb::CompleteJobRequest {
        worker_id: worker_id.to_string(),
        job_id: job_id.clone(),
        lease_id,
        outcome: match outcome.status {
            JobStatus::Succeeded => pb::Outcome::Succeeded,
            JobStatus::Diverged => pb::Outcome::Diverged,
            _ => pb::Outcome::Failed,
        } as i32,
        device: outcome.device.clone(),
        param_count: outcome.param_count,
        epochs: outcome.epochs.iter().map(Into::into).collect(),
        latency_ms_per_sample: outcome.latency_ms_per_sample,
        error: outcome.error.clone().unwrap_or_default(),
        // Ask for the next job in the same call, unless draining. One id for every retry.
        next_request_id: if *stop.borrow() {
            String::new()
        } else {
            format!("{worker_id}/{}", requests.fetch_add(1, Ordering::Relaxed))
        },
    };
    let r = retry("complete job", stop, || {
        let mut c = client.clone();
        let req = req.clone();
        async move { c.complete_job(req).await }
    })
    .await?;
    if !r.accepted {
        tracing::warn!(job_id, lease_id, "result rejected: the lease had expired");
    }
    Ok((r.grid_finished, r.next))
}

async fn heartbeat_loop(
    client: Client,
    worker_id: String,
    every: Duration,
    running: Running,
    stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let lease_ids: Vec<u64> = running
            .lock()
            .expect("no code panics while holding this lock")
            .keys()
            .copied()
            .collect();
        let mut c = client.clone();
        let req = pb::HeartbeatRequest {
            worker_id: worker_id.clone(),
            lease_ids,
        };
        match c.heartbeat(req).await {
            Ok(r) => {
                let r = r.into_inner();
                let map = running
                    .lock()
                    .expect("no code panics while holding this lock");
                for id in r.revoked_lease_ids {
                    if let Some(cancel) = map.get(&id) {
                        tracing::warn!(
                            lease_id = id,
                            "lease revoked by the coordinator; stopping job"
                        );
                        let _ = cancel.send(true);
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "heartbeat failed"),
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// Whether an RPC error may go away by itself (coordinator restarting, network blip).
fn transient(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Unknown
            | Code::Aborted
            | Code::ResourceExhausted
    )
}

/// Calls `f` until it succeeds, retrying transient errors with capped exponential backoff.
/// Gives up on a permanent error, or when `stop` is set.
async fn retry<T, F, Fut>(what: &str, stop: &watch::Receiver<bool>, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, Status>>,
{
    let mut delay = Duration::from_millis(100);
    let mut stop = stop.clone();
    loop {
        match f().await {
            Ok(r) => return Ok(r.into_inner()),
            Err(s) if transient(&s) && !*stop.borrow() => {
                tracing::debug!(what, code = ?s.code(), message = s.message(), "retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.changed() => {}
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(s) => return Err(anyhow::anyhow!("{what}: {} ({:?})", s.message(), s.code())),
        }
    }
}

/// Sends the job's checkpoint file to the coordinator in chunks.
async fn upload_checkpoint(
    client: &Client,
    worker_id: &str,
    job_id: &str,
    lease_id: u64,
    epoch: u32,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    let bytes = tokio::fs::read(path)
        .await
        .with_context(|| format!("reading {}", path.display()))?;
    let mut chunks: Vec<pb::CheckpointChunk> = bytes
        .chunks(orchestrator_proto::CHECKPOINT_CHUNK)
        .map(|c| pb::CheckpointChunk {
            data: c.to_vec(),
            ..Default::default()
        })
        .collect();
    if chunks.is_empty() {
        return Ok(());
    }
    chunks[0].worker_id = worker_id.to_string();
    chunks[0].job_id = job_id.to_string();
    chunks[0].lease_id = lease_id;
    chunks[0].epoch = epoch;
    let mut c = client.clone();
    let r = c
        .upload_checkpoint(tokio_stream::iter(chunks))
        .await
        .map_err(|s| anyhow::anyhow!("{} ({:?})", s.message(), s.code()))?;
    if r.into_inner().accepted {
        tracing::debug!(
            job_id,
            epoch,
            bytes = bytes.len(),
            "checkpoint stored with the coordinator"
        );
    }
    Ok(())
}

/// Fetches the job's checkpoint from the coordinator into `path`; false when it has none.
async fn download_checkpoint(
    client: &Client,
    worker_id: &str,
    job_id: &str,
    lease_id: u64,
    path: &std::path::Path,
) -> anyhow::Result<bool> {
    let mut c = client.clone();
    let req = pb::DownloadCheckpointRequest {
        worker_id: worker_id.to_string(),
        job_id: job_id.to_string(),
        lease_id,
    };
    let mut stream = match c.download_checkpoint(req).await {
        Ok(r) => r.into_inner(),
        Err(s) if s.code() == Code::NotFound => return Ok(false),
        Err(s) => anyhow::bail!("{} ({:?})", s.message(), s.code()),
    };
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.message().await? {
        bytes.extend_from_slice(&chunk.data);
    }
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await?;
    }
    let tmp = path.with_extension("download");
    tokio::fs::write(&tmp, &bytes).await?;
    tokio::fs::rename(&tmp, path).await?;
    Ok(true)
}
