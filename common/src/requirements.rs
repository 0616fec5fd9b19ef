//! What a worker must have to run a job (grid.yaml `requires`).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::checks;
use crate::device::DeviceSpec;

/// Worker capabilities a job needs; the scheduler gives a job only to a worker that has them.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirements {
    /// A CUDA device.
    #[serde(default)]
    pub gpu: bool,
    /// At least this much device memory (GPU memory on CUDA, RAM on CPU), in GiB.
    #[serde(default, deserialize_with = "checks::non_negative_f64")]
    pub memory_gb: f64,
}

impl fmt::Display for Requirements {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.gpu, self.memory_gb > 0.0) {
            (true, true) => write!(f, "a CUDA device with ≥ {} GiB", self.memory_gb),
            (true, false) => write!(f, "a CUDA device"),
            (false, true) => write!(f, "≥ {} GiB of device memory", self.memory_gb),
            (false, false) => write!(f, "nothing"),
        }
    }
}

impl Requirements {
    /// Whether a worker on `device` with `memory_mb` of memory qualifies.
    pub fn admit(&self, device: DeviceSpec, memory_mb: u64) -> bool {
        (!self.gpu || device.is_cuda()) && self.memory_gb * 1024.0 <= memory_mb as f64
    }
}
