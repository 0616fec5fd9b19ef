//! The read side of the state: job records, the `results.json` content, and worker status.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use domain::JobRecord;
use report::{Environment, Results, WorkerEnv};

use super::State;

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
    /// Every job's record, in grid order.
    pub fn records(&self) -> Vec<JobRecord> {
        self.jobs.iter().map(|e| e.record()).collect()
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

    /// How many workers were heard from within a lease time, by device.
    pub fn live_devices(&self, now: Instant) -> std::collections::BTreeMap<String, i64> {
        let mut out = std::collections::BTreeMap::new();
        for w in self.workers.live(now, self.lease_ttl) {
            *out.entry(w.info.device.to_string()).or_insert(0) += 1;
        }
        out
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
            },
            jobs: self.records(),
        }
    }
}
