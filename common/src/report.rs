//! Output files from job records: `results.json`, `results.csv`, `report.md`, `dawnbench/`.
//!
//! Everything here is a pure function of [`Results`], so `coordinator report` can re-render
//! every file from saved state alone.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::grid::Grid;
use crate::job::{JobRecord, JobStatus};
use crate::names::{Dataset, Model};

/// A worker that ran jobs, as recorded in `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerEnv {
    pub id: String,
    pub name: String,
    pub hostname: String,
    pub device: String,
    pub device_name: String,
    pub libtorch_version: String,
    pub slots: u32,
    /// Device memory (GPU memory on CUDA, RAM on CPU), MiB.
    #[serde(default)]
    pub memory_mb: u64,
}

/// Where and when the grid ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    pub coordinator_version: String,
    pub coordinator_host: String,
    pub grid_file: String,
    pub grid_sha256: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub finished_at: Option<String>,
    pub workers: Vec<WorkerEnv>,
}

/// The content of `results.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub grid: Grid,
    pub environment: Environment,
    pub jobs: Vec<JobRecord>,
}

/// How many attempts a job took, and why the extra ones happened: a lost worker
/// (infrastructure, retried automatically) or a failure in training (retried per `retries`).
pub fn attempts_text(j: &JobRecord) -> String {
    let mut why = Vec::new();
    if j.lost_attempts > 0 {
        why.push(format!("{} lost worker", j.lost_attempts));
    }
    if j.failed_attempts > 0 {
        why.push(format!("{} failed and retried", j.failed_attempts));
    }
    if why.is_empty() {
        j.attempts.to_string()
    } else {
        format!("{} ({})", j.attempts, why.join(", "))
    }
}

impl Results {
    /// Jobs that failed or diverged, for the reports' list of problems.
    pub fn problem_jobs(&self) -> Vec<&JobRecord> {
        self.jobs
            .iter()
            .filter(|j| matches!(j.status, JobStatus::Failed | JobStatus::Diverged))
            .collect()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("results contain only serializable data")
    }

    /// `results.csv`: one row per job with the summary fields.
    pub fn to_csv(&self) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        let header = [
            "id",
            "dataset",
            "model",
            "activation",
            "seed",
            "status",
            "attempts",
            "worker",
            "device",
            "param_count",
            "epochs",
            "total_train_seconds",
            "first_epoch_at_target",
            "seconds_to_target",
            "final_test_accuracy",
            "error_rate",
            "latency_ms_per_sample",
            "error",
        ];
        // Writing to a Vec cannot fail.
        let _ = w.write_record(header);
        for j in &self.jobs {
            let opt = |x: Option<f64>| x.map(|v| v.to_string()).unwrap_or_default();
            let _ = w.write_record([
                j.id.to_string(),
                j.dataset.to_string(),
                j.model.to_string(),
                j.activation.to_string(),
                j.seed.to_string(),
                j.status.to_string(),
                j.attempts.to_string(),
                j.worker.clone().unwrap_or_default(),
                j.device.clone().unwrap_or_default(),
                j.param_count.map(|p| p.to_string()).unwrap_or_default(),
                j.epochs.len().to_string(),
                j.total_train_seconds.to_string(),
                j.first_epoch_at_target
                    .map(|e| e.to_string())
                    .unwrap_or_default(),
                opt(j.seconds_to_target),
                opt(j.final_test_accuracy),
                opt(j.error_rate),
                opt(j.latency_ms_per_sample),
                j.error.clone().unwrap_or_default(),
            ]);
        }
        String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
    }

    /// `report.md`: the paper's Table 3/4 columns, one table per dataset × model.
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# {} — DAWNBench-style report\n", self.grid.name);
        let counts = status_counts(&self.jobs);
        let _ = writeln!(
            md,
            "{} jobs: {} succeeded, {} failed, {} diverged, {} not finished.\n",
            self.jobs.len(),
            counts[0],
            counts[1],
            counts[2],
            counts[3]
        );
        for table in tables(self) {
            let _ = writeln!(
                md,
                "## {} / {} — target test accuracy {:.2}%\n",
                table.dataset,
                table.model,
                100.0 * table.target
            );
            let headers = table.headers();
            let _ = writeln!(md, "| {} |", headers.join(" | "));
            let _ = writeln!(md, "|{}", "---|".repeat(headers.len()));
            for row in &table.rows {
                let mut cells = vec![
                    row.activation.clone(),
                    row.n.to_string(),
                    row.total.render(&table.best.total, fmt_hms),
                    row.latency
                        .render(&table.best.latency, |v| format!("{v:.3}")),
                    row.first_epoch
                        .render(&table.best.first_epoch, |v| format!("{v:.1}")),
                    row.to_target.render(&table.best.to_target, fmt_hms),
                    row.error
                        .render(&table.best.error, |v| format!("{:.2}%", 100.0 * v)),
                ];
                if table.cost_per_hour > 0.0 {
                    // Cost is proportional to time: same best and same significance.
                    let usd = |v: f64| format!("{:.4}", table.cost(v));
                    cells.push(row.total.render(&table.best.total, usd));
                    cells.push(row.to_target.render(&table.best.to_target, usd));
                }
                let _ = writeln!(md, "| {} |", cells.join(" | "));
            }
            let _ = writeln!(
                md,
                "\nBest value of each column in **bold**; \\* significantly worse than the best \
                 (Welch's t-test, p < {ALPHA}); N/A: the target was never reached. With several \
                 seeds: mean ± standard deviation over the runs that reached it.\n"
            );
            for line in summary(&table) {
                let _ = writeln!(md, "- {line}");
            }
            md.push('\n');
        }
        let problems = self.problem_jobs();
        if !problems.is_empty() {
            let _ = writeln!(md, "## Failed and diverged jobs\n");
            let _ = writeln!(md, "| Job | Status | Attempts | Error |\n|---|---|---|---|");
            for j in problems {
                let err = j
                    .error
                    .as_deref()
                    .unwrap_or("")
                    .replace('|', "\\|")
                    .replace('\n', " ");
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} |",
                    j.id,
                    j.status,
                    attempts_text(j),
                    err
                );
            }
            md.push('\n');
        }
        let env = &self.environment;
        let _ = writeln!(md, "## Environment\n");
        let _ = writeln!(
            md,
            "- Grid file: `{}` (SHA-256 `{}`)\n- Started: {}; finished: {}\n- Coordinator: {} on {}",
            env.grid_file,
            env.grid_sha256,
            env.started_at,
            env.finished_at.as_deref().unwrap_or("(still running)"),
            env.coordinator_version,
            env.coordinator_host
        );
        for w in &env.workers {
            let _ = writeln!(
                md,
                "- Worker `{}` on {}: {} ({}), libtorch {}, {} slot(s)",
                w.name, w.hostname, w.device, w.device_name, w.libtorch_version, w.slots
            );
        }
        md
    }
}

fn status_counts(jobs: &[JobRecord]) -> [usize; 4] {
    let mut c = [0; 4];
    for j in jobs {
        let i = match j.status {
            JobStatus::Succeeded => 0,
            JobStatus::Failed => 1,
            JobStatus::Diverged => 2,
            _ => 3,
        };
        c[i] += 1;
    }
    c
}

/// `h:mm:ss` (seconds rounded), as in the paper's tables.
pub fn fmt_hms(seconds: f64) -> String {
    // Tenths of a second too: short runs would otherwise all read 0:00:00.
    let tenths = (seconds * 10.0).round() as u64;
    let s = tenths / 10;
    format!(
        "{}:{:02}:{:02}.{}",
        s / 3600,
        (s / 60) % 60,
        s % 60,
        tenths % 10
    )
}

/// The index of the row with the lowest mean in a column. Rows where every run has a value
/// come first: a time to target reached by one seed of three must not beat one reached by all.
fn best_index(rows: &[Row], f: impl Fn(&Row) -> &Stat) -> Option<usize> {
    let pick = |complete_only: bool| {
        (0..rows.len())
            .filter(|&i| f(&rows[i]).mean.is_some() && (!complete_only || f(&rows[i]).missing == 0))
            .min_by(|&a, &b| {
                let (x, y) = (f(&rows[a]).mean, f(&rows[b]).mean);
                x.unwrap_or(f64::MAX).total_cmp(&y.unwrap_or(f64::MAX))
            })
    };
    pick(true).or_else(|| pick(false))
}

/// Mean and sample standard deviation of the values present; `missing` counts runs without one.
#[derive(Debug, Clone, PartialEq)]
pub struct Stat {
    pub mean: Option<f64>,
    pub sd: Option<f64>,
    pub n: usize,
    pub missing: usize,
    /// The values present, one per run, for significance tests.
    pub values: Vec<f64>,
    /// Welch's two-sided p-value against the column's best row (None: untestable or the best).
    pub p_vs_best: Option<f64>,
}

/// Differences below this p-value are marked significant.
pub const ALPHA: f64 = 0.05;

impl Stat {
    pub fn of(values: impl IntoIterator<Item = Option<f64>>) -> Stat {
        let mut xs = Vec::new();
        let mut missing = 0;
        for v in values {
            match v {
                Some(x) => xs.push(x),
                None => missing += 1,
            }
        }
        let n = xs.len();
        let mean = (n > 0).then(|| xs.iter().sum::<f64>() / n as f64);
        let sd = mean
            .filter(|_| n > 1)
            .map(|m| (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt());
        Stat {
            mean,
            sd,
            n,
            missing,
            values: xs,
            p_vs_best: None,
        }
    }

    /// Significantly worse than the column's best.
    pub fn significantly_worse(&self) -> bool {
        self.p_vs_best.is_some_and(|p| p < ALPHA)
    }

    /// `value` or `mean ± sd`, with how many runs had no value; None when none had one.
    pub fn text(&self, f: impl Fn(f64) -> String) -> Option<String> {
        let mean = self.mean?;
        let mut s = match self.sd {
            Some(sd) => format!("{} ± {}", f(mean), f(sd)),
            None => f(mean),
        };
        if self.missing > 0 {
            let _ = write!(s, " ({} of {} N/A)", self.missing, self.n + self.missing);
        }
        Some(s)
    }

    /// [`Stat::text`] or `N/A`, for markdown: bold when it is the column's best, `\*` when
    /// significantly worse than it.
    fn render(&self, best: &Option<f64>, f: impl Fn(f64) -> String) -> String {
        let Some(mut s) = self.text(f) else {
            return "N/A".into();
        };
        if *best == self.mean {
            s = format!("**{s}**");
        }
        if self.significantly_worse() {
            s.push_str(" \\*");
        }
        s
    }
}

/// One activation's row of a results table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub activation: String,
    /// Succeeded runs.
    pub n: usize,
    pub total: Stat,
    pub latency: Stat,
    pub first_epoch: Stat,
    pub to_target: Stat,
    pub error: Stat,
}

/// The best (lowest) mean of each column.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Best {
    pub total: Option<f64>,
    pub latency: Option<f64>,
    pub first_epoch: Option<f64>,
    pub to_target: Option<f64>,
    pub error: Option<f64>,
}

/// A paper-style table for one dataset × model.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub dataset: Dataset,
    pub model: Model,
    pub target: f64,
    pub rows: Vec<Row>,
    pub best: Best,
    /// USD per worker-hour; > 0 adds the DAWNBench cost columns.
    pub cost_per_hour: f64,
}

impl Table {
    /// Cost in USD of `seconds` of worker time.
    pub fn cost(&self, seconds: f64) -> f64 {
        seconds / 3600.0 * self.cost_per_hour
    }

    /// Column headers, in the order of the row cells.
    pub fn headers(&self) -> Vec<&'static str> {
        let mut h = vec![
            "Activation",
            "n",
            "Total training time",
            "Latency per sample (ms)",
            "First epoch at target",
            "Training time to target",
            "Error rate",
        ];
        if self.cost_per_hour > 0.0 {
            h.extend(["Total cost (USD)", "Cost to target (USD)"]);
        }
        h
    }
}

/// Tables in grid order; rows in the grid's activation order; only succeeded runs count.
pub fn tables(results: &Results) -> Vec<Table> {
    let mut out = Vec::new();
    for entry in &results.grid.datasets {
        let mut by_act: BTreeMap<usize, Vec<&JobRecord>> = BTreeMap::new();
        for j in &results.jobs {
            if j.dataset == entry.dataset
                && j.model == entry.model
                && j.status == JobStatus::Succeeded
            {
                let pos = results
                    .grid
                    .activations
                    .iter()
                    .position(|a| *a == j.activation)
                    .unwrap_or(usize::MAX);
                by_act.entry(pos).or_default().push(j);
            }
        }
        let mut rows: Vec<Row> = by_act
            .values()
            .map(|runs| Row {
                activation: runs[0].activation.to_string(),
                n: runs.len(),
                total: Stat::of(runs.iter().map(|r| Some(r.total_train_seconds))),
                latency: Stat::of(runs.iter().map(|r| r.latency_ms_per_sample)),
                first_epoch: Stat::of(runs.iter().map(|r| r.first_epoch_at_target.map(f64::from))),
                to_target: Stat::of(runs.iter().map(|r| r.seconds_to_target)),
                error: Stat::of(runs.iter().map(|r| r.error_rate)),
            })
            .collect();
        let min = |f: fn(&Row) -> &Stat| best_index(&rows, f).and_then(|i| f(&rows[i]).mean);
        let best = Best {
            total: min(|r| &r.total),
            latency: min(|r| &r.latency),
            first_epoch: min(|r| &r.first_epoch),
            to_target: min(|r| &r.to_target),
            error: min(|r| &r.error),
        };
        mark_significance(&mut rows);
        out.push(Table {
            dataset: entry.dataset,
            model: entry.model,
            target: entry.target_accuracy,
            rows,
            best,
            cost_per_hour: results.grid.cost_per_hour,
        });
    }
    out
}

/// Sets `p_vs_best` of every cell: Welch's test of its runs against the best row's runs.
fn mark_significance(rows: &mut [Row]) {
    type Column = (fn(&Row) -> &Stat, fn(&mut Row) -> &mut Stat);
    let columns: [Column; 5] = [
        (|r| &r.total, |r| &mut r.total),
        (|r| &r.latency, |r| &mut r.latency),
        (|r| &r.first_epoch, |r| &mut r.first_epoch),
        (|r| &r.to_target, |r| &mut r.to_target),
        (|r| &r.error, |r| &mut r.error),
    ];
    for (get, get_mut) in columns {
        let Some(best) = best_index(rows, get) else {
            continue;
        };
        let best_values = get(&rows[best]).values.clone();
        for (i, row) in rows.iter_mut().enumerate() {
            let stat = get_mut(row);
            if i != best {
                stat.p_vs_best = crate::stats::welch(&stat.values, &best_values).map(|w| w.p);
            }
        }
    }
}

/// The summary in words for one table: fastest to target, lowest error, which differences
/// are real, and the recommendation.
pub fn summary(t: &Table) -> Vec<String> {
    let mut out = Vec::new();
    let runs = t.rows.iter().map(|r| r.n).max().unwrap_or(0);
    let best_row = |f: fn(&Row) -> &Stat| best_index(&t.rows, f).map(|i| &t.rows[i]);
    match best_row(|r| &r.to_target) {
        Some(r) => out.push(format!(
            "Fastest to the {:.2}% target on {}: {} ({} of training).",
            100.0 * t.target,
            t.dataset,
            r.activation,
            fmt_hms(r.to_target.mean.unwrap_or(0.0))
        )),
        None if !t.rows.is_empty() => out.push(format!(
            "No activation reached the {:.2}% target on {}.",
            100.0 * t.target,
            t.dataset
        )),
        None => {}
    }
    let Some(lowest) = best_row(|r| &r.error) else {
        return out;
    };
    out.push(format!(
        "Lowest error rate: {} ({:.2}%).",
        lowest.activation,
        100.0 * lowest.error.mean.unwrap_or(0.0)
    ));
    if runs < 2 {
        out.push(
            "With one run per activation, no difference can be tested for significance; add seeds."
                .into(),
        );
    } else {
        let same: Vec<&Row> = t
            .rows
            .iter()
            .filter(|r| {
                r.activation != lowest.activation && r.error.p_vs_best.is_some_and(|p| p >= ALPHA)
            })
            .collect();
        for r in &same {
            out.push(format!(
                "{} and {} are indistinguishable on {} after {} seeds (error rate: Welch's t-test p = {:.2}).",
                r.activation,
                lowest.activation,
                t.dataset,
                runs,
                r.error.p_vs_best.unwrap_or(1.0)
            ));
        }
        let worse: Vec<&str> = t
            .rows
            .iter()
            .filter(|r| r.error.significantly_worse())
            .map(|r| r.activation.as_str())
            .collect();
        if !worse.is_empty() {
            out.push(format!(
                "Significantly higher error than {} (p < {ALPHA}): {}.",
                lowest.activation,
                worse.join(", ")
            ));
        }
    }
    // The paper's criterion: the best time-to-accuracy among the most accurate activations.
    let contenders: Vec<Row> = t
        .rows
        .iter()
        .filter(|r| r.error.mean.is_some() && !r.error.significantly_worse())
        .filter(|r| runs >= 2 || r.activation == lowest.activation)
        .cloned()
        .collect();
    match best_index(&contenders, |r| &r.to_target).map(|i| &contenders[i]) {
        Some(pick) => out.push(format!(
            "Recommendation for {} / {}: {} — the fastest to the target among the activations whose error rate is not significantly worse than the best.",
            t.dataset, t.model, pick.activation
        )),
        None => out.push(format!(
            "Recommendation for {} / {}: {} — the lowest error rate; none of the most accurate activations reached the target, so time to accuracy cannot decide.",
            t.dataset, t.model, lowest.activation
        )),
    }
    out
}

/// DAWNBench entry files for one job: `(file name, content)` pairs for `dawnbench/<job id>/`.
pub fn dawnbench_files(job: &JobRecord, grid: &Grid, env: &Environment) -> Vec<(String, String)> {
    let hardware = env
        .workers
        .iter()
        .find(|w| Some(&w.name) == job.worker.as_ref())
        .map(|w| w.device_name.clone())
        .unwrap_or_else(|| job.device.clone().unwrap_or_default());
    let framework = env
        .workers
        .first()
        .map(|w| format!("libtorch {} via tch-rs", w.libtorch_version))
        .unwrap_or_else(|| "libtorch via tch-rs".into());
    let cost = |hours: f64| (grid.cost_per_hour > 0.0).then_some(hours * grid.cost_per_hour);
    let train_hours = job.total_train_seconds / 3600.0;
    let train = serde_json::json!({
        "version": "v1.0",
        "author": "",
        "authorEmail": "",
        "framework": framework,
        "codeURL": "",
        "model": format!("{} ({})", job.model, job.activation),
        "hardware": hardware,
        "costPerHour": (grid.cost_per_hour > 0.0).then_some(grid.cost_per_hour),
        "timestamp": env.finished_at.clone().unwrap_or_else(|| env.started_at.clone()),
        "misc": {
            "job_id": job.id,
            "dataset": job.dataset,
            "seed": job.seed,
            "status": job.status,
            "target_accuracy": job.target_accuracy,
            "hours_to_target": job.seconds_to_target.map(|s| s / 3600.0),
            "cost_to_target": job.seconds_to_target.and_then(|s| cost(s / 3600.0)),
            "total_cost": cost(train_hours),
        }
    });
    let mut tsv = String::from("epoch\thours\ttop1Accuracy\n");
    for e in &job.epochs {
        let _ = writeln!(
            tsv,
            "{}\t{:.6}\t{:.4}",
            e.epoch,
            e.train_seconds / 3600.0,
            100.0 * e.test_accuracy
        );
    }
    let inference = serde_json::json!({
        "version": "v1.0",
        "author": "",
        "framework": framework,
        "model": format!("{} ({})", job.model, job.activation),
        "hardware": hardware,
        "latency": job.latency_ms_per_sample,
        "top1Accuracy": job.final_test_accuracy.map(|a| 100.0 * a),
        "costPerHour": (grid.cost_per_hour > 0.0).then_some(grid.cost_per_hour),
        "cost": job.latency_ms_per_sample.and_then(|ms| cost(ms / 3_600_000.0 * 10_000.0)),
        "misc": { "job_id": job.id, "cost_unit": "USD per 10,000 images" }
    });
    vec![
        (
            "train.json".into(),
            serde_json::to_string_pretty(&train).unwrap_or_default(),
        ),
        ("train.tsv".into(), tsv),
        (
            "inference.json".into(),
            serde_json::to_string_pretty(&inference).unwrap_or_default(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{EpochMetrics, JobRecord};
    use std::path::Path;

    fn results() -> Results {
        let grid = Grid::parse(
            "name: t\nactivations: [relu, tanh]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 2, target_accuracy: 0.9}\nseeds: [0, 1]\n",
            Path::new("g.yaml"),
        )
        .unwrap();
        let jobs = grid
            .jobs()
            .iter()
            .enumerate()
            .map(|(i, job)| {
                let acc = if job.spec.activation == crate::Activation::Relu {
                    0.95
                } else {
                    0.85
                };
                let epochs = vec![
                    EpochMetrics {
                        epoch: 1,
                        train_seconds: 10.0 + i as f64,
                        train_loss: 1.0,
                        test_loss: 0.5,
                        test_accuracy: acc - 0.1,
                    },
                    EpochMetrics {
                        epoch: 2,
                        train_seconds: 20.0 + i as f64,
                        train_loss: 0.5,
                        test_loss: 0.3,
                        test_accuracy: acc,
                    },
                ];
                JobRecord::new(
                    job,
                    JobStatus::Succeeded,
                    1,
                    Some("w".into()),
                    Some("cpu".into()),
                    Some(21840),
                    epochs,
                    Some(0.2),
                    None,
                )
            })
            .collect();
        Results {
            grid,
            environment: Environment {
                coordinator_version: "0".into(),
                coordinator_host: "h".into(),
                grid_file: "g.yaml".into(),
                grid_sha256: "x".into(),
                started_at: "2026-01-01T00:00:00Z".into(),
                finished_at: None,
                workers: vec![],
            },
            jobs,
        }
    }

    #[test]
    fn hms() {
        assert_eq!(fmt_hms(0.4), "0:00:00.4");
        assert_eq!(fmt_hms(3725.06), "1:02:05.1");
    }

    #[test]
    fn stat_mean_and_sd() {
        let s = Stat::of([Some(1.0), Some(2.0), Some(3.0), None]);
        assert_eq!(s.mean, Some(2.0));
        assert_eq!(s.sd, Some(1.0));
        assert_eq!((s.n, s.missing), (3, 1));
        assert_eq!(Stat::of([None]).mean, None);
    }

    #[test]
    fn table_aggregates_seeds_and_marks_best() {
        let r = results();
        let t = tables(&r);
        assert_eq!(t.len(), 1);
        let relu = &t[0].rows[0];
        assert_eq!((relu.activation.as_str(), relu.n), ("relu", 2));
        assert_eq!(relu.total.mean, Some(20.5));
        assert_eq!(relu.first_epoch.mean, Some(2.0));
        let tanh = &t[0].rows[1];
        assert_eq!(tanh.first_epoch.mean, None, "tanh never reaches 0.9");
        assert_eq!(t[0].best.error, relu.error.mean);
        let md = r.to_markdown();
        assert!(
            md.contains("| relu | 2 | **0:00:20.5 ± 0:00:00.7**"),
            "{md}"
        );
        assert!(md.contains("| tanh | 2 |"), "{md}");
        assert!(md.contains("N/A"), "{md}");
        // relu 95% vs tanh 85% error-free constant runs: a certain difference.
        assert!(
            md.contains("Significantly higher error than relu (p < 0.05): tanh."),
            "{md}"
        );
        assert!(
            md.contains("Recommendation for mnist / paper-cnn: relu"),
            "{md}"
        );
    }

    #[test]
    fn a_target_reached_by_some_seeds_only_does_not_win() {
        let mut r = results();
        // relu: seed 0 reaches the target fast, seed 1 never; tanh: both seeds, slower.
        for j in r.jobs.iter_mut() {
            let relu = j.activation == crate::Activation::Relu;
            (j.first_epoch_at_target, j.seconds_to_target) = match (relu, j.seed) {
                (true, 0) => (Some(1), Some(5.0)),
                (true, _) => (None, None),
                (false, _) => (Some(2), Some(30.0)),
            };
        }
        let t = &tables(&r)[0];
        assert_eq!(t.best.to_target, Some(30.0), "tanh reached it every time");
        assert_eq!(t.headers().len(), 7, "no cost columns without a price");
        assert!(
            summary(t)[0].contains("Fastest to the 90.00% target on mnist: tanh"),
            "{:?}",
            summary(t)
        );
    }

    #[test]
    fn indistinguishable_activations_are_named() {
        let mut r = results();
        // Make tanh as accurate as relu, with some noise: no significant difference.
        for (i, j) in r.jobs.iter_mut().enumerate() {
            let acc = 0.95 + if i % 2 == 0 { 0.004 } else { -0.003 };
            j.epochs[1].test_accuracy = acc;
            j.error_rate = Some(1.0 - acc);
            j.first_epoch_at_target = Some(1);
            j.seconds_to_target = Some(10.0 + i as f64);
        }
        r.jobs[2].error_rate = Some(0.052);
        let t = tables(&r);
        let lines = summary(&t[0]);
        assert!(
            lines
                .iter()
                .any(|l| l.contains("are indistinguishable on mnist after 2 seeds")),
            "{lines:?}"
        );
    }

    #[test]
    fn cost_columns_when_priced() {
        let mut r = results();
        r.grid.cost_per_hour = 3.6;
        let md = r.to_markdown();
        assert!(
            md.contains("| Total cost (USD) | Cost to target (USD) |"),
            "{md}"
        );
        // relu: mean total 20.5 s at $3.6/h = $0.0205.
        assert!(md.contains("**0.0205 ± 0.0007**"), "{md}");
    }

    #[test]
    fn attempts_say_why() {
        let mut r = results();
        let j = &mut r.jobs[0];
        (j.attempts, j.lost_attempts, j.failed_attempts) = (3, 1, 1);
        assert_eq!(attempts_text(j), "3 (1 lost worker, 1 failed and retried)");
        assert_eq!(attempts_text(&r.jobs[1]), "1");
    }

    #[test]
    fn csv_has_a_row_per_job() {
        let csv = results().to_csv();
        assert_eq!(csv.lines().count(), 5);
        assert!(csv.starts_with("id,dataset,model,activation,seed,status"));
    }

    #[test]
    fn dawnbench_tsv_rows_per_epoch() {
        let r = results();
        let files = dawnbench_files(&r.jobs[0], &r.grid, &r.environment);
        let tsv = &files.iter().find(|(n, _)| n == "train.tsv").unwrap().1;
        assert_eq!(tsv.lines().next(), Some("epoch\thours\ttop1Accuracy"));
        assert_eq!(tsv.lines().count(), 3);
        assert!(tsv.contains("2\t0.005556\t95.0000"), "{tsv}");
    }
}
