//! The coordinator: expands a grid into jobs, serves them to workers over gRPC, persists every
//! result in SQLite and writes the report.
//!
//! # Layout
//! - [`config`]: what a run needs, validated by `main`.
//! - [`change`]: a state transition as data, the unit both the store and memory apply.
//! - [`jobs`]: the job state machine: each transition decided as a [`change::Change`].
//! - [`store`]: the SQLite schema and every SQL statement; [`writer`]: group commit, the one
//!   task that writes to it while a grid runs.
//! - [`scheduler`]: the pending queue and cost model, the lease table ordered by expiry, the
//!   worker registry.
//! - [`state`]: the facade the services call: lease, report, complete, release, cancel,
//!   heartbeat, expire; and its read side (records, results, worker status).
//! - [`service`]: the gRPC services; [`error`]: the one error → status table.
//! - [`checkpoints`]: job checkpoints stored for resumption on any worker.
//! - [`server`]: the gRPC server, [`accept`] its accept loop and TLS handshakes, [`limits`] the
//!   caps on connections; [`live`]: the live report over HTTP.
//! - [`expiry`]: the lease-expiry task; [`progress`]: watching the grid to its end.
//! - [`local`]: worker processes started on this machine; [`output`]: the files in `--out`;
//!   [`plan`]: what a run would do (`coordinator plan`).
//! - [`run`]: one grid, start to finish, wiring the above together.

pub mod accept;
pub mod change;
pub mod checkpoints;
pub mod clock;
pub mod config;
pub mod error;
pub mod expiry;
pub mod jobs;
pub mod limits;
pub mod live;
pub mod local;
pub mod metrics;
pub mod operator;
pub mod output;
pub mod page_auth;
pub mod plan;
pub mod progress;
pub mod scheduler;
pub mod server;
pub mod service;
pub mod slurm;
pub mod state;
pub mod store;
pub mod terminal;
pub mod tls;
pub mod writer;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use orchestrator_proto::{follow, TokenCell};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::checkpoints::CheckpointStore;
pub use crate::config::Config;
use crate::local::Processes;
pub use crate::progress::Ending;
use crate::service::Shared;
use crate::state::State;

/// Runs `cfg.grid` to completion with the `planned` local workers (see
/// [`plan_local_workers`]), serving gRPC on `listener` and the live report on `http`, or until
/// `shutdown` completes.
pub async fn run(
    cfg: Config,
    planned: Vec<local::LocalWorker>,
    listener: TcpListener,
    http: Option<TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<Ending> {
    // Declared first, so it is released last, after SQLite has closed the state.
    let _state_lock = lock_state(&cfg.state)?;
    let shared = open(&cfg)?;
    let addr = listener.local_addr()?;
    // Before the start line: whoever waits for it (a script, `coordinator status` on this
    // machine) finds the operators' token already there.
    let operator = operator::start(&cfg, addr.port())?;
    let counts = shared.lock().counts();
    tracing::info!(grid = cfg.grid.name(), jobs = counts.total(), already_done = counts.finished(), listen = %addr, state = %cfg.state.display(), "coordinator started");
    log_limits(cfg.idle);

    let store = shared.lock().detach_store().context("the state's store")?;
    let (stop_writer, writer_stop) = watch::channel(false);
    let writer = tokio::spawn(writer::run(shared.clone(), store, writer_stop));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (socket, local) = server::LocalSocket::bind()?;
    let tokens = server::Tokens {
        worker: TokenCell::new(cfg.token.clone()),
        operator: TokenCell::new(operator.as_ref().map(|(t, _)| t.clone())),
    };
    let page_auth = live::PageAuth::new(tokens.operator.clone(), cfg.tls.is_some());
    let grpc = tokio::spawn(server::serve(
        shared.clone(),
        listener,
        Some(local),
        tokens.clone(),
        cfg.tls.clone(),
        cfg.idle,
        stop_rx.clone(),
    ));
    let http_addr = http.as_ref().and_then(|l| l.local_addr().ok());
    let http = serve_page(&cfg, http, &shared, page_auth.clone(), stop_rx)?;
    let followers = follow_files(&cfg, &tokens, &page_auth, operator.map(|(_, f)| f));
    if cfg.display {
        announce_start(&cfg, &counts, addr, http_addr);
    }
    let mut children = start_local_workers(&cfg, &planned, &shared, &socket.url())?;
    let slurm = start_slurm_workers(&cfg, &shared, addr)?;
    let expiry = tokio::spawn(expiry::run(shared.clone()));

    tokio::pin!(shutdown);
    let logs = cfg.out.join("logs");
    let display = cfg.display.then(|| terminal::Display::new(counts.total()));
    let ending = progress::watch(&shared, &mut children, &logs, display, shutdown.as_mut()).await;
    expiry.abort();
    let ending = ending?;

    let results = shared.lock().results();
    output::write_all(&results, &cfg.out)?;
    tracing::info!(out = %cfg.out.display(), "results and report written");
    if matches!(ending, Ending::Finished { .. }) {
        let lease = Duration::from_secs(cfg.lease_seconds as u64);
        progress::drain(&shared, &mut children, lease, shutdown.as_mut()).await;
    }
    children.kill_all().await;
    if let Some((stop, task)) = slurm {
        // Every worker job it submitted is cancelled before the coordinator goes on.
        let _ = stop.send(true);
        task.await.context("SLURM launcher task")?;
    }
    followers.into_iter().for_each(|f| f.abort());
    // The local workers that could still have written a cancelled job's checkpoint are gone.
    shared.remove_cancelled_checkpoints();
    let _ = stop_tx.send(true);
    grpc.await.context("server task")??;
    if let Some(task) = http {
        task.await.context("live report task")??;
    }
    // No request can queue a change any more: flush what is queued and stop the writer.
    let _ = stop_writer.send(true);
    writer.await.context("state writer task")??;
    Ok(ending)
}

/// Logs the open-file limit (raised at this first call) and the connection caps under it.
fn log_limits(idle: Duration) {
    let files = limits::open_files();
    let (grpc, page) = (limits::grpc(idle).total, limits::http(idle).total);
    tracing::info!(open_file_limit = files, grpc, page, "connections capped");
}

/// Follows the token files, so a rotated token takes effect without a restart: the workers'
/// (`--token-file`) and the operators' (given, or `<out>/operator-token`). A new operators'
/// token ends the page's sessions; neither may become the other.
fn follow_files(
    cfg: &Config,
    tokens: &server::Tokens,
    page: &live::PageAuth,
    operator_file: Option<PathBuf>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    let every = orchestrator_proto::FOLLOW_EVERY;
    let differs = |other: TokenCell, what: &'static str| {
        move |t: &str| match other.get() {
            Some(o) if *o == *t => Err(format!("it now holds the {what} token")),
            _ => Ok(()),
        }
    };
    if let Some(file) = &cfg.token_file {
        let check = differs(tokens.operator.clone(), "operators'");
        let cell = tokens.worker.clone();
        tasks.push(follow(file.clone(), cell, every, check, || {}));
    }
    if let Some(file) = operator_file {
        let check = differs(tokens.worker.clone(), "workers'");
        let page = page.clone();
        let cell = tokens.operator.clone();
        tasks.push(follow(file, cell, every, check, move || {
            page.end_sessions()
        }));
    }
    tasks
}

/// With `--launcher slurm`, the task that keeps worker jobs in SLURM's queue until `stop`.
fn start_slurm_workers(
    cfg: &Config,
    shared: &Shared,
    addr: std::net::SocketAddr,
) -> anyhow::Result<Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>> {
    let Some(s) = &cfg.slurm else {
        return Ok(None);
    };
    // Workers on other nodes reach this one by its name when it listens on every address.
    let host = if addr.ip().is_unspecified() {
        orchestrator_proto::host::hostname()
    } else {
        addr.ip().to_string()
    };
    let scheme = if cfg.tls.is_some() { "https" } else { "http" };
    let mut worker = vec![
        cfg.worker_bin.display().to_string(),
        "--coordinator".into(),
        format!("{scheme}://{host}:{}", addr.port()),
        "--log-format".into(),
        cfg.log_format.as_str().into(),
    ];
    if let Some(t) = &cfg.token_file {
        worker.extend(["--token-file".into(), t.display().to_string()]);
    }
    if let Some(d) = &cfg.data_dir {
        worker.extend(["--data-dir".into(), d.display().to_string()]);
    }
    worker.extend(s.worker_args.iter().cloned());
    let name = format!("dlgrid-{}-{}", cfg.grid.name(), addr.port());
    let launcher = slurm::Launcher::new(s.clone(), &cfg.out, name, &worker)?;
    let (stop_tx, stop) = watch::channel(false);
    let task = tokio::spawn(slurm::run(shared.clone(), launcher, stop));
    Ok(Some((stop_tx, task)))
}

/// Serves the live page on `listener`, if there is one, behind the operators' token.
fn serve_page(
    cfg: &Config,
    listener: Option<TcpListener>,
    shared: &Shared,
    auth: live::PageAuth,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<anyhow::Result<()>>>> {
    let Some(l) = listener else {
        return Ok(None);
    };
    let scheme = if cfg.tls.is_some() { "https" } else { "http" };
    tracing::info!("live report at {scheme}://{}/", l.local_addr()?);
    let tls = cfg.tls.as_ref().map(|t| t.acceptor());
    Ok(Some(tokio::spawn(live::serve(
        shared.clone(),
        l,
        tls,
        auth,
        cfg.idle,
        stop,
    ))))
}

/// Locks the state file for as long as the returned handle lives, so that no two coordinators
/// (or a coordinator and `uncancel`) work on one state. An advisory `flock`, which SQLite's own
/// (`fcntl`) locks do not interact with; the handle stays open until SQLite has closed.
pub fn lock_state(path: &Path) -> anyhow::Result<std::fs::File> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    // Mode 600 from its creation (SQLite gives its WAL and shared-memory files the same), and
    // made so if an earlier version left it readable by others: it holds every result.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("opening state {}", path.display()))?;
    if file
        .metadata()
        .is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
    {
        let _ = file.set_permissions(std::fs::Permissions::from_mode(0o600));
    }
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "state {} is in use by a running coordinator (one coordinator per state; \
             `coordinator status` and `coordinator cancel` talk to it)",
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking state {}", path.display()))
        }
    }
}

/// The state of `cfg.grid`, opened for this run, with its checkpoint store.
fn open(cfg: &Config) -> anyhow::Result<Shared> {
    std::fs::create_dir_all(&cfg.out).with_context(|| format!("creating {}", cfg.out.display()))?;
    if let Some(parent) = cfg.state.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let lease = Duration::from_secs(cfg.lease_seconds as u64);
    let state = State::open(
        &cfg.state,
        &cfg.grid,
        &cfg.grid_file,
        lease,
        cfg.rerun,
        cfg.durability,
    )
    .with_context(|| format!("opening state {}", cfg.state.display()))?;
    // Opening a large grid allocates and frees several copies of its jobs (the expansion, the
    // stored rows); glibc keeps freed memory for reuse. Handed back, RSS is what the state holds.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the system.
    unsafe {
        libc::malloc_trim(0);
    }
    let checkpoints = CheckpointStore {
        dir: cfg.out.join("checkpoints"),
        max_bytes: cfg.max_checkpoint_mb * (1 << 20),
    };
    checkpoints.remove_partial_uploads();
    Ok(Shared::new(state, cfg.heartbeat_seconds, checkpoints))
}

/// The local workers `cfg` asks for. For GPUs it runs the worker's preflight, whose error
/// (an old driver, GPUs CUDA cannot see) stops the run before anything starts.
pub fn plan_local_workers(cfg: &Config) -> anyhow::Result<Vec<local::LocalWorker>> {
    let wants_gpus =
        cfg.device != common::DeviceSpec::Cpu && cfg.local_workers != local::LocalWorkers::Count(0);
    let gpus = if wants_gpus && cfg.worker_bin.is_file() {
        local::gpus(&cfg.worker_bin)?
    } else {
        vec![]
    };
    let plan = local::plan(cfg.local_workers, cfg.device, &gpus);
    if let Some(w) = local::sharing_warning(&plan, cfg.worker_slots) {
        tracing::warn!("{w}");
    }
    Ok(plan)
}

/// Starts the `planned` local workers, connecting to `url`, unless the grid is already
/// finished.
fn start_local_workers(
    cfg: &Config,
    planned: &[local::LocalWorker],
    shared: &Shared,
    url: &str,
) -> anyhow::Result<Processes> {
    if planned.is_empty() {
        tracing::info!("waiting for external workers");
    }
    if shared.lock().is_finished() {
        return Ok(Processes::default());
    }
    let spawn = local::Spawn {
        binary: &cfg.worker_bin,
        coordinator_url: url,
        data_dir: cfg.data_dir.as_deref(),
        token_file: cfg.token_file.as_deref(),
        log_dir: &cfg.out.join("logs"),
        checkpoint_dir: &shared.checkpoints.dir,
        slots: cfg.worker_slots,
        log_format: cfg.log_format,
    };
    Processes::spawn(&spawn, planned)
}

/// What the info lines would have said at start, once, above the live display (which
/// replaces them).
fn announce_start(
    cfg: &Config,
    counts: &state::Counts,
    addr: std::net::SocketAddr,
    http: Option<std::net::SocketAddr>,
) {
    let page = match http {
        Some(a) => {
            let scheme = if cfg.tls.is_some() { "https" } else { "http" };
            format!("; live report at {scheme}://{a}/")
        }
        None => String::new(),
    };
    eprintln!(
        "coordinator: grid {}: {} jobs ({} done before); gRPC on {addr}{page}",
        cfg.grid.name(),
        counts.total(),
        counts.finished()
    );
}
