//! Optimizer settings shared by every job of a grid (grid.yaml `training`).

use serde::{Deserialize, Serialize};

use crate::checks;
use crate::names::{Optimizer, Precision, Tf32};

/// Optimizer settings; the defaults are the paper's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Training {
    #[serde(default = "default_optimizer")]
    pub optimizer: Optimizer,
    #[serde(default = "default_lr", deserialize_with = "checks::positive_f64")]
    pub learning_rate: f64,
    #[serde(default = "default_batch", deserialize_with = "checks::positive_u32")]
    pub batch_size: u32,
    /// SGD momentum; ignored by Adam.
    #[serde(
        default = "default_momentum",
        deserialize_with = "checks::unit_interval_f64"
    )]
    pub momentum: f64,
    /// L2 weight decay, for either optimizer.
    #[serde(default, deserialize_with = "checks::non_negative_f64")]
    pub weight_decay: f64,
    /// `fp32` (default) or `bf16` autocast.
    #[serde(default)]
    pub precision: Precision,
    /// TF32 on CUDA: `conv` (PyTorch's default), `all` or `off`.
    #[serde(default)]
    pub tf32: Tf32,
    /// Deterministic CUDA algorithms (cuDNN benchmark off): bitwise-repeatable GPU runs, slower.
    #[serde(default)]
    pub deterministic: bool,
}

impl Default for Training {
    fn default() -> Self {
        Training {
            optimizer: default_optimizer(),
            learning_rate: default_lr(),
            batch_size: default_batch(),
            momentum: default_momentum(),
            weight_decay: 0.0,
            precision: Precision::Fp32,
            tf32: Tf32::Conv,
            deterministic: false,
        }
    }
}

fn default_optimizer() -> Optimizer {
    Optimizer::Adam
}
fn default_lr() -> f64 {
    0.001
}
fn default_batch() -> u32 {
    128
}
fn default_momentum() -> f64 {
    0.9
}
