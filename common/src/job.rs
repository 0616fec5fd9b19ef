//! What a job trains ([`TrainSpec`]), the job as scheduled ([`Job`]) and its state
//! ([`JobStatus`]).

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cadence::CheckpointEvery;
use crate::ids::JobId;
use crate::names::{Activation, Dataset, Model, Optimizer, Precision, Tf32};
use crate::outcome::Outcome;
use crate::requirements::Requirements;

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
    /// TF32 on CUDA; left out of the id at its default (`conv`), like `precision`.
    #[serde(default, skip_serializing_if = "Tf32::is_default")]
    pub tf32: Tf32,
    /// cuDNN's and ATen's deterministic algorithms on CUDA; left out of the id when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deterministic: bool,
}

impl TrainSpec {
    /// The job's identity: `<dataset>-<model>-<activation>-s<seed>-<12 hex of SHA-256(spec)>`.
    pub fn id(&self) -> JobId {
        // serde_json writes struct fields in declaration order and floats via ryu, so this
        // text, and hence the id, is the same on every machine and every run.
        let canonical = serde_json::to_string(self).unwrap_or_default();
        let digest = hex::encode(Sha256::digest(canonical.as_bytes()));
        JobId::from_stored(format!(
            "{}-{}-{}-s{}-{}",
            self.dataset,
            self.model,
            self.activation,
            self.seed,
            &digest[..12]
        ))
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
    pub requires: Requirements,
    /// How often the job checkpoints; not part of the id (it does not change the result).
    #[serde(default)]
    pub checkpoint_every: CheckpointEvery,
}

impl Job {
    pub fn new(spec: TrainSpec, target_accuracy: f64) -> Job {
        Job {
            id: spec.id(),
            spec,
            target_accuracy,
            requires: Default::default(),
            checkpoint_every: Default::default(),
        }
    }
}

/// Where a job stands: waiting, leased to a worker, or finished with an [`Outcome`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
    Diverged,
    /// Cancelled by the operator: final, and kept when the grid runs again, until
    /// `coordinator uncancel` or `--rerun`.
    Cancelled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Diverged => "diverged",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<JobStatus> {
        Some(match s {
            "pending" => JobStatus::Pending,
            "running" => JobStatus::Running,
            "succeeded" => JobStatus::Succeeded,
            "failed" => JobStatus::Failed,
            "diverged" => JobStatus::Diverged,
            "cancelled" => JobStatus::Cancelled,
            _ => return None,
        })
    }

    /// Finished: by an outcome of training, or cancelled.
    pub fn is_terminal(self) -> bool {
        self.outcome().is_some() || self == JobStatus::Cancelled
    }

    /// The outcome of training, for a job that finished by training (not a cancelled one).
    pub fn outcome(self) -> Option<Outcome> {
        match self {
            JobStatus::Succeeded => Some(Outcome::Succeeded),
            JobStatus::Failed => Some(Outcome::Failed),
            JobStatus::Diverged => Some(Outcome::Diverged),
            JobStatus::Pending | JobStatus::Running | JobStatus::Cancelled => None,
        }
    }
}

impl From<Outcome> for JobStatus {
    fn from(o: Outcome) -> JobStatus {
        match o {
            Outcome::Succeeded => JobStatus::Succeeded,
            Outcome::Failed => JobStatus::Failed,
            Outcome::Diverged => JobStatus::Diverged,
        }
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_only_outcomes_are_terminal() {
        for s in [
            JobStatus::Pending,
            JobStatus::Running,
            JobStatus::Succeeded,
            JobStatus::Failed,
            JobStatus::Diverged,
            JobStatus::Cancelled,
        ] {
            assert_eq!(JobStatus::parse(s.as_str()), Some(s));
            let cancelled = s == JobStatus::Cancelled;
            assert_eq!(s.is_terminal(), s.outcome().is_some() || cancelled);
            if let Some(o) = s.outcome() {
                assert_eq!(JobStatus::from(o), s);
            }
        }
        assert_eq!(JobStatus::parse("done"), None);
    }
}
