//! `coordinator compare A B`: two runs side by side, cell by cell (dataset × model ×
//! activation), each metric as A, B, the difference B − A with its simultaneous 95% confidence
//! interval and Welch's p over the seeds of each side, adjusted over the metric's cells
//! (Holm); what differs between the runs' settings, and one overall line.

use std::fmt::Write as _;

use crate::format::{fmt_hms, md_cell};
use crate::results::Results;
use crate::significance::tables;
use crate::stats::{holm, welch, Welch};
use crate::table::{Row, Stat, ALPHA};

/// One metric of a row: its name, how to read a row's value, how to print values and
/// differences.
struct Metric {
    name: &'static str,
    get: fn(&Row) -> &Stat,
    show: fn(f64) -> String,
}

fn percent(v: f64) -> String {
    format!("{:.2}%", 100.0 * v)
}
fn ms(v: f64) -> String {
    format!("{v:.3} ms")
}
fn epoch(v: f64) -> String {
    format!("{v:.1}")
}
fn seconds(v: f64) -> String {
    if v.abs() < 1.0 {
        // Under a second, H:MM:SS.s would round it away.
        return format!("{:.0} ms", 1000.0 * v);
    }
    if v < 0.0 {
        format!("-{}", fmt_hms(-v))
    } else {
        fmt_hms(v)
    }
}

const METRICS: [Metric; 5] = [
    Metric {
        name: "Error rate",
        get: |r| &r.error,
        show: percent,
    },
    Metric {
        name: "Training time to target",
        get: |r| &r.to_target,
        show: seconds,
    },
    Metric {
        name: "First epoch at target",
        get: |r| &r.first_epoch,
        show: epoch,
    },
    Metric {
        name: "Total training time",
        get: |r| &r.total,
        show: seconds,
    },
    Metric {
        name: "Latency per sample",
        get: |r| &r.latency,
        show: ms,
    },
];

/// One cell compared: a dataset × model × activation present in both runs.
struct Cell<'a> {
    table: usize,
    ra: &'a Row,
    rb: &'a Row,
}

/// The comparison as Markdown; `a_name` and `b_name` say where each run came from. For each
/// metric, the tests of every compared cell form one family: the p that decides is Holm's
/// adjustment over them, and the intervals are simultaneous (Bonferroni).
pub fn compare(a: &Results, b: &Results, a_name: &str, b_name: &str) -> String {
    let mut md = format!(
        "# Comparison: A = {} ({}) vs B = {} ({})\n\n",
        md_cell(a.grid.name()),
        md_cell(a_name),
        md_cell(b.grid.name()),
        md_cell(b_name)
    );
    md.push_str(&spec_differences(a, b));
    md.push_str(
        "Each cell: mean ± sd over the seeds that have a value (n); Δ = B − A with its \
         simultaneous 95% confidence interval (Welch); p adjusted over every cell of the metric \
         by Holm's method (raw p in brackets), **adjusted p < 0.05** in bold. Only cells present \
         in both runs are compared.\n\n",
    );
    let (ta, tb) = (tables(a), tables(b));
    let mut cells = Vec::new();
    for (k, t) in ta.iter().enumerate() {
        let Some(u) = tb
            .iter()
            .find(|u| u.dataset == t.dataset && u.model == t.model)
        else {
            continue;
        };
        for ra in &t.rows {
            if let Some(rb) = u.rows.iter().find(|r| r.activation == ra.activation) {
                cells.push(Cell { table: k, ra, rb });
            }
        }
    }
    if cells.is_empty() {
        md.push_str("No dataset × model × activation has succeeded runs in both.\n");
        return md;
    }
    // Per metric: each cell's test, Holm over the cells, and how many differ.
    let tested: Vec<Vec<Option<(Welch, f64)>>> = METRICS
        .iter()
        .map(|m| {
            let tests: Vec<Option<Welch>> = cells
                .iter()
                .map(|c| welch(&(m.get)(c.rb).values, &(m.get)(c.ra).values))
                .collect();
            let ps: Vec<f64> = tests.iter().flatten().map(|w| w.p).collect();
            let mut adjusted = holm(&ps).into_iter();
            tests
                .into_iter()
                .map(|w| w.map(|w| (w, adjusted.next().unwrap_or(1.0))))
                .collect()
        })
        .collect();
    md.push_str(&overall(&tested, cells.len()));
    let mut current = None;
    for (i, c) in cells.iter().enumerate() {
        if current != Some(c.table) {
            current = Some(c.table);
            let t = &ta[c.table];
            let _ = writeln!(md, "\n## {} / {}\n", t.dataset, t.model);
            md.push_str(
                "| Activation | Metric | A | B | Δ (B − A) [95% CI] | p adjusted (raw) |\n|---|---|---|---|---|---|\n",
            );
        }
        for (m, tests) in METRICS.iter().zip(&tested) {
            let family = tests.iter().flatten().count().max(1);
            md.push_str(&line(c, m, tests[i], family));
        }
    }
    md
}

/// One line over everything: how many cells were compared and, per metric, how many differ.
fn overall(tested: &[Vec<Option<(Welch, f64)>>], cells: usize) -> String {
    let parts: Vec<String> = METRICS
        .iter()
        .zip(tested)
        .map(|(m, tests)| {
            let differ = tests.iter().flatten().filter(|(_, p)| *p < ALPHA).count();
            let n = tests.iter().flatten().count();
            format!("{} in {differ} of {n}", m.name.to_lowercase())
        })
        .collect();
    format!(
        "Overall: {cells} cell(s) compared; significant differences (adjusted p < {ALPHA}): {}.\n",
        parts.join(", ")
    )
}

/// Each field of `a`'s JSON form whose value differs in `b`'s, as "`prefix``field`: A x vs B y".
fn field_differences<T: serde::Serialize>(a: &T, b: &T, prefix: &str, out: &mut Vec<String>) {
    let (va, vb) = (
        serde_json::to_value(a).unwrap_or_default(),
        serde_json::to_value(b).unwrap_or_default(),
    );
    let (Some(oa), Some(ob)) = (va.as_object(), vb.as_object()) else {
        return;
    };
    for (k, x) in oa {
        let y = ob.get(k).cloned().unwrap_or_default();
        if *x != y {
            out.push(format!(
                "{prefix}`{}`: A {} vs B {}",
                md_cell(k),
                md_cell(&x.to_string()),
                md_cell(&y.to_string())
            ));
        }
    }
}

/// What differs between the two runs' grids besides their cells (training settings, epochs,
/// limits): differences there explain differences in the results.
fn spec_differences(a: &Results, b: &Results) -> String {
    let mut diffs = Vec::new();
    field_differences(a.grid.training(), b.grid.training(), "", &mut diffs);
    for ea in a.grid.datasets() {
        let Some(eb) = b
            .grid
            .datasets()
            .iter()
            .find(|e| e.dataset == ea.dataset && e.model == ea.model)
        else {
            continue;
        };
        let prefix = format!("{} / {} ", ea.dataset, ea.model);
        field_differences(ea, eb, &prefix, &mut diffs);
    }
    if diffs.is_empty() {
        "The two runs' training settings are the same.\n\n".into()
    } else {
        format!(
            "**Settings differ** (they may explain the differences below): {}.\n\n",
            diffs.join("; ")
        )
    }
}

fn line(c: &Cell, m: &Metric, test: Option<(Welch, f64)>, family: usize) -> String {
    let (sa, sb) = ((m.get)(c.ra), (m.get)(c.rb));
    let side = |s: &Stat, row: &Row| {
        let fewer = if s.n < row.n {
            format!(
                ", {} of {} runs: the others {}",
                s.n,
                row.n,
                why_fewer(s, row)
            )
        } else {
            String::new()
        };
        s.text(m.show)
            .map_or("N/A".to_string(), |t| format!("{t} (n={}{fewer})", s.n))
    };
    let (diff, p) = match test {
        Some((w, adjusted)) => {
            let (lo, hi) = w.ci(1.0 - ALPHA / family as f64);
            let d = format!(
                "{}{} [{}, {}]",
                if w.diff >= 0.0 { "+" } else { "" },
                (m.show)(w.diff),
                (m.show)(lo),
                (m.show)(hi)
            );
            let p = if adjusted < ALPHA {
                format!("**{adjusted:.3}** ({:.3})", w.p)
            } else {
                format!("{adjusted:.3} ({:.3})", w.p)
            };
            (d, p)
        }
        None => match (sa.mean, sb.mean) {
            (Some(x), Some(y)) => (
                format!("{}{}", if y >= x { "+" } else { "" }, (m.show)(y - x)),
                "– (fewer than 2 seeds a side)".to_string(),
            ),
            _ => ("–".to_string(), "–".to_string()),
        },
    };
    format!(
        "| {} | {} | {} | {} | {diff} | {p} |\n",
        md_cell(&c.ra.activation),
        m.name,
        side(sa, c.ra),
        side(sb, c.rb)
    )
}

/// Why a cell has fewer values than its row has runs.
fn why_fewer(s: &Stat, row: &Row) -> &'static str {
    match (s.missing > 0, row.disturbed > 0) {
        (true, true) => "never reached the target or were timed on a disturbed machine",
        (true, false) => "never reached the target",
        _ => "were timed on a disturbed machine",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::results;

    #[test]
    fn cells_side_by_side_with_differences_and_significance() {
        let a = results();
        let mut b = results();
        // B: every error rate 2 points higher, with a little spread.
        for (i, j) in b.jobs.iter_mut().enumerate() {
            j.error_rate = j.error_rate.map(|e| e + 0.02 + 0.001 * i as f64);
        }
        let md = compare(&a, &b, "a/state.db", "b/results.json");
        assert!(
            md.starts_with("# Comparison: A = t (a/state.db) vs B = t (b/results.json)"),
            "{md}"
        );
        assert!(md.contains("## mnist / paper-cnn"), "{md}");
        let relu_error = md
            .lines()
            .find(|l| l.starts_with("| relu | Error rate |"))
            .unwrap();
        assert!(
            relu_error.contains("| 5.00% ± 0.00% (n=2) |"),
            "{relu_error}"
        );
        assert!(relu_error.ends_with("(0.016) |"), "{relu_error}");
        assert!(relu_error.contains("+2.05% ["), "{relu_error}");
        assert!(md.contains("Overall: 2 cell(s) compared"), "{md}");
        assert!(md.contains("training settings are the same"), "{md}");
        // Latencies are equal constants: no difference, p = 1.
        let latency = md
            .lines()
            .find(|l| l.starts_with("| tanh | Latency per sample |"))
            .unwrap();
        assert!(latency.ends_with("| 1.000 (1.000) |"), "{latency}");
        let faster = crate::fixtures::results_of(
            &crate::fixtures::GRID.replace("seeds:", "training: {learning_rate: 0.01}\nseeds:"),
        );
        let md = compare(&a, &faster, "a", "b");
        assert!(
            md.contains("**Settings differ**") && md.contains("`learning_rate`"),
            "{md}"
        );
        assert_eq!(seconds(0.25), "250 ms");
        let mut other = results();
        other
            .jobs
            .retain(|j| j.activation == common::Activation::Tanh);
        let md = compare(&a, &other, "a", "b");
        assert!(!md.contains("| relu |"), "only cells in both: {md}");
    }
}
