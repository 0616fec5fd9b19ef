//! The live progress display when stderr is a terminal (instead of a log line per change): one
//! bar for the grid (jobs finished of all, expected time left from the scheduler's estimates,
//! counts by state) and a line per running job (worker, epoch, last test accuracy). Warnings
//! still print, above it. `coordinator status` prints the same once ([`render_once`]).

use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::state::{Counts, Progress, RunningJob};

/// Running jobs shown, one line each; more are summed up in one line.
const SHOWN: usize = 12;

pub struct Display {
    multi: MultiProgress,
    main: ProgressBar,
    lines: Vec<ProgressBar>,
}

/// `1h 02m`, `3m 20s`, `45s`.
pub fn duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

fn summary(c: &Counts, eta: Option<Duration>) -> String {
    let eta = eta.map_or_else(
        || "ETA after the first epoch".to_string(),
        |d| format!("ETA {}", duration(d)),
    );
    let cancelled = match c.cancelled {
        0 => String::new(),
        n => format!(", {n} cancelled"),
    };
    let held = match c.held {
        0 => String::new(),
        n => format!(", {n} held by the seed race"),
    };
    format!(
        "{eta} · {} running, {} pending, {} succeeded, {} failed, {} diverged{cancelled}{held}",
        c.running, c.pending, c.succeeded, c.failed, c.diverged
    )
}

fn job_line(j: &RunningJob) -> String {
    let acc = j
        .accuracy
        .map_or_else(|| "-".to_string(), |a| format!("{:.2}%", 100.0 * a));
    format!(
        "  {:<44} {:<24} epoch {:>3}/{:<3} acc {acc}",
        j.id.as_str(),
        j.worker,
        j.epochs_done,
        j.epochs
    )
}

/// A text bar of `width` cells, `done` of `total` full.
fn bar(done: u32, total: u32, width: usize) -> String {
    let full = (done as usize * width)
        .checked_div(total as usize)
        .unwrap_or(0);
    format!("[{}{}]", "#".repeat(full), "-".repeat(width - full))
}

/// The display as plain lines, for `coordinator status`.
pub fn render_once(p: &Progress) -> String {
    let c = &p.counts;
    let mut out = format!(
        "{} {}/{} jobs  {}\n",
        bar(c.finished(), c.total(), 32),
        c.finished(),
        c.total(),
        summary(c, p.eta)
    );
    for line in job_lines(&p.running) {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The lines under the grid's bar: the first [`SHOWN`] running jobs, and how many more run.
fn job_lines(running: &[RunningJob]) -> Vec<String> {
    let mut lines: Vec<String> = running.iter().take(SHOWN).map(job_line).collect();
    if running.len() > SHOWN {
        lines.push(format!("  … and {} more running", running.len() - SHOWN));
    }
    lines
}

impl Display {
    /// A display for a grid of `total` jobs on stderr; tracing output goes above it.
    pub fn new(total: u32) -> Display {
        let display = Display::drawn_to(total, ProgressDrawTarget::stderr_with_hz(4));
        let printer = display.multi.clone();
        orchestrator_proto::telemetry::route_stderr(move |bytes| {
            let text = String::from_utf8_lossy(bytes);
            let _ = printer.println(text.trim_end());
        });
        display
    }

    fn drawn_to(total: u32, target: ProgressDrawTarget) -> Display {
        let multi = MultiProgress::with_draw_target(target);
        let main = multi.add(ProgressBar::new(total as u64));
        main.set_style(
            ProgressStyle::with_template("[{bar:32.green/white.dim}] {pos}/{len} jobs  {msg}")
                .expect("valid template")
                .progress_chars("##-"),
        );
        Display {
            multi,
            main,
            lines: Vec::new(),
        }
    }

    pub fn update(&mut self, p: &Progress) {
        let c = &p.counts;
        self.main.set_length(c.total() as u64);
        self.main.set_position(c.finished() as u64);
        self.main.set_message(summary(c, p.eta));
        let text = job_lines(&p.running);
        while self.lines.len() < text.len() {
            let line = self.multi.add(ProgressBar::new(1));
            line.set_style(ProgressStyle::with_template("{msg}").expect("valid template"));
            self.lines.push(line);
        }
        while self.lines.len() > text.len() {
            if let Some(line) = self.lines.pop() {
                line.finish_and_clear();
                self.multi.remove(&line);
            }
        }
        for (line, t) in self.lines.iter().zip(text) {
            line.set_message(t);
        }
    }

    /// Leaves the grid's bar on the screen as it stands (an interrupted grid's 4/6 stays 4/6:
    /// indicatif's `finish` would fill it), clears the job lines.
    pub fn finish(self) {
        for line in &self.lines {
            line.finish_and_clear();
        }
        self.main.abandon();
    }
}

/// Text that came from elsewhere (names, ids, errors a worker sent) as a terminal may show it:
/// control characters (an escape sequence's ESC among them) and bidirectional-text controls are
/// written as `\u{..}`; line breaks and tabs stay.
pub fn terminal_safe(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| {
        (c.is_control() && c != '\n' && c != '\t')
            || orchestrator_proto::convert::is_bidi_control(c)
    };
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    text.chars()
        .map(|c| {
            if unsafe_char(c) {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::JobId;

    #[test]
    fn the_static_view_has_the_bar_and_a_line_per_job() {
        let running = (0..14)
            .map(|i| RunningJob {
                id: JobId::from_stored(format!("mnist-paper-cnn-relu-s{i}")),
                worker: "gpu-node-1/cuda:0".into(),
                epochs_done: 3,
                epochs: 10,
                accuracy: Some(0.9712),
            })
            .collect();
        let p = Progress {
            counts: Counts {
                pending: 10,
                running: 14,
                succeeded: 16,
                failed: 1,
                diverged: 1,
                cancelled: 0,
                held: 0,
            },
            running,
            eta: Some(Duration::from_secs(3723)),
        };
        let text = render_once(&p);
        assert!(
            text.starts_with("[#############-------------------] 18/42 jobs  ETA 1h 02m"),
            "{text}"
        );
        assert!(text.contains("epoch   3/10  acc 97.12%"), "{text}");
        assert!(text.contains("… and 2 more running"), "{text}");
        assert_eq!(duration(Duration::from_secs(200)), "3m 20s");
    }

    /// Interrupted with 4 of 6 jobs done, the bar left on the screen says 4/6, not 6/6.
    #[test]
    fn an_interrupted_grid_keeps_its_count() {
        let mut d = Display::drawn_to(6, ProgressDrawTarget::hidden());
        let bar = d.main.clone();
        d.update(&Progress {
            counts: Counts {
                pending: 1,
                running: 1,
                succeeded: 4,
                ..Counts::default()
            },
            running: Vec::new(),
            eta: None,
        });
        d.finish();
        assert_eq!((bar.position(), bar.length()), (4, Some(6)));
        assert!(bar.is_finished());
    }

    #[test]
    fn text_from_peers_reaches_the_terminal_escaped() {
        assert_eq!(terminal_safe("plain\tline\n"), "plain\tline\n");
        assert_eq!(
            terminal_safe("evil\u{1b}[2Jname\u{202e}cod.exe"),
            "evil\\u{1b}[2Jname\\u{202e}cod.exe"
        );
    }
}
