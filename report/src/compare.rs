//! `coordinator compare A B`: two runs side by side, cell by cell (dataset × model ×
//! activation), each metric as A, B, the difference B − A with its 95% confidence interval and
//! Welch's p over the seeds of each side.

use std::fmt::Write as _;

use crate::format::{fmt_hms, md_cell};
use crate::results::Results;
use crate::stats::welch;
use crate::table::{tables, Row, Stat, ALPHA};

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

/// The comparison as Markdown; `a_name` and `b_name` say where each run came from.
pub fn compare(a: &Results, b: &Results, a_name: &str, b_name: &str) -> String {
    let mut md = format!(
        "# Comparison: A = {} ({}) vs B = {} ({})\n\n",
        md_cell(a.grid.name()),
        md_cell(a_name),
        md_cell(b.grid.name()),
        md_cell(b_name)
    );
    md.push_str(
        "Each cell: mean ± sd over the seeds that have a value (n); Δ = B − A with its 95% \
         confidence interval (Welch); **p < 0.05** in bold. Only cells present in both runs \
         are compared.\n\n",
    );
    let (ta, tb) = (tables(a), tables(b));
    let mut any = false;
    for t in &ta {
        let Some(u) = tb
            .iter()
            .find(|u| u.dataset == t.dataset && u.model == t.model)
        else {
            continue;
        };
        let _ = writeln!(md, "## {} / {}\n", t.dataset, t.model);
        md.push_str(
            "| Activation | Metric | A | B | Δ (B − A) [95% CI] | p |\n|---|---|---|---|---|---|\n",
        );
        for ra in &t.rows {
            let Some(rb) = u.rows.iter().find(|r| r.activation == ra.activation) else {
                continue;
            };
            any = true;
            for m in &METRICS {
                md.push_str(&line(ra, rb, m));
            }
        }
        md.push('\n');
    }
    if !any {
        md.push_str("No dataset × model × activation has succeeded runs in both.\n");
    }
    md
}

fn line(ra: &Row, rb: &Row, m: &Metric) -> String {
    let (sa, sb) = ((m.get)(ra), (m.get)(rb));
    let side = |s: &Stat| {
        s.text(m.show)
            .map_or("N/A".to_string(), |t| format!("{t} (n={})", s.n))
    };
    let (diff, p) = match welch(&sb.values, &sa.values) {
        Some(w) => {
            let d = format!(
                "{}{} [{}, {}]",
                if w.diff >= 0.0 { "+" } else { "" },
                (m.show)(w.diff),
                (m.show)(w.ci95.0),
                (m.show)(w.ci95.1)
            );
            let p = if w.p < ALPHA {
                format!("**{:.3}**", w.p)
            } else {
                format!("{:.3}", w.p)
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
        md_cell(&ra.activation),
        m.name,
        side(sa),
        side(sb)
    )
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
        assert!(relu_error.ends_with("| **0.016** |"), "{relu_error}");
        assert!(relu_error.contains("+2.05% ["), "{relu_error}");
        // Latencies are equal constants: no difference, p = 1.
        let latency = md
            .lines()
            .find(|l| l.starts_with("| tanh | Latency per sample |"))
            .unwrap();
        assert!(latency.ends_with("| 1.000 |"), "{latency}");
        let mut other = results();
        other
            .jobs
            .retain(|j| j.activation == common::Activation::Tanh);
        let md = compare(&a, &other, "a", "b");
        assert!(!md.contains("| relu |"), "only cells in both: {md}");
    }
}
