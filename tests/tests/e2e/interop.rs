//! Results every tool in the field can read, checked by those tools: DAWNBench entries by the
//! format checks of DAWNBench's own repository, MLPerf logs by mlperf-logging's compliance
//! checker, TensorBoard event files by TensorBoard's reader. (The Python tools come from PyPI:
//! `scripts/test.sh` installs them and sets `DLGRID_PYTOOLS`; without it those two checks are
//! skipped with a note.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use integration_tests::{bin, output};
use serde_json::Value;

use crate::support::{coordinator, fixture, jobs, read_json, repo};

/// The format checks of `tests/test_submissions.py` in stanford-futuredata/dawn-bench-entries
/// (the version with `VERSIONS = ('v1.0', )`), re-implemented for one entry folder:
/// - `test_train_file_is_valid_json`, `test_infer_file_is_valid_json`: both files parse;
/// - `test_train_file_has_required_fields`: `version`, `author`, `authorEmail`, `framework`,
///   `model`, `hardware`, `timestamp` present, `timestamp` parses as `%Y-%m-%d`, `version` in
///   `VERSIONS`;
/// - `test_infer_file_has_required_fields`: the same plus `latency`;
/// - `test_cifar10_train_file_has_valid_tsv`: the `.tsv` beside the train file exists, its
///   columns sorted equal `['epoch', 'hours', 'top1Accuracy']` sorted, and it has a row.
///
/// The accuracy thresholds of that file (94% on CIFAR-10) are about results, not format, and
/// are left out. The date is checked more strictly than `strptime` does (two-digit month and
/// day).
fn dawnbench_format(dir: &Path) -> Result<(), String> {
    const VERSIONS: [&str; 1] = ["v1.0"];
    let read = |name: &str| -> Result<Value, String> {
        let text = std::fs::read_to_string(dir.join(name)).map_err(|e| format!("{name}: {e}"))?;
        serde_json::from_str(&text).map_err(|e| format!("{name}: not JSON: {e}"))
    };
    for (name, extra) in [("train.json", None), ("inference.json", Some("latency"))] {
        let record = read(name)?;
        let required = [
            "version",
            "author",
            "authorEmail",
            "framework",
            "model",
            "hardware",
            "timestamp",
        ];
        for field in required.into_iter().chain(extra) {
            if record.get(field).is_none() {
                return Err(format!("{name}: {field} is a required field"));
            }
        }
        let date = record["timestamp"].as_str().unwrap_or_default();
        if !is_date(date) {
            return Err(format!("{name}: timestamp `{date}` is not %Y-%m-%d"));
        }
        if !VERSIONS.contains(&record["version"].as_str().unwrap_or_default()) {
            return Err(format!(
                "{name}: version {} not in {VERSIONS:?}",
                record["version"]
            ));
        }
    }
    let tsv = std::fs::read_to_string(dir.join("train.tsv"))
        .map_err(|_| "The TSV file doesn't exist".to_string())?;
    let mut lines = tsv.lines();
    let mut columns: Vec<&str> = lines.next().unwrap_or_default().split('\t').collect();
    columns.sort_unstable();
    if columns != ["epoch", "hours", "top1Accuracy"] {
        return Err(format!("Incorrect columns: {columns:?}"));
    }
    if lines.filter(|l| !l.is_empty()).count() == 0 {
        return Err("The TSV file shouldn't be empty".into());
    }
    Ok(())
}

/// `YYYY-MM-DD` naming a real day.
fn is_date(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let [y, m, d] = parts[..] else { return false };
    let num = |p: &str, len: usize| {
        (p.len() == len && p.bytes().all(|b| b.is_ascii_digit())).then(|| p.parse::<u32>().unwrap())
    };
    let (Some(y), Some(m), Some(d)) = (num(y, 4), num(m, 2), num(d, 2)) else {
        return false;
    };
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    (1..=12).contains(&m) && d >= 1 && d <= days[m as usize - 1]
}

#[test]
fn the_date_check_is_strict() {
    assert!(is_date("2026-11-28") && is_date("2024-02-29"));
    for bad in [
        "2026-11-28T15:25:22Z",
        "2025-02-29",
        "2026-13-01",
        "26-11-28",
        "2026-1-5",
        "",
    ] {
        assert!(!is_date(bad), "{bad}");
    }
}

/// The Python with mlperf-logging and tensorboard that scripts/test.sh installs.
fn pytools() -> PathBuf {
    std::env::var_os("DLGRID_PYTOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            crate::support::missing(
                "DLGRID_PYTOOLS (a python with mlperf-logging and tensorboard; scripts/test.sh installs it)",
            )
        })
}

/// mlperf-logging's compliance checker on one log, under the project's shipped config.
fn mlperf_compliant(python: &Path, log: &Path) -> Result<(), String> {
    let config =
        std::path::absolute(repo().join("report/mlperf/training_4.1.0_custom.yaml")).unwrap();
    let (status, stdout, stderr) = output(
        Command::new(python)
            .args([
                "-m",
                "mlperf_logging.compliance_checker",
                "--usage",
                "training",
            ])
            .args(["--ruleset", "4.1.0", "--config"])
            .arg(config)
            .arg("--log_output")
            .arg(log.with_extension("compliance"))
            .arg(log),
    );
    if status.success() && stderr.contains("SUCCESS") {
        Ok(())
    } else {
        Err(format!("{}: {stdout}{stderr}", log.display()))
    }
}

/// Scalars per tag as TensorBoard's own reader sees the run folder `dir`.
fn tensorboard_scalars(python: &Path, dir: &Path) -> (BTreeMap<String, Vec<(u64, f64)>>, Value) {
    let (status, stdout, stderr) = output(
        Command::new(python)
            .arg(repo().join("tests/py/tensorboard_read.py"))
            .arg(dir),
    );
    assert!(status.success(), "{stderr}");
    let read: Value = serde_json::from_str(&stdout).unwrap();
    let scalars = read["scalars"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(tag, points)| {
            let points = points.as_array().unwrap().iter();
            let points = points.map(|p| (p[0].as_u64().unwrap(), p[1].as_f64().unwrap()));
            (tag.clone(), points.collect())
        })
        .collect();
    (scalars, read["text"].clone())
}

/// Two datasets; with SGD at a learning rate of 10^6 the ReLU network diverges in its first
/// epoch while Tanh's, whose activations are bounded, trains on; Fashion-MNIST's files are
/// missing, so its jobs fail. One job succeeds, one diverges, two fail.
const GRID: &str = "name: interop\nactivations: [relu, tanh]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 2, target_accuracy: 0.1, train_limit: 600, test_limit: 200, latency_samples: 5}\n  - {dataset: fashion-mnist, model: paper-cnn, epochs: 2, target_accuracy: 0.5}\ntraining: {optimizer: sgd, learning_rate: 1000000}\nauthor: Ada Lovelace\n";

#[test]
#[cfg_attr(
    not(any(ci, have_pytools)),
    ignore = "needs DLGRID_PYTOOLS: mlperf-logging and tensorboard (scripts/test.sh installs them)"
)]
fn dawnbench_mlperf_and_tensorboard_files_pass_their_own_tools() {
    let tmp = tempfile::tempdir().unwrap();
    let data = fixture(tmp.path());
    let grid = tmp.path().join("grid.yaml");
    std::fs::write(&grid, GRID).unwrap();
    let out = tmp.path().join("out");
    let (status, _, stderr) =
        output(coordinator(&grid, &out, &data).env("DLGRID_AUTHOR_EMAIL", "ada@example.org"));
    assert!(status.success(), "{stderr}");
    let results = read_json(&out.join("results.json"));
    let mut statuses: Vec<&str> = jobs(&results)
        .iter()
        .map(|j| j["status"].as_str().unwrap())
        .collect();
    statuses.sort_unstable();
    assert_eq!(
        statuses,
        ["diverged", "failed", "failed", "succeeded"],
        "{results}"
    );

    for job in jobs(&results) {
        let id = job["id"].as_str().unwrap();
        let entry = out.join("dawnbench").join(id);
        if job["status"] == "succeeded" {
            dawnbench_format(&entry).unwrap_or_else(|e| panic!("{id}: {e}"));
            let train = read_json(&entry.join("train.json"));
            assert_eq!(
                (train["author"].as_str(), train["authorEmail"].as_str()),
                (Some("Ada Lovelace"), Some("ada@example.org"))
            );
        } else {
            assert!(
                !entry.exists(),
                "{id}: a run that did not succeed is no DAWNBench entry"
            );
        }
        assert!(
            out.join("mllog").join(format!("{id}.log")).is_file(),
            "{id}"
        );
        assert!(out.join("tensorboard").join(id).is_dir(), "{id}");
    }

    let python = pytools();
    for job in jobs(&results) {
        let id = job["id"].as_str().unwrap();
        let log = out.join("mllog").join(format!("{id}.log"));
        mlperf_compliant(&python, &log).unwrap();
        let (scalars, text) = tensorboard_scalars(&python, &out.join("tensorboard").join(id));
        assert!(text["spec"]
            .as_str()
            .unwrap()
            .contains(job["activation"].as_str().unwrap()));
        let epochs = job["epochs"].as_array().unwrap();
        for tag in ["test_accuracy", "train_loss", "test_loss", "train_seconds"] {
            let want: Vec<(u64, f64)> = epochs
                .iter()
                .map(|e| (e["epoch"].as_u64().unwrap(), e[tag].as_f64().unwrap()))
                .collect();
            let got = scalars.get(tag).cloned().unwrap_or_default();
            assert_eq!(got.len(), want.len(), "{id} {tag}");
            for ((gs, gv), (ws, wv)) in got.iter().zip(&want) {
                // TensorBoard scalars are float32.
                assert!(
                    gs == ws && (gv - wv).abs() <= 1e-6 * wv.abs().max(1.0),
                    "{id} {tag}: {got:?} vs {want:?}"
                );
            }
        }
    }
    // The checker refuses what it should: a succeeded run's log without its evaluations.
    let ok = jobs(&results)
        .iter()
        .find(|j| j["status"] == "succeeded")
        .unwrap();
    let log = std::fs::read_to_string(
        out.join("mllog")
            .join(format!("{}.log", ok["id"].as_str().unwrap())),
    )
    .unwrap();
    let broken = tmp.path().join("broken.log");
    std::fs::write(
        &broken,
        log.lines()
            .filter(|l| !l.contains("eval_accuracy"))
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .unwrap();
    assert!(mlperf_compliant(&python, &broken).is_err());

    // `coordinator report` re-renders all of them from the saved state alone.
    let again = tmp.path().join("again");
    let (status, _, stderr) = output(
        Command::new(bin("coordinator"))
            .args(["report", "--state"])
            .arg(out.join("state.db"))
            .arg("--out")
            .arg(&again),
    );
    assert!(status.success(), "{stderr}");
    for job in jobs(&results) {
        let id = job["id"].as_str().unwrap();
        let same = |rel: PathBuf| {
            let (a, b) = (
                std::fs::read(out.join(&rel)),
                std::fs::read(again.join(&rel)),
            );
            assert!(
                a.is_ok() && a.ok() == b.ok(),
                "{} differs after re-rendering",
                rel.display()
            );
        };
        same(Path::new("mllog").join(format!("{id}.log")));
        let tb = Path::new("tensorboard").join(id);
        for f in std::fs::read_dir(out.join(&tb)).unwrap() {
            same(tb.join(f.unwrap().file_name()));
        }
        if job["status"] == "succeeded" {
            same(Path::new("dawnbench").join(id).join("train.json"));
        }
    }
}
