//! Inline-SVG line charts: one line per activation (the mean over seeds) with a band of ± one
//! standard deviation, axes with ticks, and a legend. No scripts, fonts or external files.

use std::fmt::Write as _;

use common::{EpochMetrics, JobRecord};

use crate::format::html_escape as esc;
use crate::table::Stat;

/// Eight colours that stay distinct in print and for common colour-vision deficiencies
/// (Okabe–Ito), ordered so the two blues are as far apart as they can be (first and last);
/// beyond eight series the colours come again with dashed, then dotted, lines.
const COLORS: [&str; 8] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#000000", "#F0E442", "#56B4E9",
];
const DASHES: [&str; 3] = [
    "",
    r#" stroke-dasharray="7 4""#,
    r#" stroke-dasharray="2 3""#,
];

/// What a chart shows besides its lines.
#[derive(Debug, Clone, Copy, Default)]
pub struct Axes {
    /// The x axis counts (epochs): ticks at whole numbers only.
    pub x_integer: bool,
    /// A horizontal line at this y (the target accuracy), labelled.
    pub target: Option<f64>,
}

/// One line of a chart: mean y at each x across seeds, and the band of ± one standard
/// deviation around it (empty with a single seed).
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub band: Vec<(f64, f64, f64)>,
    /// Runs (seeds) the mean is over.
    pub runs: usize,
}

impl Series {
    /// Mean of `value(epoch)` at each epoch over `jobs` (the runs of one activation); x is the
    /// epoch number, or with `by_time` the mean cumulative training time.
    pub fn of(
        name: String,
        jobs: &[&JobRecord],
        by_time: bool,
        value: fn(&EpochMetrics) -> f64,
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
        Series {
            name,
            points,
            band,
            runs: jobs.len(),
        }
    }
}

/// The plot area and the data range it shows.
struct Frame {
    left: f64,
    top: f64,
    width: f64,
    height: f64,
    x: (f64, f64),
    y: (f64, f64),
}

impl Frame {
    const W: f64 = 560.0;
    const H: f64 = 320.0;

    /// The frame around every point and band of `lines` (and the target); None when there is
    /// nothing to draw.
    fn around(lines: &[Series], target: Option<f64>) -> Option<Frame> {
        let pts = lines.iter().flat_map(|s| {
            s.points
                .iter()
                .copied()
                .chain(s.band.iter().flat_map(|&(x, lo, hi)| [(x, lo), (x, hi)]))
        });
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for (x, y) in pts {
            (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
        }
        if x0 > x1 {
            return None;
        }
        if let Some(t) = target {
            (y0, y1) = (y0.min(t), y1.max(t));
        }
        if x1 - x0 < 1e-9 {
            (x0, x1) = (x0 - 0.5, x1 + 0.5);
        }
        let pad = ((y1 - y0) * 0.05).max(1e-6);
        let (left, right, top, bottom) = (60.0, 150.0, 30.0, 45.0);
        Some(Frame {
            left,
            top,
            width: Self::W - left - right,
            height: Self::H - top - bottom,
            x: (x0, x1),
            y: (y0 - pad, y1 + pad),
        })
    }

    fn sx(&self, x: f64) -> f64 {
        self.left + (x - self.x.0) / (self.x.1 - self.x.0) * self.width
    }

    fn sy(&self, y: f64) -> f64 {
        self.top + (1.0 - (y - self.y.0) / (self.y.1 - self.y.0)) * self.height
    }

    fn xy(&self, x: f64, y: f64) -> String {
        format!("{:.1},{:.1}", self.sx(x), self.sy(y))
    }
}

/// A chart titled `title` of `lines`.
pub fn chart(title: &str, x_label: &str, y_label: &str, lines: &[Series], ax: Axes) -> String {
    let (w, h) = (Frame::W, Frame::H);
    let mut svg = format!(
        r#"<svg class="chart" role="img" aria-label="{t}" viewBox="0 0 {w} {h}" width="{w}" height="{h}"><title>{t}</title><text x="{cx}" y="18" text-anchor="middle" class="ct">{t}</text>"#,
        t = esc(title),
        cx = 60.0 + (w - 210.0) / 2.0
    );
    let Some(f) = Frame::around(lines, ax.target) else {
        svg.push_str(r#"<text x="60" y="150">no data yet</text></svg>"#);
        return svg;
    };
    svg.push_str(&axes(&f, x_label, y_label, ax.x_integer));
    if let Some(t) = ax.target {
        let y = f.sy(t);
        let _ = write!(
            svg,
            r##"<line class="target" x1="{:.1}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#555" stroke-dasharray="4 3"/><text x="{:.1}" y="{:.1}" class="tk">target {}</text>"##,
            f.left,
            f.left + f.width,
            f.left + 4.0,
            y - 4.0,
            tick(t, 0.01)
        );
    }
    for (i, s) in lines.iter().enumerate() {
        let style = (COLORS[i % COLORS.len()], DASHES[(i / COLORS.len()).min(2)]);
        svg.push_str(&series(&f, s, style, i));
    }
    let seeds = lines
        .iter()
        .filter(|s| s.band.len() > 1)
        .map(|s| s.runs)
        .max();
    if let Some(n) = seeds {
        let ly = f.top + 14.0 + 16.0 * lines.len() as f64 + 6.0;
        let _ = write!(
            svg,
            r##"<rect x="{:.1}" y="{:.1}" width="18" height="8" fill="#888" fill-opacity="0.3"/><text x="{:.1}" y="{:.1}" class="lg">± 1 sd, {n} seeds</text>"##,
            f.left + f.width + 10.0,
            ly - 4.0,
            f.left + f.width + 32.0,
            ly + 4.0
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Tick positions at round values (1, 2, 2.5 or 5 times a power of ten; whole numbers only
/// when `integer`) inside `range`, about five of them, and their spacing.
fn ticks(range: (f64, f64), integer: bool) -> (Vec<f64>, f64) {
    let raw = ((range.1 - range.0) / 5.0).max(1e-9);
    let magnitude = 10f64.powf(raw.log10().floor());
    let multiples: &[f64] = if integer {
        &[1.0, 2.0, 5.0, 10.0]
    } else {
        &[1.0, 2.0, 2.5, 5.0, 10.0]
    };
    let mut step = multiples
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw * 0.999)
        .unwrap_or(raw);
    if integer {
        step = step.max(1.0);
    }
    let first = (range.0 / step - 1e-6).ceil();
    let out = (0..12)
        .map(|k| (first + k as f64) * step)
        .take_while(|v| *v <= range.1 + step * 1e-6)
        .collect();
    (out, step)
}

/// The plot's frame, ticks at round values on each axis with grid lines, and the labels.
fn axes(f: &Frame, x_label: &str, y_label: &str, x_integer: bool) -> String {
    let (left, top, pw, ph) = (f.left, f.top, f.width, f.height);
    let mut svg = format!(
        r##"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>"##
    );
    let (xs, x_step) = ticks(f.x, x_integer);
    for fx in xs {
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" class="tk">{}</text>"##,
            f.sx(fx),
            top + ph + 15.0,
            tick(fx, x_step)
        );
    }
    let (ys, y_step) = ticks(f.y, false);
    for fy in ys {
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end" class="tk">{}</text><line x1="{left}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#eee"/>"##,
            left - 4.0,
            f.sy(fy) + 4.0,
            tick(fy, y_step),
            left + pw,
            f.sy(fy),
            f.sy(fy)
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" class="al">{}</text><text transform="translate(14 {:.1}) rotate(-90)" text-anchor="middle" class="al">{}</text>"#,
        left + pw / 2.0,
        Frame::H - 8.0,
        esc(x_label),
        top + ph / 2.0,
        esc(y_label)
    );
    svg
}

/// One series: its band, its line with a dot per point, and its legend entry (the `i`-th).
fn series(f: &Frame, s: &Series, (color, dash): (&str, &str), i: usize) -> String {
    let mut svg = String::new();
    if s.band.len() > 1 {
        let upper = s.band.iter().map(|&(x, _, hi)| f.xy(x, hi));
        let lower = s.band.iter().rev().map(|&(x, lo, _)| f.xy(x, lo));
        let _ = write!(
            svg,
            r#"<polygon class="band" fill="{color}" fill-opacity="0.15" stroke="none" points="{}"/>"#,
            upper.chain(lower).collect::<Vec<_>>().join(" ")
        );
    }
    let path: Vec<String> = s.points.iter().map(|&(x, y)| f.xy(x, y)).collect();
    let _ = write!(
        svg,
        r#"<polyline class="series" data-name="{}" fill="none" stroke="{color}" stroke-width="2"{dash} points="{}"/>"#,
        esc(&s.name),
        path.join(" ")
    );
    for &(x, y) in &s.points {
        let _ = write!(
            svg,
            r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{color}"/>"#,
            f.sx(x),
            f.sy(y)
        );
    }
    let (lx, ly) = (f.left + f.width, f.top + 14.0 + 16.0 * i as f64);
    let _ = write!(
        svg,
        r#"<line x1="{:.1}" x2="{:.1}" y1="{ly:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}" class="lg">{}</text>"#,
        lx + 10.0,
        lx + 28.0,
        lx + 32.0,
        ly + 4.0,
        esc(&s.name)
    );
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
    fn charts_lines_bands_and_empty() {
        let svg = chart(
            "t",
            "x",
            "y",
            &[Series {
                name: "relu".into(),
                points: vec![(1.0, 90.0), (2.0, 95.0)],
                band: vec![(1.0, 89.0, 91.0), (2.0, 94.0, 96.0)],
                runs: 3,
            }],
            Axes {
                x_integer: true,
                target: Some(98.0),
            },
        );
        assert!(
            svg.contains(r#"data-name="relu""#) && svg.ends_with("</svg>"),
            "{svg}"
        );
        assert!(svg.contains(r#"class="band""#), "{svg}");
        assert!(
            svg.contains("± 1 sd, 3 seeds"),
            "the band is explained: {svg}"
        );
        assert!(
            svg.contains(r#"class="target""#) && svg.contains("target 98.00"),
            "{svg}"
        );
        // Epochs 1 and 2: whole-number ticks only, never 1.25.
        assert!(
            svg.contains(">1</text>") && svg.contains(">2</text>"),
            "{svg}"
        );
        assert!(!svg.contains(">1.2") && !svg.contains(">1.5"), "{svg}");
        assert!(chart("t", "x", "y", &[], Axes::default()).contains("no data yet"));
    }

    #[test]
    fn ticks_fall_on_round_values() {
        assert_eq!(ticks((0.0, 10.0), true).0, [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(ticks((1.0, 10.0), true).0, [2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(ticks((1.0, 2.0), true).0, [1.0, 2.0]);
        assert_eq!(ticks((91.3, 98.7), false).0, [92.0, 94.0, 96.0, 98.0]);
        let labels: Vec<String> = ticks((0.0, 1.0), false)
            .0
            .iter()
            .map(|v| tick(*v, 0.2))
            .collect();
        assert_eq!(labels, ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
    }

    #[test]
    fn more_than_eight_series_get_line_styles() {
        let lines: Vec<Series> = (0..10)
            .map(|i| Series {
                name: format!("a{i}"),
                points: vec![(1.0, i as f64), (2.0, i as f64 + 1.0)],
                band: vec![],
                runs: 1,
            })
            .collect();
        let svg = chart("t", "x", "y", &lines, Axes::default());
        assert_eq!(
            svg.matches(r#"stroke-dasharray="7 4""#).count(),
            4,
            "2 lines + 2 legend"
        );
    }
}
