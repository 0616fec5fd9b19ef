//! The summary in words for one table: fastest to target, lowest error, which differences
//! are real, and the recommendation.

use crate::format::fmt_hms;
use crate::table::{best_index, Row, Table, ALPHA};

/// The sentences of the summary, in reading order.
pub fn summary(t: &Table) -> Vec<String> {
    let mut out = Vec::new();
    let runs = t.rows.iter().map(|r| r.n).max().unwrap_or(0);
    if let Some(line) = fastest(t) {
        out.push(line);
    }
    let disturbed: Vec<&str> = t
        .rows
        .iter()
        .filter(|r| r.times_disturbed)
        .map(|r| r.activation.as_str())
        .collect();
    if !disturbed.is_empty() {
        out.push(format!(
            "Comparisons of time rest on disturbed runs for {} (other processes competed for the CPU): do not trust them before a run on a quiet machine.",
            disturbed.join(", ")
        ));
    }
    let Some(lowest) = t.best_row(|r| &r.error) else {
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
        out.extend(differences(t, lowest, runs));
    }
    out.push(recommendation(t, lowest, runs));
    out
}

fn fastest(t: &Table) -> Option<String> {
    match t.best_row(|r| &r.to_target) {
        Some(r) => Some(format!(
            "Fastest to the {:.2}% target on {}: {} ({} of training).",
            100.0 * t.target,
            t.dataset,
            r.activation,
            fmt_hms(r.to_target.mean.unwrap_or(0.0))
        )),
        None if !t.rows.is_empty() => Some(format!(
            "No activation reached the {:.2}% target on {}.",
            100.0 * t.target,
            t.dataset
        )),
        None => None,
    }
}

/// Fewest runs per activation for a test whose non-significance says anything at all.
const FEWEST_TO_COMPARE: usize = 3;

/// Which activations' error rates could not be told from the lowest (never "equal": a test
/// that finds no difference does not show there is none, and with fewer than 3 runs it has
/// next to no power), and which are worse.
fn differences(t: &Table, lowest: &Row, runs: usize) -> Vec<String> {
    let mut out = Vec::new();
    let untold: Vec<&Row> = t
        .rows
        .iter()
        .filter(|r| {
            r.activation != lowest.activation && r.error.p_vs_best.is_some_and(|p| p >= ALPHA)
        })
        .collect();
    if runs < FEWEST_TO_COMPARE && !untold.is_empty() {
        let names: Vec<&str> = untold.iter().map(|r| r.activation.as_str()).collect();
        out.push(format!(
            "Not enough runs to compare {} with {} on {}: {runs} seeds per activation; with fewer than {FEWEST_TO_COMPARE}, no difference found means nothing.",
            names.join(", "),
            lowest.activation,
            t.dataset,
        ));
    } else {
        for r in untold {
            out.push(format!(
                "No significant difference between {} and {} on {} after {} seeds (error rate {}, Welch's t-test p = {:.2}); that does not show they are equal.",
                r.activation,
                lowest.activation,
                t.dataset,
                runs,
                effect(r),
                r.error.p_vs_best.unwrap_or(1.0)
            ));
        }
    }
    let worse: Vec<String> = t
        .rows
        .iter()
        .filter(|r| r.error.significantly_worse())
        .map(|r| format!("{} ({})", r.activation, effect(r)))
        .collect();
    if !worse.is_empty() {
        out.push(format!(
            "Significantly higher error than {} (p < {ALPHA}): {}.",
            lowest.activation,
            worse.join(", ")
        ));
    }
    out
}

/// A row's error-rate difference from the lowest, in percentage points, with its 95% CI.
fn effect(r: &Row) -> String {
    match r.error.diff_vs_best {
        Some((d, (lo, hi))) => format!(
            "{:+.2} pp, 95% CI [{:+.2}, {:+.2}]",
            100.0 * d,
            100.0 * lo,
            100.0 * hi
        ),
        None => "difference not testable".into(),
    }
}

/// The paper's criterion: the best time-to-accuracy among the most accurate activations.
fn recommendation(t: &Table, lowest: &Row, runs: usize) -> String {
    let contenders: Vec<Row> = t
        .rows
        .iter()
        .filter(|r| r.error.mean.is_some() && !r.error.significantly_worse())
        .filter(|r| runs >= 2 || r.activation == lowest.activation)
        .cloned()
        .collect();
    match best_index(&contenders, |r| &r.to_target).map(|i| &contenders[i]) {
        Some(pick) => format!(
            "Recommendation for {} / {}: {} — the fastest to the target among the activations whose error rate is not significantly worse than the best.",
            t.dataset, t.model, pick.activation
        ),
        None => format!(
            "Recommendation for {} / {}: {} — the lowest error rate; none of the most accurate activations reached the target, so time to accuracy cannot decide.",
            t.dataset, t.model, lowest.activation
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::results;
    use crate::table::tables;

    #[test]
    fn names_the_fastest_the_most_accurate_and_the_worse() {
        let t = &tables(&results())[0];
        let lines = summary(t);
        assert!(
            lines[0].contains("Fastest to the 90.00% target on mnist: relu"),
            "{lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l == "Significantly higher error than relu (p < 0.05): tanh (+10.00 pp, 95% CI [+10.00, +10.00])."),
            "{lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("Recommendation for mnist / paper-cnn: relu")),
            "{lines:?}"
        );
    }

    #[test]
    fn a_target_reached_by_some_seeds_only_does_not_win() {
        let r = crate::fixtures::relu_reaches_the_target_once();
        let lines = summary(&tables(&r)[0]);
        assert!(
            lines[0].contains("Fastest to the 90.00% target on mnist: tanh"),
            "{lines:?}"
        );
    }

    #[test]
    fn no_difference_is_never_called_equality() {
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
        let t = &tables(&r)[0];
        let lines = summary(t);
        assert!(
            lines.iter().any(|l| l.starts_with(
                "Not enough runs to compare tanh with relu on mnist: 2 seeds per activation"
            )),
            "{lines:?}"
        );
        assert!(
            !lines.iter().any(|l| l.contains("indistinguishable")),
            "{lines:?}"
        );
        // With 3 or more runs: a non-significant p, said as such, never as equality.
        let lowest = t.best_row(|r| &r.error).unwrap();
        let lines = differences(t, lowest, 3);
        assert!(
            lines[0].starts_with(
                "No significant difference between tanh and relu on mnist after 3 seeds"
            ) && lines[0].ends_with("that does not show they are equal."),
            "{lines:?}"
        );
    }
}
