//! `coordinator plan`: what a run of a grid would do, before running it: the jobs it would run,
//! those its state already holds, and the time and cost to expect, estimated from the jobs of
//! the same dataset × model that the state saw finish.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use common::{Dataset, Grid, JobRecord, JobStatus, Model};
use report::format::fmt_hms;

/// What is known about one dataset × model.
#[derive(Default)]
struct Group {
    jobs: usize,
    /// Jobs to run, their epochs in all, and the epochs of the first.
    to_run: usize,
    epochs_to_run: u64,
    first_epochs: Option<u32>,
    /// Seconds per epoch (wall clock, evaluation included) of finished runs.
    per_epoch: Vec<f64>,
    /// Seeds a seed race may still add (run only where comparisons stay open), and their
    /// epochs in all.
    may_add: usize,
    epochs_may_add: u64,
}

/// Where a seed race stands on each table: the seeds it gave each activation (in grid order)
/// and whether it is over, replayed from the stored results.
fn races(grid: &Grid, stored: &HashMap<&str, &JobRecord>) -> Vec<(Vec<u32>, bool)> {
    use report::race::{replay, run_of, runs_of, Run};
    let Some(race) = grid.race() else {
        return Vec::new();
    };
    let margin = grid.equivalence_margin().map(|m| m / 100.0);
    let jobs = grid.jobs();
    let per_table = grid.activations().len() * grid.seeds().len();
    (0..grid.datasets().len())
        .map(|t| {
            let runs = runs_of(grid, |a, s| {
                let job = &jobs[t * per_table + a * grid.seeds().len() + s as usize];
                stored
                    .get(job.id.as_str())
                    .map_or(Run::Waiting, |r| run_of(r.status, r.error_rate))
            });
            let r = replay(&runs, race, margin);
            (r.entrants.iter().map(|e| e.seeds).collect(), r.finished)
        })
        .collect()
}

/// The ids listed under "To run".
const LISTED: usize = 20;

/// Seconds per epoch of a finished run: its wall clock where recorded, else its training time.
fn seconds_per_epoch(r: &JobRecord) -> Option<f64> {
    let epochs = r.epochs.len();
    if r.status != JobStatus::Succeeded || epochs == 0 {
        return None;
    }
    let wall = r.clock.and_then(|c| {
        let start = c.run_start_ms?;
        (c.run_stop_ms > start).then(|| (c.run_stop_ms - start) as f64 / 1000.0)
    });
    Some(wall.unwrap_or(r.total_train_seconds) / epochs as f64)
}

/// Whether a job in this status would run again: never started, interrupted, or failed (a run
/// gives failed jobs another go); all of them with `--rerun`.
fn would_run(status: Option<JobStatus>, rerun: bool) -> bool {
    match status {
        _ if rerun => true,
        None => true,
        Some(s) => matches!(
            s,
            JobStatus::Pending | JobStatus::Running | JobStatus::Failed
        ),
    }
}

/// The plan as text: `records` are the state's jobs (none without a state), `slots` the job
/// slots of the workers the state has seen (0: none yet).
pub fn render(grid: &Grid, records: &[JobRecord], slots: u32, rerun: bool) -> String {
    let stored: HashMap<&str, &JobRecord> = records.iter().map(|r| (r.id.as_str(), r)).collect();
    let mut groups: BTreeMap<(usize, Dataset, Model), Group> = BTreeMap::new();
    let order = |d: Dataset, m: Model| {
        grid.datasets()
            .iter()
            .position(|e| e.dataset == d && e.model == m)
            .unwrap_or(usize::MAX)
    };
    let mut done: BTreeMap<&'static str, usize> = BTreeMap::new();
    // One job at a time: a grid of a million seeds is never held whole.
    let mut listed = Vec::new();
    let races = if rerun {
        Vec::new()
    } else {
        races(grid, &stored)
    };
    let (mut not_needed, per_table) = (0, grid.activations().len() * grid.seeds().len());
    for (i, job) in grid.iter_jobs().enumerate() {
        let (d, m) = (job.spec.dataset, job.spec.model);
        let g = groups.entry((order(d, m), d, m)).or_default();
        g.jobs += 1;
        let status = stored.get(job.id.as_str()).map(|r| r.status);
        let (t, a) = (
            i / per_table.max(1),
            (i % per_table.max(1)) / grid.seeds().len(),
        );
        let race = races
            .get(t)
            .map(|(seeds, over)| (job.spec.seed >= u64::from(seeds[a]), *over));
        if let (Some((true, over)), true) = (race, would_run(status, rerun)) {
            if over {
                not_needed += 1;
            } else {
                g.may_add += 1;
                g.epochs_may_add += u64::from(job.spec.epochs);
            }
        } else if would_run(status, rerun) {
            g.to_run += 1;
            g.epochs_to_run += u64::from(job.spec.epochs);
            g.first_epochs.get_or_insert(job.spec.epochs);
            if listed.len() < LISTED {
                listed.push(job.id.to_string());
            }
        } else if let Some(s) = status {
            *done.entry(s.as_str()).or_default() += 1;
        }
    }
    for r in records {
        if let Some(g) = groups.get_mut(&(order(r.dataset, r.model), r.dataset, r.model)) {
            g.per_epoch.extend(seconds_per_epoch(r));
        }
    }
    let total: usize = groups.values().map(|g| g.jobs).sum();
    let to_run: usize = groups.values().map(|g| g.to_run).sum();
    let may_add: usize = groups.values().map(|g| g.may_add).sum();
    let done_text: Vec<String> = done.iter().map(|(s, n)| format!("{n} {s}")).collect();
    let raced = match (grid.race(), may_add, not_needed) {
        (None, ..) => String::new(),
        (Some(r), 0, n) => format!(", {n} not needed (the seed race of {} to {} seeds decided)", r.min, r.max),
        (Some(r), n, _) => format!(
            ", and up to {n} more that the seed race ({} to {} seeds) runs only for comparisons still open",
            r.min, r.max
        ),
    };
    let mut out = format!(
        "{total} jobs: {to_run} to run, {} already done{}{raced}\n\n",
        total - to_run - may_add - not_needed,
        if done_text.is_empty() {
            String::new()
        } else {
            format!(" ({})", done_text.join(", "))
        }
    );
    let (job_seconds, unknown) = table(&mut out, &groups);
    summary(&mut out, grid, job_seconds, unknown, slots);
    race_cost(&mut out, grid, &groups);
    list(&mut out, &listed, to_run);
    out
}

/// One line per dataset × model; returns the estimated job-seconds and how many jobs to run
/// have no estimate.
fn table(out: &mut String, groups: &BTreeMap<(usize, Dataset, Model), Group>) -> (f64, usize) {
    let _ = writeln!(
        out,
        "{:<26} {:>6} {:>7} {:>7}  EST. PER JOB",
        "DATASET / MODEL", "JOBS", "TO RUN", "EPOCHS"
    );
    let (mut job_seconds, mut unknown) = (0.0, 0);
    for ((_, d, m), g) in groups {
        let epochs = g.first_epochs.unwrap_or(0);
        let estimate = if g.per_epoch.is_empty() {
            unknown += g.to_run;
            "unknown: nothing of this dataset/model finished in this state yet".to_string()
        } else {
            let per_epoch = g.per_epoch.iter().sum::<f64>() / g.per_epoch.len() as f64;
            job_seconds += per_epoch * g.epochs_to_run as f64;
            let shown = per_epoch * epochs as f64;
            format!(
                "{} (from {} finished job(s))",
                fmt_hms(shown),
                g.per_epoch.len()
            )
        };
        let name = format!("{d} / {m}");
        let _ = writeln!(
            out,
            "{name:<26} {:>6} {:>7} {:>7}  {estimate}",
            g.jobs, g.to_run, epochs
        );
    }
    (job_seconds, unknown)
}

fn summary(out: &mut String, grid: &Grid, job_seconds: f64, unknown: usize, slots: u32) {
    out.push('\n');
    if job_seconds > 0.0 {
        let _ = write!(out, "Estimated {} of job time", fmt_hms(job_seconds));
        if slots > 0 {
            let wall = job_seconds / slots as f64;
            let _ = write!(
                out,
                "; on the {slots} worker slot(s) this state has seen, about {} of wall time",
                fmt_hms(wall)
            );
        }
        if grid.cost_per_hour() > 0.0 {
            let cost = job_seconds / 3600.0 * grid.cost_per_hour();
            let _ = write!(
                out,
                "; cost ${cost:.2} at ${}/worker-hour",
                grid.cost_per_hour()
            );
        }
        out.push_str(".\n");
    }
    if unknown > 0 {
        let _ = writeln!(
            out,
            "{unknown} job(s) to run have no estimate yet (a first run of their dataset/model gives one)."
        );
    }
}

/// What the seeds a race may add would cost at most, where an estimate exists.
fn race_cost(out: &mut String, grid: &Grid, groups: &BTreeMap<(usize, Dataset, Model), Group>) {
    let may_add: usize = groups.values().map(|g| g.may_add).sum();
    if may_add == 0 {
        return;
    }
    let seconds: f64 = groups
        .values()
        .filter(|g| !g.per_epoch.is_empty())
        .map(|g| {
            g.per_epoch.iter().sum::<f64>() / g.per_epoch.len() as f64 * g.epochs_may_add as f64
        })
        .sum();
    let _ = write!(out, "The seed race may add up to {may_add} job(s)");
    if seconds > 0.0 {
        let _ = write!(out, ": at most {} more job time", fmt_hms(seconds));
        if grid.cost_per_hour() > 0.0 {
            let _ = write!(out, ", ${:.2}", seconds / 3600.0 * grid.cost_per_hour());
        }
    }
    out.push_str(", fewer as comparisons are decided.\n");
}

/// The ids of the jobs to run (the first [`LISTED`] of `to_run`).
fn list(out: &mut String, listed: &[String], to_run: usize) {
    if to_run == 0 {
        out.push_str(
            "\nNothing to run: every job of the grid is done (--rerun runs them all again).\n",
        );
        return;
    }
    out.push_str("\nTo run:\n");
    for id in listed {
        let _ = writeln!(out, "  {id}");
    }
    if to_run > listed.len() {
        let _ = writeln!(out, "  … and {} more", to_run - listed.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::{EpochMetrics, Job, RunClock, RunFacts};

    const GRID: &str = "name: p\nactivations: [relu, tanh]\nseeds: [0, 1]\ncost_per_hour: 3.6\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 2, target_accuracy: 0.9}\n  - {dataset: cifar10, model: vgg11-bn, epochs: 1, target_accuracy: 0.9}\n";

    fn finished(job: &Job, status: JobStatus, seconds: u64) -> JobRecord {
        let epoch = |n: u32| EpochMetrics {
            epoch: n,
            train_seconds: n as f64,
            train_loss: 1.0,
            test_loss: 1.0,
            test_accuracy: 0.9,
            clock: None,
            host: None,
        };
        let facts = RunFacts {
            epochs: (1..=job.spec.epochs).map(epoch).collect(),
            clock: Some(RunClock {
                init_start_ms: 0,
                run_start_ms: Some(1000),
                run_stop_ms: 1000 + seconds * 1000,
            }),
            ..RunFacts::default()
        };
        JobRecord::new(job, status, facts)
    }

    #[test]
    fn counts_what_runs_and_estimates_from_finished_jobs() {
        let grid = Grid::parse(GRID, std::path::Path::new("g.yaml")).unwrap();
        let jobs = grid.jobs();
        // Two mnist jobs done (100 s each for 2 epochs), one cancelled, one failed.
        let records = vec![
            finished(&jobs[0], JobStatus::Succeeded, 100),
            finished(&jobs[1], JobStatus::Succeeded, 100),
            finished(&jobs[2], JobStatus::Cancelled, 0),
            finished(&jobs[3], JobStatus::Failed, 0),
        ];
        let text = render(&grid, &records, 2, false);
        assert!(
            text.starts_with("8 jobs: 5 to run, 3 already done (1 cancelled, 2 succeeded)"),
            "{text}"
        );
        assert!(text.contains("mnist / paper-cnn"), "{text}");
        // The failed mnist job runs again: one job of 2 epochs at 50 s each.
        assert!(
            text.contains("0:01:40.0 (from 2 finished job(s))"),
            "{text}"
        );
        assert!(
            text.contains("4 job(s) to run have no estimate yet"),
            "{text}"
        );
        assert!(text.contains("Estimated 0:01:40.0 of job time"), "{text}");
        assert!(text.contains("about 0:00:50.0 of wall time"), "{text}");
        assert!(text.contains("cost $0.10 at $3.6/worker-hour"), "{text}");
        assert!(text.contains(jobs[3].id.as_str()), "{text}");
        assert!(!text.contains(jobs[0].id.as_str()), "{text}");
        let all = render(&grid, &records, 0, true);
        assert!(all.starts_with("8 jobs: 8 to run, 0 already done"), "{all}");
        let none = render(&grid, &[], 0, false);
        assert!(none.starts_with("8 jobs: 8 to run"), "{none}");
    }

    /// A raced grid: the first seeds to run, and what the race may add and cost; once its
    /// results decide the race, the rest are not needed.
    #[test]
    fn a_seed_race_shows_what_it_may_add_and_what_it_did_not_need() {
        let text = GRID.replace("seeds: [0, 1]", "seeds: {min: 2, max: 5}");
        let grid = Grid::parse(&text, std::path::Path::new("g.yaml")).unwrap();
        let jobs = grid.jobs();
        let plan = render(&grid, &[], 0, false);
        assert!(
            plan.starts_with("20 jobs: 8 to run, 0 already done, and up to 12 more that the seed race (2 to 5 seeds) runs only for comparisons still open"),
            "{plan}"
        );
        // mnist's first round done, alike (no spread, so nothing decided): the race gives
        // both activations a third seed, and may add 4 more mnist and 6 cifar10 seeds.
        let records: Vec<JobRecord> = [0, 1, 5, 6]
            .iter()
            .map(|&i| finished(&jobs[i], JobStatus::Succeeded, 100))
            .collect();
        let plan = render(&grid, &records, 0, false);
        assert!(
            plan.starts_with("20 jobs: 6 to run, 4 already done (4 succeeded), and up to 10 more"),
            "{plan}"
        );
        assert!(
            plan.contains(
                "The seed race may add up to 10 job(s): at most 0:06:40.0 more job time, $0.40"
            ),
            "{plan}"
        );
    }
}
