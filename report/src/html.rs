//! `report.html` and the live page: the tables of `report.md` plus inline-SVG figures (test
//! accuracy and training loss per epoch, accuracy against training time), self-contained: no
//! scripts, fonts or external files.

use std::fmt::Write as _;

use common::{JobRecord, JobStatus};

use crate::format::html_escape as esc;
use crate::results::{attempts_text, Results};
use crate::significance::tables;
use crate::summary::summary;
use crate::svg::{chart, Axes, Series};
use crate::table::{Stat, Table};

const STYLE: &str = "
body{font-family:system-ui,sans-serif;max-width:1180px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:.92em}caption{text-align:left;font-weight:600;padding:.3em 0}
td,th{border:1px solid #ccc;padding:.3em .5em;text-align:right;white-space:nowrap}tbody th{text-align:left}
thead th{white-space:normal;vertical-align:bottom}
details{margin:1em 0}summary{cursor:pointer;font-weight:600}.scroll{overflow-x:auto}
td.best{font-weight:700;background:#e8f4e8}.charts{display:flex;flex-wrap:wrap;gap:1em}
.sig{color:#b00;font-weight:700}.ct{font-size:14px;font-weight:600}.tk,.lg{font-size:11px}.al{font-size:12px}
@media print{.charts{display:block}}";

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
        let name = esc(self.grid.name());
        let meta = refresh
            .map(|s| format!(r#"<meta http-equiv="refresh" content="{s}">"#))
            .unwrap_or_default();
        let mut h = format!(
            r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">{meta}<title>{name} — DAWNBench-style report</title><style>{STYLE}</style></head><body><h1>{name} — DAWNBench-style report</h1>"#
        );
        let done = self.jobs.iter().filter(|j| j.status.is_terminal()).count();
        let races = crate::race::table_races(self);
        let held =
            crate::race::held(self, &races).map_or_else(String::new, |(_, t)| format!(" {t}."));
        let _ = write!(
            h,
            "<p>{} of {} jobs finished.{held}</p>",
            done,
            self.jobs.len()
        );
        if refresh.is_some() {
            h.push_str(&progress(&self.jobs));
        }
        for (i, t) in tables(self).iter().enumerate() {
            h.push_str(&table_section(self, t, races.get(i)));
        }
        h.push_str(&problems(self));
        h.push_str(&environment(self));
        h.push_str("</body></html>\n");
        h
    }
}

/// Jobs by state and each job's progress, for the live page.
fn progress(jobs: &[JobRecord]) -> String {
    let mut h = String::from(r#"<section id="progress"><h2>Progress</h2><p>"#);
    for status in [
        JobStatus::Running,
        JobStatus::Pending,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Diverged,
        JobStatus::Cancelled,
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

/// One dataset × model: its table, the summary in words and its three figures.
fn table_section(r: &Results, t: &Table, race: Option<&crate::race::TableRace>) -> String {
    let mut h = format!("<section><h2>{} / {}</h2>", t.dataset, t.model);
    h.push_str(r#"<div class="scroll">"#);
    h.push_str(&table(t));
    h.push_str("</div>");
    let looks = match t.looks {
        1 => String::new(),
        k => format!(" and over the seed race's {k} looks"),
    };
    let _ = write!(h, "<p>Best value of each column in bold; <span class=\"sig\">*</span> significantly worse than the best (Welch's t-test, p &lt; 0.05 adjusted over every pair of the table by Holm's method{looks}); N/A: the target was never reached; with several seeds, mean ± standard deviation.</p><ul class=\"summary\">");
    for line in summary(t) {
        let _ = write!(h, "<li>{}</li>", esc(&line));
    }
    h.push_str("</ul>");
    if let Some(race) = race {
        let _ = write!(h, r#"<p class="race">{}</p>"#, esc(&race.text()));
    }
    h.push_str(&figures(r, t));
    h.push_str(&epoch_table(r, t));
    h.push_str("</section>");
    h
}

/// Test accuracy per epoch (mean over seeds), folded away until opened.
fn epoch_table(r: &Results, t: &Table) -> String {
    let rows = crate::table::per_epoch(r, t);
    let epochs = rows.iter().map(|(_, e)| e.len()).max().unwrap_or(0);
    if epochs == 0 {
        return String::new();
    }
    let mut h = String::from(
        r#"<details class="epochs"><summary>Test accuracy per epoch (mean over seeds)</summary><table><thead><tr><th>Activation</th>"#,
    );
    for e in 1..=epochs {
        let _ = write!(h, "<th>{e}</th>");
    }
    h.push_str("</tr></thead><tbody>");
    for (name, accs) in rows {
        let _ = write!(h, "<tr><th>{}</th>", esc(&name));
        for i in 0..epochs {
            let cell = accs.get(i).copied().flatten();
            let _ = write!(
                h,
                "<td>{}</td>",
                cell.map_or(String::new(), |a| format!("{:.2}%", 100.0 * a))
            );
        }
        h.push_str("</tr>");
    }
    h.push_str("</tbody></table></details>");
    h
}

fn table(t: &Table) -> String {
    let mut h = format!(
        "<table><caption>{} / {} — target test accuracy {:.2}%</caption><thead><tr>",
        t.dataset,
        t.model,
        100.0 * t.target
    );
    for header in t.headers() {
        let _ = write!(h, "<th>{header}</th>");
    }
    h.push_str("</tr></thead><tbody>");
    let b = &t.best;
    for r in &t.rows {
        let _ = write!(
            h,
            "<tr><th>{}</th><td>{}</td>{}{}{}{}{}",
            esc(&r.label()),
            r.n,
            cell(&r.total, b.total, r.total_text()),
            cell(&r.latency, b.latency, r.latency_text()),
            cell(&r.first_epoch, b.first_epoch, r.first_epoch.epoch_text()),
            cell(&r.to_target, b.to_target, r.to_target_text()),
            cell(
                &r.error,
                b.error,
                r.error.text(|v| format!("{:.2}%", 100.0 * v))
            ),
        );
        if t.cost_per_hour > 0.0 {
            let usd = |v: f64| format!("{:.4}", t.cost(v));
            h.push_str(&cell(&r.total, b.total, r.total.text(usd)));
            h.push_str(&cell(&r.to_target, b.to_target, r.to_target.text(usd)));
        }
        h.push_str("</tr>");
    }
    h.push_str("</tbody></table>");
    for note in crate::table::notes(t) {
        let _ = write!(h, "<p>{}</p>", esc(&note));
    }
    h
}

fn cell(stat: &Stat, best: Option<f64>, text: Option<String>) -> String {
    let Some(s) = text else {
        return "<td>N/A</td>".into();
    };
    let mark = if stat.significantly_worse() {
        format!(
            r#" <span class="sig" title="significantly worse than the best: Welch's t-test, adjusted p = {:.3} (raw {:.3})">*</span>"#,
            stat.p_adjusted.unwrap_or(0.0),
            stat.p_vs_best.unwrap_or(0.0)
        )
    } else {
        String::new()
    };
    if best.is_some() && best == stat.mean && !stat.disturbed {
        format!(r#"<td class="best">{}{mark}</td>"#, esc(&s))
    } else {
        format!("<td>{}{mark}</td>", esc(&s))
    }
}

/// Test accuracy and training loss per epoch, and accuracy against training time: one line per
/// activation with runs that trained (succeeded or diverged), mean over seeds.
fn figures(r: &Results, t: &Table) -> String {
    let (mut acc, mut loss, mut acc_time) = (Vec::new(), Vec::new(), Vec::new());
    for &a in r.grid.activations() {
        let runs: Vec<&JobRecord> = r
            .jobs
            .iter()
            .filter(|j| {
                j.dataset == t.dataset
                    && j.model == t.model
                    && j.activation == a
                    && !j.epochs.is_empty()
                    && !matches!(j.status, JobStatus::Failed | JobStatus::Cancelled)
            })
            .collect();
        if runs.is_empty() {
            continue;
        }
        let name = a.to_string();
        acc.push(Series::of(name.clone(), &runs, false, |e| {
            100.0 * e.test_accuracy
        }));
        loss.push(Series::of(name.clone(), &runs, false, |e| e.train_loss));
        acc_time.push(Series::of(name, &runs, true, |e| 100.0 * e.test_accuracy));
    }
    let d = t.dataset;
    [
        chart(
            &format!("Test accuracy — {d}"),
            "epoch",
            "test accuracy (%)",
            &acc,
            Axes {
                x_integer: true,
                target: Some(100.0 * t.target),
            },
        ),
        chart(
            &format!("Training loss — {d}"),
            "epoch",
            "training loss",
            &loss,
            Axes {
                x_integer: true,
                target: None,
            },
        ),
        chart(
            &format!("Accuracy vs training time — {d}"),
            "training time (s)",
            "test accuracy (%)",
            &acc_time,
            Axes {
                x_integer: false,
                target: Some(100.0 * t.target),
            },
        ),
    ]
    .into_iter()
    .fold(String::from(r#"<div class="charts">"#), |h, svg| h + &svg)
        + "</div>"
}

fn problems(r: &Results) -> String {
    let problems = r.problem_jobs();
    if problems.is_empty() {
        return String::new();
    }
    let mut h = String::from("<h2>Failed and diverged jobs</h2><table><thead><tr><th>Job</th><th>Status</th><th>Attempts</th><th>Error</th></tr></thead><tbody>");
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
    h
}

fn environment(r: &Results) -> String {
    let env = &r.environment;
    let mut h = format!(
        "<h2>Environment</h2><ul><li>Grid file <code>{}</code>, SHA-256 <code>{}</code></li><li>Started {}; finished {}</li><li>Coordinator {} on {}</li>",
        esc(&env.grid_file),
        esc(&env.grid_sha256),
        esc(&env.started_at),
        esc(env.finished_at.as_deref().unwrap_or("(still running)")),
        esc(&env.coordinator_version),
        esc(&env.coordinator_host)
    );
    for w in &env.workers {
        let w = &w.info;
        let _ = write!(
            h,
            "<li>Worker <code>{}</code> on {}: {} ({}), libtorch {}, {} slot(s)</li>",
            esc(&w.name),
            esc(&w.hostname),
            w.device,
            esc(&w.device_name),
            esc(&w.libtorch_version),
            w.slots
        );
    }
    for run in &env.runs {
        let _ = write!(h, "<li>{}</li>", esc(&crate::results::run_text(run)));
    }
    for line in crate::table::cuda_settings(r)
        .into_iter()
        .chain(crate::table::engines(r))
    {
        let _ = write!(h, "<li>{}</li>", esc(&line.replace('`', "")));
    }
    h.push_str("</ul>");
    h
}

#[cfg(test)]
mod tests {
    #[test]
    fn report_has_tables_figures_and_no_outside_references() {
        let html = crate::fixtures::results().to_html();
        assert!(html.contains("<th>relu</th>") && html.contains("<th>tanh</th>"));
        assert_eq!(html.matches("<svg").count(), 3, "three figures per table");
        assert_eq!(
            html.matches(r#"class="series" data-name="relu""#).count(),
            3
        );
        assert!(!html.contains("<script") && !html.contains("http://"));
        assert!(!html.contains("id=\"progress\""));
        let live = crate::fixtures::results().to_live_html(3);
        assert!(live.contains(r#"<meta http-equiv="refresh" content="3">"#));
        assert!(live.contains("id=\"progress\""));
    }
}
