//! `report.md`: the paper's Table 3/4 columns, one table per dataset × model, the summary in
//! words, the failed jobs and the environment.

use std::fmt::Write as _;

use common::JobStatus;

use crate::format::md_cell;
use crate::results::{attempts_text, Results};
use crate::significance::tables;
use crate::summary::summary;
use crate::table::{cuda_settings, engines, notes, per_epoch, Stat, Table, ALPHA};

impl Results {
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# {} — DAWNBench-style report\n", self.grid.name());
        let races = crate::race::table_races(self);
        md.push_str(&status_line(self, &races));
        for (i, table) in tables(self).iter().enumerate() {
            md.push_str(&table_section(table));
            if let Some(race) = races.get(i) {
                let _ = writeln!(md, "{}\n", race.text());
            }
            md.push_str(&epoch_table(self, table));
        }
        md.push_str(&problems(self));
        md.push_str(&environment(self));
        md
    }
}

fn status_line(r: &Results, races: &[crate::race::TableRace]) -> String {
    let count = |s: JobStatus| r.jobs.iter().filter(|j| j.status == s).count();
    let (held, held_text) = crate::race::held(r, races).unwrap_or_default();
    let unfinished = r.jobs.iter().filter(|j| !j.status.is_terminal()).count() - held;
    let held = match held {
        0 => String::new(),
        _ => format!(", {held_text}"),
    };
    let cancelled = match count(JobStatus::Cancelled) {
        0 => String::new(),
        n => format!(", {n} cancelled"),
    };
    format!(
        "{} jobs: {} succeeded, {} failed, {} diverged{cancelled}, {} not finished{held}.\n\n",
        r.jobs.len(),
        count(JobStatus::Succeeded),
        count(JobStatus::Failed),
        count(JobStatus::Diverged),
        unfinished
    )
}

fn table_section(table: &Table) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## {} / {} — target test accuracy {:.2}%\n",
        table.dataset,
        table.model,
        100.0 * table.target
    );
    let looks = match table.looks {
        1 => String::new(),
        k => format!(" and over the seed race's {k} looks"),
    };
    let headers = table.headers();
    let _ = writeln!(md, "| {} |", headers.join(" | "));
    let _ = writeln!(md, "|{}", "---|".repeat(headers.len()));
    let b = &table.best;
    for row in &table.rows {
        let mut cells = vec![
            md_cell(&row.label()),
            row.n.to_string(),
            render(&row.total, b.total, row.total_text()),
            render(&row.latency, b.latency, row.latency_text()),
            render(
                &row.first_epoch,
                b.first_epoch,
                row.first_epoch.epoch_text(),
            ),
            render(&row.to_target, b.to_target, row.to_target_text()),
            render(
                &row.error,
                b.error,
                row.error.text(|v| format!("{:.2}%", 100.0 * v)),
            ),
        ];
        if table.cost_per_hour > 0.0 {
            // Cost is proportional to time: same best and same significance.
            let usd = |v: f64| format!("{:.4}", table.cost(v));
            cells.push(render(&row.total, b.total, row.total.text(usd)));
            cells.push(render(&row.to_target, b.to_target, row.to_target.text(usd)));
        }
        let _ = writeln!(md, "| {} |", cells.join(" | "));
    }
    let _ = writeln!(
        md,
        "\nBest value of each column in **bold**; \\* significantly worse than the best \
         (Welch's t-test, p < {ALPHA} adjusted over every pair of the table by Holm's method{looks}); \
         N/A: the target was never reached. With several seeds: mean ± standard deviation over \
         the runs that reached it.\n"
    );
    for note in notes(table) {
        let _ = writeln!(md, "{note}\n");
    }
    for line in summary(table) {
        let _ = writeln!(md, "- {line}");
    }
    md.push('\n');
    md
}

/// Test accuracy per epoch (mean over seeds), one row per activation.
fn epoch_table(r: &Results, table: &Table) -> String {
    let rows = per_epoch(r, table);
    let epochs = rows.iter().map(|(_, e)| e.len()).max().unwrap_or(0);
    if epochs == 0 {
        return String::new();
    }
    let mut md = format!(
        "Test accuracy per epoch, {} / {} (mean over seeds):\n\n| Activation |",
        table.dataset, table.model
    );
    for e in 1..=epochs {
        let _ = write!(md, " {e} |");
    }
    let _ = writeln!(md, "\n|---|{}", "---|".repeat(epochs));
    for (name, accs) in rows {
        let cells: Vec<String> = (0..epochs)
            .map(|i| {
                accs.get(i)
                    .copied()
                    .flatten()
                    .map_or("".into(), |a| format!("{:.2}%", 100.0 * a))
            })
            .collect();
        let _ = writeln!(md, "| {} | {} |", md_cell(&name), cells.join(" | "));
    }
    md.push('\n');
    md
}

/// A cell: `text` (of `stat`) or `N/A`, bold when it is the column's best (never a time from
/// disturbed runs only), `\*` when significantly worse than it.
fn render(stat: &Stat, best: Option<f64>, text: Option<String>) -> String {
    let Some(mut s) = text else {
        return "N/A".into();
    };
    if best == stat.mean && !stat.disturbed {
        s = format!("**{s}**");
    }
    if stat.significantly_worse() {
        s.push_str(" \\*");
    }
    s
}

fn problems(r: &Results) -> String {
    let problems = r.problem_jobs();
    if problems.is_empty() {
        return String::new();
    }
    let mut md = String::from("## Failed and diverged jobs\n\n");
    md.push_str("| Job | Status | Attempts | Error |\n|---|---|---|---|\n");
    for j in problems {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            j.id,
            j.status,
            attempts_text(j),
            md_cell(j.error.as_deref().unwrap_or(""))
        );
    }
    md.push('\n');
    md
}

fn environment(r: &Results) -> String {
    let env = &r.environment;
    let mut md = String::from("## Environment\n\n");
    let _ = writeln!(
        md,
        "- Grid file: {} (SHA-256 `{}`)\n- Started: {}; finished: {}\n- Coordinator: {} on {}",
        md_cell(&env.grid_file),
        env.grid_sha256,
        env.started_at,
        env.finished_at.as_deref().unwrap_or("(still running)"),
        env.coordinator_version,
        md_cell(&env.coordinator_host)
    );
    for w in &env.workers {
        let w = &w.info;
        let slurm = w
            .slurm_job
            .as_deref()
            .map_or_else(String::new, |j| format!(", SLURM job {}", md_cell(j)));
        let _ = writeln!(
            md,
            "- Worker {} on {}: {} ({}), libtorch {}, {} slot(s){slurm}",
            md_cell(&w.name),
            md_cell(&w.hostname),
            w.device,
            md_cell(&w.device_name),
            md_cell(&w.libtorch_version),
            w.slots
        );
    }
    for line in cuda_settings(r).into_iter().chain(engines(r)) {
        let _ = writeln!(md, "- {line}");
    }
    for run in &env.runs {
        let _ = writeln!(md, "- {}", md_cell(&crate::results::run_text(run)));
    }
    md
}

#[cfg(test)]
mod tests {
    use crate::fixtures::{results, results_of, GRID};

    #[test]
    fn tables_with_best_significance_and_summary() {
        let md = results().to_markdown();
        assert!(
            md.contains("| relu | 2 | **0:00:20.5 ± 0:00:00.7**"),
            "{md}"
        );
        assert!(md.contains("| tanh | 2 |"), "{md}");
        assert!(md.contains("N/A"), "{md}");
        // relu 95% vs tanh 85% error-free constant runs: a certain difference.
        assert!(
            md.contains("Significantly higher error than relu (adjusted p < 0.05): tanh (+10.00 pp, 95% CI [+10.00, +10.00])."),
            "{md}"
        );
        assert!(
            md.contains("Recommendation for mnist / paper-cnn: relu"),
            "{md}"
        );
    }

    #[test]
    fn cost_columns_when_priced() {
        let md = results_of(&format!("{GRID}cost_per_hour: 3.6\n")).to_markdown();
        assert!(
            md.contains("| Total cost (USD) | Cost to target (USD) |"),
            "{md}"
        );
        // relu: mean total 20.5 s at $3.6/h = $0.0205.
        assert!(md.contains("**0.0205 ± 0.0007**"), "{md}");
    }

    /// GPU runs: those that overlapped on one GPU are marked, and the CUDA settings listed.
    #[test]
    fn runs_that_shared_a_gpu_are_marked_and_cuda_settings_listed() {
        let mut r = results();
        for (i, j) in r.jobs.iter_mut().enumerate() {
            j.device = Some(common::DeviceSpec::Cuda(Some(0)));
            j.tf32 = Some(common::Tf32::Conv);
            j.device_uuid = Some(format!("GPU-{}", i % 2));
            // Jobs 0 and 2 (relu s0, tanh s0) overlap on GPU-0; 1 and 3 run one after the other.
            let (start, stop) = [(0, 100), (0, 50), (50, 150), (60, 90)][i];
            j.clock = Some(common::RunClock {
                init_start_ms: start,
                run_start_ms: Some(start),
                run_stop_ms: stop,
            });
        }
        common::record::mark_shared_devices(&mut r.jobs);
        let md = r.to_markdown();
        assert!(md.contains("| relu † | 2 |"), "{md}");
        assert!(md.contains("| tanh † | 2 |"), "{md}");
        assert!(
            md.contains("† 2 of these 4 runs ran beside other jobs on the same GPU"),
            "{md}"
        );
        assert!(
            md.contains(
                "- CUDA: TF32 `conv` (convolutions only, PyTorch's default); cuDNN benchmark on"
            ),
            "{md}"
        );
        let html = r.to_html();
        assert!(html.contains("<th>relu †</th>"), "{html}");
        assert!(!results().to_markdown().contains('†'));
    }

    /// The engines the jobs trained with are listed with their counts; none where unknown.
    #[test]
    fn engines_are_listed_in_the_environment() {
        let mut r = results();
        assert!(!r.to_markdown().contains("Engine:"));
        for (i, j) in r.jobs.iter_mut().enumerate() {
            let text = [
                "nchw/avx2/measured",
                "nchw/avx2/cached",
                "channels-last/aten/fixed",
            ];
            j.engine = Some(text[i.min(2)].parse().unwrap());
        }
        let md = r.to_markdown();
        assert!(
            md.contains("- Engine: `nchw` layout with `avx2` kernels (2 jobs); `channels-last` layout with `aten` kernels (2 jobs)"),
            "{md}"
        );
        assert!(r
            .to_html()
            .contains("<li>Engine: nchw layout with avx2 kernels (2 jobs)"));
    }

    /// Two identical runs whose latencies differ 100-fold are flagged, not compared quietly.
    #[test]
    fn latencies_that_disagree_are_flagged() {
        let mut r = results();
        for j in r.jobs.iter_mut() {
            if j.activation == common::Activation::Tanh {
                j.latency_ms_per_sample = Some(if j.seed == 0 { 48.44 } else { 0.34 });
            }
        }
        let md = r.to_markdown();
        let tanh = md.lines().find(|l| l.starts_with("| tanh |")).unwrap();
        assert!(tanh.contains("24.390 ± 34.012 ‼"), "{tanh}");
        assert!(
            md.contains("‼ The latencies of tanh's runs differ more than 3×"),
            "{md}"
        );
        assert!(!results().to_markdown().contains('‼'));
    }

    /// Runs timed on a busy machine leave the time columns; where all runs were, the times
    /// are marked and the note says so.
    #[test]
    fn disturbed_runs_leave_the_time_columns() {
        let mut r = results();
        for j in r.jobs.iter_mut() {
            let busy = j.activation == common::Activation::Tanh || j.seed == 1;
            for e in j.epochs.iter_mut() {
                e.host = Some(common::EpochHost {
                    cpu_seconds: 1.0,
                    contention: if busy { 1.0 } else { 0.0 },
                });
            }
            if busy {
                j.total_train_seconds *= 3.0;
            }
        }
        let md = r.to_markdown();
        // relu: seed 1 (3× slower, disturbed) left out: 20 s from seed 0 alone.
        let relu = md.lines().find(|l| l.starts_with("| relu |")).unwrap();
        assert!(
            relu.contains("0:00:20.0 |") || relu.contains("0:00:20.0**"),
            "{relu}"
        );
        let tanh = md.lines().find(|l| l.starts_with("| tanh |")).unwrap();
        assert!(tanh.contains(" ⚠"), "{tanh}");
        assert!(
            md.contains("⚠ 3 run(s) were timed while other processes competed for the CPU: 1 of them are left out"),
            "{md}"
        );
        assert!(
            md.contains("the times of tanh rest on such runs only"),
            "{md}"
        );
        assert!(!results().to_markdown().contains('⚠'));
        // A value resting on disturbed runs only is never also bold as the best.
        for line in md.lines().filter(|l| l.starts_with("| ")) {
            for cell in line.split(" | ") {
                assert!(!(cell.contains('⚠') && cell.contains("**")), "{line}");
            }
        }
    }
}
