//! `coordinator`: runs a grid (`--grid`), re-renders reports (`report`), shows status (`status`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use common::Grid;
use coordinator::local::LocalWorkers;
use coordinator::state::State;
use coordinator::{output, Config, Ending};
use orchestrator_proto::v1::control_service_client::ControlServiceClient;

#[derive(Parser)]
#[command(
    version,
    about = "Runs a grid of deep-learning experiments over worker daemons and writes a DAWNBench-style report"
)]
#[command(args_conflicts_with_subcommands = true, args_override_self = true)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args)]
struct RunArgs {
    /// The grid file (see README: grid.yaml).
    #[arg(long, env = "COORDINATOR_GRID")]
    grid: Option<PathBuf>,
    /// Output folder; default: runs/<grid name>/.
    #[arg(long, env = "COORDINATOR_OUT")]
    out: Option<PathBuf>,
    /// SQLite state file; default: <out>/state.db. Running again with the same state resumes.
    #[arg(long, env = "COORDINATOR_STATE")]
    state: Option<PathBuf>,
    /// gRPC address to listen on.
    #[arg(long, env = "COORDINATOR_LISTEN", default_value = "127.0.0.1:50051")]
    listen: String,
    /// Local workers to start: auto (one per GPU, else one CPU worker) or a number (0: external workers only).
    #[arg(long, env = "COORDINATOR_LOCAL_WORKERS", default_value = "auto")]
    local_workers: LocalWorkers,
    /// Dataset folder passed to local workers.
    #[arg(long, env = "DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Device of local workers: auto | cpu | cuda | cuda:N.
    #[arg(long, env = "COORDINATOR_DEVICE", default_value = "auto")]
    device: String,
    /// Jobs at once per local worker.
    #[arg(long, env = "COORDINATOR_WORKER_SLOTS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    worker_slots: u32,
    /// Bearer token workers must present (first line of the file).
    #[arg(long, env = "COORDINATOR_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Run every job of the grid again, even those already finished in the state.
    #[arg(long, env = "COORDINATOR_RERUN")]
    rerun: bool,
    /// Largest job checkpoint workers may store with the coordinator, in MiB.
    #[arg(long, env = "COORDINATOR_MAX_CHECKPOINT_MB", default_value_t = 2048)]
    max_checkpoint_mb: u64,
    /// Address of the live HTML report (`off` to disable).
    #[arg(long, env = "COORDINATOR_HTTP", default_value = "127.0.0.1:50052")]
    http: String,
    /// A job whose worker is silent this long is given to another worker.
    #[arg(long, env = "COORDINATOR_LEASE_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(2..=3600))]
    lease_seconds: u32,
}

#[derive(Args)]
struct Connect {
    /// Coordinator URL.
    #[arg(
        long,
        env = "COORDINATOR_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    connect: String,
    #[arg(long, env = "COORDINATOR_TOKEN_FILE")]
    token_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Re-render every report file from saved state.
    Report {
        #[arg(long)]
        state: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Show jobs and workers of a running coordinator.
    Status {
        #[command(flatten)]
        conn: Connect,
    },
    /// Cancel jobs of a running coordinator: they end as failed; their workers stop them.
    Cancel {
        #[command(flatten)]
        conn: Connect,
        /// Job ids to cancel (see `status`).
        #[arg(long = "job", required_unless_present = "all")]
        jobs: Vec<String>,
        /// Cancel every job that has not finished: the whole grid.
        #[arg(long, conflicts_with = "jobs")]
        all: bool,
    },
}

/// Bad input: exit code 2, nothing started.
struct BadInput(String);

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("coordinator: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.cmd {
        Some(Cmd::Report { state, out }) => report(&state, &out).map_err(Err),
        Some(Cmd::Status { conn }) => rt.block_on(status(conn)).map_err(Err),
        Some(Cmd::Cancel { conn, jobs, all }) => rt.block_on(cancel(conn, jobs, all)).map_err(Err),
        None => match validate(cli.run) {
            Ok((cfg, listen)) => rt.block_on(run(cfg, listen)).map_err(Err),
            Err(bad) => Err(Ok(bad)),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Ok(BadInput(msg))) => {
            eprintln!("coordinator: error: {msg}");
            ExitCode::from(2)
        }
        Err(Err(e)) => {
            eprintln!("coordinator: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What `run` binds: the gRPC address and the live report's (None: off).
struct Listen {
    grpc: String,
    http: Option<String>,
}

fn validate(a: RunArgs) -> Result<(Config, Listen), BadInput> {
    let Some(grid_path) = a.grid else {
        return Err(BadInput(
            "--grid GRID.yaml is required (or use `report` / `status`; see --help)".into(),
        ));
    };
    let grid = Grid::from_file(&grid_path).map_err(|e| BadInput(e.to_string()))?;
    if a.listen.parse::<std::net::SocketAddr>().is_err() {
        return Err(BadInput(format!(
            "--listen: `{}` is not HOST:PORT (e.g. 127.0.0.1:50051)",
            a.listen
        )));
    }
    let http = match a.http.as_str() {
        "off" => None,
        addr if addr.parse::<std::net::SocketAddr>().is_ok() => Some(addr.to_string()),
        other => {
            return Err(BadInput(format!(
                "--http: `{other}` is not HOST:PORT (e.g. 127.0.0.1:50052) or `off`"
            )))
        }
    };
    let device_ok = matches!(a.device.as_str(), "auto" | "cpu" | "cuda")
        || a.device
            .strip_prefix("cuda:")
            .is_some_and(|n| n.parse::<u32>().is_ok());
    if !device_ok {
        return Err(BadInput(format!(
            "--device: `{}` is not one of auto, cpu, cuda, cuda:N",
            a.device
        )));
    }
    if let Some(d) = &a.data_dir {
        if !d.is_dir() {
            return Err(BadInput(format!(
                "--data-dir: {} is not a folder",
                d.display()
            )));
        }
    }
    let token = match &a.token_file {
        Some(p) => Some(orchestrator_proto::read_token_file(p).map_err(BadInput)?),
        None => None,
    };
    let out = a
        .out
        .unwrap_or_else(|| PathBuf::from("runs").join(&grid.name));
    let state = a.state.unwrap_or_else(|| out.join("state.db"));
    let worker_bin = coordinator::local::worker_binary().map_err(|e| BadInput(format!("{e:#}")))?;
    // Frequent enough that a cancelled or revoked job stops within a few seconds.
    let heartbeat_seconds = (a.lease_seconds / 3).clamp(1, 2);
    let cfg = Config {
        grid,
        grid_file: grid_path.display().to_string(),
        out,
        state,
        local_workers: a.local_workers,
        device: a.device,
        data_dir: a.data_dir.map(|d| std::path::absolute(&d).unwrap_or(d)),
        token,
        token_file: a.token_file.map(|p| std::path::absolute(&p).unwrap_or(p)),
        worker_bin,
        worker_slots: a.worker_slots,
        lease_seconds: a.lease_seconds,
        heartbeat_seconds,
        rerun: a.rerun,
        max_checkpoint_mb: a.max_checkpoint_mb,
    };
    Ok((
        cfg,
        Listen {
            grpc: a.listen,
            http,
        },
    ))
}

async fn run(cfg: Config, listen: Listen) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&listen.grpc)
        .await
        .with_context(|| format!("cannot listen on {} (--listen)", listen.grpc))?;
    let http = match &listen.http {
        Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen on {addr} (--http; `--http off` disables the live report)")
        })?),
        None => None,
    };
    let out = cfg.out.clone();
    match coordinator::run(cfg, listener, http, shutdown_signal()).await? {
        Ending::Finished(c) => {
            eprintln!(
                "coordinator: grid finished: {} succeeded, {} failed, {} diverged; report in {}",
                c.succeeded,
                c.failed,
                c.diverged,
                out.join("report.md").display()
            );
        }
        Ending::Interrupted(c) => {
            eprintln!(
                "coordinator: interrupted with {}/{} jobs done; run the same command to resume",
                c.finished(),
                c.total()
            );
        }
    }
    Ok(())
}

fn report(state: &std::path::Path, out: &std::path::Path) -> anyhow::Result<()> {
    let state = State::open_existing(state)
        .with_context(|| format!("reading state {}", state.display()))?;
    output::write_all(&state.results(), out)?;
    eprintln!("coordinator: report written to {}", out.display());
    Ok(())
}

type Control = ControlServiceClient<
    tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        orchestrator_proto::BearerAuth,
    >,
>;

async fn control(conn: Connect) -> anyhow::Result<Control> {
    let token = conn
        .token_file
        .as_deref()
        .map(orchestrator_proto::read_token_file)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let url = conn.connect;
    let channel = tonic::transport::Endpoint::from_shared(url.clone())
        .with_context(|| format!("invalid URL `{url}`"))?
        .connect()
        .await
        .with_context(|| format!("cannot reach the coordinator at {url}"))?;
    let auth = orchestrator_proto::BearerAuth::new(token.as_deref()).map_err(anyhow::Error::msg)?;
    Ok(ControlServiceClient::with_interceptor(channel, auth))
}

async fn cancel(conn: Connect, jobs: Vec<String>, all: bool) -> anyhow::Result<()> {
    let r = control(conn)
        .await?
        .cancel_jobs(orchestrator_proto::v1::CancelJobsRequest { job_ids: jobs, all })
        .await
        .context("CancelJobs")?
        .into_inner();
    println!("{} job(s) cancelled", r.cancelled);
    Ok(())
}

async fn status(conn: Connect) -> anyhow::Result<()> {
    let mut client = control(conn).await?;
    let s = client
        .grid_status(orchestrator_proto::v1::GridStatusRequest {})
        .await
        .context("GridStatus")?
        .into_inner();
    println!(
        "grid {}: {} pending, {} running, {} succeeded, {} failed, {} diverged",
        s.grid_name, s.pending, s.running, s.succeeded, s.failed, s.diverged
    );
    println!("\nWORKER      NAME                          DEVICE    SLOTS  RUNNING  LAST SEEN");
    for w in &s.workers {
        let seen = if w.seconds_since_seen < 0.0 {
            "earlier run".to_string()
        } else {
            format!("{:.0}s ago", w.seconds_since_seen)
        };
        println!(
            "{:<11} {:<29} {:<9} {:>5}  {:>7}  {seen}",
            w.worker_id, w.name, w.device, w.slots, w.running
        );
    }
    println!("\nJOB                                             STATE      ATTEMPTS  EPOCHS  ACCURACY  WORKER");
    for j in &s.jobs {
        println!(
            "{:<47} {:<10} {:>8}  {:>3}/{:<3} {:>8}  {}",
            j.job_id,
            j.state,
            j.attempts,
            j.epochs_done,
            j.epochs_total,
            j.last_test_accuracy
                .map_or("-".into(), |a| format!("{:.2}%", 100.0 * a)),
            j.worker
        );
    }
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
