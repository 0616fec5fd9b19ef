//! `worker`: the daemon (`worker --coordinator URL`), one job alone (`worker train`), and the
//! per-job child process (`worker run-job`, internal).

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use common::{Activation, Dataset, Job, JobRecord, Model, Optimizer, Precision, TrainSpec};
use worker::job_process::{self, Launcher};
use worker::{daemon, train};

#[derive(Parser)]
#[command(
    version,
    about = "Trains deep-learning jobs with libtorch, for a coordinator or alone"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    daemon: DaemonArgs,
}

#[derive(Args)]
struct DaemonArgs {
    /// Coordinator URL, e.g. http://10.0.0.5:50051.
    #[arg(long, env = "WORKER_COORDINATOR")]
    coordinator: Option<String>,
    #[command(flatten)]
    common: CommonArgs,
    /// Jobs to run at once on this worker's device.
    #[arg(long, env = "WORKER_SLOTS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    slots: u32,
    /// Name shown in reports and status; default: host name and device.
    #[arg(long, env = "WORKER_NAME")]
    name: Option<String>,
    /// File holding the bearer token the coordinator expects.
    #[arg(long, env = "WORKER_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// libtorch threads per job; 0 = the machine's cores divided by --slots.
    #[arg(long, env = "WORKER_THREADS", default_value_t = 0)]
    threads: usize,
    /// Exit when the parent process dies (the coordinator sets this on the workers it starts,
    /// so none outlives it).
    #[arg(long)]
    exit_with_parent: bool,
    /// Where jobs checkpoint after every epoch (one file per job, removed when it succeeds);
    /// default: a per-user cache folder.
    #[arg(long, env = "WORKER_CHECKPOINT_DIR")]
    checkpoint_dir: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct CommonArgs {
    /// Folder with one sub-folder per dataset (see README).
    #[arg(long, env = "DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// auto | cpu | cuda | cuda:N
    #[arg(long, env = "WORKER_DEVICE", default_value = "auto")]
    device: String,
}

#[derive(Subcommand)]
enum Cmd {
    /// Train one job without a coordinator and print its results.
    Train(TrainArgs),
    /// Internal: run one job whose spec is JSON on stdin; events as JSON lines on stdout.
    #[command(hide = true)]
    RunJob {
        #[command(flatten)]
        common: CommonArgs,
        #[arg(long, default_value_t = 0)]
        threads: usize,
        #[arg(long)]
        checkpoint: Option<PathBuf>,
    },
}

#[derive(Args)]
struct TrainArgs {
    #[arg(long)]
    dataset: Dataset,
    #[arg(long)]
    model: Model,
    #[arg(long)]
    activation: Activation,
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    epochs: u32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// First N training images only (0 = all).
    #[arg(long, default_value_t = 0)]
    train_limit: u64,
    /// First N test images only (0 = all).
    #[arg(long, default_value_t = 0)]
    test_limit: u64,
    /// Test accuracy for time-to-accuracy; default: 0.98 MNIST, 0.90 Fashion-MNIST, 0.87 CIFAR-10, 0.60 CIFAR-100.
    #[arg(long)]
    target_accuracy: Option<f64>,
    #[arg(long, default_value = "adam")]
    optimizer: Optimizer,
    #[arg(long, default_value_t = 0.001)]
    learning_rate: f64,
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: u32,
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f64,
    /// Random crop + flip; default: on for CIFAR.
    #[arg(long)]
    augment: Option<bool>,
    /// Test images timed one at a time for latency (0 = the whole test set).
    #[arg(long, default_value_t = 0)]
    latency_samples: u64,
    /// fp32, or bf16 autocast (convolutions and matrix products in bfloat16).
    #[arg(long, default_value = "fp32")]
    precision: Precision,
    /// Print the job record as one JSON object (as in results.json).
    #[arg(long)]
    json: bool,
    /// Checkpoint file, written after every epoch; an existing one is resumed from.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> ExitCode {
    worker::train::keep_freed_memory();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let result = match cli.cmd {
        Some(Cmd::Train(args)) => train_cmd(args),
        Some(Cmd::RunJob {
            common,
            threads,
            checkpoint,
        }) => run_job_cmd(common, threads, checkpoint),
        None => daemon_cmd(cli.daemon),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("worker: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// `$XDG_CACHE_HOME/dlgrid/<what>` or `~/.cache/dlgrid/<what>`.
fn cache_dir(what: &str) -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("."));
    cache.join("dlgrid").join(what)
}

/// Default `--data-dir`: the per-user cache's `datasets/`.
fn data_dir(arg: Option<PathBuf>) -> PathBuf {
    arg.unwrap_or_else(|| cache_dir("datasets"))
}

fn set_threads(threads: usize) {
    if threads > 0 {
        tch::set_num_threads(threads as i32);
    }
}

fn default_target(dataset: Dataset) -> f64 {
    match dataset {
        Dataset::Mnist => 0.98,
        Dataset::FashionMnist => 0.90,
        Dataset::Cifar10 => 0.87,
        Dataset::Cifar100 => 0.60,
    }
}

fn train_cmd(a: TrainArgs) -> anyhow::Result<ExitCode> {
    if let Some(why) = a.model.incompatibility(a.dataset) {
        anyhow::bail!("--model/--dataset: {why}");
    }
    let target = a
        .target_accuracy
        .unwrap_or_else(|| default_target(a.dataset));
    if !(target > 0.0 && target <= 1.0) {
        anyhow::bail!("--target-accuracy must be in (0, 1], got {target}");
    }
    let spec = TrainSpec {
        dataset: a.dataset,
        model: a.model,
        activation: a.activation,
        seed: a.seed,
        epochs: a.epochs,
        train_limit: a.train_limit,
        test_limit: a.test_limit,
        augment: a
            .augment
            .unwrap_or(matches!(a.dataset, Dataset::Cifar10 | Dataset::Cifar100)),
        latency_samples: a.latency_samples,
        optimizer: a.optimizer,
        learning_rate: a.learning_rate,
        batch_size: a.batch_size,
        momentum: a.momentum,
        weight_decay: a.weight_decay,
        precision: a.precision,
    };
    let mut opts = train::Options::new(
        data_dir(a.common.data_dir),
        train::parse_device(&a.common.device)?,
    );
    opts.checkpoint = a.checkpoint;
    let job = Job::new(spec, target);
    let json = a.json;
    let outcome = train::run(&job.spec, &opts, &mut |m| {
        if !json {
            println!(
                "epoch {:>3}  train {:>8.2}s  train loss {:.4}  test loss {:.4}  test acc {:.2}%",
                m.epoch,
                m.train_seconds,
                m.train_loss,
                m.test_loss,
                100.0 * m.test_accuracy
            );
        }
    })?;
    let failed = outcome.status != common::JobStatus::Succeeded;
    let record = JobRecord::new(
        &job,
        outcome.status,
        1,
        Some(worker::hostname()),
        Some(outcome.device),
        Some(outcome.param_count),
        outcome.epochs,
        outcome.latency_ms_per_sample,
        outcome.error,
    );
    if json {
        println!("{}", serde_json::to_string_pretty(&record)?);
    } else {
        println!(
            "{}: {}  params {}  final acc {}  latency {} ms/sample  first epoch at {:.1}%: {}",
            record.id,
            record.status,
            record.param_count.unwrap_or(0),
            record
                .final_test_accuracy
                .map_or("-".into(), |a| format!("{:.2}%", 100.0 * a)),
            record
                .latency_ms_per_sample
                .map_or("-".into(), |l| format!("{l:.3}")),
            100.0 * target,
            record
                .first_epoch_at_target
                .map_or("never".into(), |e| e.to_string()),
        );
        if let Some(e) = &record.error {
            println!("error: {e}");
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Exits the process as soon as its parent is gone (re-parented), checked twice a second.
fn exit_with_parent() {
    let parent = std::os::unix::process::parent_id();
    std::thread::spawn(move || loop {
        std::thread::sleep(std::time::Duration::from_millis(500));
        if std::os::unix::process::parent_id() != parent {
            tracing::warn!(parent, "parent process gone; exiting");
            std::process::exit(1);
        }
    });
}

fn run_job_cmd(
    common: CommonArgs,
    threads: usize,
    checkpoint: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    // A job whose daemon died (kill -9) must not train on as an orphan.
    exit_with_parent();
    set_threads(threads);
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("reading the job spec from stdin")?;
    let spec: TrainSpec = serde_json::from_str(&input).context("parsing the job spec")?;
    let mut opts = train::Options::new(
        data_dir(common.data_dir),
        train::parse_device(&common.device)?,
    );
    opts.checkpoint = checkpoint;
    job_process::child_main(&spec, &opts)?;
    Ok(ExitCode::SUCCESS)
}

fn daemon_cmd(a: DaemonArgs) -> anyhow::Result<ExitCode> {
    if a.exit_with_parent {
        exit_with_parent();
    }
    let Some(coordinator) = a.coordinator else {
        anyhow::bail!(
            "give --coordinator URL to serve a coordinator, or use `worker train` (see --help)"
        );
    };
    let device = train::parse_device(&a.common.device)?;
    let device_label = train::device_label(device);
    let token = a
        .token_file
        .as_deref()
        .map(orchestrator_proto::read_token_file)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let threads = match (a.threads, device) {
        (0, tch::Device::Cpu) => {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            (cores / a.slots as usize).max(1)
        }
        (t, _) => t,
    };
    let cfg = daemon::Config {
        coordinator,
        name: a
            .name
            .unwrap_or_else(|| format!("{}/{device_label}", worker::hostname())),
        slots: a.slots as usize,
        launcher: Launcher {
            exe: std::env::current_exe().context("locating the worker binary")?,
            data_dir: data_dir(a.common.data_dir),
            device: device_label,
            threads,
            checkpoint_dir: a.checkpoint_dir.unwrap_or_else(|| cache_dir("checkpoints")),
        },
        token,
        device_name: worker::device_name(device),
        memory_mb: worker::device_memory_mb(device),
        libtorch_version: worker::LIBTORCH_VERSION.into(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(daemon::run(cfg, shutdown_signal()))?;
    Ok(ExitCode::SUCCESS)
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
