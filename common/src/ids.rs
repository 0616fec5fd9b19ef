//! Identifiers as distinct types, so a job id, a worker id and a lease id can never be passed
//! in one another's place.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Stable job id: `<dataset>-<model>-<activation>-s<seed>-<12 hex of SHA-256(spec)>`, made by
/// [`TrainSpec::id`](crate::TrainSpec::id).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(String);

/// A string read from a file or a peer that is not a job id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{}` is not a job id (<dataset>-<model>-<activation>-s<seed>-<12 hex digits>)", .0.escape_debug())]
pub struct NotAJobId(String);

impl JobId {
    /// Checks a job id read from a file or a peer against the format [`TrainSpec::id`]
    /// makes, before it is used at all: job ids become file names (checkpoints, logs, report
    /// files), so one that is not an id (`../x`, an absolute path) must never get that far.
    ///
    /// [`TrainSpec::id`]: crate::TrainSpec::id
    pub fn parse(s: &str) -> Result<JobId, NotAJobId> {
        let short = || NotAJobId(s.chars().take(80).collect());
        let allowed =
            |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
        if s.len() > 160 || !s.chars().all(allowed) {
            return Err(short());
        }
        let (rest, hash) = s.rsplit_once('-').ok_or_else(short)?;
        let (names, seed) = rest.rsplit_once('-').ok_or_else(short)?;
        let hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
        let digits = seed.strip_prefix('s').unwrap_or("");
        let ok = hash.len() == 12
            && hash.chars().all(hex)
            && !digits.is_empty()
            && digits.chars().all(|c| c.is_ascii_digit())
            && names.split('-').all(|n| !n.is_empty())
            && names.len() >= 5;
        if ok {
            Ok(JobId(s.to_string()))
        } else {
            Err(short())
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_are_checked_before_use() {
        for good in [
            "mnist-paper-cnn-relu-s0-0e6f939b84ce",
            "fashion-mnist-vgg11-bn-leaky_relu-s12-abcdef012345",
        ] {
            assert_eq!(JobId::parse(good).unwrap().as_str(), good);
        }
        for bad in [
            "",
            "../../x",
            "/etc/passwd",
            "mnist-paper-cnn-relu-s0-0e6f939b84c",
            "mnist-paper-cnn-relu-s0-0E6F939B84CE",
            "mnist-paper-cnn-relu-sx-0e6f939b84ce",
            "mnist-paper-cnn-relu-s0-0e6f939b84ce/..",
            "a-s0-0e6f939b84ce",
            "mnist--relu-s0-0e6f939b84ce",
            "mnist-paper-cnn-r\u{202e}elu-s0-0e6f939b84ce",
        ] {
            assert!(JobId::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            JobId::parse("../x").unwrap_err().to_string(),
            "`../x` is not a job id (<dataset>-<model>-<activation>-s<seed>-<12 hex digits>)"
        );
    }
}
