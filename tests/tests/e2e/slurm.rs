//! `--launcher slurm` against a real SLURM: Debian's slurm-wlm and munge on this machine, one
//! node with two "GPUs" (scripts/slurm-local.sh; scripts/test.sh starts it where it can).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use integration_tests::{bin, output, wait_exit};

use crate::support::{fixture, jobs, read_json, Killed};

const GRID: &str = "name: slurmy\nactivations: [relu, tanh, elu]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 2, target_accuracy: 0.5, test_limit: 200, latency_samples: 10}\n";

fn coordinator(dir: &Path, extra: &[&str]) -> Command {
    let grid = dir.join("grid.yaml");
    std::fs::write(&grid, GRID).unwrap();
    let mut c = Command::new(bin("coordinator"));
    c.arg("--grid")
        .arg(&grid)
        .arg("--out")
        .arg(dir.join("out"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--http",
            "off",
            "--launcher",
            "slurm",
        ])
        .args(extra);
    c
}

/// This coordinator's worker jobs still in SLURM's queue (job name `dlgrid-<grid>-<port>`).
fn queued(port: &str) -> Vec<String> {
    let (_, out, _) = output(Command::new("squeue").args([
        "-h",
        "-n",
        &format!("dlgrid-slurmy-{port}"),
        "-o",
        "%i %T",
    ]));
    out.lines().map(str::to_string).collect()
}

/// The grid runs on worker jobs that SLURM starts (each bound to a "GPU" of its own), every
/// job succeeds once, and no worker job is left in the queue afterwards.
#[test]
#[cfg_attr(
    not(any(ci, have_slurm)),
    ignore = "needs a SLURM cluster (scripts/slurm-local.sh starts one, as root)"
)]
fn a_grid_runs_on_slurm_workers_and_leaves_no_job_behind() {
    if !cfg!(have_slurm) {
        crate::support::missing("a SLURM cluster (sinfo)");
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = fixture(dir);
    let log = dir.join("coordinator.log");
    let child = coordinator(dir, &["--max-workers", "2", "--sbatch-arg=--gres=gpu:1"])
        .arg("--data-dir")
        .arg(&data)
        .env("WORKER_DATASET_MIRRORS", "http://127.0.0.1:9")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    let status = wait_exit(&mut child.0, Duration::from_secs(180));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{text}");
    let submitted = text.matches("slurm: worker job submitted").count();
    assert!(
        (1..=3).contains(&submitted),
        "{submitted} submitted: {text}"
    );
    let results = read_json(&dir.join("out").join("results.json"));
    for j in jobs(&results) {
        assert_eq!(j["status"], "succeeded", "{j}");
        assert_eq!(j["attempts"], 1, "{j}");
        assert!(j["worker"].as_str().unwrap().starts_with("slurm-"), "{j}");
    }
    let port = text
        .split("listen=127.0.0.1:")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .to_string();
    let started = Instant::now();
    while !queued(&port).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "still queued: {:?}",
            queued(&port)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // SLURM bound each worker job to one of the node's two GPUs.
    let logs: Vec<_> = std::fs::read_dir(dir.join("out").join("logs"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("slurm-"))
        .collect();
    assert_eq!(logs.len(), submitted);
}

/// Bad input is refused before anything starts (exit 2, nothing written): no worker at all,
/// and SLURM's commands missing.
#[test]
fn bad_slurm_input_is_refused_before_anything_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (s, _, err) = output(&mut coordinator(dir, &["--max-workers", "0"]));
    assert_eq!(s.code(), Some(2), "{err}");
    assert!(err.contains("--max-workers 0"), "{err}");
    let empty = tempfile::tempdir().unwrap();
    let (s, _, err) = output(coordinator(dir, &[]).env("PATH", empty.path()));
    assert_eq!(s.code(), Some(2), "{err}");
    assert!(err.contains("`sbatch` is not on PATH"), "{err}");
    assert!(!dir.join("out").exists());
}

/// A request sbatch refuses (an unknown partition) stops the coordinator before anything
/// starts, with sbatch's own words.
#[test]
#[cfg_attr(
    not(any(ci, have_slurm)),
    ignore = "needs a SLURM cluster (scripts/slurm-local.sh starts one, as root)"
)]
fn a_request_sbatch_refuses_is_shown_before_anything_starts() {
    if !cfg!(have_slurm) {
        crate::support::missing("a SLURM cluster (sinfo)");
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (s, _, err) = output(&mut coordinator(dir, &["--sbatch-arg=--partition=nowhere"]));
    assert_eq!(s.code(), Some(2), "{err}");
    assert!(
        err.contains("sbatch refuses the worker job") && err.contains("invalid partition"),
        "{err}"
    );
    assert!(!dir.join("out").exists());
}

/// A worker job cancelled by SLURM mid-job (`scancel`, as at a node failure or preemption) is a
/// lost worker: the coordinator submits a replacement, and the job resumes on it from the
/// checkpoint it stored, losing at most the epoch in progress.
#[test]
#[cfg_attr(
    not(any(ci, have_slurm)),
    ignore = "needs a SLURM cluster (scripts/slurm-local.sh starts one, as root)"
)]
fn a_worker_job_cancelled_mid_job_is_replaced_and_the_job_resumes() {
    if !cfg!(have_slurm) {
        crate::support::missing("a SLURM cluster (sinfo)");
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = fixture(dir);
    let grid = dir.join("grid.yaml");
    std::fs::write(
        &grid,
        "name: slurmy\nactivations: [relu]\ncheckpoint_every: 1\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 12, target_accuracy: 0.5, test_limit: 200, latency_samples: 10}\n",
    )
    .unwrap();
    let log = dir.join("coordinator.log");
    let child = Command::new(bin("coordinator"))
        .arg("--grid")
        .arg(&grid)
        .arg("--out")
        .arg(dir.join("out"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--http",
            "off",
            "--launcher",
            "slurm",
        ])
        .args(["--max-workers", "1", "--lease-seconds", "4"])
        .arg("--data-dir")
        .arg(&data)
        .env("WORKER_DATASET_MIRRORS", "http://127.0.0.1:9")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    let checkpoints = dir.join("out").join("checkpoints");
    let started = Instant::now();
    let first = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let stored = std::fs::read_dir(&checkpoints).is_ok_and(|d| {
            d.flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "ckpt"))
        });
        let id = text
            .split("slurm_job=")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .map(str::to_string);
        if let (true, Some(id)) = (stored, id) {
            break id;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{text}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let (s, _, err) = output(Command::new("scancel").arg(&first));
    assert!(s.success(), "{err}");
    let status = wait_exit(&mut child.0, Duration::from_secs(180));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{text}");
    assert!(
        text.contains(&format!("slurm_job={first} state=CANCELLED")),
        "{text}"
    );
    assert!(
        text.matches("slurm: worker job submitted").count() >= 2,
        "a replacement: {text}"
    );
    let results = read_json(&dir.join("out").join("results.json"));
    let job = &jobs(&results)[0];
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["attempts"], 2, "{job}");
    crate::support::assert_complete_series(job, 12);
    let resumed = std::fs::read_dir(dir.join("out").join("logs"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy() != format!("slurm-{first}.log"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .any(|l| l.contains("resuming from the checkpoint stored with the coordinator"));
    assert!(
        resumed,
        "the replacement resumed from the stored checkpoint"
    );
}
