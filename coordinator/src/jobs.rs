//! The job state machine: pending → running → succeeded | failed | diverged, with retries,
//! lost workers, hand-backs and cancellation. Each transition is decided here as a
//! [`Change`] and applied here in memory; the store writes the same change to SQLite.

use common::{
    DeviceSpec, EpochMetrics, Job, JobRecord, JobStatus, LeaseId, Outcome, RunClock, RunFacts,
    TrainOutcome, WorkerId,
};

use crate::change::Change;

/// How many times a job may lose its worker before it is failed for good.
pub const MAX_LOST_ATTEMPTS: u32 = 5;

/// The error of a job cancelled by the operator.
pub const CANCELLED: &str = "cancelled by the operator";

/// One job and everything known about its attempts.
#[derive(Debug, Clone)]
pub struct JobEntry {
    pub job: Job,
    pub status: JobStatus,
    pub attempts: u32,
    /// Attempts that ended because the worker vanished (lease expired).
    pub lost: u32,
    /// Attempts that failed in training and were retried.
    pub failures: u32,
    /// The current attempt's lease, while running.
    pub lease: Option<LeaseId>,
    /// What its attempts produced; None for a job never started, as are most jobs of a large
    /// queue (kept out of line: a million queued jobs would otherwise carry ~150 MB of empty
    /// fields).
    pub result: Option<Box<JobResult>>,
    /// Held back by a seed race (a seed it has not given yet); only matters while pending.
    pub held: bool,
}

/// What a job's attempts produced.
#[derive(Debug, Clone, Default)]
pub struct JobResult {
    /// The lease that produced the terminal status, so a retried completion is acknowledged.
    pub finished_lease: Option<LeaseId>,
    pub worker: Option<String>,
    pub device: Option<DeviceSpec>,
    pub param_count: Option<u64>,
    pub latency: Option<f64>,
    pub error: Option<String>,
    pub epochs: Vec<EpochMetrics>,
    /// When the attempt that finished the job ran.
    pub clock: Option<RunClock>,
    /// The GPU it trained on, by UUID.
    pub device_uuid: Option<String>,
    /// The layout and kernels it trained with.
    pub engine: Option<common::Engine>,
    /// The coordinator run in which it reached its final status.
    pub run: Option<u32>,
}

impl JobEntry {
    /// A job never run.
    pub fn new(job: Job) -> JobEntry {
        JobEntry {
            job,
            status: JobStatus::Pending,
            attempts: 0,
            lost: 0,
            failures: 0,
            lease: None,
            result: None,
            held: false,
        }
    }

    /// The result, made when first written.
    pub fn result_mut(&mut self) -> &mut JobResult {
        self.result.get_or_insert_with(Default::default)
    }

    /// The epochs of the current (or last) attempt.
    pub fn epochs(&self) -> &[EpochMetrics] {
        self.result.as_ref().map_or(&[], |r| &r.epochs)
    }

    /// The lease whose completion finished the job, if it has finished.
    pub fn finished_lease(&self) -> Option<LeaseId> {
        self.result.as_ref().and_then(|r| r.finished_lease)
    }

    /// Whether `lease` is this job's current attempt.
    pub fn holds(&self, lease: LeaseId) -> bool {
        self.status == JobStatus::Running && self.lease == Some(lease)
    }

    /// A new attempt under `lease`, on `worker`.
    pub fn start(
        &self,
        lease: LeaseId,
        worker: &WorkerId,
        worker_name: Option<String>,
        at: String,
    ) -> Change {
        Change::Started {
            job: self.job.id.clone(),
            lease,
            attempt: self.attempts + 1,
            worker: worker.clone(),
            worker_name,
            at,
        }
    }

    /// One finished epoch of the current attempt.
    pub fn epoch(&self, lease: LeaseId, metrics: EpochMetrics) -> Change {
        Change::Epoch {
            job: self.job.id.clone(),
            lease,
            metrics,
        }
    }

    /// The current attempt's outcome. A failure in training is retried while the grid's
    /// `retries` allow; divergence is deterministic and never retried.
    pub fn finish(
        &self,
        lease: LeaseId,
        outcome: TrainOutcome,
        retries: u32,
        at: String,
    ) -> Change {
        let retry = outcome.status == Outcome::Failed && self.failures < retries;
        let recorded = self.epochs();
        let stored =
            (self.holds(lease) && outcome.epochs.starts_with(recorded)).then_some(recorded.len());
        Change::Finished {
            job: self.job.id.clone(),
            lease,
            status: if retry {
                JobStatus::Pending
            } else {
                outcome.status.into()
            },
            failures: self.failures + u32::from(retry),
            stored,
            outcome,
            at,
        }
    }

    /// The worker handed the lease back: pending again, not counted as lost.
    pub fn release(&self, lease: LeaseId, at: String) -> Change {
        Change::Released {
            job: self.job.id.clone(),
            lease,
            at,
        }
    }

    /// The lease expired: pending again, or failed after [`MAX_LOST_ATTEMPTS`].
    pub fn lose(&self, lease: LeaseId, at: String) -> Change {
        let lost = self.lost + 1;
        let (status, error) = if lost >= MAX_LOST_ATTEMPTS {
            let why = format!("lost its worker {lost} times (lease expired)");
            (JobStatus::Failed, Some(why))
        } else {
            (JobStatus::Pending, None)
        };
        Change::Lost {
            job: self.job.id.clone(),
            lease,
            lost,
            status,
            error,
            at,
        }
    }

    /// Cancelled by the operator: `cancelled`, with [`CANCELLED`] as its error.
    pub fn cancel(&self, at: String) -> Change {
        Change::Stopped {
            job: self.job.id.clone(),
            status: JobStatus::Cancelled,
            error: CANCELLED.into(),
            at,
        }
    }

    /// Not run (it has not started): `failed` with `why`, as its group kept failing.
    pub fn skip(&self, why: String, at: String) -> Change {
        Change::Stopped {
            job: self.job.id.clone(),
            status: JobStatus::Failed,
            error: why,
            at,
        }
    }

    /// Applies a change about this job (others are ignored).
    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::Started {
                lease,
                attempt,
                worker_name,
                ..
            } => {
                self.status = JobStatus::Running;
                self.attempts = *attempt;
                self.lease = Some(*lease);
                let r = self.result_mut();
                r.worker = worker_name.clone();
                r.epochs.clear();
                r.clock = None;
                r.device_uuid = None;
                r.engine = None;
            }
            Change::Epoch { metrics, .. } => {
                let epochs = &mut self.result_mut().epochs;
                // Epochs come in order; one sent again replaces the first report.
                if epochs.last().is_some_and(|x| x.epoch >= metrics.epoch) {
                    epochs.retain(|x| x.epoch != metrics.epoch);
                    epochs.push(metrics.clone());
                    epochs.sort_by_key(|x| x.epoch);
                } else {
                    epochs.push(metrics.clone());
                }
            }
            Change::Finished {
                lease,
                outcome,
                status,
                failures,
                ..
            } => {
                self.status = *status;
                self.failures = *failures;
                self.lease = None;
                let r = self.result_mut();
                r.finished_lease = Some(*lease);
                r.device = Some(outcome.device);
                r.param_count = Some(outcome.param_count);
                r.latency = outcome.latency_ms_per_sample;
                r.error = outcome.error.clone();
                r.epochs = outcome.epochs.clone();
                r.clock = outcome.clock;
                r.device_uuid = outcome.device_uuid.clone();
                r.engine = outcome.engine;
            }
            Change::Released { .. } => {
                self.status = JobStatus::Pending;
                self.lease = None;
            }
            Change::Lost {
                lost,
                status,
                error,
                ..
            } => {
                self.lost = *lost;
                self.status = *status;
                self.lease = None;
                if error.is_some() || self.result.is_some() {
                    self.result_mut().error = error.clone();
                }
            }
            Change::Stopped { status, error, .. } => {
                self.status = *status;
                self.result_mut().error = Some(error.clone());
                self.lease = None;
            }
            Change::WorkerRegistered { .. } | Change::GridFinished { .. } => {}
        }
    }

    /// This job as `results.json` records it.
    pub fn record(&self) -> JobRecord {
        let none = JobResult::default();
        let r = self.result.as_deref().unwrap_or(&none);
        let facts = RunFacts {
            attempts: self.attempts,
            lost_attempts: self.lost,
            failed_attempts: self.failures,
            worker: r.worker.clone(),
            device: r.device,
            param_count: r.param_count,
            epochs: r.epochs.clone(),
            latency_ms_per_sample: r.latency,
            error: r.error.clone(),
            clock: r.clock,
            device_uuid: r.device_uuid.clone(),
            engine: r.engine,
            run: r.run,
        };
        JobRecord::new(&self.job, self.status, facts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn entry() -> JobEntry {
        let g = common::Grid::parse(
            "name: g\nactivations: [relu]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 2, target_accuracy: 0.9}\n",
            Path::new("g.yaml"),
        )
        .unwrap();
        JobEntry::new(g.jobs().remove(0))
    }

    fn outcome(status: Outcome) -> TrainOutcome {
        TrainOutcome {
            status,
            device: DeviceSpec::Cpu,
            param_count: 1,
            epochs: vec![],
            latency_ms_per_sample: None,
            error: Some("x".into()),
            clock: None,
            device_uuid: None,
            engine: None,
        }
    }

    #[test]
    fn a_failure_is_retried_as_allowed_and_divergence_never() {
        let mut e = entry();
        let lease = LeaseId::new(1);
        e.apply(&e.start(lease, &WorkerId::nth(1), None, "t".into()));
        assert!(e.holds(lease) && e.attempts == 1);
        let c = e.finish(lease, outcome(Outcome::Failed), 1, "t".into());
        e.apply(&c);
        assert_eq!((e.status, e.failures), (JobStatus::Pending, 1));
        e.apply(&e.start(LeaseId::new(2), &WorkerId::nth(1), None, "t".into()));
        e.apply(&e.finish(LeaseId::new(2), outcome(Outcome::Failed), 1, "t".into()));
        assert_eq!(
            (e.status, e.failures, e.attempts),
            (JobStatus::Failed, 1, 2)
        );
        let mut d = entry();
        d.apply(&d.start(lease, &WorkerId::nth(1), None, "t".into()));
        d.apply(&d.finish(lease, outcome(Outcome::Diverged), 5, "t".into()));
        assert_eq!(d.status, JobStatus::Diverged);
    }

    #[test]
    fn the_fifth_loss_fails_the_job() {
        let mut e = entry();
        for n in 1..=MAX_LOST_ATTEMPTS {
            let lease = LeaseId::new(n as u64);
            e.apply(&e.start(lease, &WorkerId::nth(1), None, "t".into()));
            e.apply(&e.lose(lease, "t".into()));
        }
        assert_eq!(e.status, JobStatus::Failed);
        let error = e.result.as_ref().and_then(|r| r.error.clone()).unwrap();
        assert!(error.contains("lost its worker 5 times"), "{error}");
        assert!(!e.holds(LeaseId::new(5)));
    }
}
