//! The workers that have registered, their sessions, and when each was last heard from.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::{WorkerId, WorkerInfo};
use sha2::{Digest, Sha256};

use crate::store::StoredWorker;

/// A worker as registered.
#[derive(Debug, Clone)]
pub struct WorkerEntry {
    pub id: WorkerId,
    pub info: WorkerInfo,
    /// SHA-256 of its session secret; None for a worker stored before sessions existed.
    session: Option<[u8; 32]>,
    /// None for workers of an earlier run, loaded from the database.
    pub last_seen: Option<Instant>,
    /// Started by this coordinator (or the one before it): dies with it.
    pub local: bool,
}

/// A new session secret (128 random bits, hex) and its digest, the only form stored.
pub fn new_session() -> (String, [u8; 32]) {
    let mut bytes = [0u8; 16];
    // The OS's random source failing is not recoverable in any useful way.
    getrandom::fill(&mut bytes).expect("the OS random source");
    let secret = hex::encode(bytes);
    let digest = session_digest(&secret);
    (secret, digest)
}

pub fn session_digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Whether a call claiming to be a worker may act as it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// The session is the worker's.
    Verified,
    /// No worker has this id.
    Unknown,
    /// The id is known, and the session missing or not its own.
    Denied,
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
    pub fn from_stored(workers: Vec<StoredWorker>) -> Registry {
        let workers = workers
            .into_iter()
            .map(|w| {
                let entry = WorkerEntry {
                    id: w.id.clone(),
                    info: w.info,
                    session: w.session,
                    last_seen: None,
                    local: w.local,
                };
                (w.id, entry)
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

    pub fn insert(
        &mut self,
        id: WorkerId,
        info: WorkerInfo,
        session: [u8; 32],
        local: bool,
        now: Option<Instant>,
    ) {
        let entry = WorkerEntry {
            id: id.clone(),
            info,
            session: Some(session),
            last_seen: now,
            local,
        };
        self.workers.insert(id, entry);
    }

    /// Whether `session` (from the call's `x-worker-session` header) is worker `id`'s.
    pub fn identify(&self, id: &WorkerId, session: Option<&str>) -> Identity {
        let Some(w) = self.workers.get(id) else {
            return Identity::Unknown;
        };
        match (w.session, session) {
            (Some(want), Some(given)) => {
                let given = session_digest(given);
                if orchestrator_proto::auth::constant_time_eq(&want, &given) {
                    Identity::Verified
                } else {
                    Identity::Denied
                }
            }
            _ => Identity::Denied,
        }
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
