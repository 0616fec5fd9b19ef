//! The coordinator: expands a grid into jobs, serves them to workers over gRPC, persists every
//! result in SQLite and writes the report.
//!
//! # Layout
//! - [`state`]: jobs, leases and workers; the only place that changes them, written through to SQLite.
//! - [`service`]: the gRPC services (worker protocol, control API, bearer-token check).
//! - [`local`]: worker processes started on this machine.
//! - [`output`]: the files in `--out`.
//! - [`live`]: the live report over HTTP.
//! - [`run`]: one grid, start to finish; `main` only parses flags and calls it.

pub mod live;
pub mod local;
pub mod output;
pub mod service;
pub mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use common::Grid;
use orchestrator_proto::v1::control_service_server::ControlServiceServer;
use orchestrator_proto::v1::worker_service_server::WorkerServiceServer;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::local::LocalWorkers;
use crate::service::{RequireToken, Shared};
use crate::state::{Counts, State};

/// Everything `run` needs, already validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub grid: Grid,
    pub grid_file: String,
    pub out: PathBuf,
    pub state: PathBuf,
    pub local_workers: LocalWorkers,
    pub device: String,
    pub data_dir: Option<PathBuf>,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub worker_bin: PathBuf,
    pub worker_slots: u32,
    pub lease_seconds: u32,
    pub heartbeat_seconds: u32,
    /// Run every job again, even those finished in the state.
    pub rerun: bool,
    /// Largest checkpoint a worker may store with the coordinator.
    pub max_checkpoint_mb: u64,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Every job reached a terminal status.
    Finished(Counts),
    /// Stopped by `shutdown` before the end; state is saved and the same command resumes.
    Interrupted(Counts),
}

/// Runs `cfg.grid` to completion, serving gRPC on `listener` and the live report on `http`,
/// or until `shutdown` completes.
pub async fn run(
    cfg: Config,
    listener: TcpListener,
    http: Option<TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<Ending> {
    std::fs::create_dir_all(&cfg.out).with_context(|| format!("creating {}", cfg.out.display()))?;
    if let Some(parent) = cfg.state.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let state = State::open(
        &cfg.state,
        &cfg.grid,
        &cfg.grid_file,
        Duration::from_secs(cfg.lease_seconds as u64),
        cfg.rerun,
    )
    .with_context(|| format!("opening state {}", cfg.state.display()))?;
    let shared = Shared::new(
        state,
        cfg.heartbeat_seconds,
        service::CheckpointStore {
            dir: cfg.out.join("checkpoints"),
            max_bytes: cfg.max_checkpoint_mb * (1 << 20),
        },
    );
    let addr = listener.local_addr()?;
    let counts = shared.lock().counts();
    tracing::info!(
        grid = cfg.grid.name,
        jobs = counts.total(),
        already_done = counts.finished(),
        listen = %addr,
        state = %cfg.state.display(),
        "coordinator started"
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let server = tokio::spawn(serve(
        shared.clone(),
        listener,
        cfg.token.clone(),
        stop_rx.clone(),
    ));
    let live_task = match http {
        Some(l) => {
            tracing::info!("live report at http://{}/", l.local_addr()?);
            Some(tokio::spawn(live::serve(
                shared.clone(),
                l,
                stop_rx.clone(),
            )))
        }
        None => None,
    };

    let url = connect_url(addr);
    let devices = local::plan(cfg.local_workers, &cfg.device, local::visible_gpus());
    let mut children = if shared.lock().is_finished() {
        Vec::new()
    } else {
        local::spawn_all(
            &local::Spawn {
                binary: &cfg.worker_bin,
                coordinator_url: &url,
                data_dir: cfg.data_dir.as_deref(),
                token_file: cfg.token_file.as_deref(),
                log_dir: &cfg.out.join("logs"),
                checkpoint_dir: &cfg.out.join("worker-checkpoints"),
                slots: cfg.worker_slots,
            },
            &devices,
        )?
    };
    if devices.is_empty() {
        tracing::info!(url, "waiting for external workers");
    }

    let expiry = {
        let shared = shared.clone();
        let every = Duration::from_millis((cfg.lease_seconds as u64 * 250).clamp(100, 1000));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let expired = shared.lock().expire(Instant::now());
                match expired {
                    Ok(ids) if !ids.is_empty() => shared.changed.notify_waiters(),
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "lease expiry failed"),
                }
            }
        })
    };

    tokio::pin!(shutdown);
    let mut last = None;
    let mut last_stuck = Vec::new();
    // The loop wakes on every epoch report; the scan of the pending queue for jobs no worker
    // can run (under the state lock) is done at most this often.
    const STUCK_CHECK: Duration = Duration::from_secs(2);
    let mut stuck_checked: Option<Instant> = None;
    let ending = loop {
        let counts = shared.lock().counts();
        if last != Some(counts) {
            tracing::info!(
                "progress: {}/{} done ({} succeeded, {} failed, {} diverged), {} running, {} pending",
                counts.finished(),
                counts.total(),
                counts.succeeded,
                counts.failed,
                counts.diverged,
                counts.running,
                counts.pending
            );
            last = Some(counts);
        }
        if shared.lock().is_finished() {
            break Ending::Finished(counts);
        }
        let now = Instant::now();
        if stuck_checked.is_none_or(|t| now.saturating_duration_since(t) >= STUCK_CHECK) {
            stuck_checked = Some(now);
            let stuck = shared.lock().unplaceable(now);
            if stuck != last_stuck {
                for (requires, n) in &stuck {
                    tracing::warn!(
                        "{n} pending job(s) require {requires} (grid.yaml `requires`), which no connected worker has; they wait until such a worker registers"
                    );
                }
                last_stuck = stuck;
            }
        }
        if !children.is_empty() && all_exited(&mut children) {
            anyhow::bail!(
                "every local worker exited before the grid finished; see {}",
                cfg.out.join("logs").display()
            );
        }
        tokio::select! {
            _ = shared.changed.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = &mut shutdown => {
                tracing::info!("shutdown requested: state saved; run the same command to resume");
                break Ending::Interrupted(counts);
            }
        }
    };
    expiry.abort();

    let results = shared.lock().results();
    output::write_all(&results, &cfg.out)?;
    tracing::info!(out = %cfg.out.display(), "results and report written");

    // Keep serving until every live worker (local or external) has been told the grid is
    // finished and local workers have exited by themselves, within one lease time.
    if matches!(ending, Ending::Finished(_)) {
        let deadline = Instant::now() + Duration::from_secs(cfg.lease_seconds as u64);
        while Instant::now() < deadline
            && !(all_exited(&mut children) && shared.lock().live_workers_told(Instant::now()))
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for child in &mut children {
        let _ = child.kill().await;
    }
    let _ = stop_tx.send(true);
    server.await.context("server task")??;
    if let Some(task) = live_task {
        task.await.context("live report task")??;
    }
    Ok(ending)
}

fn all_exited(children: &mut [tokio::process::Child]) -> bool {
    children
        .iter_mut()
        .all(|c| !matches!(c.try_wait(), Ok(None)))
}

/// The URL local workers use to reach a server bound to `addr`.
pub fn connect_url(addr: SocketAddr) -> String {
    let host = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_string(),
        ip if ip.is_unspecified() => "[::1]".to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    format!("http://{host}:{}", addr.port())
}

async fn serve(
    shared: Shared,
    listener: TcpListener,
    token: Option<String>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<WorkerServiceServer<Shared>>().await;
    let auth = RequireToken(token.map(Arc::from));
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(health_service)
        .add_service(WorkerServiceServer::with_interceptor(
            shared.clone(),
            auth.clone(),
        ))
        .add_service(ControlServiceServer::with_interceptor(shared, auth))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            async move {
                let _ = stop.wait_for(|s| *s).await;
            },
        )
        .await
        .context("gRPC server")
}
