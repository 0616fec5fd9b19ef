//! The leases of running jobs, kept in an ordered index by expiry (as mini-redis keeps key
//! expiry), so finding the expired ones, or the next deadline, never scans every lease.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use common::{LeaseId, WorkerId};

/// One running attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    /// Index of the job in the state's job list.
    pub job: usize,
    pub worker: WorkerId,
    pub expires: Instant,
}

#[derive(Debug)]
pub struct LeaseTable {
    active: HashMap<LeaseId, Lease>,
    by_expiry: BTreeSet<(Instant, LeaseId)>,
    /// (worker, LeaseJob request id) → the lease it was granted, so a retried request gets it
    /// back. Kept only while the lease is active, so bounded by the leases held.
    requests: HashMap<(WorkerId, String), LeaseId>,
    /// The reverse of `requests`, to forget a request with its lease.
    request_of: HashMap<LeaseId, (WorkerId, String)>,
    /// The sequence number of the next new lease.
    next_seq: u64,
}

impl LeaseTable {
    /// An empty table whose first new lease will have sequence number `next_seq`.
    pub fn new(next_seq: u64) -> LeaseTable {
        LeaseTable {
            active: HashMap::new(),
            by_expiry: BTreeSet::new(),
            requests: HashMap::new(),
            request_of: HashMap::new(),
            next_seq: next_seq.max(1),
        }
    }

    /// A fencing token never given before: the next sequence number, and 32 random bits.
    pub fn fresh_id(&mut self) -> LeaseId {
        let mut nonce = [0u8; 4];
        // The OS's random source failing is not recoverable in any useful way.
        getrandom::fill(&mut nonce).expect("the OS random source");
        let id = LeaseId::compose(self.next_seq, u32::from_le_bytes(nonce));
        self.next_seq += 1;
        id
    }

    /// Adds a lease; sequence numbers up to its own are taken, so no id is given twice.
    pub fn insert(&mut self, id: LeaseId, lease: Lease) {
        self.remove(id);
        self.by_expiry.insert((lease.expires, id));
        self.active.insert(id, lease);
        self.next_seq = self.next_seq.max(id.seq() + 1);
    }

    pub fn get(&self, id: LeaseId) -> Option<&Lease> {
        self.active.get(&id)
    }

    /// Extends lease `id` to `until`; false if there is no such lease.
    pub fn renew(&mut self, id: LeaseId, until: Instant) -> bool {
        let Some(lease) = self.active.get_mut(&id) else {
            return false;
        };
        self.by_expiry.remove(&(lease.expires, id));
        lease.expires = until;
        self.by_expiry.insert((until, id));
        true
    }

    pub fn remove(&mut self, id: LeaseId) -> Option<Lease> {
        if let Some(key) = self.request_of.remove(&id) {
            self.requests.remove(&key);
        }
        let lease = self.active.remove(&id)?;
        self.by_expiry.remove(&(lease.expires, id));
        Some(lease)
    }

    /// Leases whose expiry is at or before `now`, earliest first.
    pub fn expired(&self, now: Instant) -> Vec<LeaseId> {
        self.by_expiry
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|&(_, id)| id)
            .collect()
    }

    /// When the next lease expires, if any is held.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.by_expiry.first().map(|&(at, _)| at)
    }

    /// The active leases.
    pub fn iter(&self) -> impl Iterator<Item = (LeaseId, &Lease)> {
        self.active.iter().map(|(&id, l)| (id, l))
    }

    /// How many leases `worker` holds.
    pub fn held_by(&self, worker: &WorkerId) -> usize {
        self.active.values().filter(|l| &l.worker == worker).count()
    }

    /// Notes that `worker`'s request `request` was granted lease `id` (an active lease).
    pub fn remember_request(&mut self, worker: &WorkerId, request: &str, id: LeaseId) {
        if request.is_empty() || !self.active.contains_key(&id) {
            return;
        }
        let key = (worker.clone(), request.to_string());
        if let Some(old) = self.requests.insert(key.clone(), id) {
            self.request_of.remove(&old);
        }
        self.request_of.insert(id, key);
    }

    /// The lease granted to `worker`'s request `request`, while it is active. Another worker's
    /// request with the same id is another request.
    pub fn for_request(&self, worker: &WorkerId, request: &str) -> Option<(LeaseId, &Lease)> {
        let id = *self.requests.get(&(worker.clone(), request.to_string()))?;
        self.active.get(&id).map(|l| (id, l))
    }

    /// How many request ids are remembered (at most one per active lease).
    pub fn requests_remembered(&self) -> usize {
        self.requests.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn expiry_follows_renewals_and_ids_never_repeat() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut t = LeaseTable::new(7);
        let w = WorkerId::nth(1);
        let lease = |job, at| Lease {
            job,
            worker: w.clone(),
            expires: at,
        };
        let a = t.fresh_id();
        t.insert(a, lease(0, t0 + s(10)));
        let b = t.fresh_id();
        assert_eq!((a.seq(), b.seq()), (7, 8));
        assert!(b > a);
        t.insert(b, lease(1, t0 + s(5)));
        assert_eq!(t.next_expiry(), Some(t0 + s(5)));
        assert_eq!(t.expired(t0 + s(6)), vec![b]);
        assert!(t.renew(b, t0 + s(20)));
        assert_eq!(t.expired(t0 + s(11)), vec![a]);
        assert_eq!(t.next_expiry(), Some(t0 + s(10)));
        t.remove(a);
        assert_eq!(t.expired(t0 + s(30)), vec![b]);
        assert!(!t.renew(a, t0));
        assert_eq!(t.held_by(&w), 1);
        t.remember_request(&w, "r", b);
        assert_eq!(t.for_request(&w, "r").map(|(id, _)| id), Some(b));
        let other = WorkerId::nth(2);
        assert!(
            t.for_request(&other, "r").is_none(),
            "another worker's request with the same id is not this one"
        );
        t.remove(b);
        assert!(t.for_request(&w, "r").is_none());
        assert_eq!(t.requests_remembered(), 0, "forgotten with the lease");
        t.insert(LeaseId::compose(20, 0), lease(2, t0));
        assert_eq!(
            t.fresh_id().seq(),
            21,
            "a loaded lease's number is never given again"
        );
    }
}
