//! Comparisons with the best, corrected for the family they belong to.
//!
//! Within one table (dataset × model) and one metric, each activation is compared with the
//! best one by Welch's t-test. The best is chosen from the same data, so Holm's step-down over
//! only the comparisons with it would not hold the family-wise error rate: with six equal
//! activations the largest gap is always among them, and the simulation in this module's
//! tests finds a false "worse" in 7–9% of studies that way from 5 seeds on. What is adjusted
//! instead is every pair of the table's activations (Holm's step-down over k(k−1)/2
//! tests): each claim "A is worse than the best" is then one of a family whose error rate is
//! at most α whatever the selection, under any dependence between the tests, with unequal
//! variances (Hsu's multiple comparisons with the best assume equal variances and equal
//! numbers of runs, which seeds that fail, diverge or are left out break). The intervals are
//! simultaneous (Bonferroni: 1 − α/m each). Equivalence within a margin is two one-sided
//! tests (TOST) on the same pairs, adjusted the same way.

use common::{Dataset, Model};
use serde::Serialize;

use crate::results::Results;
use crate::stats::{holm, welch, Welch};
use crate::table::{best_index, unmarked, Row, Stat, Table, ALPHA};

/// The correction's name in `results.json`.
pub const CORRECTION: &str = "holm over all pairs of the table";

/// What a comparison with the best decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Significantly worse than the best (adjusted p < α).
    Worse,
    /// Within the grid's `equivalence_margin` of the best (adjusted TOST p < α).
    Equivalent,
    /// Neither, at these seeds.
    Open,
}

/// The runs of each side of a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Seeds {
    pub activation: usize,
    pub best: usize,
}

/// One activation compared with the best of a metric, as `results.json` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub dataset: Dataset,
    pub model: Model,
    /// The job record's field: `error_rate`, `seconds_to_target`, ...
    pub metric: &'static str,
    pub activation: String,
    pub best: String,
    /// The activation's mean minus the best's, in the metric's units.
    pub difference: f64,
    /// Its simultaneous confidence interval (95% for the whole family).
    pub ci_low: f64,
    pub ci_high: f64,
    /// Welch's two-sided p.
    pub p_value: f64,
    pub p_adjusted: f64,
    pub correction: String,
    /// The adjusted TOST p of equivalence within the margin, where one is given (error rate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub equivalence_p_adjusted: Option<f64>,
    pub verdict: Verdict,
    pub seeds: Seeds,
}

type Get = fn(&Row) -> &Stat;
type GetMut = fn(&mut Row) -> &mut Stat;

/// The compared columns: the record field each holds, and the cell.
const COLUMNS: [(&str, Get, GetMut); 5] = [
    ("total_train_seconds", |r| &r.total, |r| &mut r.total),
    ("latency_ms_per_sample", |r| &r.latency, |r| &mut r.latency),
    (
        "first_epoch_at_target",
        |r| &r.first_epoch,
        |r| &mut r.first_epoch,
    ),
    ("seconds_to_target", |r| &r.to_target, |r| &mut r.to_target),
    ("error_rate", |r| &r.error, |r| &mut r.error),
];

/// `w` of a against b, as b against a.
fn flipped(w: &Welch) -> Welch {
    Welch {
        t: -w.t,
        diff: -w.diff,
        ci95: (-w.ci95.1, -w.ci95.0),
        ..*w
    }
}

/// One activation against the best, within its family.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VsBest {
    /// Welch's two-sided p.
    pub p: f64,
    /// Holm's over every pair, times the race's looks (capped at 1).
    pub p_adjusted: f64,
    /// The activation's mean minus the best's, with its simultaneous interval.
    pub diff: f64,
    pub ci: (f64, f64),
    /// The adjusted TOST p of equivalence within `margin`, where one is given.
    pub equivalent_p: Option<f64>,
}

/// Compares every usable pair of `samples` (None: left out) by Welch's t-test, adjusts the
/// family by Holm's step-down over the pairs and then by `looks` (Bonferroni over the looks a
/// seed race takes at its data: each look spends α/looks, so the family-wise rate over all of
/// them stays at α), and returns each sample's comparison with `best` (None for the best
/// itself, for samples left out, and where fewer than two values leave nothing to test).
/// `margin` (in the values' units) adds the adjusted TOST p of equivalence.
pub fn vs_best(
    samples: &[Option<&[f64]>],
    best: usize,
    looks: u32,
    margin: Option<f64>,
) -> Vec<Option<VsBest>> {
    let mut pairs: Vec<(usize, usize, Welch)> = Vec::new();
    for i in 0..samples.len() {
        for j in i + 1..samples.len() {
            if let (Some(a), Some(b)) = (samples[i], samples[j]) {
                if let Some(w) = welch(a, b) {
                    pairs.push((i, j, w));
                }
            }
        }
    }
    let looks = f64::from(looks.max(1));
    let m = pairs.len().max(1) as f64;
    let scaled =
        |ps: Vec<f64>| -> Vec<f64> { ps.into_iter().map(|p| (p * looks).min(1.0)).collect() };
    let adjusted = scaled(holm(&pairs.iter().map(|p| p.2.p).collect::<Vec<_>>()));
    let equivalent =
        margin.map(|m| scaled(holm(&pairs.iter().map(|p| p.2.tost(m)).collect::<Vec<_>>())));
    let mut out = vec![None; samples.len()];
    for (k, &(i, j, w)) in pairs.iter().enumerate() {
        let (other, w) = match (i == best, j == best) {
            (false, true) => (i, w),
            (true, false) => (j, flipped(&w)),
            _ => continue,
        };
        out[other] = Some(VsBest {
            p: w.p,
            p_adjusted: adjusted[k],
            diff: w.diff,
            ci: w.ci(1.0 - ALPHA / (m * looks)),
            equivalent_p: equivalent.as_ref().map(|e| e[k]),
        });
    }
    out
}

/// Sets each cell's comparison with its column's best: raw and adjusted p, the difference with
/// its simultaneous interval, and (error rate, with `margin_pp`) the adjusted TOST p. `looks`:
/// how many times a seed race looked at the data (1 for fixed seeds).
pub fn mark(rows: &mut [Row], margin_pp: Option<f64>, looks: u32) {
    for (metric, get, get_mut) in COLUMNS {
        let Some(best) = best_index(rows, get) else {
            continue;
        };
        // Times measured on a disturbed machine only are not compared.
        let samples: Vec<Option<&[f64]>> = rows
            .iter()
            .map(|r| (!get(r).disturbed).then_some(&get(r).values[..]))
            .collect();
        let margin = margin_pp
            .filter(|_| metric == "error_rate")
            .map(|m| m / 100.0);
        let found = vs_best(&samples, best, looks, margin);
        for (i, v) in found.into_iter().enumerate() {
            let Some(v) = v else { continue };
            let stat = get_mut(&mut rows[i]);
            stat.p_vs_best = Some(v.p);
            stat.p_adjusted = Some(v.p_adjusted);
            stat.diff_vs_best = Some((v.diff, v.ci));
            stat.equivalent_p = v.equivalent_p;
        }
    }
}

/// How many looks a seed race of `results`' grid takes at most (1 for fixed seeds).
pub fn looks(results: &Results) -> u32 {
    results.grid.race().map_or(1, |r| r.looks())
}

/// The correction's name in `results.json`, for a study that looks `looks` times.
pub fn correction(looks: u32) -> String {
    if looks > 1 {
        format!("{CORRECTION}, times {looks} looks of the seed race (bonferroni)")
    } else {
        CORRECTION.to_string()
    }
}

/// The tables of `results` (see [`crate::table`]), each cell compared with its column's best.
pub fn tables(results: &Results) -> Vec<Table> {
    let margin = results.grid.equivalence_margin();
    let looks = looks(results);
    let mut tables = unmarked(results);
    for t in &mut tables {
        mark(&mut t.rows, margin, looks);
    }
    tables
}

/// Every comparison with the best in `results`' tables, for `results.json`.
pub fn comparisons(results: &Results) -> Vec<Comparison> {
    let mut out = Vec::new();
    let correction = correction(looks(results));
    for t in tables(results) {
        for (metric, get, _) in COLUMNS {
            let Some(best) = t.best_row(get) else {
                continue;
            };
            for row in &t.rows {
                let s = get(row);
                let (Some(p), Some(adj), Some((d, (lo, hi)))) =
                    (s.p_vs_best, s.p_adjusted, s.diff_vs_best)
                else {
                    continue;
                };
                out.push(Comparison {
                    dataset: t.dataset,
                    model: t.model,
                    metric,
                    activation: row.activation.clone(),
                    best: best.activation.clone(),
                    difference: d,
                    ci_low: lo,
                    ci_high: hi,
                    p_value: p,
                    p_adjusted: adj,
                    correction: correction.clone(),
                    equivalence_p_adjusted: s.equivalent_p,
                    verdict: s.verdict(),
                    seeds: Seeds {
                        activation: s.n,
                        best: get(best).n,
                    },
                });
            }
        }
    }
    out
}

impl Stat {
    /// What the comparison with the best decided (Open where none was made).
    pub fn verdict(&self) -> Verdict {
        if self.significantly_worse() {
            Verdict::Worse
        } else if self.equivalent_p.is_some_and(|p| p < ALPHA) {
            Verdict::Equivalent
        } else {
            Verdict::Open
        }
    }
}

#[cfg(test)]
#[path = "significance_sim.rs"]
pub(crate) mod sim;

#[cfg(test)]
mod tests {
    use super::*;

    /// `results.json` lists each comparison with the best: raw and adjusted p, the procedure,
    /// the interval, the verdict and the runs of each side; it reads back as results.
    #[test]
    fn comparisons_in_results_json() {
        let r = crate::fixtures::results();
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        let c = json["comparisons"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["metric"] == "error_rate")
            .unwrap()
            .clone();
        assert_eq!(c["activation"], "tanh");
        assert_eq!(c["best"], "relu");
        assert_eq!(c["verdict"], "worse");
        assert_eq!(c["correction"], CORRECTION);
        assert!(c["p_adjusted"].as_f64().unwrap() >= c["p_value"].as_f64().unwrap());
        assert_eq!(c["seeds"]["activation"], 2);
        assert!(
            (c["difference"].as_f64().unwrap() - 0.10).abs() < 1e-9,
            "{c}"
        );
        assert!(c["ci_low"].as_f64().unwrap() <= c["ci_high"].as_f64().unwrap());
        let back: Results = serde_json::from_value(json).unwrap();
        assert_eq!(back.jobs.len(), r.jobs.len());
    }
}
