//! A worker as it describes itself when it registers.

use serde::{Deserialize, Serialize};

use crate::device::DeviceSpec;

/// What a worker declares about itself: where it runs and what it can train on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub name: String,
    pub hostname: String,
    /// The device it trains on: `cpu` or `cuda:N`.
    pub device: DeviceSpec,
    /// Human-readable device description, e.g. the GPU's or the CPU's model.
    pub device_name: String,
    pub libtorch_version: String,
    /// Jobs it runs at once.
    pub slots: u32,
    /// Device memory (GPU memory on CUDA, RAM on CPU), MiB.
    #[serde(default)]
    pub memory_mb: u64,
}
