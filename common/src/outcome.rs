//! How a job ended, as its worker reports it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::device::DeviceSpec;
use crate::engine::Engine;
use crate::metrics::{EpochMetrics, RunClock};

/// The end of a job: never pending or running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    Failed,
    /// The training loss became NaN or infinite.
    Diverged,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Diverged => "diverged",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What training one job produced, as reported by a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOutcome {
    pub status: Outcome,
    /// The device it trained on (`cpu`, `cuda:0`, ...).
    pub device: DeviceSpec,
    pub param_count: u64,
    pub epochs: Vec<EpochMetrics>,
    pub latency_ms_per_sample: Option<f64>,
    pub error: Option<String>,
    /// When the job ran; None where the job process never reported (it crashed first).
    #[serde(default)]
    pub clock: Option<RunClock>,
    /// The GPU's UUID when it trained on CUDA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_uuid: Option<String>,
    /// The layout and kernels it trained with (absent where it never started training).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<Engine>,
}

impl TrainOutcome {
    /// Whether this can be the outcome of a job of `epochs` epochs: its epochs a checked
    /// series ([`EpochMetrics::check_series`]), all of them for a job that succeeded, and a
    /// latency, where given, finite and not negative.
    pub fn check(&self, epochs: u32) -> Result<(), String> {
        EpochMetrics::check_series(&self.epochs, epochs)?;
        if self.status == Outcome::Succeeded && self.epochs.len() != epochs as usize {
            let n = self.epochs.len();
            return Err(format!("a job of {epochs} epochs succeeded after {n}"));
        }
        if let Some(l) = self
            .latency_ms_per_sample
            .filter(|l| !(l.is_finite() && *l >= 0.0))
        {
            return Err(format!(
                "latency_ms_per_sample must be a finite number >= 0, got {l}"
            ));
        }
        Ok(())
    }

    /// A job that failed with `error` after the epochs in `epochs`.
    pub fn failed(device: DeviceSpec, error: String, epochs: Vec<EpochMetrics>) -> TrainOutcome {
        TrainOutcome {
            status: Outcome::Failed,
            device,
            param_count: 0,
            epochs,
            latency_ms_per_sample: None,
            error: Some(error),
            clock: None,
            device_uuid: None,
            engine: None,
        }
    }
}
