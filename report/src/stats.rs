//! Is a difference between two activations real or noise? Welch's t-test on per-seed values,
//! two one-sided tests (TOST) for equivalence within a margin, and Holm's step-down
//! adjustment of a family of p-values.

use statrs::distribution::{ContinuousCDF, StudentsT};

/// Result of Welch's unequal-variances t-test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Welch {
    pub t: f64,
    pub df: f64,
    /// Two-sided p-value.
    pub p: f64,
    /// The effect: mean of `a` minus mean of `b`, in the values' units.
    pub diff: f64,
    /// Its 95% confidence interval (Welch–Satterthwaite: diff ± t(0.975, df) · se).
    pub ci95: (f64, f64),
    /// The standard error of `diff` (0 when neither side varies).
    pub se: f64,
}

impl Welch {
    /// The two-sided confidence interval of `diff` at `level` (e.g. 1 − α/m for one of m
    /// simultaneous intervals, Bonferroni).
    pub fn ci(&self, level: f64) -> (f64, f64) {
        if self.se == 0.0 {
            return (self.diff, self.diff);
        }
        let half = StudentsT::new(0.0, 1.0, self.df)
            .map(|d| d.inverse_cdf(0.5 + level / 2.0) * self.se)
            .unwrap_or(f64::INFINITY);
        (self.diff - half, self.diff + half)
    }

    /// The p-value of two one-sided tests that |true difference| < `margin`: the larger of
    /// the p of "diff ≤ −margin" and of "diff ≥ margin". Small: equivalent within the margin.
    pub fn tost(&self, margin: f64) -> f64 {
        if self.se == 0.0 {
            return if self.diff.abs() < margin { 0.0 } else { 1.0 };
        }
        let Ok(dist) = StudentsT::new(0.0, 1.0, self.df) else {
            return 1.0;
        };
        let lower = 1.0 - dist.cdf((self.diff + margin) / self.se);
        let upper = dist.cdf((self.diff - margin) / self.se);
        lower.max(upper)
    }
}

/// Holm's step-down adjustment: each p multiplied by the number of hypotheses not yet
/// rejected at its rank, made monotone, capped at 1; in the input's order. Controls the
/// family-wise error rate under any dependence between the tests.
pub fn holm(ps: &[f64]) -> Vec<f64> {
    let m = ps.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| ps[a].total_cmp(&ps[b]));
    let mut adjusted = vec![1.0; m];
    let mut running: f64 = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * ps[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

fn mean_var(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let m = xs.iter().sum::<f64>() / n;
    let v = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
    (m, v)
}

/// Welch's t-test of `a` against `b`; None when either has fewer than two values or both
/// have no spread (nothing can be said).
pub fn welch(a: &[f64], b: &[f64]) -> Option<Welch> {
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let (ma, va) = mean_var(a);
    let (mb, vb) = mean_var(b);
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let se2 = va / na + vb / nb;
    if se2 <= 0.0 {
        // Identical constants: no difference if equal means, otherwise certain.
        return Some(Welch {
            t: if ma == mb { 0.0 } else { f64::INFINITY },
            df: na + nb - 2.0,
            p: if ma == mb { 1.0 } else { 0.0 },
            diff: ma - mb,
            ci95: (ma - mb, ma - mb),
            se: 0.0,
        });
    }
    let t = (ma - mb) / se2.sqrt();
    let df = se2.powi(2) / ((va / na).powi(2) / (na - 1.0) + (vb / nb).powi(2) / (nb - 1.0));
    let dist = StudentsT::new(0.0, 1.0, df).ok()?;
    let p = 2.0 * (1.0 - dist.cdf(t.abs()));
    let half = dist.inverse_cdf(0.975) * se2.sqrt();
    let diff = ma - mb;
    Some(Welch {
        t,
        df,
        p,
        diff,
        ci95: (diff - half, diff + half),
        se: se2.sqrt(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_values_computed_by_hand() {
        // a: mean 2, var 1; b: mean 5, var 1; n = 3 each.
        // se² = 1/3 + 1/3, t = -3 / sqrt(2/3) = -3.6742; df = (2/3)² / (2·(1/3)²/2) = 4.
        let w = welch(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]).unwrap();
        assert!((w.t + 3.674_234_6).abs() < 1e-6, "{w:?}");
        assert!((w.df - 4.0).abs() < 1e-9, "{w:?}");
        // Two-sided p for t = 3.6742 with 4 df (scipy.stats.ttest_ind(equal_var=False)): 0.02131.
        assert!((w.p - 0.021_312).abs() < 1e-4, "{w:?}");
        // diff -3, 95% CI -3 ± t(0.975, 4) · sqrt(2/3) = -3 ± 2.776445 · 0.816497 = ±2.266958.
        assert_eq!(w.diff, -3.0);
        assert!((w.ci95.0 + 5.266_958).abs() < 1e-5, "{w:?}");
        assert!((w.ci95.1 + 0.733_042).abs() < 1e-5, "{w:?}");
    }

    #[test]
    fn unequal_variances() {
        // a: mean 1.5, var 1/6 (n 4); b: mean 4, var 4 (n 3).
        // se² = 1/24 + 4/3 = 1.375; t = -2.5 / √1.375 = -2.132007;
        // df = 1.890625 / (0.000578704 + 0.888888889) = 2.125569.
        let w = welch(&[1.0, 1.5, 2.0, 1.5], &[2.0, 4.0, 6.0]).unwrap();
        assert!((w.t + 2.132_007).abs() < 1e-6, "{w:?}");
        assert!((w.df - 2.125_569).abs() < 1e-6, "{w:?}");
        assert!(
            w.p > 0.05 && w.p < 0.5,
            "not significant with so few, so spread values: {w:?}"
        );
    }

    #[test]
    fn holm_matches_its_definition() {
        // Sorted 0.01, 0.02, 0.03, 0.5: × 4, 3, 2, 1 = 0.04, 0.06, 0.06, 0.5 (made monotone).
        let adj = holm(&[0.03, 0.5, 0.01, 0.02]);
        let want = [0.06, 0.5, 0.04, 0.06];
        for (a, w) in adj.iter().zip(want) {
            assert!((a - w).abs() < 1e-12, "{adj:?}");
        }
        assert_eq!(
            holm(&[0.9, 0.8]),
            vec![1.0, 1.0],
            "0.8 × 2 caps at 1, and 0.9 follows"
        );
        assert_eq!(holm(&[0.2, 0.01]), vec![0.2, 0.02]);
        assert!(holm(&[]).is_empty());
    }

    #[test]
    fn tost_and_intervals() {
        let w = welch(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]).unwrap();
        let (lo, hi) = w.ci(0.95);
        assert!((lo - w.ci95.0).abs() < 1e-9 && (hi - w.ci95.1).abs() < 1e-9);
        let (lo99, hi99) = w.ci(0.99);
        assert!(lo99 < lo && hi99 > hi, "wider at 99%");
        // diff −3, se 0.8165, df 4: within ±1 is far from shown, within ±10 clearly so.
        assert!(w.tost(1.0) > 0.5);
        // t = (−3 + 10)/0.8165 = 8.573 on 4 df: one-sided p ≈ 0.0005.
        assert!(w.tost(10.0) < 0.001, "{}", w.tost(10.0));
    }

    #[test]
    fn too_few_values() {
        assert!(welch(&[1.0], &[2.0, 3.0]).is_none());
        assert_eq!(welch(&[1.0, 1.0], &[1.0, 1.0]).unwrap().p, 1.0);
        assert_eq!(welch(&[1.0, 1.0], &[2.0, 2.0]).unwrap().p, 0.0);
    }
}
