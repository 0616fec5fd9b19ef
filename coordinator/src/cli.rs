//! The command line: flags as clap parses them, then checked into a [`Config`] once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use common::{DeviceSpec, Grid};
use coordinator::local::LocalWorkers;
use coordinator::store::Durability;
use coordinator::Config;

#[derive(Parser)]
#[command(
    version,
    about = "Runs a grid of deep-learning experiments over worker daemons and writes a DAWNBench-style report"
)]
#[command(args_conflicts_with_subcommands = true, args_override_self = true)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
    #[command(flatten)]
    pub run: RunArgs,
    /// Log lines as `text` or `json` (one object per line, for log collectors); filter with
    /// RUST_LOG (e.g. `warn,coordinator=debug`).
    #[arg(long, global = true, env = "DLGRID_LOG_FORMAT", default_value = "text")]
    pub log_format: orchestrator_proto::telemetry::LogFormat,
}

#[derive(Args)]
pub struct RunArgs {
    /// The grid file (see the manual: grid.yaml reference).
    #[arg(long, env = "COORDINATOR_GRID")]
    grid: Option<PathBuf>,
    /// Output folder; default: runs/<grid name>/.
    #[arg(long, env = "COORDINATOR_OUT")]
    out: Option<PathBuf>,
    /// SQLite state file; default: <out>/state.db. Running again with the same state resumes.
    #[arg(long, env = "COORDINATOR_STATE")]
    state: Option<PathBuf>,
    /// gRPC address to listen on (HOST:PORT).
    #[arg(long, env = "COORDINATOR_LISTEN", default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    /// Local workers to start: auto (one per GPU, else one CPU worker) or a number (0: external workers only).
    #[arg(long, env = "COORDINATOR_LOCAL_WORKERS", default_value = "auto")]
    local_workers: LocalWorkers,
    /// Dataset folder passed to local workers.
    #[arg(long, env = "DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Device of local workers: auto | cpu | cuda | cuda:N.
    #[arg(long, env = "COORDINATOR_DEVICE", default_value = "auto")]
    device: DeviceSpec,
    /// Jobs at once per local worker.
    #[arg(long, env = "COORDINATOR_WORKER_SLOTS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    worker_slots: u32,
    /// Bearer token workers must present (first line of the file).
    #[arg(long, env = "COORDINATOR_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// The operators' token: the only one the control API (status, cancel) and the live page
    /// accept; the workers' --token-file grants neither. Default, when --token-file is set: a
    /// fresh token written (mode 600) to <out>/operator-token, which status and cancel on this
    /// machine find by themselves.
    #[arg(long, env = "COORDINATOR_OPERATOR_TOKEN_FILE")]
    operator_token_file: Option<PathBuf>,
    /// Serve on a non-loopback address without --token-file anyway (refused otherwise: anyone
    /// who can reach the port could take and report jobs).
    #[arg(long, env = "COORDINATOR_INSECURE")]
    insecure: bool,
    /// Serve TLS on both ports with this certificate (PEM, with its chain).
    #[arg(long, env = "COORDINATOR_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "COORDINATOR_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Close a connection (either port) that sends nothing for this long. Workers heartbeat
    /// every few seconds, so only idle or dead peers are closed.
    #[arg(long, env = "COORDINATOR_IDLE_SECONDS", default_value_t = 120, value_parser = clap::value_parser!(u32).range(1..=86400))]
    idle_seconds: u32,
    /// Require gRPC clients to present a certificate issued by this CA (PEM): mutual TLS.
    #[arg(long, env = "COORDINATOR_TLS_CLIENT_CA", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Exit 3 when the grid finished with failed jobs (by default they are results: exit 0).
    #[arg(long, env = "COORDINATOR_FAIL_ON_JOB_FAILURE")]
    fail_on_job_failure: bool,
    /// Run every job of the grid again, even those already finished in the state.
    #[arg(long, env = "COORDINATOR_RERUN")]
    rerun: bool,
    /// Largest job checkpoint workers may store with the coordinator, in MiB.
    #[arg(long, env = "COORDINATOR_MAX_CHECKPOINT_MB", default_value_t = 2048)]
    max_checkpoint_mb: u64,
    /// Address of the live HTML report (HOST:PORT, or `off` to disable).
    #[arg(long, env = "COORDINATOR_HTTP", default_value = "127.0.0.1:50052")]
    http: HttpAddr,
    /// What an acknowledged change survives: normal (the coordinator being killed; an OS
    /// crash or power loss may lose the last commits, and fencing makes the jobs concerned run
    /// again) or full (also an OS crash or power loss: the database is synced at every commit).
    #[arg(long, env = "COORDINATOR_DURABILITY", default_value = "normal")]
    durability: Durability,
    /// A job whose worker is silent this long is given to another worker.
    #[arg(long, env = "COORDINATOR_LEASE_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(2..=3600))]
    lease_seconds: u32,
    /// Where workers come from: local (started on this machine: --local-workers) or slurm
    /// (submitted as SLURM batch jobs with sbatch, cancelled when the grid ends; see the
    /// manual: SLURM).
    #[arg(long, env = "COORDINATOR_LAUNCHER", default_value = "local", value_parser = ["local", "slurm"])]
    launcher: String,
    /// With --launcher slurm: most worker jobs at once, queued or running.
    #[arg(long, env = "COORDINATOR_MAX_WORKERS", default_value_t = 1)]
    max_workers: u32,
    /// With --launcher slurm: an argument for sbatch, verbatim (partition, account, --gres,
    /// --time, ...); repeat for each: --sbatch-arg=--partition=gpu --sbatch-arg=--gres=gpu:1.
    #[arg(long = "sbatch-arg", allow_hyphen_values = true)]
    sbatch_args: Vec<String>,
    /// With --launcher slurm: an argument for each worker, verbatim (e.g.
    /// --worker-arg=--tls-ca=/shared/pki/ca.pem); repeat for each.
    #[arg(long = "worker-arg", allow_hyphen_values = true)]
    worker_args: Vec<String>,
}

/// `--http`: an address, or `off`.
#[derive(Debug, Clone, Copy)]
pub struct HttpAddr(pub Option<SocketAddr>);

impl std::str::FromStr for HttpAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(HttpAddr(None)),
            addr => addr
                .parse()
                .map(|a| HttpAddr(Some(a)))
                .map_err(|_| format!("`{addr}` is not HOST:PORT (e.g. 127.0.0.1:50052) or `off`")),
        }
    }
}

#[derive(Args)]
pub struct Connect {
    /// Coordinator URL (https:// for a coordinator serving TLS).
    #[arg(
        long,
        env = "COORDINATOR_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub connect: String,
    #[arg(long, env = "COORDINATOR_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// CA certificate (PEM) the coordinator's certificate must chain to; default: the
    /// system's roots.
    #[arg(long, env = "COORDINATOR_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM), for a coordinator requiring one (mutual TLS).
    #[arg(long, env = "COORDINATOR_CLIENT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "COORDINATOR_CLIENT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl Connect {
    pub fn tls(&self) -> orchestrator_proto::client::ClientTls {
        orchestrator_proto::client::ClientTls {
            ca: self.tls_ca.clone(),
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
        }
    }
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Re-render every report file from saved state.
    Report {
        /// The state file (state.db), or a results.json.
        #[arg(long)]
        state: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// What running a grid would do, without running it: the jobs to run, those its state
    /// already holds, and the time and cost to expect (from the jobs the state saw finish).
    Plan {
        /// The grid file.
        #[arg(long)]
        grid: PathBuf,
        /// Output folder, as for a run (default runs/<grid name>/).
        #[arg(long)]
        out: Option<PathBuf>,
        /// State file, as for a run (default <out>/state.db).
        #[arg(long)]
        state: Option<PathBuf>,
        /// Plan a run with --rerun (every job again).
        #[arg(long)]
        rerun: bool,
    },
    /// Two runs side by side per dataset × model × activation: each metric in A and B, the
    /// difference with its 95% confidence interval and Welch's p (Markdown).
    Compare {
        /// Run A: a state file (state.db) or a results.json.
        a: PathBuf,
        /// Run B, likewise.
        b: PathBuf,
        /// Write the comparison to this file instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Show jobs and workers of a running coordinator.
    Status {
        #[command(flatten)]
        conn: Connect,
    },
    /// Cancel jobs of a running coordinator (`--job ID`... or `--all`): they end as
    /// `cancelled`, their workers stop them, and later runs of the grid skip them until
    /// `uncancel` (or `--rerun`).
    #[command(group = clap::ArgGroup::new("which").required(true).args(["jobs", "all"]))]
    Cancel {
        #[command(flatten)]
        conn: Connect,
        /// Job ids to cancel (see `status`).
        #[arg(long = "job")]
        jobs: Vec<String>,
        /// Cancel every job that has not finished: the whole grid.
        #[arg(long, conflicts_with = "jobs")]
        all: bool,
    },
    /// Make cancelled jobs pending again in a state no coordinator is running on (`--job ID`...
    /// or `--all`): the next run of the grid runs them.
    #[command(group = clap::ArgGroup::new("which_jobs").required(true).args(["jobs", "all"]))]
    Uncancel {
        /// The state file (default of a run: <out>/state.db).
        #[arg(long)]
        state: PathBuf,
        /// Job ids to run again.
        #[arg(long = "job")]
        jobs: Vec<String>,
        /// Every cancelled job.
        #[arg(long, conflicts_with = "jobs")]
        all: bool,
    },
}

/// Bad input: exit code 2, nothing started.
pub struct BadInput(pub String);

/// Why a command stopped early. Its exit code is decided here and nowhere else (the codes of a
/// grid that ran, 0, 3, 4, 130 and 143, are [`exit`]'s).
pub enum Failure {
    /// Bad input (flags, files, ids, a machine whose GPUs cannot be used): nothing was started
    /// or written.
    BadInput(String),
    /// Anything else: a port in use, a database that cannot be read, every local worker dead.
    Error(anyhow::Error),
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::BadInput(_) => exit::BAD_INPUT,
            Failure::Error(_) => exit::ERROR,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::BadInput(msg) => f.write_str(msg),
            Failure::Error(e) => write!(f, "{e:#}"),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        Failure::Error(e)
    }
}

impl From<BadInput> for Failure {
    fn from(BadInput(msg): BadInput) -> Failure {
        Failure::BadInput(msg)
    }
}

/// The coordinator's exit codes (docs/reference/exit-codes.md).
pub mod exit {
    /// The grid ran to completion (failed jobs are results), or a command did its work.
    pub const OK: u8 = 0;
    /// Other errors.
    pub const ERROR: u8 = 1;
    /// Bad input; nothing was started or written.
    pub const BAD_INPUT: u8 = 2;
    /// The grid finished with failed jobs, under `--fail-on-job-failure`.
    pub const FAILED_JOBS: u8 = 3;
    /// The grid ended with cancelled jobs.
    pub const CANCELLED_JOBS: u8 = 4;
}

/// What `run` binds: the gRPC address and the live report's (None: off).
pub struct Listen {
    pub grpc: SocketAddr,
    pub http: Option<SocketAddr>,
}

/// What the coordinator takes from its environment besides flags (read in `main`).
pub struct Env {
    /// `$WORKER_BIN`: the worker binary local workers run.
    pub worker_bin: Option<PathBuf>,
    /// `$DLGRID_AUTHOR` / `$DLGRID_AUTHOR_EMAIL`: the grid's author where grid.yaml names none.
    pub author: Option<String>,
    pub author_email: Option<String>,
}

/// The operators' token from `--operator-token-file`, which must not be the workers'.
fn operator_token(file: Option<&Path>, workers: Option<&str>) -> Result<Option<String>, BadInput> {
    let Some(p) = file else {
        return Ok(None);
    };
    let t = orchestrator_proto::read_token_file(p).map_err(BadInput)?;
    if workers == Some(t.as_str()) {
        return Err(BadInput(format!(
            "--operator-token-file {} holds the workers' token: give operators a token of their \
             own, or leave the flag out for a fresh one",
            p.display()
        )));
    }
    Ok(Some(t))
}

/// Refuses to serve on an address other machines can reach without a token, unless told to
/// with `--insecure` (then warns).
fn exposure(a: &RunArgs, token: bool) -> Result<(), BadInput> {
    let listening = [
        Some(("--listen", a.listen)),
        a.http.0.map(|h| ("--http", h)),
    ];
    let exposed: Vec<String> = listening
        .into_iter()
        .flatten()
        .filter(|(_, addr)| !addr.ip().is_loopback())
        .map(|(flag, addr)| format!("{flag} {addr}"))
        .collect();
    let what = exposed.join(" and ");
    if exposed.is_empty() {
        return Ok(());
    }
    if token {
        if a.tls_cert.is_none() {
            tracing::warn!("{what}: without --tls-cert the token and all traffic travel in clear (see the manual: Security)");
        }
        return Ok(());
    }
    if a.insecure {
        tracing::warn!("{what}: serving without a token (--insecure): anyone who can reach it can take, report and cancel jobs");
        return Ok(());
    }
    Err(BadInput(format!(
        "{what} can be reached from other machines, and no --token-file is given: anyone who \
         can reach it could take, report and cancel jobs. Give --token-file FILE (a private file \
         holding a secret; see the manual: Security), or --insecure to serve without one anyway"
    )))
}

/// `--launcher slurm` and its flags, checked with SLURM before anything starts.
fn slurm(a: &RunArgs) -> Result<Option<coordinator::slurm::SlurmConfig>, BadInput> {
    if a.launcher != "slurm" {
        return Ok(None);
    }
    let s = coordinator::slurm::SlurmConfig {
        max_workers: a.max_workers,
        sbatch_args: a.sbatch_args.clone(),
        worker_args: a.worker_args.clone(),
    };
    coordinator::slurm::check(&s).map_err(BadInput)?;
    Ok(Some(s))
}

/// Checks the flags into a [`Config`].
pub fn validate(a: RunArgs, env: Env) -> Result<(Config, Listen), BadInput> {
    let Some(grid_path) = a.grid.clone() else {
        return Err(BadInput(
            "--grid GRID.yaml is required (or use `report` / `status`; see --help)".into(),
        ));
    };
    let grid = Grid::from_file(&grid_path)
        .map_err(|e| BadInput(e.to_string()))?
        .with_author_defaults(env.author, env.author_email);
    if let Some(d) = a.data_dir.as_ref().filter(|d| !d.is_dir()) {
        return Err(BadInput(format!(
            "--data-dir: {} is not a folder",
            d.display()
        )));
    }
    let token = match &a.token_file {
        Some(p) => Some(orchestrator_proto::read_token_file(p).map_err(BadInput)?),
        None => None,
    };
    exposure(&a, token.is_some())?;
    let slurm = slurm(&a)?;
    let operator = operator_token(a.operator_token_file.as_deref(), token.as_deref())?;
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(cert), Some(key)) => Some(std::sync::Arc::new(
            coordinator::tls::ServerTls::load(cert, key, a.tls_client_ca.as_deref())
                .map_err(BadInput)?,
        )),
        _ => None,
    };
    let out = a
        .out
        .unwrap_or_else(|| PathBuf::from("runs").join(grid.name()));
    let state = a.state.unwrap_or_else(|| out.join("state.db"));
    let worker_bin = match env.worker_bin {
        Some(bin) => bin,
        None => coordinator::local::worker_binary().map_err(|e| BadInput(format!("{e:#}")))?,
    };
    let absolute = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
    let cfg = Config {
        grid,
        grid_file: grid_path.display().to_string(),
        out,
        state,
        // SLURM's workers replace local ones.
        local_workers: if slurm.is_some() {
            coordinator::local::LocalWorkers::Count(0)
        } else {
            a.local_workers
        },
        slurm,
        device: a.device,
        data_dir: a.data_dir.map(absolute),
        token,
        token_file: a.token_file.map(absolute),
        operator_token: operator,
        operator_token_file: a.operator_token_file.map(absolute),
        tls,
        idle: std::time::Duration::from_secs(a.idle_seconds as u64),
        worker_bin,
        worker_slots: a.worker_slots,
        lease_seconds: a.lease_seconds,
        // Frequent enough that a cancelled or revoked job stops within a few seconds.
        heartbeat_seconds: (a.lease_seconds / 3).clamp(1, 2),
        rerun: a.rerun,
        max_checkpoint_mb: a.max_checkpoint_mb,
        durability: a.durability,
        log_format: Default::default(),
        display: false,
        fail_on_job_failure: a.fail_on_job_failure,
    };
    let listen = Listen {
        grpc: a.listen,
        http: a.http.0,
    };
    Ok((cfg, listen))
}
