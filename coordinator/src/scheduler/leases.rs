//! The leases of running jobs, kept in an ordered index by expiry (as mini-redis keeps key
//! expiry), so finding the expired ones, or the next deadline, never scans every lease.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use domain::{LeaseId, WorkerId};

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
    /// LeaseJob request id → the lease it was granted, so a retried request gets it back.
    requests: HashMap<String, LeaseId>,
    next: LeaseId,
}

impl LeaseTable {
    /// An empty table whose first new lease will be `next`.
    pub fn new(next: LeaseId) -> LeaseTable {
        LeaseTable {
            active: HashMap::new(),
            by_expiry: BTreeSet::new(),
            requests: HashMap::new(),
            next,
        }
    }

    /// The fencing token the next lease gets (taken by [`LeaseTable::insert`]).
    pub fn next_id(&self) -> LeaseId {
        self.next
    }

    /// Adds a lease; ids at or after the next one are taken, so no id is given twice.
    pub fn insert(&mut self, id: LeaseId, lease: Lease) {
        self.remove(id);
        self.by_expiry.insert((lease.expires, id));
        self.active.insert(id, lease);
        if id >= self.next {
            self.next = id.next();
        }
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

    /// How many leases `worker` holds.
    pub fn held_by(&self, worker: &WorkerId) -> usize {
        self.active.values().filter(|l| &l.worker == worker).count()
    }

    pub fn remember_request(&mut self, request: &str, id: LeaseId) {
        self.requests.insert(request.to_string(), id);
    }

    /// The lease granted to request `request`, while it is active.
    pub fn for_request(&self, request: &str) -> Option<(LeaseId, &Lease)> {
        let id = *self.requests.get(request)?;
        self.active.get(&id).map(|l| (id, l))
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
        let mut t = LeaseTable::new(LeaseId::new(7));
        let w = WorkerId::nth(1);
        let lease = |job, at| Lease {
            job,
            worker: w.clone(),
            expires: at,
        };
        let a = t.next_id();
        t.insert(a, lease(0, t0 + s(10)));
        let b = t.next_id();
        assert_eq!((a.get(), b.get()), (7, 8));
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
        t.remember_request("r", b);
        assert_eq!(t.for_request("r").map(|(id, _)| id), Some(b));
        t.remove(b);
        assert!(t.for_request("r").is_none());
        assert_eq!(t.next_id().get(), 9);
    }
}
