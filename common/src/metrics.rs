//! Per-epoch metrics and the DAWNBench summary of a series of them.

use serde::{Deserialize, Serialize};

/// Metrics of one finished epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based.
    pub epoch: u32,
    /// Cumulative training time at the end of this epoch, evaluation excluded.
    pub train_seconds: f64,
    pub train_loss: f64,
    pub test_loss: f64,
    pub test_accuracy: f64,
    /// When the epoch ran, by the job process's wall clock (absent in records kept before
    /// clocks were).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<EpochClock>,
    /// How the host treated the epoch's training (absent where not measured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<EpochHost>,
}

/// What else the machine did while an epoch trained: a timing is only as good as the quiet
/// of its machine.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochHost {
    /// CPU time (user + system) the job process used while the epoch trained, seconds.
    pub cpu_seconds: f64,
    /// Runnable threads of other processes beyond the cores this job left free, on average
    /// while the epoch trained: 0 on a quiet machine; 1 means one thread more than the free
    /// cores wanted CPU all along.
    pub contention: f64,
}

impl EpochHost {
    /// Mean contention over a run's epochs from which its timing counts as disturbed: half a
    /// core or more wanted by others all along.
    pub const DISTURBED: f64 = 0.5;
}

impl EpochMetrics {
    /// Whether these metrics can be true of epoch `epoch` of a job of `epochs` epochs: every
    /// number finite, times and losses not negative, accuracy a fraction. (Metrics come from
    /// workers over the network; they drive the report and its recommendation.)
    pub fn check(&self, epochs: u32) -> Result<(), String> {
        if self.epoch == 0 || self.epoch > epochs {
            return Err(format!("epoch {} is not in 1..={epochs}", self.epoch));
        }
        let e = self.epoch;
        for (name, v) in [
            ("train_seconds", self.train_seconds),
            ("train_loss", self.train_loss),
            ("test_loss", self.test_loss),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!(
                    "epoch {e}: {name} must be a finite number >= 0, got {v}"
                ));
            }
        }
        if let Some(h) = self.host {
            for (name, v) in [("cpu_seconds", h.cpu_seconds), ("contention", h.contention)] {
                if !(v.is_finite() && v >= 0.0) {
                    return Err(format!(
                        "epoch {e}: {name} must be a finite number >= 0, got {v}"
                    ));
                }
            }
        }
        let a = self.test_accuracy;
        if !(0.0..=1.0).contains(&a) {
            return Err(format!(
                "epoch {e}: test_accuracy must be in [0, 1], got {a}"
            ));
        }
        Ok(())
    }

    /// [`EpochMetrics::check`] for a whole series, which must be epochs 1, 2, ... in order
    /// with cumulative training time that never goes back.
    pub fn check_series(series: &[EpochMetrics], epochs: u32) -> Result<(), String> {
        for (i, m) in series.iter().enumerate() {
            m.check(epochs)?;
            if m.epoch as usize != i + 1 {
                return Err(format!("epoch {} where epoch {} belongs", m.epoch, i + 1));
            }
            if i > 0 && m.train_seconds < series[i - 1].train_seconds {
                return Err(format!("epoch {}: train_seconds went back", m.epoch));
            }
        }
        Ok(())
    }
}

/// Wall-clock times of one epoch in the job process, milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochClock {
    /// Training of the epoch began.
    pub start_ms: u64,
    /// Training ended; evaluation began.
    pub train_end_ms: u64,
    /// Evaluation ended.
    pub eval_end_ms: u64,
}

/// Wall-clock times of a job's run in the job process, milliseconds since the Unix epoch.
/// A job resumed from a checkpoint keeps the start times of the attempt that began it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunClock {
    /// The job process started (before the data is loaded and the model built).
    pub init_start_ms: u64,
    /// Data and model ready; training begins. Absent when the job failed before.
    pub run_start_ms: Option<u64>,
    /// The job ended (after the latency measurement, for a job that succeeded).
    pub run_stop_ms: u64,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The DAWNBench summary of an epoch series. Defined here once: `results.json`'s job records
/// and `results.csv`'s columns carry these fields by these names (report's tests check both).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub total_train_seconds: f64,
    pub first_epoch_at_target: Option<u32>,
    pub seconds_to_target: Option<f64>,
    pub final_test_accuracy: Option<f64>,
    pub error_rate: Option<f64>,
}

impl Summary {
    pub fn of(epochs: &[EpochMetrics], target_accuracy: f64) -> Summary {
        let at_target = epochs.iter().find(|e| e.test_accuracy >= target_accuracy);
        let last = epochs.last();
        Summary {
            total_train_seconds: last.map_or(0.0, |e| e.train_seconds),
            first_epoch_at_target: at_target.map(|e| e.epoch),
            seconds_to_target: at_target.map(|e| e.train_seconds),
            final_test_accuracy: last.map(|e| e.test_accuracy),
            error_rate: last.map(|e| 1.0 - e.test_accuracy),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(epoch: u32, secs: f64, acc: f64) -> EpochMetrics {
        EpochMetrics {
            epoch,
            train_seconds: secs,
            train_loss: 0.1,
            test_loss: 0.1,
            test_accuracy: acc,
            clock: None,
            host: None,
        }
    }

    #[test]
    fn summary_finds_first_epoch_at_target() {
        let e = [
            epoch(1, 10.0, 0.95),
            epoch(2, 20.0, 0.981),
            epoch(3, 30.0, 0.979),
        ];
        let s = Summary::of(&e, 0.98);
        assert_eq!(s.first_epoch_at_target, Some(2));
        assert_eq!(s.seconds_to_target, Some(20.0));
        assert_eq!(s.total_train_seconds, 30.0);
        assert_eq!(s.final_test_accuracy, Some(0.979));
        assert!((s.error_rate.unwrap() - 0.021).abs() < 1e-12);
    }

    #[test]
    fn summary_of_target_never_reached() {
        let s = Summary::of(&[epoch(1, 5.0, 0.5)], 0.98);
        assert_eq!(s.first_epoch_at_target, None);
        assert_eq!(s.seconds_to_target, None);
        // Exactly at the target counts.
        assert_eq!(
            Summary::of(&[epoch(1, 5.0, 0.98)], 0.98).first_epoch_at_target,
            Some(1)
        );
    }

    #[test]
    fn metrics_from_outside_are_checked() {
        assert!(epoch(1, 1.0, 0.5).check(3).is_ok());
        for (bad, why) in [
            (epoch(0, 1.0, 0.5), "not in 1..=3"),
            (epoch(4, 1.0, 0.5), "not in 1..=3"),
            (epoch(1, 1.0, 1e300), "test_accuracy"),
            (epoch(1, 1.0, -0.5), "test_accuracy"),
            (epoch(1, f64::NEG_INFINITY, 0.5), "train_seconds"),
            (epoch(1, 1.0, f64::NAN), "test_accuracy"),
            (
                EpochMetrics {
                    train_loss: f64::NAN,
                    ..epoch(1, 1.0, 0.5)
                },
                "train_loss",
            ),
            (
                EpochMetrics {
                    test_loss: -1.0,
                    ..epoch(1, 1.0, 0.5)
                },
                "test_loss",
            ),
        ] {
            let e = bad.check(3).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
        let series = [epoch(1, 1.0, 0.5), epoch(2, 2.0, 0.6)];
        assert!(EpochMetrics::check_series(&series, 2).is_ok());
        let repeated = [epoch(1, 1.0, 0.5), epoch(1, 2.0, 0.6)];
        assert!(EpochMetrics::check_series(&repeated, 2)
            .unwrap_err()
            .contains("epoch 1 where epoch 2"));
        let back = [epoch(1, 2.0, 0.5), epoch(2, 1.0, 0.6)];
        assert!(EpochMetrics::check_series(&back, 2)
            .unwrap_err()
            .contains("went back"));
    }

    #[test]
    fn summary_of_nothing() {
        let s = Summary::of(&[], 0.9);
        assert_eq!(s.total_train_seconds, 0.0);
        assert_eq!(s.final_test_accuracy, None);
    }
}
