//! Rebuilding the state in memory from the store.

use std::time::{Duration, Instant};

use common::{Job, JobStatus};

use super::{Result, State};
use crate::jobs::{JobEntry, JobResult};
use crate::scheduler::{Estimates, Lease, LeaseTable, Queue, Registry};
use crate::store::{Store, StoreError, StoredJob};

impl State {
    /// The state stored in `store`, whose grid's jobs are `grid_jobs` when the caller has them
    /// expanded already (a million jobs take seconds to expand). Jobs that were running keep
    /// their lease for one more lease time from `now`; a running job without an open attempt
    /// is pending again.
    pub(super) fn load(
        store: Store,
        grid_jobs: Option<Vec<Job>>,
        lease_ttl: Duration,
        now: Instant,
    ) -> Result<State> {
        let loaded = store.load()?;
        let grid_jobs = grid_jobs.unwrap_or_else(|| loaded.grid.jobs());
        let mut jobs: Vec<JobEntry> = grid_jobs.into_iter().map(JobEntry::new).collect();
        let mut by_id: Vec<u32> = (0..jobs.len() as u32).collect();
        by_id.sort_unstable_by(|&a, &b| jobs[a as usize].job.id.cmp(&jobs[b as usize].job.id));
        // Both in id order (SQLite's default collation compares bytes, as `str` does): one
        // merge pass, no hashing of a million ids. The store may hold more jobs, of earlier
        // grids in the same state.
        let mut rows = loaded.jobs.into_iter().peekable();
        for &i in &by_id {
            let e = &mut jobs[i as usize];
            while rows.peek().is_some_and(|(id, _)| *id < e.job.id) {
                rows.next();
            }
            let Some((_, stored)) = rows.next_if(|(id, _)| *id == e.job.id) else {
                let why = format!("job {} of the grid is not stored", e.job.id);
                return Err(StoreError::Corrupt(why));
            };
            fill(e, stored);
        }
        let mut open_attempts = loaded.open_attempts;
        let mut leases = LeaseTable::new(loaded.next_lease_seq);
        for (i, e) in jobs.iter_mut().enumerate() {
            if e.status != JobStatus::Running {
                continue;
            }
            match open_attempts.remove(&e.job.id) {
                Some((id, worker)) => {
                    let expires = now + lease_ttl;
                    leases.insert(
                        id,
                        Lease {
                            job: i,
                            worker,
                            expires,
                        },
                    );
                    e.lease = Some(id);
                }
                None => e.status = JobStatus::Pending,
            }
        }
        let mut state = State {
            sink: super::Sink::Direct(store),
            grid: loaded.grid,
            grid_file: loaded.grid_file,
            started_at: loaded.started_at,
            finished_at: loaded.finished_at,
            runs: loaded.runs,
            jobs,
            by_id,
            queue: Queue::default(),
            estimates: Estimates::default(),
            leases,
            workers: Registry::from_stored(loaded.workers),
            lease_ttl,
            counts: Default::default(),
        };
        for i in 0..state.jobs.len() {
            state.counts.add(state.jobs[i].status, false, 1);
            if state.jobs[i].status == JobStatus::Pending {
                let cost = state.estimates.cost(&state.jobs[i].job);
                state.queue.push(i, cost);
            }
        }
        state.race_all();
        Ok(state)
    }
}

/// Fills a job's entry with what the store holds about it.
fn fill(e: &mut JobEntry, s: StoredJob) {
    e.status = s.status;
    e.attempts = s.attempts;
    e.lost = s.lost;
    e.failures = s.failures;
    let started = s.attempts > 0 || s.error.is_some() || !s.epochs.is_empty();
    if started {
        e.result = Some(Box::new(JobResult {
            finished_lease: s.finished_lease,
            worker: s.worker,
            device: s.device.and_then(|d| d.parse().ok()),
            param_count: s.param_count,
            latency: s.latency,
            error: s.error,
            epochs: s.epochs,
            clock: s.clock,
            device_uuid: s.device_uuid,
            engine: s.engine.and_then(|e| e.parse().ok()),
            run: s.run,
        }));
    }
}
