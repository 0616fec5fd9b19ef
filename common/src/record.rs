//! One job as `results.json` records it (and `worker train --json` prints it).

use serde::{Deserialize, Serialize};

use crate::device::DeviceSpec;
use crate::engine::Engine;
use crate::ids::JobId;
use crate::job::{Job, JobStatus, TrainSpec};
use crate::metrics::{EpochMetrics, RunClock, Summary};
use crate::names::{Activation, Dataset, Model, Tf32};
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
    /// The GPU's UUID when it trained on CUDA.
    pub device_uuid: Option<String>,
    /// The layout and kernels its last attempt trained with.
    pub engine: Option<Engine>,
    /// The coordinator run in which it reached its final status.
    pub run: Option<u32>,
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
            device_uuid: outcome.device_uuid,
            engine: outcome.engine,
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
    /// The GPU's UUID when it trained on CUDA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_uuid: Option<String>,
    /// Other jobs of the state ran on the same GPU while this one ran, so its times include
    /// their work (see [`mark_shared_devices`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared_device: bool,
    /// Where TF32 was allowed, for a job that trained on CUDA (the spec omits the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tf32: Option<Tf32>,
    /// The layout and kernels it trained with, and how they were chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<Engine>,
    /// The coordinator run (the environment's `runs[].id`) in which it reached its final
    /// status: its provenance (grid file and hash, coordinator version, host, when).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<u32>,
}

/// Marks each CUDA record whose run overlapped, on the same GPU (by UUID), another record's
/// run: its times are not those of the GPU alone.
pub fn mark_shared_devices(records: &mut [JobRecord]) {
    // (uuid, start, stop, index), sorted: in one GPU's runs ordered by start, a run overlaps
    // an earlier one when it starts before the latest stop so far, and a later one when it
    // stops after the next run starts.
    let mut spans: Vec<(&str, u64, u64, usize)> = records
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let c = r.clock?;
            let start = c.run_start_ms.unwrap_or(c.init_start_ms);
            Some((r.device_uuid.as_deref()?, start, c.run_stop_ms, i))
        })
        .collect();
    spans.sort_unstable();
    let mut shared = vec![false; spans.len()];
    let mut latest_stop = 0;
    for k in 0..spans.len() {
        let (uuid, start, stop, _) = spans[k];
        let same_gpu = k > 0 && spans[k - 1].0 == uuid;
        if same_gpu {
            shared[k] |= start < latest_stop;
            shared[k - 1] |= start < spans[k - 1].2;
            latest_stop = latest_stop.max(stop);
        } else {
            latest_stop = stop;
        }
    }
    let marked: Vec<usize> = (0..spans.len())
        .filter(|&k| shared[k])
        .map(|k| spans[k].3)
        .collect();
    for i in marked {
        records[i].shared_device = true;
    }
}

impl JobRecord {
    /// Whether other processes disturbed its timing: its epochs' contention (see
    /// [`crate::EpochHost`]) is [`crate::EpochHost::DISTURBED`] or more on average. (On a quiet
    /// machine single samples catch a daemon or the coordinator at work, so one epoch now and
    /// then shows 0.2 to 0.5; a competing training process shows 1 or more throughout.)
    pub fn disturbed(&self) -> bool {
        let c: Vec<f64> = self
            .epochs
            .iter()
            .filter_map(|e| e.host)
            .map(|h| h.contention)
            .collect();
        !c.is_empty() && c.iter().sum::<f64>() / c.len() as f64 >= crate::EpochHost::DISTURBED
    }

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
            device_uuid: facts.device_uuid,
            shared_device: false,
            tf32: facts
                .device
                .filter(|d| matches!(d, DeviceSpec::Cuda(_)))
                .map(|_| job.spec.tf32),
            engine: facts.engine,
            run: facts.run,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::Grid;

    fn records(runs: &[(Option<&str>, u64, u64)]) -> Vec<JobRecord> {
        let g = Grid::parse(
            "name: g\nactivations: [relu]\nseeds: [1, 2, 3, 4, 5]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 1, target_accuracy: 0.9}\n",
            std::path::Path::new("g.yaml"),
        )
        .unwrap();
        g.jobs()
            .iter()
            .zip(runs)
            .map(|(job, &(uuid, start, stop))| {
                let facts = RunFacts {
                    device_uuid: uuid.map(str::to_string),
                    clock: Some(RunClock {
                        init_start_ms: start,
                        run_start_ms: Some(start),
                        run_stop_ms: stop,
                    }),
                    ..RunFacts::default()
                };
                JobRecord::new(job, JobStatus::Succeeded, facts)
            })
            .collect()
    }

    #[test]
    fn jobs_overlapping_on_one_gpu_are_marked_and_no_others() {
        let mut r = records(&[
            (Some("GPU-a"), 0, 100),   // overlaps the 3rd
            (Some("GPU-b"), 50, 150),  // alone on its GPU
            (Some("GPU-a"), 90, 120),  // overlaps the 1st
            (Some("GPU-a"), 120, 200), // starts as the 3rd stops: alone
            (None, 0, 500),            // CPU: never marked
        ]);
        mark_shared_devices(&mut r);
        let marks: Vec<bool> = r.iter().map(|r| r.shared_device).collect();
        assert_eq!(marks, [true, false, true, false, false]);
        // A long run overlapping a later one that is not its neighbour in start order.
        let mut r = records(&[
            (Some("GPU-a"), 0, 1000),
            (Some("GPU-a"), 10, 20),
            (Some("GPU-a"), 500, 600),
        ]);
        mark_shared_devices(&mut r);
        assert!(r.iter().all(|r| r.shared_device));
    }
}
