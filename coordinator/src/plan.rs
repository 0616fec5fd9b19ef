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
    for job in grid.iter_jobs() {
        let (d, m) = (job.spec.dataset, job.spec.model);
        let g = groups.entry((order(d, m), d, m)).or_default();
        g.jobs += 1;
        let status = stored.get(job.id.as_str()).map(|r| r.status);
        if would_run(status, rerun) {
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
    let done_text: Vec<String> = done.iter().map(|(s, n)| format!("{n} {s}")).collect();
    let mut out = format!(
        "{total} jobs: {to_run} to run, {} already done{}\n\n",
        total - to_run,
        if done_text.is_empty() {
            String::new()
        } else {
            format!(" ({})", done_text.join(", "))
        }
    );
    let (job_seconds, unknown) = table(&mut out, &groups);
    summary(&mut out, grid, job_seconds, unknown, slots);
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
}
