//! The worker: trains jobs with libtorch, alone (`worker train`) or for a coordinator.
//!
//! # Layout
//! - [`data`]: dataset files → tensors on the training device (IDX, CIFAR, downloads).
//! - [`model`]: the paper's networks and activations; [`optim`]: Adam and SGD with state
//!   that checkpoints; [`ops`]: our CPU kernels and the libtorch calls tch lacks.
//! - [`train`]: the training engine (one job, one device, metrics per epoch, checkpoints).
//! - [`device`]: the training device, resolved and described; [`preflight`]: whether the
//!   machine's GPUs can be used, and why not; [`cuda`]: what CUDA itself says, and the CUDA
//!   settings of a job.
//! - [`job_process`]: one job in a child process, its events as JSON lines.
//! - [`daemon`]: registers with the coordinator, leases jobs, runs each in a child process.
//! - [`alloc`]: the allocator settings training wants; [`cpus`]: the cores a worker may use,
//!   shared among its jobs.
//!
//! Environment variables are read by the binary's `main` only and passed down as
//! configuration ([`train::Options`], [`data::DataSource`]); the one exception is
//! `CUDA_VISIBLE_DEVICES`, a fact about the process that the preflight reports as CUDA does.

pub mod alloc;
pub mod cpus;
pub mod cuda;
pub mod daemon;
pub mod data;
pub mod device;
pub mod job_process;
pub mod model;
pub mod ops;
pub mod optim;
pub mod preflight;
pub mod train;

/// The libtorch this binary was built against (from `torch.__version__` at build time).
pub const LIBTORCH_VERSION: &str = env!("LIBTORCH_VERSION");
/// A hash of our kernels' C++ sources (`build.rs`): what the engine cache measured with.
pub const KERNELS_SOURCE: &str = env!("DLGRID_KERNELS_SOURCE");

/// This user's cache folder for dlgrid: `$XDG_CACHE_HOME/dlgrid` or `~/.cache/dlgrid`
/// (`./dlgrid` where neither is set).
pub fn user_cache_dir() -> std::path::PathBuf {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    var("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| var("HOME").map(|h| std::path::PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| std::path::PathBuf::from("."))
        .join("dlgrid")
}
