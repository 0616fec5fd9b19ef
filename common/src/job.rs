//! Jobs, their ids, per-epoch metrics and the job record of `results.json`.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::names::{Activation, Dataset, Model, Optimizer, Precision};

/// Everything that determines what a job trains. Two jobs with equal specs produce the same
/// model (on CPU, bit for bit), so the spec's hash is the job's identity and result-cache key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSpec {
    pub dataset: Dataset,
    pub model: Model,
    pub activation: Activation,
    pub seed: u64,
    pub epochs: u32,
    /// First N training images only; 0 = all.
    pub train_limit: u64,
    /// First N test images only; 0 = all.
    pub test_limit: u64,
    /// Random crop + horizontal flip of training images.
    pub augment: bool,
    /// Test images timed one at a time for latency; 0 = the whole test set.
    pub latency_samples: u64,
    pub optimizer: Optimizer,
    pub learning_rate: f64,
    pub batch_size: u32,
    pub momentum: f64,
    pub weight_decay: f64,
    /// Left out of the serialized spec (and so of the job id) when fp32, so ids of grids that
    /// predate the field stay the same.
    #[serde(default, skip_serializing_if = "Precision::is_fp32")]
    pub precision: Precision,
}

/// Stable job id: `<dataset>-<model>-<activation>-s<seed>-<12 hex of SHA-256(spec)>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(String);

impl JobId {
    pub fn for_spec(spec: &TrainSpec) -> JobId {
        // serde_json writes struct fields in declaration order and floats via ryu, so this
        // text, and hence the id, is the same on every machine and every run.
        let canonical = serde_json::to_string(spec).unwrap_or_default();
        let digest = hex::encode(Sha256::digest(canonical.as_bytes()));
        JobId(format!(
            "{}-{}-{}-s{}-{}",
            spec.dataset,
            spec.model,
            spec.activation,
            spec.seed,
            &digest[..12]
        ))
    }

    /// Wraps an id read back from storage or the wire.
    pub fn from_stored(s: impl Into<String>) -> JobId {
        JobId(s.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One cell of the grid × one seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub spec: TrainSpec,
    /// Test accuracy for time-to-accuracy; used by the report only, so not part of the id.
    pub target_accuracy: f64,
    /// Worker capabilities needed; scheduling only, so not part of the id.
    #[serde(default)]
    pub requires: crate::grid::Requirements,
}

impl Job {
    pub fn new(spec: TrainSpec, target_accuracy: f64) -> Job {
        Job {
            id: JobId::for_spec(&spec),
            spec,
            target_accuracy,
            requires: Default::default(),
        }
    }
}

/// Metrics of one finished epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based.
    pub epoch: u32,
    /// Cumulative training time at the end of this epoch, evaluation excluded.
    pub train_seconds: f64,
    pub train_loss: f64,
    pub test_loss: f64,
    pub test_accuracy: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
    Diverged,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Diverged => "diverged",
        }
    }

    pub fn parse(s: &str) -> Option<JobStatus> {
        Some(match s {
            "pending" => JobStatus::Pending,
            "running" => JobStatus::Running,
            "succeeded" => JobStatus::Succeeded,
            "failed" => JobStatus::Failed,
            "diverged" => JobStatus::Diverged,
            _ => return None,
        })
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Diverged
        )
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The DAWNBench summary of an epoch series.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub total_train_seconds: f64,
    pub first_epoch_at_target: Option<u32>,
    pub seconds_to_target: Option<f64>,
    pub final_test_accuracy: Option<f64>,
    pub error_rate: Option<f64>,
}

impl Summary {
    pub fn of(epochs: &[EpochMetrics], target_accuracy: f64) -> Summary {
        let at_target = epochs.iter().find(|e| e.test_accuracy >= target_accuracy);
        let last = epochs.last();
        Summary {
            total_train_seconds: last.map_or(0.0, |e| e.train_seconds),
            first_epoch_at_target: at_target.map(|e| e.epoch),
            seconds_to_target: at_target.map(|e| e.train_seconds),
            final_test_accuracy: last.map(|e| e.test_accuracy),
            error_rate: last.map(|e| 1.0 - e.test_accuracy),
        }
    }
}

/// What training one job produced, as reported by a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOutcome {
    pub status: JobStatus,
    pub device: String,
    pub param_count: u64,
    pub epochs: Vec<EpochMetrics>,
    pub latency_ms_per_sample: Option<f64>,
    pub error: Option<String>,
}

impl TrainOutcome {
    /// A job that failed with `error` after the epochs in `epochs`.
    pub fn failed(
        device: impl Into<String>,
        error: String,
        epochs: Vec<EpochMetrics>,
    ) -> TrainOutcome {
        TrainOutcome {
            status: JobStatus::Failed,
            device: device.into(),
            param_count: 0,
            epochs,
            latency_ms_per_sample: None,
            error: Some(error),
        }
    }
}

/// One job in `results.json` (CONTRACT.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: JobId,
    pub dataset: Dataset,
    pub model: Model,
    pub activation: Activation,
    pub seed: u64,
    pub status: JobStatus,
    pub attempts: u32,
    pub worker: Option<String>,
    pub device: Option<String>,
    pub param_count: Option<u64>,
    pub epochs: Vec<EpochMetrics>,
    pub total_train_seconds: f64,
    pub first_epoch_at_target: Option<u32>,
    pub seconds_to_target: Option<f64>,
    pub final_test_accuracy: Option<f64>,
    pub error_rate: Option<f64>,
    pub latency_ms_per_sample: Option<f64>,
    pub error: Option<String>,
    /// Attempts that ended because the worker was lost (lease expired): infrastructure.
    #[serde(default)]
    pub lost_attempts: u32,
    /// Attempts that failed in training and were retried (grid `retries`).
    #[serde(default)]
    pub failed_attempts: u32,
    pub target_accuracy: f64,
    pub spec: TrainSpec,
}

impl JobRecord {
    /// Builds a record; the DAWNBench summary fields are derived from `epochs`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        job: &Job,
        status: JobStatus,
        attempts: u32,
        worker: Option<String>,
        device: Option<String>,
        param_count: Option<u64>,
        epochs: Vec<EpochMetrics>,
        latency_ms_per_sample: Option<f64>,
        error: Option<String>,
    ) -> JobRecord {
        let s = Summary::of(&epochs, job.target_accuracy);
        JobRecord {
            id: job.id.clone(),
            dataset: job.spec.dataset,
            model: job.spec.model,
            activation: job.spec.activation,
            seed: job.spec.seed,
            status,
            attempts,
            worker,
            device,
            param_count,
            epochs,
            total_train_seconds: s.total_train_seconds,
            first_epoch_at_target: s.first_epoch_at_target,
            seconds_to_target: s.seconds_to_target,
            final_test_accuracy: s.final_test_accuracy,
            error_rate: s.error_rate,
            latency_ms_per_sample,
            error,
            lost_attempts: 0,
            failed_attempts: 0,
            target_accuracy: job.target_accuracy,
            spec: job.spec.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(epoch: u32, secs: f64, acc: f64) -> EpochMetrics {
        EpochMetrics {
            epoch,
            train_seconds: secs,
            train_loss: 0.1,
            test_loss: 0.1,
            test_accuracy: acc,
        }
    }

    #[test]
    fn summary_finds_first_epoch_at_target() {
        let e = [
            epoch(1, 10.0, 0.95),
            epoch(2, 20.0, 0.981),
            epoch(3, 30.0, 0.979),
        ];
        let s = Summary::of(&e, 0.98);
        assert_eq!(s.first_epoch_at_target, Some(2));
        assert_eq!(s.seconds_to_target, Some(20.0));
        assert_eq!(s.total_train_seconds, 30.0);
        assert_eq!(s.final_test_accuracy, Some(0.979));
        assert!((s.error_rate.unwrap() - 0.021).abs() < 1e-12);
    }

    #[test]
    fn summary_of_target_never_reached() {
        let s = Summary::of(&[epoch(1, 5.0, 0.5)], 0.98);
        assert_eq!(s.first_epoch_at_target, None);
        assert_eq!(s.seconds_to_target, None);
        // Exactly at the target counts.
        assert_eq!(
            Summary::of(&[epoch(1, 5.0, 0.98)], 0.98).first_epoch_at_target,
            Some(1)
        );
    }

    #[test]
    fn summary_of_nothing() {
        let s = Summary::of(&[], 0.9);
        assert_eq!(s.total_train_seconds, 0.0);
        assert_eq!(s.final_test_accuracy, None);
    }
}
