//! One job as `results.json` records it (and `worker train --json` prints it).

use serde::{Deserialize, Serialize};

use crate::device::DeviceSpec;
use crate::ids::JobId;
use crate::job::{Job, JobStatus, TrainSpec};
use crate::metrics::{EpochMetrics, RunClock, Summary};
use crate::names::{Activation, Dataset, Model};
use crate::outcome::TrainOutcome;

/// What is known about a job's attempts, besides its spec.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFacts {
    pub attempts: u32,
    /// Attempts that ended because the worker was lost (lease expired): infrastructure.
    pub lost_attempts: u32,
    /// Attempts that failed in training and were retried (grid `retries`).
    pub failed_attempts: u32,
    /// The name of the worker of the last attempt.
    pub worker: Option<String>,
    pub device: Option<DeviceSpec>,
    pub param_count: Option<u64>,
    pub epochs: Vec<EpochMetrics>,
    pub latency_ms_per_sample: Option<f64>,
    pub error: Option<String>,
    pub clock: Option<RunClock>,
}

impl RunFacts {
    /// The facts of one attempt that ended with `outcome`, on the worker named `worker`.
    pub fn of_outcome(outcome: TrainOutcome, worker: Option<String>) -> RunFacts {
        RunFacts {
            attempts: 1,
            worker,
            device: Some(outcome.device),
            param_count: Some(outcome.param_count),
            epochs: outcome.epochs,
            latency_ms_per_sample: outcome.latency_ms_per_sample,
            error: outcome.error,
            clock: outcome.clock,
            ..RunFacts::default()
        }
    }
}

/// One job in `results.json`.
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
    pub device: Option<DeviceSpec>,
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
    /// When the job ran, by the job process's wall clock (absent in records kept before
    /// clocks were).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<RunClock>,
}

impl JobRecord {
    /// Builds a record; the DAWNBench summary fields are derived from the epochs.
    pub fn new(job: &Job, status: JobStatus, facts: RunFacts) -> JobRecord {
        let s = Summary::of(&facts.epochs, job.target_accuracy);
        JobRecord {
            id: job.id.clone(),
            dataset: job.spec.dataset,
            model: job.spec.model,
            activation: job.spec.activation,
            seed: job.spec.seed,
            status,
            attempts: facts.attempts,
            worker: facts.worker,
            device: facts.device,
            param_count: facts.param_count,
            epochs: facts.epochs,
            total_train_seconds: s.total_train_seconds,
            first_epoch_at_target: s.first_epoch_at_target,
            seconds_to_target: s.seconds_to_target,
            final_test_accuracy: s.final_test_accuracy,
            error_rate: s.error_rate,
            latency_ms_per_sample: facts.latency_ms_per_sample,
            error: facts.error,
            lost_attempts: facts.lost_attempts,
            failed_attempts: facts.failed_attempts,
            target_accuracy: job.target_accuracy,
            spec: job.spec.clone(),
            clock: facts.clock,
        }
    }
}
