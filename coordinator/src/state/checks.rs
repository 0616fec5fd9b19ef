//! What the services check before a report or an outcome changes anything: whether it can be
//! true of the attempt, and whether it repeats what is recorded.

use common::{EpochMetrics, JobId, LeaseId, TrainOutcome};

use super::{previous_epoch, State};

impl State {
    /// Why `m` cannot be the next epoch (or a retried report of one already recorded) of
    /// `job`'s attempt under `lease`, if it cannot. Stale reports are not checked: they are
    /// rejected anyway.
    pub fn check_epoch(
        &self,
        job: &JobId,
        lease: LeaseId,
        m: &EpochMetrics,
    ) -> std::result::Result<(), String> {
        let Some(i) = self.current(job, lease) else {
            return Ok(());
        };
        let e = &self.jobs[i];
        m.check(e.job.spec.epochs)?;
        let done = e.epochs().len() as u32;
        if m.epoch > done + 1 {
            return Err(format!("epoch {} reported after epoch {done}", m.epoch));
        }
        let previous = previous_epoch(e.epochs(), m.epoch);
        if previous.is_some_and(|p| m.train_seconds < p.train_seconds) {
            return Err(format!("epoch {}: train_seconds went back", m.epoch));
        }
        Ok(())
    }

    /// Why `outcome` cannot be the outcome of `job`'s attempt under `lease`, if it cannot.
    pub fn check_outcome(
        &self,
        job: &JobId,
        lease: LeaseId,
        outcome: &TrainOutcome,
    ) -> std::result::Result<(), String> {
        match self.current(job, lease) {
            Some(i) => outcome.check(self.jobs[i].job.spec.epochs),
            None => Ok(()),
        }
    }

    /// Whether `m` is, byte for byte, an epoch `job`'s attempt under `lease` has recorded.
    pub fn repeats(&self, job: &JobId, lease: LeaseId, m: &EpochMetrics) -> bool {
        self.current(job, lease)
            .is_some_and(|i| self.jobs[i].epochs().iter().any(|e| e == m))
    }
}
