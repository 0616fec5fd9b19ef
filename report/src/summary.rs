//! The summary in words for one table: fastest to target, lowest error, which differences
//! are real, and the recommendation.

use crate::format::fmt_hms;
use crate::significance::Verdict;
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
    out.extend(fewer_runs(t, runs));
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

/// The activations with fewer succeeded runs than the most any has, named (a cancel, a
/// failure or runs left out would otherwise shrink a comparison silently).
fn fewer_runs(t: &Table, runs: usize) -> Option<String> {
    let fewer: Vec<String> = t
        .rows
        .iter()
        .filter(|r| r.n < runs)
        .map(|r| format!("{} {}", r.activation, r.n))
        .collect();
    let why = if t.looks > 1 {
        "the seed race gives no more seeds to a comparison it has decided; failed, diverged and cancelled runs do not count either"
    } else {
        "failed, diverged and cancelled runs do not count; see Problems"
    };
    (!fewer.is_empty()).then(|| {
        format!(
            "Fewer succeeded runs than the {runs} of the others: {} ({why}).",
            fewer.join(", ")
        )
    })
}

fn fastest(t: &Table) -> Option<String> {
    let timed_on_busy = t
        .rows
        .iter()
        .any(|r| r.to_target.disturbed && r.to_target.mean.is_some());
    match t.best_row(|r| &r.to_target) {
        None if timed_on_busy => Some(format!(
            "The fastest to the {:.2}% target on {} cannot be named: the times of those that reached it were measured on a disturbed machine.",
            100.0 * t.target,
            t.dataset
        )),
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
/// next to no power), which are equivalent within the grid's margin, and which are worse; all
/// on p-values adjusted for the table's family (see [`crate::significance`]).
fn differences(t: &Table, lowest: &Row, runs: usize) -> Vec<String> {
    let mut out = Vec::new();
    let verdict = |r: &Row| r.error.p_adjusted.map(|_| r.error.verdict());
    let open: Vec<&Row> = t
        .rows
        .iter()
        .filter(|r| r.activation != lowest.activation && verdict(r) == Some(Verdict::Open))
        .collect();
    if runs < FEWEST_TO_COMPARE && !open.is_empty() {
        let names: Vec<&str> = open.iter().map(|r| r.activation.as_str()).collect();
        out.push(format!(
            "Not enough runs to compare {} with {} on {}: {runs} seeds per activation; with fewer than {FEWEST_TO_COMPARE}, no difference found means nothing.",
            names.join(", "),
            lowest.activation,
            t.dataset,
        ));
    } else {
        for r in open {
            out.push(format!(
                "No significant difference between {} and {} on {} after {} seeds (error rate {}; adjusted p = {:.2}, raw p = {:.2}); that does not show they are equal.",
                r.activation,
                lowest.activation,
                t.dataset,
                runs,
                effect(r),
                r.error.p_adjusted.unwrap_or(1.0),
                r.error.p_vs_best.unwrap_or(1.0),
            ));
        }
    }
    let named = |v: Verdict| -> Vec<String> {
        t.rows
            .iter()
            .filter(|r| verdict(r) == Some(v))
            .map(|r| format!("{} ({})", r.activation, effect(r)))
            .collect()
    };
    // The TOST p, not the simultaneous interval: Holm's step-down can show equivalence where
    // the most conservative (Bonferroni) interval still reaches past the margin.
    let equivalent: Vec<String> = t
        .rows
        .iter()
        .filter(|r| verdict(r) == Some(Verdict::Equivalent))
        .map(|r| {
            let d = r.error.diff_vs_best.map_or(0.0, |(d, _)| d);
            let p = r.error.equivalent_p.unwrap_or(1.0);
            format!(
                "{} ({:+.2} pp; adjusted p = {p:.3})",
                r.activation,
                100.0 * d
            )
        })
        .collect();
    if let (false, Some(m)) = (equivalent.is_empty(), t.equivalence_margin) {
        out.push(format!(
            "Equivalent to {} within ±{m} pp of error rate (two one-sided tests, adjusted p < {ALPHA}): {}.",
            lowest.activation,
            equivalent.join(", ")
        ));
    }
    let worse = named(Verdict::Worse);
    if !worse.is_empty() {
        out.push(format!(
            "Significantly higher error than {} (adjusted p < {ALPHA}): {}.",
            lowest.activation,
            worse.join(", ")
        ));
    }
    out
}

/// A row's error-rate difference from the lowest, in percentage points, with its
/// simultaneous 95% CI.
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

/// The paper's criterion: the best time-to-accuracy among the most accurate activations. It
/// says on the same line when few seeds or inseparable error rates make it provisional.
fn recommendation(t: &Table, lowest: &Row, runs: usize) -> String {
    let head = format!("Recommendation for {} / {}:", t.dataset, t.model);
    if runs < 2 {
        return format!(
            "{head} {} — the lowest error rate in one run per activation; with one seed nothing is tested, so this is a guess until seeds are added.",
            lowest.activation
        );
    }
    let contenders: Vec<Row> = t
        .rows
        .iter()
        .filter(|r| r.error.mean.is_some() && !r.error.significantly_worse())
        .cloned()
        .collect();
    let few = if runs < FEWEST_TO_COMPARE {
        format!(" Provisional: {runs} seeds per activation cannot separate error rates (at least {FEWEST_TO_COMPARE} are needed).")
    } else {
        String::new()
    };
    let Some(pick) = best_index(&contenders, |r| &r.to_target).map(|i| &contenders[i]) else {
        return format!(
            "{head} {} — the lowest error rate; none of the most accurate activations has a time to the target measured on a quiet machine, so time to accuracy cannot decide.{few}",
            lowest.activation
        );
    };
    let others: Vec<&str> = contenders
        .iter()
        .filter(|r| r.activation != pick.activation && r.activation != lowest.activation)
        .map(|r| r.activation.as_str())
        .collect();
    let equivalent = |name: &str| {
        t.rows
            .iter()
            .any(|r| r.activation == name && r.error.verdict() == Verdict::Equivalent)
    };
    let margin = t.equivalence_margin.unwrap_or(0.0);
    let inseparable = if !few.is_empty() {
        String::new()
    } else if pick.activation == lowest.activation {
        let (same, open): (Vec<&str>, Vec<&str>) = others.iter().partition(|a| equivalent(a));
        let mut text = String::new();
        if !same.is_empty() {
            text.push_str(&format!(
                " The error rates of {} are equivalent to its own within ±{margin} pp.",
                same.join(", ")
            ));
        }
        if !open.is_empty() {
            text.push_str(&format!(
                " The error rates of {} cannot be told from its own at these seeds.",
                open.join(", ")
            ));
        }
        text
    } else if equivalent(&pick.activation) && others.iter().all(|a| equivalent(a)) {
        format!(
            " Its error rate is equivalent to {}'s (the lowest) within ±{margin} pp, so the choice rests on time.",
            lowest.activation
        )
    } else {
        let and = if others.is_empty() {
            String::new()
        } else {
            format!(", and those of {},", others.join(", "))
        };
        format!(
            " Its error rate{and} cannot be told from {}'s (the lowest) at these seeds, so the choice rests on time.",
            lowest.activation
        )
    };
    format!(
        "{head} {} — the fastest to the target among the activations whose error rate is not significantly worse than the best.{few}{inseparable}",
        pick.activation
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::results;
    use crate::significance::tables;

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
                .any(|l| l == "Significantly higher error than relu (adjusted p < 0.05): tanh (+10.00 pp, 95% CI [+10.00, +10.00])."),
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

    /// One seed per activation: the recommendation is the lowest error, and says so (it named
    /// the lowest-error one while claiming "the fastest to the target").
    #[test]
    fn one_seed_recommends_the_lowest_error_and_says_it_is_a_guess() {
        let r = crate::fixtures::results_of(&crate::fixtures::GRID.replace("[0, 1]", "[0]"));
        let lines = summary(&tables(&r)[0]);
        let rec = lines.last().unwrap();
        assert!(
            rec.starts_with("Recommendation for mnist / paper-cnn: relu — the lowest error rate in one run per activation")
                && rec.contains("guess until seeds are added"),
            "{lines:?}"
        );
    }

    /// Two seeds: the recommendation says on its own line that it is provisional; an
    /// activation left with fewer runs is named.
    #[test]
    fn few_seeds_and_fewer_runs_are_said() {
        let mut r = results();
        let lines = summary(&tables(&r)[0]);
        assert!(
            lines
                .last()
                .unwrap()
                .contains("Provisional: 2 seeds per activation cannot separate error rates"),
            "{lines:?}"
        );
        r.jobs[3].status = common::JobStatus::Cancelled;
        let lines = summary(&tables(&r)[0]);
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("Fewer succeeded runs than the 2 of the others: tanh 1")),
            "{lines:?}"
        );
    }

    /// With a margin, equal activations at enough seeds are called equivalent, never "equal".
    #[test]
    fn equivalence_within_the_margin_is_said() {
        let grid = crate::fixtures::GRID.replace("[0, 1]", "[0, 1, 2, 3, 4, 5]");
        let mut r = crate::fixtures::results_of(&format!("{grid}equivalence_margin: 1.0\n"));
        for (i, j) in r.jobs.iter_mut().enumerate() {
            // Both about 5.0% ± 0.1 pp.
            j.error_rate = Some(0.05 + 0.001 * ((i % 3) as f64 - 1.0));
        }
        let lines = summary(&tables(&r)[0]);
        assert!(
            lines.iter().any(
                |l| l.starts_with("Equivalent to ") && l.contains("within ±1 pp of error rate")
            ),
            "{lines:?}"
        );
    }
}
