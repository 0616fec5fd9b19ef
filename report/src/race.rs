//! Seed races: run `min` seeds of every activation, then look at the data in rounds, giving one
//! more seed only to the activations whose comparison with the best is still open, until every
//! comparison is decided or `max` seeds are reached.
//!
//! The race is a pure function of the runs' results ([`replay`]): the coordinator replays it
//! to know which seeds to run next, and the report replays it to say what it decided, so the
//! two cannot disagree and nothing about the race has to be stored.
//!
//! Looking at the data between rounds and stopping on a significant result would, with the
//! fixed-sample test repeated, call equal activations different far more often than α. Each
//! look here spends α/K of the error rate, K = max − min + 1 being the most looks a race can
//! take (the Bonferroni alpha-spending boundary): within a look, the family is every pair of
//! the table's activations, Holm-adjusted (see [`crate::significance`]); over the looks, the
//! union bound keeps the chance of any false "worse" or "equivalent" at or below α, whatever
//! the dependence between looks, the unequal variances and the unequal seed counts that
//! dropping activations makes. Group-sequential boundaries such as Pocock's or O'Brien–
//! Fleming's spend less at early looks but assume the joint normal distribution of the looks'
//! statistics with known variance and equal groups, which Welch's tests on 3 to 10 seeds with
//! activations dropped along the way do not give; the simulations in this module's tests
//! measure what the simpler boundary costs in power and seeds.

use common::{Grid, JobStatus, SeedRace};
use serde::Serialize;

use crate::results::Results;
use crate::significance::vs_best;
use crate::table::ALPHA;

/// One seed of one activation, as the race sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Run {
    /// Not finished (or not started).
    Waiting,
    /// Finished: its error rate, or None when it ended without one (failed, diverged,
    /// cancelled).
    Done(Option<f64>),
}

/// Where an activation stands in the race.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Standing {
    /// The lowest mean error rate at the last look.
    Best,
    /// Shown worse than the best: no more seeds.
    Worse,
    /// Shown equivalent to the best within the grid's margin: no more seeds.
    Equivalent,
    /// Neither, yet (or ever, where the race reached `max`).
    Open,
}

/// One activation's race.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entrant {
    pub standing: Standing,
    /// Seeds given to it so far (the first `seeds` seeds of the grid).
    pub seeds: u32,
    /// The look (1 = after `min` seeds) at which it was decided worse or equivalent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_at_look: Option<u32>,
}

/// A table's race, replayed from its runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Race {
    pub entrants: Vec<Entrant>,
    /// Looks taken so far.
    pub looks: u32,
    /// The most looks it may take (max − min + 1): each spends α / this.
    pub max_looks: u32,
    /// Whether it is over: every comparison decided, or no seed left to give.
    pub finished: bool,
}

impl Race {
    /// Seeds run (or to run) in all: the released ones.
    pub fn seeds_released(&self) -> u32 {
        self.entrants.iter().map(|e| e.seeds).sum()
    }
}

/// The mean of `v`; None when empty.
fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// The values of the seeds given so far, by activation; None while any of them is running.
fn given(runs: &[Vec<Run>], entrants: &[Entrant]) -> Option<Vec<Vec<f64>>> {
    runs.iter()
        .zip(entrants)
        .map(|(r, e)| {
            let mine = r.iter().take(e.seeds as usize);
            mine.map(|run| match run {
                Run::Waiting => None,
                Run::Done(v) => Some(*v),
            })
            .collect::<Option<Vec<Option<f64>>>>()
            .map(|v| v.into_iter().flatten().collect())
        })
        .collect()
}

/// One look at `values`: decides the open comparisons it can (sticky), marks the best, and
/// returns the best and the activations still open.
fn look(
    entrants: &mut [Entrant],
    values: &[Vec<f64>],
    look: u32,
    max_looks: u32,
    margin: Option<f64>,
) -> (Option<usize>, Vec<usize>) {
    let best = (0..values.len())
        .filter_map(|a| mean(&values[a]).map(|m| (a, m)))
        .min_by(|x, y| x.1.total_cmp(&y.1))
        .map(|(a, _)| a);
    let samples: Vec<Option<&[f64]>> = values.iter().map(|v| Some(&v[..])).collect();
    let found = best.map_or_else(Vec::new, |b| vs_best(&samples, b, max_looks, margin));
    for (a, e) in entrants.iter_mut().enumerate() {
        if e.standing == Standing::Best {
            e.standing = Standing::Open;
        }
        if Some(a) == best || e.standing != Standing::Open {
            continue;
        }
        let Some(Some(v)) = found.get(a) else {
            continue;
        };
        if v.p_adjusted < ALPHA {
            e.standing = Standing::Worse;
        } else if v.equivalent_p.is_some_and(|p| p < ALPHA) {
            e.standing = Standing::Equivalent;
        } else {
            continue;
        }
        e.decided_at_look = Some(look);
    }
    if let Some(b) = best {
        if entrants[b].decided_at_look.is_none() {
            entrants[b].standing = Standing::Best;
        }
    }
    let open = (0..entrants.len())
        .filter(|&a| Some(a) != best && entrants[a].standing == Standing::Open)
        .collect();
    (best, open)
}

/// Replays the race of one table: `runs[a][s]` is seed `s` of activation `a` (at least
/// `race.max` of them each); `margin` is the equivalence margin in the values' units.
pub fn replay(runs: &[Vec<Run>], race: SeedRace, margin: Option<f64>) -> Race {
    let max_looks = race.looks();
    let mut entrants: Vec<Entrant> = (0..runs.len())
        .map(|_| Entrant {
            standing: Standing::Open,
            seeds: race.min,
            decided_at_look: None,
        })
        .collect();
    let mut looks = 0;
    loop {
        let Some(values) = given(runs, &entrants) else {
            return Race {
                entrants,
                looks,
                max_looks,
                finished: false,
            };
        };
        looks += 1;
        let (best, open) = look(&mut entrants, &values, looks, max_looks, margin);
        // One more seed for each open comparison's two sides, while looks and seeds remain.
        let mut grew = false;
        if !open.is_empty() && looks < max_looks {
            for a in open.iter().copied().chain(best) {
                if entrants[a].seeds < race.max {
                    entrants[a].seeds += 1;
                    grew = true;
                }
            }
        }
        if !grew {
            return Race {
                entrants,
                looks,
                max_looks,
                finished: true,
            };
        }
    }
}

/// The runs of one table of `grid` (`dataset` × `model` entry `entry`), by activation and
/// seed, from `status_of(activation, seed)`.
pub fn runs_of(grid: &Grid, mut status_of: impl FnMut(usize, u64) -> Run) -> Vec<Vec<Run>> {
    (0..grid.activations().len())
        .map(|a| grid.seeds().iter().map(|&s| status_of(a, s)).collect())
        .collect()
}

/// A finished job's run as the race sees it.
pub fn run_of(status: JobStatus, error_rate: Option<f64>) -> Run {
    match status {
        JobStatus::Pending | JobStatus::Running => Run::Waiting,
        JobStatus::Succeeded => Run::Done(error_rate),
        JobStatus::Failed | JobStatus::Diverged | JobStatus::Cancelled => Run::Done(None),
    }
}

/// The race of each table of `results`, in grid order (empty when the seeds are not raced).
pub fn races(results: &Results) -> Vec<Race> {
    let Some(race) = results.grid.race() else {
        return Vec::new();
    };
    let margin = results.grid.equivalence_margin().map(|m| m / 100.0);
    results
        .grid
        .datasets()
        .iter()
        .map(|entry| {
            let mut by: std::collections::HashMap<(usize, u64), Run> = Default::default();
            for j in &results.jobs {
                if j.dataset != entry.dataset || j.model != entry.model {
                    continue;
                }
                let acts = results.grid.activations();
                if let Some(a) = acts.iter().position(|x| *x == j.activation) {
                    by.insert((a, j.seed), run_of(j.status, j.error_rate));
                }
            }
            let runs = runs_of(&results.grid, |a, s| {
                by.get(&(a, s)).copied().unwrap_or(Run::Waiting)
            });
            replay(&runs, race, margin)
        })
        .collect()
}

/// The jobs of `results` a seed race has not given (pending beyond their activation's seeds,
/// by `races`, its [`table_races`]): how many, and in words ("31 not needed (the seed race
/// decided without them)" once every race is over, "… held by the seed race" before); None
/// when there are none.
pub fn held(results: &Results, races: &[TableRace]) -> Option<(usize, String)> {
    let given = |j: &&common::JobRecord| {
        let race = races
            .iter()
            .find(|r| r.dataset == j.dataset && r.model == j.model)?;
        let e = race
            .entrants
            .iter()
            .find(|e| e.activation == j.activation.to_string())?;
        Some(u64::from(e.entrant.seeds))
    };
    let n = results
        .jobs
        .iter()
        .filter(|j| j.status == JobStatus::Pending)
        .filter(|j| given(j).is_some_and(|seeds| j.seed >= seeds))
        .count();
    let text = if races.iter().all(|r| r.finished) {
        format!("{n} not needed (the seed race decided without them)")
    } else {
        format!("{n} held by the seed race")
    };
    (n > 0).then_some((n, text))
}

/// A table's race as `results.json` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct TableRace {
    pub dataset: common::Dataset,
    pub model: common::Model,
    pub min: u32,
    pub max: u32,
    pub looks: u32,
    pub max_looks: u32,
    pub finished: bool,
    /// Seeds given in all, and the seeds `max` for every activation would have run.
    pub jobs_run: u32,
    pub jobs_saved: u32,
    pub entrants: Vec<NamedEntrant>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NamedEntrant {
    pub activation: String,
    #[serde(flatten)]
    pub entrant: Entrant,
}

/// Every table's race, named, for `results.json` and the report.
pub fn table_races(results: &Results) -> Vec<TableRace> {
    let Some(seeds) = results.grid.race() else {
        return Vec::new();
    };
    let acts = results.grid.activations();
    results
        .grid
        .datasets()
        .iter()
        .zip(races(results))
        .map(|(entry, r)| {
            let run = r.seeds_released();
            TableRace {
                dataset: entry.dataset,
                model: entry.model,
                min: seeds.min,
                max: seeds.max,
                looks: r.looks,
                max_looks: r.max_looks,
                finished: r.finished,
                jobs_run: run,
                jobs_saved: (seeds.max * acts.len() as u32).saturating_sub(run),
                entrants: acts
                    .iter()
                    .zip(r.entrants)
                    .map(|(a, entrant)| NamedEntrant {
                        activation: a.to_string(),
                        entrant,
                    })
                    .collect(),
            }
        })
        .collect()
}

impl TableRace {
    /// What the race decided, in words, for the report.
    pub fn text(&self) -> String {
        let names = |st: Standing| -> Vec<String> {
            self.entrants
                .iter()
                .filter(|e| e.entrant.standing == st)
                .map(|e| match e.entrant.decided_at_look {
                    Some(l) => format!("{} (look {l}, {} seeds)", e.activation, e.entrant.seeds),
                    None => format!("{} ({} seeds)", e.activation, e.entrant.seeds),
                })
                .collect()
        };
        let mut parts = Vec::new();
        for (st, what) in [
            (Standing::Best, "lowest error rate"),
            (Standing::Worse, "worse than the best, no more seeds"),
            (
                Standing::Equivalent,
                "equivalent to the best, no more seeds",
            ),
            (
                Standing::Open,
                if self.finished {
                    "still open at the end"
                } else {
                    "open"
                },
            ),
        ] {
            let n = names(st);
            if !n.is_empty() {
                parts.push(format!("{what}: {}", n.join(", ")));
            }
        }
        let mut parts = parts.join("; ");
        if let Some(first) = parts.get(..1) {
            parts = first.to_uppercase() + &parts[1..];
        }
        let state = if self.finished {
            format!("decided after {} look(s)", self.looks)
        } else {
            format!("in progress, {} look(s) so far", self.looks)
        };
        format!(
            "Seed race ({} to {} seeds; each of at most {} looks spends α/{}, so the whole race keeps α = {ALPHA}): {state}. {}. It ran {} of {} jobs: {} saved against {} seeds of every activation.",
            self.min,
            self.max,
            self.max_looks,
            self.max_looks,
            parts,
            self.jobs_run,
            self.jobs_run + self.jobs_saved,
            self.jobs_saved,
            self.max
        )
    }
}

#[cfg(test)]
#[path = "race_tests.rs"]
mod tests;
