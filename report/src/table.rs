//! Aggregation: one paper-style table per dataset × model, a row per activation, each cell
//! the mean ± sd over seeds, the best of each column and the corrected comparison with it.

use std::collections::BTreeMap;

use common::{Dataset, JobRecord, JobStatus, Model};

use crate::results::Results;

/// Differences below this p-value are marked significant.
pub const ALPHA: f64 = 0.05;

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
    /// The same, adjusted for the table's family of comparisons (see [`crate::significance`]):
    /// the one that decides.
    pub p_adjusted: Option<f64>,
    /// This row's mean minus the best row's, with its simultaneous 95% confidence interval.
    pub diff_vs_best: Option<(f64, (f64, f64))>,
    /// The adjusted p of equivalence to the best within the grid's margin (error rate only).
    pub equivalent_p: Option<f64>,
    /// Times measured on a disturbed machine only (marked ⚠): never the column's best, never
    /// compared.
    pub disturbed: bool,
}

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
            p_adjusted: None,
            diff_vs_best: None,
            equivalent_p: None,
            disturbed: false,
        }
    }

    /// The same, marked as timed on a disturbed machine only when `disturbed`.
    fn disturbed_if(mut self, disturbed: bool) -> Stat {
        self.disturbed = disturbed;
        self
    }

    /// Significantly worse than the column's best, after the family's correction.
    pub fn significantly_worse(&self) -> bool {
        self.p_adjusted.is_some_and(|p| p < ALPHA)
    }

    /// `value` or `mean ± sd`, with how many runs had no value; None when none had one.
    pub fn text(&self, f: impl Fn(f64) -> String) -> Option<String> {
        let mean = self.mean?;
        let s = match self.sd {
            Some(sd) => format!("{} ± {}", f(mean), f(sd)),
            None => f(mean),
        };
        Some(s + &self.missing_text())
    }

    /// For epoch numbers: one run's epoch as the integer it is; over several runs the mean
    /// and sd with one decimal and how many runs they are of.
    pub fn epoch_text(&self) -> Option<String> {
        let mean = self.mean?;
        let s = match self.sd {
            Some(sd) => format!("{mean:.1} ± {sd:.1} (n={})", self.n),
            None => format!("{mean:.0}"),
        };
        Some(s + &self.missing_text())
    }

    fn missing_text(&self) -> String {
        if self.missing == 0 {
            return String::new();
        }
        format!(" ({} of {} N/A)", self.missing, self.n + self.missing)
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
    /// Runs that shared their GPU with other jobs (their times include that work).
    pub shared: usize,
    /// Runs timed while other processes competed for the CPU: left out of the time columns,
    /// unless every run was (then `times_disturbed`).
    pub disturbed: usize,
    /// The time columns rest on disturbed runs only.
    pub times_disturbed: bool,
}

impl Row {
    /// ` ⚠` after a time resting on disturbed runs only.
    pub fn time_mark(&self) -> &'static str {
        if self.times_disturbed {
            " ⚠"
        } else {
            ""
        }
    }

    /// The total-time cell's text (` ⚠` when it rests on disturbed runs only).
    pub fn total_text(&self) -> Option<String> {
        self.total
            .text(crate::format::fmt_hms)
            .map(|t| t + self.time_mark())
    }

    /// The time-to-target cell's text.
    pub fn to_target_text(&self) -> Option<String> {
        self.to_target
            .text(crate::format::fmt_hms)
            .map(|t| t + self.time_mark())
    }

    /// The latency cell's text, ms (` ‼` when its runs disagree more than 3×).
    pub fn latency_text(&self) -> Option<String> {
        let flag = if self.latency.inconsistent() {
            " ‼"
        } else {
            ""
        };
        self.latency
            .text(|v| format!("{v:.3}"))
            .map(|t| t + flag + self.time_mark())
    }

    /// The activation's name, with `†` when some of its runs shared their GPU.
    pub fn label(&self) -> String {
        if self.shared > 0 {
            format!("{} †", self.activation)
        } else {
            self.activation.clone()
        }
    }
}

/// The notes under a table, in order: runs that shared their GPU, latencies that disagree,
/// runs timed on a busy machine.
pub fn notes(t: &Table) -> Vec<String> {
    [shared_note(t), inconsistent_note(t), disturbed_note(t)]
        .into_iter()
        .flatten()
        .collect()
}

/// The note under a table whose rows include runs that shared their GPU.
fn shared_note(t: &Table) -> Option<String> {
    let shared: usize = t.rows.iter().map(|r| r.shared).sum();
    let runs: usize = t.rows.iter().map(|r| r.n).sum();
    (shared > 0).then(|| {
        format!(
            "† {shared} of these {runs} runs ran beside other jobs on the same GPU: their times \
             include that work and do not compare with runs that had the GPU alone."
        )
    })
}

/// Test accuracy per epoch, mean over the seeds that trained, per activation (in grid order)
/// of `t`'s dataset × model: the rows of the per-epoch table.
pub fn per_epoch(results: &Results, t: &Table) -> Vec<(String, Vec<Option<f64>>)> {
    let mut out = Vec::new();
    for &a in results.grid.activations() {
        let runs: Vec<&JobRecord> = results
            .jobs
            .iter()
            .filter(|j| j.dataset == t.dataset && j.model == t.model && j.activation == a)
            .filter(|j| matches!(j.status, JobStatus::Succeeded | JobStatus::Diverged))
            .collect();
        let epochs = runs.iter().map(|j| j.epochs.len()).max().unwrap_or(0);
        if epochs == 0 {
            continue;
        }
        let means = (0..epochs)
            .map(|i| {
                Stat::of(
                    runs.iter()
                        .map(|j| j.epochs.get(i).map(|e| e.test_accuracy)),
                )
                .mean
            })
            .collect();
        out.push((a.to_string(), means));
    }
    out
}

/// How far apart a cell's values may be before they are flagged: the slowest over the fastest.
pub const INCONSISTENT_RATIO: f64 = 3.0;

impl Stat {
    /// The values disagree by more than [`INCONSISTENT_RATIO`] (two identical runs whose
    /// latencies differ 100-fold measured a disturbed machine, not the activation).
    pub fn inconsistent(&self) -> bool {
        let min = self.values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.values.iter().copied().fold(0.0, f64::max);
        self.values.len() > 1 && min > 0.0 && max / min > INCONSISTENT_RATIO
    }
}

/// The note under a table whose latencies disagree across seeds.
fn inconsistent_note(t: &Table) -> Option<String> {
    let rows: Vec<&str> = t
        .rows
        .iter()
        .filter(|r| r.latency.inconsistent())
        .map(|r| r.activation.as_str())
        .collect();
    (!rows.is_empty()).then(|| {
        format!(
            "‼ The latencies of {}'s runs differ more than {INCONSISTENT_RATIO}×: one run was most \
             likely measured on a disturbed machine, so their mean and its comparison are not \
             reliable; run them again on a quiet machine.",
            rows.join(", ")
        )
    })
}

/// The CUDA settings the grid's GPU runs trained under, for the report's environment.
pub fn cuda_settings(results: &Results) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for j in &results.jobs {
        let Some(tf32) = j.tf32 else { continue };
        let what = match tf32 {
            common::Tf32::Conv => "convolutions only, PyTorch's default",
            common::Tf32::All => "convolutions and matrix products",
            common::Tf32::Off => "nowhere: full float32",
        };
        let det = if j.spec.deterministic {
            "deterministic algorithms (cuDNN benchmark off)"
        } else {
            "cuDNN benchmark on, not bitwise repeatable"
        };
        let line = format!("CUDA: TF32 `{tf32}` ({what}); {det}");
        if !seen.contains(&line) {
            seen.push(line);
        }
    }
    seen
}

/// The layouts and kernels the grid's jobs trained with, each with its number of jobs, for the
/// report's environment (none for records kept before engines were).
pub fn engines(results: &Results) -> Vec<String> {
    let mut counts: Vec<((common::Layout, common::KernelSet), usize)> = Vec::new();
    for e in results.jobs.iter().filter_map(|j| j.engine) {
        let key = (e.layout, e.kernels);
        match counts.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => counts.push((key, 1)),
        }
    }
    if counts.is_empty() {
        return Vec::new();
    }
    let list: Vec<String> = counts
        .iter()
        .map(|((l, k), n)| {
            let s = if *n == 1 { "" } else { "s" };
            format!("`{l}` layout with `{k}` kernels ({n} job{s})")
        })
        .collect();
    vec![format!(
        "Engine: {} (the fastest, measured at the first job of each model shape on each CPU)",
        list.join("; ")
    )]
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
    /// The grid's `equivalence_margin`, percentage points of error rate.
    pub equivalence_margin: Option<f64>,
    /// The most looks the grid's seed race takes (1: fixed seeds); p-values are adjusted
    /// for them.
    pub looks: u32,
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

    /// The row with the lowest mean in a column (complete rows first; see [`best_index`]).
    pub fn best_row(&self, f: fn(&Row) -> &Stat) -> Option<&Row> {
        best_index(&self.rows, f).map(|i| &self.rows[i])
    }
}

/// The index of the row with the lowest mean in a column. Rows where every run has a value
/// come first: a time to target reached by one seed of three must not beat one reached by all.
/// Times measured on a disturbed machine only are never the best.
pub fn best_index(rows: &[Row], f: impl Fn(&Row) -> &Stat) -> Option<usize> {
    let pick = |complete_only: bool| {
        (0..rows.len())
            .filter(|&i| !f(&rows[i]).disturbed)
            .filter(|&i| f(&rows[i]).mean.is_some() && (!complete_only || f(&rows[i]).missing == 0))
            .min_by(|&a, &b| {
                let (x, y) = (f(&rows[a]).mean, f(&rows[b]).mean);
                x.unwrap_or(f64::MAX).total_cmp(&y.unwrap_or(f64::MAX))
            })
    };
    pick(true).or_else(|| pick(false))
}

/// Tables in grid order; rows in the grid's activation order; only succeeded runs count.
/// Their comparisons with the best are left for [`crate::significance::tables`] to make.
pub fn unmarked(results: &Results) -> Vec<Table> {
    results
        .grid
        .datasets()
        .iter()
        .map(|entry| {
            let rows = rows(results, entry.dataset, entry.model);
            let min = |f: fn(&Row) -> &Stat| best_index(&rows, f).and_then(|i| f(&rows[i]).mean);
            let best = Best {
                total: min(|r| &r.total),
                latency: min(|r| &r.latency),
                first_epoch: min(|r| &r.first_epoch),
                to_target: min(|r| &r.to_target),
                error: min(|r| &r.error),
            };
            Table {
                dataset: entry.dataset,
                model: entry.model,
                target: entry.target_accuracy,
                rows,
                best,
                cost_per_hour: results.grid.cost_per_hour(),
                equivalence_margin: results.grid.equivalence_margin(),
                looks: results.grid.race().map_or(1, |r| r.looks()),
            }
        })
        .collect()
}

/// One row per activation with succeeded runs on `dataset` × `model`, in grid order.
fn rows(results: &Results, dataset: Dataset, model: Model) -> Vec<Row> {
    let mut by_act: BTreeMap<usize, Vec<&JobRecord>> = BTreeMap::new();
    for j in &results.jobs {
        if j.dataset == dataset && j.model == model && j.status == JobStatus::Succeeded {
            let pos = results
                .grid
                .activations()
                .iter()
                .position(|a| *a == j.activation)
                .unwrap_or(usize::MAX);
            by_act.entry(pos).or_default().push(j);
        }
    }
    by_act.values().map(|runs| row(runs)).collect()
}

/// One activation's runs as a row. Times come from the runs no other process disturbed (all
/// of them when every run was).
fn row(runs: &[&JobRecord]) -> Row {
    let quiet: Vec<&JobRecord> = runs.iter().copied().filter(|r| !r.disturbed()).collect();
    let timed = if quiet.is_empty() { runs } else { &quiet[..] };
    let only_disturbed = quiet.is_empty();
    let time = |f: fn(&JobRecord) -> Option<f64>| {
        Stat::of(timed.iter().map(|r| f(r))).disturbed_if(only_disturbed)
    };
    Row {
        activation: runs[0].activation.to_string(),
        n: runs.len(),
        total: time(|r| Some(r.total_train_seconds)),
        latency: time(|r| r.latency_ms_per_sample),
        first_epoch: Stat::of(runs.iter().map(|r| r.first_epoch_at_target.map(f64::from))),
        to_target: time(|r| r.seconds_to_target),
        error: Stat::of(runs.iter().map(|r| r.error_rate)),
        shared: runs.iter().filter(|r| r.shared_device).count(),
        disturbed: runs.len() - quiet.len(),
        times_disturbed: quiet.is_empty(),
    }
}

/// The note under a table some of whose runs were timed on a busy machine.
fn disturbed_note(t: &Table) -> Option<String> {
    let flagged: usize = t.rows.iter().map(|r| r.disturbed).sum();
    let left_out: usize = t
        .rows
        .iter()
        .filter(|r| !r.times_disturbed)
        .map(|r| r.disturbed)
        .sum();
    let only: Vec<&str> = t
        .rows
        .iter()
        .filter(|r| r.times_disturbed)
        .map(|r| r.activation.as_str())
        .collect();
    if flagged == 0 {
        return None;
    }
    let mut text = format!(
        "⚠ {flagged} run(s) were timed while other processes competed for the CPU: {left_out} \
         of them are left out of the time columns (total time, time to target, latency)"
    );
    if !only.is_empty() {
        text.push_str(&format!(
            ", and the times of {} rest on such runs only (marked ⚠, never bold, not compared): \
             compare them after a run on a quiet machine",
            only.join(", ")
        ));
    }
    text.push('.');
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::results;

    #[test]
    fn stat_mean_and_sd() {
        let s = Stat::of([Some(1.0), Some(2.0), Some(3.0), None]);
        assert_eq!(s.mean, Some(2.0));
        assert_eq!(s.sd, Some(1.0));
        assert_eq!((s.n, s.missing), (3, 1));
        assert_eq!(Stat::of([None]).mean, None);
        assert_eq!(Stat::of([Some(5.0)]).epoch_text().unwrap(), "5");
        assert_eq!(
            Stat::of([Some(5.0), Some(6.0), None]).epoch_text().unwrap(),
            "5.5 ± 0.7 (n=2) (1 of 3 N/A)"
        );
    }

    #[test]
    fn table_aggregates_seeds_and_marks_best() {
        let r = results();
        let t = crate::significance::tables(&r);
        assert_eq!(t.len(), 1);
        let relu = &t[0].rows[0];
        assert_eq!((relu.activation.as_str(), relu.n), ("relu", 2));
        assert_eq!(relu.total.mean, Some(20.5));
        assert_eq!(relu.first_epoch.mean, Some(2.0));
        let tanh = &t[0].rows[1];
        assert_eq!(tanh.first_epoch.mean, None, "tanh never reaches 0.9");
        assert_eq!(t[0].best.error, relu.error.mean);
        assert!(tanh.error.significantly_worse());
    }

    #[test]
    fn a_target_reached_by_some_seeds_only_does_not_win() {
        let r = crate::fixtures::relu_reaches_the_target_once();
        let t = &crate::significance::tables(&r)[0];
        assert_eq!(t.best.to_target, Some(30.0), "tanh reached it every time");
        assert_eq!(t.headers().len(), 7, "no cost columns without a price");
    }
}
