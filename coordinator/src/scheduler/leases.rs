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
    /// LeaseJob request id → the lease it was granted, so a retried request gets it back.
    requests: HashMap<String, LeaseId>,
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
        t.remember_request("r", b);
        assert_eq!(t.for_request("r").map(|(id, _)| id), Some(b));
        t.remove(b);
        assert!(t.for_request("r").is_none());
        t.insert(LeaseId::compose(20, 0), lease(2, t0));
        assert_eq!(
            t.fresh_id().seq(),
            21,
            "a loaded lease's number is never given again"
        );
    }
}
