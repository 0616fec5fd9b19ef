//! The workers that have registered, and when each was last heard from.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use domain::{WorkerId, WorkerInfo};

/// A worker as registered.
#[derive(Debug, Clone)]
pub struct WorkerEntry {
    pub id: WorkerId,
    pub info: WorkerInfo,
    /// None for workers of an earlier run, loaded from the database.
    pub last_seen: Option<Instant>,
}

impl WorkerEntry {
    /// Heard from within `ttl` (the lease time) before `now`.
    pub fn live(&self, now: Instant, ttl: Duration) -> bool {
        self.last_seen
            .is_some_and(|seen| now.saturating_duration_since(seen) < ttl)
    }
}

#[derive(Debug, Default)]
pub struct Registry {
    workers: HashMap<WorkerId, WorkerEntry>,
    /// Workers that have been told the grid is finished.
    told_finished: HashSet<WorkerId>,
}

impl Registry {
    /// The workers of earlier runs, not heard from in this one.
    pub fn from_stored(workers: Vec<(WorkerId, WorkerInfo)>) -> Registry {
        let workers = workers
            .into_iter()
            .map(|(id, info)| {
                let entry = WorkerEntry {
                    id: id.clone(),
                    info,
                    last_seen: None,
                };
                (id, entry)
            })
            .collect();
        Registry {
            workers,
            told_finished: HashSet::new(),
        }
    }

    /// The id of the next registration: unique across coordinator restarts too (every worker
    /// ever registered is loaded), so a restarted worker is a new worker and its old leases
    /// expire.
    pub fn next_id(&self) -> WorkerId {
        WorkerId::nth(self.workers.len() + 1)
    }

    pub fn insert(&mut self, id: WorkerId, info: WorkerInfo, now: Option<Instant>) {
        let entry = WorkerEntry {
            id: id.clone(),
            info,
            last_seen: now,
        };
        self.workers.insert(id, entry);
    }

    pub fn get(&self, id: &WorkerId) -> Option<&WorkerEntry> {
        self.workers.get(id)
    }

    pub fn knows(&self, id: &WorkerId) -> bool {
        self.workers.contains_key(id)
    }

    /// Notes that `id` was heard from at `now`.
    pub fn touch(&mut self, id: &WorkerId, now: Instant) {
        if let Some(w) = self.workers.get_mut(id) {
            w.last_seen = Some(now);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &WorkerEntry> {
        self.workers.values()
    }

    /// Workers heard from within `ttl` before `now`.
    pub fn live(&self, now: Instant, ttl: Duration) -> impl Iterator<Item = &WorkerEntry> {
        self.workers.values().filter(move |w| w.live(now, ttl))
    }

    pub fn tell_finished(&mut self, id: &WorkerId) {
        self.told_finished.insert(id.clone());
    }

    /// Whether every worker heard from within `ttl` has been told the grid is finished.
    pub fn live_told(&self, now: Instant, ttl: Duration) -> bool {
        self.live(now, ttl)
            .all(|w| self.told_finished.contains(&w.id))
    }
}
