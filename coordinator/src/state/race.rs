//! Seed races (grid.yaml `seeds: {min, max}`): the grid's jobs hold every seed up to `max`,
//! and the race decides which of them run. It is replayed from the jobs' results
//! ([`report::race::replay`]) whenever a job of a table finishes, so nothing about it is
//! stored: a pending seed the race has not given is held (not queued, counted apart), and is
//! queued as soon as a round leaves its activation's comparison open. When the race of every
//! table is over, the seeds still held are not needed and the grid is finished.

use report::race::{replay, run_of, Race, Run};

use super::State;
use crate::jobs::JobEntry;

/// A job's run as the race sees it: its status and, when it succeeded, its error rate.
fn run(e: &JobEntry) -> Run {
    let error = e.epochs().last().map(|m| 1.0 - m.test_accuracy);
    run_of(e.status, error)
}

impl State {
    /// Jobs a table of the grid spans: activations × seeds (jobs are in grid order, datasets ×
    /// activations × seeds).
    fn table_len(&self) -> usize {
        self.grid.activations().len() * self.grid.seeds().len()
    }

    /// Replays the race of every table (at load).
    pub(super) fn race_all(&mut self) {
        let tables: Vec<usize> = (0..self.grid.datasets().len()).collect();
        self.race_tables(&tables);
    }

    /// Replays the races of the tables of `jobs` (indexes whose status just changed).
    pub(super) fn race_tables_of(&mut self, jobs: &[usize]) {
        if self.grid.race().is_none() || jobs.is_empty() {
            return;
        }
        let len = self.table_len().max(1);
        let mut tables: Vec<usize> = jobs.iter().map(|i| i / len).collect();
        tables.sort_unstable();
        tables.dedup();
        self.race_tables(&tables);
    }

    fn race_tables(&mut self, tables: &[usize]) {
        for &t in tables {
            if let Some(race) = self.race_of(t) {
                self.hold_beyond(t, &race);
            }
        }
    }

    /// The race of table `t`, replayed from its jobs; None when the seeds are not raced.
    pub fn race_of(&self, t: usize) -> Option<Race> {
        let race = self.grid.race()?;
        let seeds = self.grid.seeds().len();
        let base = t * self.table_len();
        let runs: Vec<Vec<Run>> = (0..self.grid.activations().len())
            .map(|a| {
                let first = base + a * seeds;
                self.jobs
                    .get(first..first + seeds)
                    .map_or_else(Vec::new, |js| js.iter().map(run).collect())
            })
            .collect();
        let margin = self.grid.equivalence_margin().map(|m| m / 100.0);
        Some(replay(&runs, race, margin))
    }

    /// Holds the seeds of table `t` the race has not given; queues those it has.
    fn hold_beyond(&mut self, t: usize, race: &Race) {
        let seeds = self.grid.seeds().len();
        let base = t * self.table_len();
        for (a, entrant) in race.entrants.iter().enumerate() {
            for s in 0..seeds {
                let i = base + a * seeds + s;
                if i < self.jobs.len() {
                    self.set_held(i, s as u32 >= entrant.seeds);
                }
            }
        }
    }

    fn set_held(&mut self, i: usize, held: bool) {
        let e = &mut self.jobs[i];
        if e.held == held {
            return;
        }
        let status = e.status;
        self.counts.add(status, e.held, -1);
        e.held = held;
        self.counts.add(status, held, 1);
        self.requeue(i);
    }
}
