//! Rebuilding the state in memory from the store.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use domain::JobStatus;

use super::{Result, State};
use crate::jobs::JobEntry;
use crate::scheduler::{Estimates, Lease, LeaseTable, Queue, Registry};
use crate::store::{Store, StoreError, StoredJob};

impl State {
    /// The state stored in `store`. Jobs that were running keep their lease for one more lease
    /// time from `now`; a running job without an open attempt is pending again.
    pub(super) fn load(store: Store, lease_ttl: Duration, now: Instant) -> Result<State> {
        let mut loaded = store.load()?;
        let mut leases = LeaseTable::new(loaded.next_lease);
        let mut jobs = Vec::new();
        for job in loaded.grid.jobs() {
            let stored = loaded.jobs.remove(&job.id).ok_or_else(|| {
                StoreError::Corrupt(format!("job {} of the grid is not stored", job.id))
            })?;
            let mut entry = entry(JobEntry::new(job), stored);
            if entry.status == JobStatus::Running {
                match loaded.open_attempts.remove(&entry.job.id) {
                    Some((id, worker)) => {
                        let lease = Lease {
                            job: jobs.len(),
                            worker,
                            expires: now + lease_ttl,
                        };
                        leases.insert(id, lease);
                        entry.lease = Some(id);
                    }
                    None => entry.status = JobStatus::Pending,
                }
            }
            jobs.push(entry);
        }
        let index: HashMap<_, _> = jobs
            .iter()
            .enumerate()
            .map(|(i, e)| (e.job.id.clone(), i))
            .collect();
        let mut state = State {
            sink: super::Sink::Direct(store),
            grid: loaded.grid,
            grid_file: loaded.grid_file,
            started_at: loaded.started_at,
            finished_at: loaded.finished_at,
            jobs,
            index,
            queue: Queue::default(),
            estimates: Estimates::default(),
            leases,
            workers: Registry::from_stored(loaded.workers),
            lease_ttl,
            counts: Default::default(),
        };
        for i in 0..state.jobs.len() {
            state.counts.add(state.jobs[i].status, 1);
            if state.jobs[i].status == JobStatus::Pending {
                let cost = state.estimates.cost(&state.jobs[i].job);
                state.queue.push(i, cost);
            }
        }
        Ok(state)
    }
}

/// A job's entry with what the store holds about it.
fn entry(mut e: JobEntry, s: StoredJob) -> JobEntry {
    e.status = s.status;
    e.attempts = s.attempts;
    e.lost = s.lost;
    e.failures = s.failures;
    e.finished_lease = s.finished_lease;
    e.worker = s.worker;
    e.device = s.device.and_then(|d| d.parse().ok());
    e.param_count = s.param_count;
    e.latency = s.latency;
    e.error = s.error;
    e.clock = s.clock;
    e.epochs = s.epochs;
    e
}
