//! Identifiers as distinct types, so a job id, a worker id and a lease id can never be passed
//! in one another's place.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Stable job id: `<dataset>-<model>-<activation>-s<seed>-<12 hex of SHA-256(spec)>`, made by
/// [`TrainSpec::id`](crate::TrainSpec::id).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(String);

impl JobId {
    /// Wraps an id made elsewhere: by [`TrainSpec::id`](crate::TrainSpec::id), or read back
    /// from storage or the wire (not checked against any spec).
    pub fn from_stored(s: impl Into<String>) -> JobId {
        JobId(s.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A worker's id for one registration, assigned by the coordinator (`w1`, `w2`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkerId(String);

impl WorkerId {
    /// The id of the `n`-th registration ever (1-based).
    pub fn nth(n: usize) -> WorkerId {
        WorkerId(format!("w{n}"))
    }

    /// Wraps an id read back from storage or the wire.
    pub fn from_stored(s: impl Into<String>) -> WorkerId {
        WorkerId(s.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The fencing token of one attempt at a job. Never reused, also across coordinator restarts:
/// a sequence number in the high bits (so tokens increase), 32 random bits in the low ones (so
/// nobody can guess the token of a lease they were not given).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LeaseId(u64);

impl LeaseId {
    pub const fn new(id: u64) -> LeaseId {
        LeaseId(id)
    }

    pub const fn get(self) -> u64 {
        self.0
    }

    /// The token of the `seq`-th lease, with `nonce` as its random part. `seq` stays below
    /// 2^31, so tokens fit SQLite's signed integers.
    pub const fn compose(seq: u64, nonce: u32) -> LeaseId {
        LeaseId((seq << 32) | nonce as u64)
    }

    /// The sequence number of this token.
    pub const fn seq(self) -> u64 {
        self.0 >> 32
    }
}

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
