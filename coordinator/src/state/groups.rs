//! A dataset × model whose jobs keep failing with one error: the rest of it is not run.

use std::time::Instant;

use common::JobStatus;

use super::{Result, State};
use crate::clock::timestamp;
use crate::jobs::JobEntry;

impl State {
    /// When `stop_after_failures` jobs of job `i`'s dataset × model have failed with its error
    /// (first line) and none of them has succeeded or diverged, the group's jobs not yet
    /// started end as failed, unrun, saying why: a systematic error (a missing dataset) does
    /// not fail a whole grid one job at a time. They run again with the next run.
    pub(super) fn stop_failing_group(&mut self, i: usize, now: Instant) -> Result<()> {
        let limit = self.grid.stop_after_failures();
        let first_line = |e: &JobEntry| {
            let error = e.result.as_ref()?.error.as_deref()?;
            error.lines().next().map(str::to_string)
        };
        let (spec, Some(error)) = (&self.jobs[i].job.spec, first_line(&self.jobs[i])) else {
            return Ok(());
        };
        let (dataset, model) = (spec.dataset, spec.model);
        let in_group = |e: &&JobEntry| e.job.spec.dataset == dataset && e.job.spec.model == model;
        let mut alike = 0;
        let mut unstarted = Vec::new();
        for (j, e) in self.jobs.iter().enumerate().filter(|(_, e)| in_group(e)) {
            match e.status {
                JobStatus::Succeeded | JobStatus::Diverged => return Ok(()),
                JobStatus::Failed if first_line(e).as_deref() == Some(error.as_str()) => alike += 1,
                JobStatus::Pending if e.attempts == 0 => unstarted.push(j),
                _ => {}
            }
        }
        if limit == 0 || alike < limit || unstarted.is_empty() {
            return Ok(());
        }
        tracing::warn!(
            %dataset, %model, failed = alike, not_run = unstarted.len(), error = %error,
            "stopping this dataset/model: its jobs keep failing with the same error \
             (grid.yaml stop_after_failures); fix it and run the same command"
        );
        let why = format!(
            "not run: {alike} jobs of {dataset} / {model} failed with the same error first: {error}"
        );
        let at = timestamp();
        let changes = unstarted
            .into_iter()
            .map(|j| self.jobs[j].skip(why.clone(), at.clone()))
            .collect();
        self.commit(changes, now)
    }
}
