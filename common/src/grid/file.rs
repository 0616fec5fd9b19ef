//! grid.yaml as written: every key, with the checks that can be made on one value. The
//! cross-field checks and the defaults that depend on other fields are made when it becomes a
//! [`Grid`](super::Grid).

use serde::Deserialize;

use super::training::Training;
use crate::cadence::CheckpointEvery;
use crate::checks::{self, DedupKey, List};
use crate::names::{Activation, Dataset, Model};
use crate::requirements::Requirements;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GridFile {
    #[serde(deserialize_with = "checks::grid_name")]
    pub name: String,
    pub activations: List<Activation>,
    pub datasets: List<DatasetEntryFile>,
    #[serde(default)]
    pub seeds: Option<super::SeedsFile>,
    #[serde(default)]
    pub training: Training,
    #[serde(default, deserialize_with = "checks::non_negative_f64")]
    pub cost_per_hour: f64,
    #[serde(default)]
    pub retries: u32,
    #[serde(default)]
    pub checkpoint_every: CheckpointEvery,
    #[serde(default = "default_stop_after_failures")]
    pub stop_after_failures: u32,
    #[serde(default, deserialize_with = "checks::person")]
    pub author: String,
    #[serde(default, deserialize_with = "checks::person")]
    pub author_email: String,
    /// Percentage points of error rate within which two activations count as equivalent.
    #[serde(default)]
    pub equivalence_margin: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DatasetEntryFile {
    pub dataset: Dataset,
    pub model: Model,
    #[serde(deserialize_with = "checks::epochs")]
    pub epochs: u32,
    #[serde(deserialize_with = "checks::target_fraction")]
    pub target_accuracy: f64,
    #[serde(default)]
    pub train_limit: u64,
    #[serde(default)]
    pub test_limit: u64,
    /// Default: on for CIFAR, off for the MNIST family (as in common practice and the paper).
    #[serde(default)]
    pub augment: Option<bool>,
    #[serde(default)]
    pub latency_samples: u64,
    #[serde(default)]
    pub requires: Requirements,
}

impl DedupKey for DatasetEntryFile {
    type Key = String;
    fn dedup_key(&self) -> String {
        format!("dataset `{}` with model `{}`", self.dataset, self.model)
    }
}

/// Jobs of one dataset × model failing with the same error before the rest are not run.
pub(super) fn default_stop_after_failures() -> u32 {
    3
}
