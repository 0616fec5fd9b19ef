//! The worker daemon: registers with the coordinator, leases jobs into `slots` parallel slots,
//! runs each in a child process, streams its epochs back, reports its outcome, heartbeats.
//!
//! # Layout
//! - [`run`] (here): register, then the slots and the heartbeat until the grid is finished.
//! - [`session`]: the client, the worker id and the running leases, shared by all tasks.
//! - [`slot`]: lease → run → report, in a loop; [`lease`]: one leased job.
//! - [`heartbeat`]: lease renewal and revocation; [`checkpoint_sync`]: checkpoints to and
//!   from the coordinator; [`retry`]: retrying through restarts and blips.

mod checkpoint_sync;
mod heartbeat;
mod lease;
mod retry;
mod session;
mod slot;

use std::future::Future;
use std::time::Duration;

use common::{WorkerId, WorkerInfo};
use orchestrator_proto::client::{unregistered_worker, worker_client, ClientTls};
use orchestrator_proto::v1 as pb;
use orchestrator_proto::BearerAuth;
use tokio::sync::watch;
use tonic::transport::Channel;

use crate::job_process::Launcher;
use session::Session;

#[derive(Debug, Clone)]
pub struct Config {
    /// e.g. `http://127.0.0.1:50051`
    pub coordinator: String,
    pub token: Option<String>,
    /// The file `token` came from, followed so a rotated token is taken up.
    pub token_file: Option<std::path::PathBuf>,
    /// Certificates for an https:// coordinator.
    pub tls: ClientTls,
    /// What this worker declares (its `slots` are the slots it runs).
    pub info: WorkerInfo,
    pub launcher: Launcher,
}

/// Runs until the coordinator says the grid is finished (then returns Ok) or `shutdown`
/// completes (running jobs are stopped and their leases handed back).
pub async fn run(cfg: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let (channel, auth, _) = unregistered_worker(&cfg.coordinator, &cfg.tls, cfg.token.as_deref())?;
    let follower = cfg.token_file.clone().map(|file| {
        let every = orchestrator_proto::FOLLOW_EVERY;
        orchestrator_proto::follow(file, auth.token().clone(), every, |_| Ok(()), || {})
    });
    let _follower = AbortOnDrop(follower);
    let (stop_tx, stop_rx) = watch::channel(false);
    let work = serve(cfg, channel, auth, stop_rx);
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

async fn serve(
    cfg: Config,
    channel: Channel,
    auth: BearerAuth,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let client = worker_client(channel.clone(), auth.clone());
    let info = pb::WorkerInfo {
        worker_version: env!("CARGO_PKG_VERSION").into(),
        ..pb::WorkerInfo::from(&cfg.info)
    };
    let register = format!("register with {}", cfg.coordinator);
    let reg = retry::retry(&register, &stop, || {
        let mut c = client.clone();
        let req = pb::RegisterRequest {
            info: Some(info.clone()),
        };
        async move { c.register(req).await }
    })
    .await?;
    tracing::info!(worker_id = ?reg.worker_id, coordinator = %cfg.coordinator, slots = cfg.info.slots, "registered");
    // Every later call carries this registration's session: leases are bound to it.
    let auth = auth
        .with_session(&reg.session)
        .map_err(anyhow::Error::msg)?;
    let client = worker_client(channel, auth);
    let session = Session::new(client, WorkerId::from_stored(reg.worker_id), stop);
    let every = Duration::from_secs(reg.heartbeat_seconds.max(1) as u64);
    let heartbeat = tokio::spawn(heartbeat::run(session.clone(), every));
    let mut slots = tokio::task::JoinSet::new();
    for i in 0..cfg.info.slots as usize {
        slots.spawn(slot::run(i, session.clone(), cfg.launcher.clone()));
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

/// Aborts its task, if any, when dropped.
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            t.abort();
        }
    }
}
