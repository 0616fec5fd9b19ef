//! `report.html`: the tables of `report.md` plus inline-SVG figures (test accuracy and training
//! loss per epoch, accuracy against training time), self-contained: no scripts, fonts or CDNs.

use std::fmt::Write as _;

use crate::job::{JobRecord, JobStatus};
use crate::report::{attempts_text, fmt_hms, summary, tables, Results, Stat, Table};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Eight colours that stay distinct in print and for common colour-vision deficiencies
/// (Okabe–Ito), cycled for more series.
const COLORS: [&str; 8] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442",
];

/// One line of a chart: mean y at each x across seeds, and the band of ± one standard
/// deviation around it (empty with a single seed).
struct Series {
    name: String,
    points: Vec<(f64, f64)>,
    band: Vec<(f64, f64, f64)>,
}

/// Mean of `value(epoch)` at each epoch over the succeeded (or diverged) runs of one activation;
/// x is the epoch number, or with `by_time` the mean cumulative training time.
fn series(
    name: String,
    jobs: &[&JobRecord],
    by_time: bool,
    value: fn(&crate::job::EpochMetrics) -> f64,
) -> Series {
    let max_epochs = jobs.iter().map(|j| j.epochs.len()).max().unwrap_or(0);
    let mut points = Vec::new();
    let mut band = Vec::new();
    for i in 0..max_epochs {
        let at: Vec<_> = jobs.iter().filter_map(|j| j.epochs.get(i)).collect();
        let y = Stat::of(at.iter().map(|e| Some(value(e))));
        let x = if by_time {
            Stat::of(at.iter().map(|e| Some(e.train_seconds))).mean
        } else {
            Some((i + 1) as f64)
        };
        let (Some(x), Some(mean)) = (x, y.mean) else {
            continue;
        };
        if !mean.is_finite() {
            continue;
        }
        points.push((x, mean));
        if let Some(sd) = y.sd.filter(|sd| sd.is_finite()) {
            band.push((x, mean - sd, mean + sd));
        }
    }
    Series { name, points, band }
}

fn svg_chart(title: &str, x_label: &str, y_label: &str, lines: &[Series]) -> String {
    let (w, h, left, right, top, bottom) = (560.0, 320.0, 60.0, 150.0, 30.0, 45.0);
    let pts = lines.iter().flat_map(|s| {
        s.points
            .iter()
            .copied()
            .chain(s.band.iter().flat_map(|&(x, lo, hi)| [(x, lo), (x, hi)]))
    });
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" role="img" aria-label="{t}" viewBox="0 0 {w} {h}" width="{w}" height="{h}"><title>{t}</title><text x="{cx}" y="18" text-anchor="middle" class="ct">{t}</text>"#,
        t = esc(title),
        cx = left + (w - left - right) / 2.0
    );
    if x0 > x1 {
        svg.push_str(r#"<text x="60" y="150">no data yet</text></svg>"#);
        return svg;
    }
    if x1 - x0 < 1e-9 {
        x0 -= 0.5;
        x1 += 0.5;
    }
    let pad = ((y1 - y0) * 0.05).max(1e-6);
    let (y0, y1) = (y0 - pad, y1 + pad);
    let pw = w - left - right;
    let ph = h - top - bottom;
    let sx = |x: f64| left + (x - x0) / (x1 - x0) * pw;
    let sy = |y: f64| top + (1.0 - (y - y0) / (y1 - y0)) * ph;
    // Axes with 5 ticks each.
    let _ = write!(
        svg,
        r##"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>"##
    );
    for k in 0..=4 {
        let fx = x0 + (x1 - x0) * k as f64 / 4.0;
        let fy = y0 + (y1 - y0) * k as f64 / 4.0;
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" class="tk">{}</text><text x="{:.1}" y="{:.1}" text-anchor="end" class="tk">{}</text><line x1="{left}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#eee"/>"##,
            sx(fx),
            top + ph + 15.0,
            tick(fx, (x1 - x0) / 4.0),
            left - 4.0,
            sy(fy) + 4.0,
            tick(fy, (y1 - y0) / 4.0),
            left + pw,
            sy(fy),
            sy(fy)
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" class="al">{}</text><text transform="translate(14 {:.1}) rotate(-90)" text-anchor="middle" class="al">{}</text>"#,
        left + pw / 2.0,
        h - 8.0,
        esc(x_label),
        top + ph / 2.0,
        esc(y_label)
    );
    for (i, s) in lines.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        if s.band.len() > 1 {
            let upper = s
                .band
                .iter()
                .map(|&(x, _, hi)| format!("{:.1},{:.1}", sx(x), sy(hi)));
            let lower = s
                .band
                .iter()
                .rev()
                .map(|&(x, lo, _)| format!("{:.1},{:.1}", sx(x), sy(lo)));
            let _ = write!(
                svg,
                r#"<polygon class="band" fill="{color}" fill-opacity="0.15" stroke="none" points="{}"/>"#,
                upper.chain(lower).collect::<Vec<_>>().join(" ")
            );
        }
        let path: Vec<String> = s
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline class="series" data-name="{}" fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            esc(&s.name),
            path.join(" ")
        );
        for &(x, y) in &s.points {
            let _ = write!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{color}"/>"#,
                sx(x),
                sy(y)
            );
        }
        let ly = top + 14.0 + 16.0 * i as f64;
        let _ = write!(
            svg,
            r#"<line x1="{:.1}" x2="{:.1}" y1="{ly:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="2"/><text x="{:.1}" y="{:.1}" class="lg">{}</text>"#,
            left + pw + 10.0,
            left + pw + 28.0,
            left + pw + 32.0,
            ly + 4.0,
            esc(&s.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A tick label with as many decimals as the tick spacing `step` needs.
fn tick(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10()).ceil().clamp(0.0, 4.0) as usize
    };
    format!("{v:.decimals$}")
}

fn cell(stat: &Stat, best: Option<f64>, f: impl Fn(f64) -> String) -> String {
    let Some(s) = stat.text(f) else {
        return "<td>N/A</td>".into();
    };
    let mark = if stat.significantly_worse() {
        format!(
            r#" <span class="sig" title="significantly worse than the best: Welch's t-test p = {:.3}">*</span>"#,
            stat.p_vs_best.unwrap_or(0.0)
        )
    } else {
        String::new()
    };
    if best.is_some() && best == stat.mean {
        format!(r#"<td class="best">{}{mark}</td>"#, esc(&s))
    } else {
        format!("<td>{}{mark}</td>", esc(&s))
    }
}

/// Jobs by state and each job's progress, for the live page.
fn progress_html(jobs: &[JobRecord]) -> String {
    let mut h = String::from(r#"<section id="progress"><h2>Progress</h2><p>"#);
    for status in [
        JobStatus::Running,
        JobStatus::Pending,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Diverged,
    ] {
        let n = jobs.iter().filter(|j| j.status == status).count();
        let _ = write!(h, r#"<span class="state">{status}: <b>{n}</b></span> "#);
    }
    h.push_str("</p><table><thead><tr><th>Job</th><th>State</th><th>Epoch</th><th>Test accuracy</th><th>Worker</th></tr></thead><tbody>");
    for j in jobs {
        let _ = write!(
            h,
            r#"<tr class="job" data-state="{}"><th>{}</th><td>{}</td><td>{}/{}</td><td>{}</td><td>{}</td></tr>"#,
            j.status,
            esc(j.id.as_str()),
            j.status,
            j.epochs.len(),
            j.spec.epochs,
            j.epochs
                .last()
                .map_or("-".into(), |e| format!("{:.2}%", 100.0 * e.test_accuracy)),
            esc(j.worker.as_deref().unwrap_or("-"))
        );
    }
    h.push_str("</tbody></table></section>");
    h
}

fn table_html(t: &Table) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<table><caption>{} / {} — target test accuracy {:.2}%</caption><thead><tr>",
        t.dataset,
        t.model,
        100.0 * t.target
    );
    for header in t.headers() {
        let _ = write!(h, "<th>{header}</th>");
    }
    h.push_str("</tr></thead><tbody>");
    for r in &t.rows {
        let _ = write!(
            h,
            "<tr><th>{}</th><td>{}</td>{}{}{}{}{}",
            esc(&r.activation),
            r.n,
            cell(&r.total, t.best.total, fmt_hms),
            cell(&r.latency, t.best.latency, |v| format!("{v:.3}")),
            cell(&r.first_epoch, t.best.first_epoch, |v| format!("{v:.1}")),
            cell(&r.to_target, t.best.to_target, fmt_hms),
            cell(&r.error, t.best.error, |v| format!("{:.2}%", 100.0 * v)),
        );
        if t.cost_per_hour > 0.0 {
            let usd = |v: f64| format!("{:.4}", t.cost(v));
            h.push_str(&cell(&r.total, t.best.total, usd));
            h.push_str(&cell(&r.to_target, t.best.to_target, usd));
        }
        h.push_str("</tr>");
    }
    h.push_str("</tbody></table>");
    h
}

impl Results {
    /// The self-contained HTML report.
    pub fn to_html(&self) -> String {
        self.render_html(None)
    }

    /// The live page: the report plus per-job progress, reloading itself every `refresh` seconds.
    pub fn to_live_html(&self, refresh: u32) -> String {
        self.render_html(Some(refresh))
    }

    fn render_html(&self, refresh: Option<u32>) -> String {
        let mut h = String::new();
        let _ = write!(
            h,
            r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">{meta}<title>{name} — DAWNBench-style report</title><style>
body{{font-family:system-ui,sans-serif;max-width:1180px;margin:2em auto;padding:0 1em;color:#222}}
table{{border-collapse:collapse;margin:1em 0}}caption{{text-align:left;font-weight:600;padding:.3em 0}}
td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:right}}tbody th{{text-align:left}}
td.best{{font-weight:700;background:#e8f4e8}}.charts{{display:flex;flex-wrap:wrap;gap:1em}}
.sig{{color:#b00;font-weight:700}}.ct{{font-size:14px;font-weight:600}}.tk,.lg{{font-size:11px}}.al{{font-size:12px}}
@media print{{.charts{{display:block}}}}</style></head><body>"#,
            name = esc(&self.grid.name),
            meta = refresh
                .map(|s| format!(r#"<meta http-equiv="refresh" content="{s}">"#))
                .unwrap_or_default()
        );
        let _ = write!(
            h,
            "<h1>{} — DAWNBench-style report</h1>",
            esc(&self.grid.name)
        );
        let done = self.jobs.iter().filter(|j| j.status.is_terminal()).count();
        let _ = write!(h, "<p>{} of {} jobs finished.</p>", done, self.jobs.len());
        if refresh.is_some() {
            h.push_str(&progress_html(&self.jobs));
        }
        for t in tables(self) {
            let _ = write!(h, "<section><h2>{} / {}</h2>", t.dataset, t.model);
            h.push_str(&table_html(&t));
            h.push_str("<p>Best value of each column in bold; <span class=\"sig\">*</span> significantly worse than the best (Welch's t-test, p &lt; 0.05); N/A: the target was never reached; with several seeds, mean ± standard deviation.</p><ul class=\"summary\">");
            for line in summary(&t) {
                let _ = write!(h, "<li>{}</li>", esc(&line));
            }
            h.push_str("</ul>");
            let mut acc = Vec::new();
            let mut loss = Vec::new();
            let mut acc_time = Vec::new();
            for &a in &self.grid.activations {
                let runs: Vec<&JobRecord> = self
                    .jobs
                    .iter()
                    .filter(|j| {
                        j.dataset == t.dataset
                            && j.model == t.model
                            && j.activation == a
                            && !j.epochs.is_empty()
                            && j.status != JobStatus::Failed
                    })
                    .collect();
                if runs.is_empty() {
                    continue;
                }
                let name = a.to_string();
                acc.push(series(name.clone(), &runs, false, |e| {
                    100.0 * e.test_accuracy
                }));
                loss.push(series(name.clone(), &runs, false, |e| e.train_loss));
                acc_time.push(series(name, &runs, true, |e| 100.0 * e.test_accuracy));
            }
            h.push_str(r#"<div class="charts">"#);
            h.push_str(&svg_chart(
                &format!("Test accuracy — {}", t.dataset),
                "epoch",
                "test accuracy (%)",
                &acc,
            ));
            h.push_str(&svg_chart(
                &format!("Training loss — {}", t.dataset),
                "epoch",
                "training loss",
                &loss,
            ));
            h.push_str(&svg_chart(
                &format!("Accuracy vs training time — {}", t.dataset),
                "training time (s)",
                "test accuracy (%)",
                &acc_time,
            ));
            h.push_str("</div></section>");
        }
        let problems = self.problem_jobs();
        if !problems.is_empty() {
            h.push_str("<h2>Failed and diverged jobs</h2><table><thead><tr><th>Job</th><th>Status</th><th>Attempts</th><th>Error</th></tr></thead><tbody>");
            for j in problems {
                let _ = write!(
                    h,
                    "<tr><th>{}</th><td>{}</td><td>{}</td><td style=\"text-align:left\">{}</td></tr>",
                    esc(j.id.as_str()),
                    j.status,
                    esc(&attempts_text(j)),
                    esc(j.error.as_deref().unwrap_or(""))
                );
            }
            h.push_str("</tbody></table>");
        }
        let env = &self.environment;
        let _ = write!(
            h,
            "<h2>Environment</h2><ul><li>Grid file <code>{}</code>, SHA-256 <code>{}</code></li><li>Started {}; finished {}</li><li>Coordinator {} on {}</li>",
            esc(&env.grid_file),
            esc(&env.grid_sha256),
            esc(&env.started_at),
            esc(env.finished_at.as_deref().unwrap_or("(still running)")),
            esc(&env.coordinator_version),
            esc(&env.coordinator_host)
        );
        for w in &env.workers {
            let _ = write!(
                h,
                "<li>Worker <code>{}</code> on {}: {} ({}), libtorch {}, {} slot(s)</li>",
                esc(&w.name),
                esc(&w.hostname),
                esc(&w.device),
                esc(&w.device_name),
                esc(&w.libtorch_version),
                w.slots
            );
        }
        h.push_str("</ul></body></html>\n");
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_decimals_follow_the_spacing() {
        assert_eq!(tick(2.0, 0.25), "2.0");
        assert_eq!(tick(3.0, 1.0), "3");
        assert_eq!(tick(97.123, 0.02), "97.12");
    }

    #[test]
    fn escapes_and_charts() {
        assert_eq!(esc("<a&\"b\">"), "&lt;a&amp;&quot;b&quot;&gt;");
        let svg = svg_chart(
            "t",
            "x",
            "y",
            &[Series {
                name: "relu".into(),
                points: vec![(1.0, 90.0), (2.0, 95.0)],
                band: vec![(1.0, 89.0, 91.0), (2.0, 94.0, 96.0)],
            }],
        );
        assert!(
            svg.contains(r#"data-name="relu""#) && svg.ends_with("</svg>"),
            "{svg}"
        );
        assert!(svg_chart("t", "x", "y", &[]).contains("no data yet"));
    }
}
