//! The report as people see it: the live page while the grid runs, the HTML in a browser.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use integration_tests::{bin, output, wait_exit};
use serde_json::Value;

use crate::support::{bound_ports, coordinator, fixture};

/// While the grid runs, the coordinator serves the report live: jobs by state, per-job
/// progress, curves growing; at the end the page shows the finished tables.
#[test]
fn live_report_shows_the_grid_in_progress() {
    let tmp = tempfile::tempdir().unwrap();
    let data = fixture(tmp.path());
    let grid = tmp.path().join("grid.yaml");
    std::fs::write(
        &grid,
        "name: live\nactivations: [relu, selu]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 6, target_accuracy: 0.5, latency_samples: 10}\n",
    )
    .unwrap();
    let log = tmp.path().join("coordinator.log");
    let mut coord = coordinator(&grid, &tmp.path().join("out"), &data)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let (_, http) = bound_ports(&log, 0, true);
    let url = format!("http://127.0.0.1:{}/", http.expect("the live page is on"));
    let get = |u: &str| ureq::get(u).call().ok().and_then(|r| r.into_string().ok());
    let mut in_progress = None;
    integration_tests::wait_until(
        Duration::from_secs(60),
        "a running job with an epoch on the live page",
        || match get(&url) {
            Some(page)
                if page.contains(r#"data-state="running""#) && page.contains("<polyline") =>
            {
                in_progress = Some(page);
                true
            }
            _ => false,
        },
    );
    let page = in_progress.unwrap();
    assert!(
        page.contains(r#"http-equiv="refresh""#),
        "the page reloads itself"
    );
    assert!(page.contains("id=\"progress\""), "{page}");
    let json: Value = serde_json::from_str(&get(&format!("{url}results.json")).unwrap()).unwrap();
    assert_eq!(json["jobs"].as_array().unwrap().len(), 2);
    assert!(wait_exit(&mut coord, Duration::from_secs(120)).success());
}

/// The HTML report in a real browser (Debian's headless Chromium, where installed): no console
/// errors, both tables, every figure with its lines and seed bands, the significance marks.
#[test]
#[cfg_attr(
    not(any(ci, have_chromium)),
    ignore = "needs chromium (Debian's package; scripts/test.sh installs it)"
)]
fn report_html_renders_in_chromium() {
    let chromium = chromium();
    let tmp = tempfile::tempdir().unwrap();
    let data = fixture(tmp.path());
    let grid = tmp.path().join("grid.yaml");
    std::fs::write(
        &grid,
        "name: browser\nactivations: [relu, tanh]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 2, target_accuracy: 0.5, train_limit: 1000, latency_samples: 5}\nseeds: [0, 1]\n",
    )
    .unwrap();
    let out = tmp.path().join("out");
    let (status, _, stderr) = output(&mut coordinator(&grid, &out, &data));
    assert!(status.success(), "{stderr}");
    let html = out.join("report.html");
    let (status, dom, log) = output(
        headless(chromium, &tmp.path().join("profile"))
            .args(["--enable-logging=stderr", "--v=0", "--dump-dom"])
            .arg(format!("file://{}", html.display())),
    );
    assert!(status.success(), "{log}");
    let console: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Uncaught"))
        .collect();
    assert!(console.is_empty(), "console errors: {console:?}");
    assert!(
        dom.contains("<th>relu</th>") && dom.contains("<th>tanh</th>"),
        "{dom}"
    );
    assert_eq!(dom.matches("<svg").count(), 3, "three figures");
    assert_eq!(
        dom.matches(r#"class="series""#).count(),
        6,
        "one line per activation per figure"
    );
    assert!(dom.contains(r#"class="band""#), "seed bands drawn");
    assert!(
        dom.contains("± 1 sd, 2 seeds"),
        "the band explained in the legend"
    );
    assert_eq!(
        dom.matches(r#"class="target""#).count(),
        2,
        "target line on both accuracy figures"
    );
    assert!(
        dom.contains(r#"<details class="epochs">"#),
        "per-epoch table"
    );
    assert!(
        dom.contains("Recommendation for mnist / paper-cnn"),
        "summary in words"
    );
    // And as a picture: the page rendered to a PNG that is not blank.
    let shot = tmp.path().join("report.png");
    let (status, _, log) = output(
        headless(chromium, &tmp.path().join("profile"))
            .args(["--hide-scrollbars", "--window-size=1280,2200"])
            .arg(format!("--screenshot={}", shot.display()))
            .arg(format!("file://{}", html.display())),
    );
    assert!(status.success(), "{log}");
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("{e}: {log}"));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    // A blank 1280×2200 page compresses to a few kB; tables, text and figures to far more.
    assert!(
        png.len() > 40_000,
        "{} bytes: the page looks blank",
        png.len()
    );
}

/// Headless Chromium started as these machines need it (no sandbox as root, no background
/// connections on a closed network), with a fresh profile in `profile`.
fn headless(chromium: &str, profile: &Path) -> Command {
    let mut c = Command::new(chromium);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
    ])
    .args(["--no-first-run", "--disable-background-networking"])
    .args(["--disable-component-update", "--disable-sync"])
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}

/// Debian's headless Chromium (the tests that need it are ignored where the build found none).
fn chromium() -> &'static str {
    ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .unwrap_or_else(|| {
            crate::support::missing("chromium (Debian's package; scripts/test.sh installs it)")
        })
}

/// At 1280 pixels, a laptop's browser window, every column of the report's widest table is in
/// view, the error rate (the last) included, with no scrolling. The widest real table is the
/// committed MNIST reproduction's (three seeds, every time column); a script added to a copy
/// of its page measures the columns' right edges in Chromium.
#[test]
#[cfg_attr(
    not(any(ci, have_chromium)),
    ignore = "needs chromium (Debian's package; scripts/test.sh installs it)"
)]
fn report_tables_fit_a_1280_pixel_window() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let (status, _, stderr) = output(
        Command::new(bin("coordinator"))
            .args(["report", "--state"])
            .arg(crate::support::repo().join("docs/reproduction/paper-mnist/results.json"))
            .arg("--out")
            .arg(&out),
    );
    assert!(status.success(), "{stderr}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    // Each table at its narrowest (min-content) must leave a tenth of its box free: room for
    // fonts that run a little wider than Chromium's here, and for the marks (*, ⚠, †) a cell
    // may carry. A table wider than its box would hide its last column, the error rate.
    let probe = r#"<script>
const cut = [...document.querySelectorAll('.scroll > table')].map(t => {
  const box = t.parentElement.clientWidth;
  t.style.width = 'min-content';
  const need = t.getBoundingClientRect().width;
  t.style.width = '';
  return need <= 0.9 * box ? '' : t.caption.textContent + ': ' + Math.round(need) + ' of ' + box + ' px';
}).filter(s => s);
document.body.setAttribute('data-probe', cut.length ? 'cut:' + cut.join('|') : 'fits:' + document.documentElement.clientWidth);
</script></body>"#;
    let page = tmp.path().join("probe.html");
    std::fs::write(&page, html.replace("</body>", probe)).unwrap();
    let (status, dom, log) = output(
        headless(chromium(), &tmp.path().join("profile"))
            .args(["--hide-scrollbars", "--window-size=1280,900", "--dump-dom"])
            .arg(format!("file://{}", page.display())),
    );
    assert!(status.success(), "{log}");
    assert!(dom.contains("Error rate"), "{dom}");
    assert!(
        dom.contains(r#"data-probe="fits:1280""#),
        "cut off at 1280 px: {}",
        {
            let at = dom.find("data-probe").unwrap_or(0);
            &dom[at..(at + 300).min(dom.len())]
        }
    );
}

/// The reproduction runs committed under docs/reproduction/ re-render, from their results.json
/// alone, to their committed report.md, and docs/reproduction.md is what
/// scripts/reproduction.py makes of them: the write-up cannot drift from the data.
#[test]
fn committed_reproduction_runs_rerender_to_their_reports() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut runs = 0;
    for name in ["paper-mnist", "paper-mnist-race", "paper-cifar-slice"] {
        let dir = root.join("docs/reproduction").join(name);
        if !dir.join("results.json").is_file() {
            continue;
        }
        runs += 1;
        let out = tmp.path().join(name);
        let (status, _, stderr) = output(
            Command::new(bin("coordinator"))
                .arg("report")
                .arg("--state")
                .arg(dir.join("results.json"))
                .arg("--out")
                .arg(&out),
        );
        assert!(status.success(), "{stderr}");
        let rendered = std::fs::read_to_string(out.join("report.md")).unwrap();
        let committed = std::fs::read_to_string(dir.join("report.md")).unwrap();
        assert_eq!(
            rendered, committed,
            "{name}: report.md differs from its results.json"
        );
    }
    assert!(runs >= 1, "no committed reproduction run");
    let (status, out, err) = output(
        Command::new("python3")
            .arg(root.join("scripts/reproduction.py"))
            .arg("--check"),
    );
    assert!(status.success(), "{out}{err}");
}
