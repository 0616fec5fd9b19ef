//! The read side of the state: job records, the `results.json` content, and worker status.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{JobId, JobRecord};
use report::{Environment, Results, WorkerEnv};

use super::State;

/// A running job as the progress display shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunningJob {
    pub id: JobId,
    /// The worker's name.
    pub worker: String,
    pub epochs_done: u32,
    pub epochs: u32,
    pub accuracy: Option<f64>,
}

/// The grid's progress: counts, running jobs, expected time left.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub counts: super::Counts,
    pub running: Vec<RunningJob>,
    pub eta: Option<Duration>,
}

/// A registered worker as `coordinator status` shows it.
#[derive(Debug, Clone)]
pub struct WorkerStatus {
    pub env: WorkerEnv,
    /// Time since last heard from; None for a worker of an earlier run.
    pub since: Option<Duration>,
    /// Jobs it runs now.
    pub running: u32,
}

impl State {
    /// Every job's record, in grid order, marked where it shared its GPU.
    pub fn records(&self) -> Vec<JobRecord> {
        let mut records: Vec<JobRecord> = self.jobs.iter().map(|e| e.record()).collect();
        common::record::mark_shared_devices(&mut records);
        records
    }

    /// The records of jobs `from..from + count` in grid order (fewer at the end).
    pub fn records_page(&self, from: usize, count: usize) -> Vec<JobRecord> {
        let jobs = self.jobs.iter().skip(from).take(count);
        jobs.map(|e| e.record()).collect()
    }

    pub fn job_count(&self) -> usize {
        self.jobs.len()
    }

    /// Registered workers, by id.
    pub fn worker_statuses(&self, now: Instant) -> Vec<WorkerStatus> {
        let mut out: Vec<WorkerStatus> = self
            .workers
            .iter()
            .map(|w| WorkerStatus {
                env: WorkerEnv {
                    id: w.id.clone(),
                    info: w.info.clone(),
                },
                since: w.last_seen.map(|seen| now.saturating_duration_since(seen)),
                running: self.leases.held_by(&w.id) as u32,
            })
            .collect();
        out.sort_by(|a, b| a.env.id.cmp(&b.env.id));
        out
    }

    /// The jobs running now, by job id, and the expected time left: the expected work left
    /// (queued jobs, and the epochs running jobs have still to do, in seconds as observed so
    /// far) over the slots of the workers connected. None until an epoch was observed.
    pub fn progress(&self, now: Instant) -> Progress {
        let mut running: Vec<RunningJob> = self
            .leases
            .iter()
            .map(|(_, l)| {
                let e = &self.jobs[l.job];
                let epochs = e.epochs();
                RunningJob {
                    id: e.job.id.clone(),
                    worker: self
                        .workers
                        .get(&l.worker)
                        .map_or_else(|| l.worker.to_string(), |w| w.info.name.clone()),
                    epochs_done: epochs.len() as u32,
                    epochs: e.job.spec.epochs,
                    accuracy: epochs.last().map(|m| m.test_accuracy),
                }
            })
            .collect();
        running.sort_by(|a, b| a.id.cmp(&b.id));
        let eta = self.estimates.calibrated().then(|| {
            let left: f64 = self
                .leases
                .iter()
                .map(|(_, l)| {
                    let e = &self.jobs[l.job];
                    let done = e.epochs().len() as f64 / e.job.spec.epochs.max(1) as f64;
                    self.estimates.cost(&e.job) * (1.0 - done).max(0.0)
                })
                .sum::<f64>()
                + self.queue.total_cost();
            let slots: u32 = self
                .workers
                .live(now, self.lease_ttl)
                .map(|w| w.info.slots)
                .sum();
            Duration::from_secs_f64(left / slots.max(1) as f64)
        });
        Progress {
            counts: self.counts(),
            running,
            eta,
        }
    }

    /// The ids of the jobs cancelled by the operator.
    pub fn cancelled_ids(&self) -> Vec<common::JobId> {
        let cancelled = self
            .jobs
            .iter()
            .filter(|e| e.status == common::JobStatus::Cancelled);
        cancelled.map(|e| e.job.id.clone()).collect()
    }

    /// How many workers were heard from within a lease time, by device.
    pub fn live_devices(&self, now: Instant) -> std::collections::BTreeMap<String, i64> {
        let mut out = std::collections::BTreeMap::new();
        for w in self.workers.live(now, self.lease_ttl) {
            *out.entry(w.info.device.to_string()).or_insert(0) += 1;
        }
        out
    }

    /// Every run, with how many jobs reached their final status in each.
    fn runs_with_counts(&self) -> Vec<report::RunInfo> {
        let mut runs = self.runs.clone();
        for r in &mut runs {
            let finished_in =
                |e: &&crate::jobs::JobEntry| e.result.as_ref().is_some_and(|x| x.run == Some(r.id));
            r.jobs_finished = self.jobs.iter().filter(finished_in).count() as u32;
        }
        runs
    }

    /// Everything the output files are made of. The environment lists the workers that ran
    /// jobs, one entry per name and device.
    pub fn results(&self) -> Results {
        let used: HashSet<&str> = self
            .jobs
            .iter()
            .filter_map(|e| e.result.as_ref().and_then(|r| r.worker.as_deref()))
            .collect();
        let mut workers: Vec<WorkerEnv> = self
            .workers
            .iter()
            .filter(|w| used.contains(w.info.name.as_str()))
            .map(|w| WorkerEnv {
                id: w.id.clone(),
                info: w.info.clone(),
            })
            .collect();
        workers.sort_by(|a, b| a.info.name.cmp(&b.info.name).then(a.id.cmp(&b.id)));
        workers.dedup_by(|a, b| a.info.name == b.info.name && a.info.device == b.info.device);
        Results {
            grid: self.grid.clone(),
            environment: Environment {
                coordinator_version: env!("CARGO_PKG_VERSION").into(),
                coordinator_host: orchestrator_proto::host::hostname(),
                grid_file: self.grid_file.clone(),
                grid_sha256: self.grid.source_sha256().to_string(),
                started_at: self.started_at.clone(),
                finished_at: self.finished_at.clone(),
                workers,
                runs: self.runs_with_counts(),
            },
            jobs: self.records(),
        }
    }
}
