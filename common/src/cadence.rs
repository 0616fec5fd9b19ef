//! How often a job checkpoints (grid.yaml `checkpoint_every`): every N epochs, or after an
//! epoch once at least a given time has passed since the last checkpoint.
//!
//! A checkpoint of VGG-11 is ~111 MB: written after every epoch of a fast GPU it costs a good
//! part of the run. The default, `60s`, bounds what a crash loses to about a minute plus an
//! epoch, whatever the epoch's length.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointEvery {
    /// After every N-th epoch (N ≥ 1).
    Epochs(u32),
    /// After the first epoch that ends at least this many seconds after the last checkpoint
    /// (or the start of training).
    Seconds(u32),
}

impl Default for CheckpointEvery {
    fn default() -> Self {
        CheckpointEvery::Seconds(60)
    }
}

impl CheckpointEvery {
    /// Whether to checkpoint after `epoch` (1-based), `since_last` seconds after the last one.
    pub fn due(self, epoch: u32, since_last: f64) -> bool {
        match self {
            CheckpointEvery::Epochs(n) => epoch.is_multiple_of(n.max(1)),
            CheckpointEvery::Seconds(s) => since_last >= s as f64,
        }
    }
}

impl fmt::Display for CheckpointEvery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointEvery::Epochs(n) => write!(f, "{n}"),
            CheckpointEvery::Seconds(s) => write!(f, "{s}s"),
        }
    }
}

impl FromStr for CheckpointEvery {
    type Err = String;

    /// `3` (epochs), or a duration: `90s`, `5m`, `1h`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "checkpoint_every: expected a number of epochs (e.g. 2) or a duration (e.g. 60s, 5m), got `{s}`"
            )
        };
        let t = s.trim();
        let (digits, scale) = match t.char_indices().last() {
            Some((i, 's')) => (&t[..i], 1),
            Some((i, 'm')) => (&t[..i], 60),
            Some((i, 'h')) => (&t[..i], 3600),
            _ => (t, 0),
        };
        let n: u32 = digits.trim().parse().map_err(|_| bad())?;
        match scale {
            0 if n >= 1 => Ok(CheckpointEvery::Epochs(n)),
            0 => Err(format!("checkpoint_every: at least 1 epoch, got `{s}`")),
            k => n
                .checked_mul(k)
                .map(CheckpointEvery::Seconds)
                .ok_or_else(bad),
        }
    }
}

impl Serialize for CheckpointEvery {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for CheckpointEvery {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Number(n) => n.to_string(),
            Raw::Text(t) => t,
        };
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_epochs_and_durations() {
        assert_eq!("3".parse(), Ok(CheckpointEvery::Epochs(3)));
        assert_eq!("90s".parse(), Ok(CheckpointEvery::Seconds(90)));
        assert_eq!("5m".parse(), Ok(CheckpointEvery::Seconds(300)));
        assert_eq!("1h".parse(), Ok(CheckpointEvery::Seconds(3600)));
        assert_eq!("0s".parse(), Ok(CheckpointEvery::Seconds(0)));
        for bad in ["0", "", "x", "5d", "-1", "99999999999s", "5000000h"] {
            let e = bad.parse::<CheckpointEvery>().unwrap_err();
            assert!(e.starts_with("checkpoint_every"), "{bad}: {e}");
        }
        let y: CheckpointEvery = serde_yaml::from_str("2").unwrap();
        assert_eq!(y, CheckpointEvery::Epochs(2));
        let y: CheckpointEvery = serde_yaml::from_str("\"30s\"").unwrap();
        assert_eq!(serde_json::to_string(&y).unwrap(), "\"30s\"");
        assert_eq!(CheckpointEvery::default().to_string(), "60s");
    }

    #[test]
    fn due_by_epoch_count_or_time() {
        let every2 = CheckpointEvery::Epochs(2);
        assert!(!every2.due(1, 1e9) && every2.due(2, 0.0) && every2.due(4, 0.0));
        let minute = CheckpointEvery::Seconds(60);
        assert!(!minute.due(1, 59.9) && minute.due(1, 60.0));
        assert!(CheckpointEvery::Seconds(0).due(1, 0.0));
    }
}
