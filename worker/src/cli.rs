//! The command line: flags as clap parses them, each typed once (devices, names, numbers).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use common::{
    Activation, CheckpointEvery, Dataset, DeviceSpec, KernelSet, Layout, Model, Optimizer,
    Precision, Tf32, TrainSpec,
};

#[derive(Parser)]
#[command(
    version,
    about = "Trains deep-learning jobs with libtorch, for a coordinator or alone"
)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
    #[command(flatten)]
    pub daemon: DaemonArgs,
    /// Log lines as `text` or `json` (one object per line, for log collectors); filter with
    /// RUST_LOG (e.g. `warn,coordinator=debug`).
    #[arg(long, global = true, env = "DLGRID_LOG_FORMAT", default_value = "text")]
    pub log_format: orchestrator_proto::telemetry::LogFormat,
}

#[derive(Args)]
pub struct DaemonArgs {
    /// Coordinator URL, e.g. https://10.0.0.5:50051 (TLS) or http://10.0.0.5:50051.
    #[arg(long, env = "WORKER_COORDINATOR")]
    pub coordinator: Option<String>,
    #[command(flatten)]
    pub common: CommonArgs,
    /// Jobs to run at once on this worker's device.
    #[arg(long, env = "WORKER_SLOTS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub slots: u32,
    /// Name shown in reports and status; default: host name and device.
    #[arg(long, env = "WORKER_NAME")]
    pub name: Option<String>,
    /// File holding the bearer token the coordinator expects.
    #[arg(long, env = "WORKER_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// CA certificate (PEM) the coordinator's certificate must chain to (https:// URLs);
    /// default: the system's roots.
    #[arg(long, env = "WORKER_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// This worker's certificate (PEM), for a coordinator requiring one (mutual TLS).
    #[arg(long, env = "WORKER_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The worker certificate's private key (PEM).
    #[arg(long, env = "WORKER_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// libtorch threads per job; 0 = the machine's cores divided by --slots.
    #[arg(long, env = "WORKER_THREADS", default_value_t = 0)]
    pub threads: usize,
    /// Exit when the parent process dies (the coordinator sets this on the workers it starts,
    /// so none outlives it).
    #[arg(long)]
    pub exit_with_parent: bool,
    /// Where jobs checkpoint (one file per job, removed when it succeeds; how often is the
    /// grid's `checkpoint_every`); default: a per-user cache folder.
    #[arg(long, env = "WORKER_CHECKPOINT_DIR")]
    pub checkpoint_dir: Option<PathBuf>,
    /// --checkpoint-dir is the coordinator's own checkpoint folder (a worker on the
    /// coordinator's machine): checkpoints are not copied to and from the coordinator.
    #[arg(long, requires = "checkpoint_dir")]
    pub shared_checkpoint_dir: bool,
    /// Also write each job's output to DIR/<job id>.log (the coordinator points its own
    /// workers at <out>/logs/jobs).
    #[arg(long, env = "WORKER_JOB_LOG_DIR")]
    pub job_log_dir: Option<PathBuf>,
}

#[derive(Args, Clone)]
pub struct CommonArgs {
    /// Folder with one sub-folder per dataset (see the manual: Datasets).
    #[arg(long, env = "DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// auto | cpu | cuda | cuda:N
    #[arg(long, env = "WORKER_DEVICE", default_value = "auto")]
    pub device: DeviceSpec,
    /// Memory layout of images and convolution weights: auto (the faster, measured at the first
    /// job of each model shape and cached in the data folder) | nchw | channels-last.
    #[arg(long, env = "WORKER_LAYOUT", default_value = "auto")]
    pub layout: Auto<Layout>,
    /// Our CPU kernels (2x2 max pooling, single-channel convolutions) or aten's: auto (the
    /// faster of the CPU's best and aten's, measured as for --layout) | avx512 | avx2 | aten.
    #[arg(long, env = "WORKER_KERNELS", default_value = "auto")]
    pub kernels: Auto<KernelSet>,
}

impl CommonArgs {
    pub fn engine(&self) -> worker::train::engine::Wanted {
        worker::train::engine::Wanted {
            layout: self.layout.0,
            kernels: self.kernels.0,
        }
    }
}

/// `auto` (None) or a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Auto<T>(pub Option<T>);

impl<T: std::str::FromStr> std::str::FromStr for Auto<T> {
    type Err = T::Err;
    fn from_str(s: &str) -> Result<Self, T::Err> {
        match s {
            "auto" => Ok(Auto(None)),
            other => other.parse().map(|v| Auto(Some(v))),
        }
    }
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Train one job without a coordinator and print its results.
    Train(TrainArgs),
    /// Check that this machine's GPUs can be used (driver vs libtorch's CUDA, GPUs visible to
    /// CUDA vs nvidia-smi) and list them; exit 2 with the reason when they cannot.
    Preflight {
        /// Print the GPUs (ordinal, uuid, name, memory_mb) and notes as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Internal: run one job whose spec is JSON on stdin; events as JSON lines on stdout.
    #[command(hide = true)]
    RunJob {
        #[command(flatten)]
        common: CommonArgs,
        #[arg(long, default_value_t = 0)]
        threads: usize,
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        #[arg(long, default_value = "60s")]
        checkpoint_every: CheckpointEvery,
    },
}

#[derive(Args)]
pub struct TrainArgs {
    #[arg(long)]
    pub dataset: Dataset,
    #[arg(long)]
    pub model: Model,
    #[arg(long)]
    pub activation: Activation,
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub epochs: u32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// First N training images only (0 = all).
    #[arg(long, default_value_t = 0)]
    pub train_limit: u64,
    /// First N test images only (0 = all).
    #[arg(long, default_value_t = 0)]
    pub test_limit: u64,
    /// Test accuracy for time-to-accuracy; default: 0.98 MNIST, 0.90 Fashion-MNIST, 0.87 CIFAR-10, 0.60 CIFAR-100.
    #[arg(long)]
    pub target_accuracy: Option<f64>,
    #[arg(long, default_value = "adam")]
    pub optimizer: Optimizer,
    #[arg(long, default_value_t = 0.001)]
    pub learning_rate: f64,
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Random crop + flip; default: on for CIFAR.
    #[arg(long)]
    pub augment: Option<bool>,
    /// Test images timed one at a time for latency (0 = the whole test set).
    #[arg(long, default_value_t = 0)]
    pub latency_samples: u64,
    /// fp32, or bf16 autocast (convolutions and matrix products in bfloat16).
    #[arg(long, default_value = "fp32")]
    pub precision: Precision,
    /// CUDA TF32: conv (PyTorch's default: convolutions only), all, or off.
    #[arg(long, default_value = "conv")]
    pub tf32: Tf32,
    /// Deterministic CUDA algorithms (cuDNN benchmark off).
    #[arg(long)]
    pub deterministic: bool,
    /// Print the job record as one JSON object (as in results.json).
    #[arg(long)]
    pub json: bool,
    /// libtorch intra-op threads; 0 = the cores this process may use (its affinity mask and
    /// cgroup CPU quota).
    #[arg(long, env = "WORKER_THREADS", default_value_t = 0)]
    pub threads: usize,
    /// Checkpoint file; an existing one is resumed from.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// How often to checkpoint: every N epochs (`2`) or at most once per duration (`60s`, `5m`).
    #[arg(long, default_value = "60s")]
    pub checkpoint_every: CheckpointEvery,
    #[command(flatten)]
    pub common: CommonArgs,
}

impl TrainArgs {
    /// The job these flags describe, and its target accuracy.
    pub fn spec(&self) -> anyhow::Result<(TrainSpec, f64)> {
        if let Some(why) = self.model.incompatibility(self.dataset) {
            anyhow::bail!("--model/--dataset: {why}");
        }
        let target = self
            .target_accuracy
            .unwrap_or(self.dataset.info().default_target);
        if !(target > 0.0 && target <= 1.0) {
            anyhow::bail!("--target-accuracy must be in (0, 1], got {target}");
        }
        let spec = TrainSpec {
            dataset: self.dataset,
            model: self.model,
            activation: self.activation,
            seed: self.seed,
            epochs: self.epochs,
            train_limit: self.train_limit,
            test_limit: self.test_limit,
            augment: self
                .augment
                .unwrap_or(matches!(self.dataset, Dataset::Cifar10 | Dataset::Cifar100)),
            latency_samples: self.latency_samples,
            optimizer: self.optimizer,
            learning_rate: self.learning_rate,
            batch_size: self.batch_size,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            precision: self.precision,
            tf32: self.tf32,
            deterministic: self.deterministic,
        };
        Ok((spec, target))
    }
}
