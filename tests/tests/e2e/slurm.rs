//! `--launcher slurm` against a real SLURM: Debian's slurm-wlm and munge on this machine, one
//! node with two "GPUs" (scripts/slurm-local.sh; scripts/test.sh starts it where it can).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use integration_tests::{bin, output, wait_exit};

use crate::support::{fixture, jobs, read_json, Killed};

const GRID: &str = "name: slurmy\nactivations: [relu, tanh, elu]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 2, target_accuracy: 0.5, test_limit: 200, latency_samples: 10}\n";

/// The coordinator for `grid` (written to `dir/grid.yaml`) with `--launcher slurm`, output in
/// `dir/out`, and `extra` flags.
fn coordinator_for(dir: &Path, grid: &str, extra: &[&str]) -> Command {
    let file = dir.join("grid.yaml");
    std::fs::write(&file, grid).unwrap();
    let grid = file;
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

/// For a test that needs the cluster: fails where there is none (the test is ignored there
/// unless CI=true), and holds the cluster while the test runs. The one-node cluster has as many
/// CPUs as the machine, so SLURM tests run one at a time, their worker jobs not waiting in the
/// queue behind each other's.
pub(crate) fn slurm_here() -> std::sync::MutexGuard<'static, ()> {
    if !cfg!(have_slurm) {
        crate::support::missing("a SLURM cluster (sinfo)");
    }
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// The gRPC port the coordinator logging `text` listens on.
fn port_of(text: &str) -> String {
    text.split("listen=127.0.0.1:")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .expect("the coordinator's start line")
        .to_string()
}

fn coordinator(dir: &Path, extra: &[&str]) -> Command {
    coordinator_for(dir, GRID, extra)
}

/// `cmd` started on the datasets in `data`, logging to `log`; killed when dropped.
fn started(cmd: &mut Command, data: &Path, log: &Path) -> Killed {
    let child = cmd
        .arg("--data-dir")
        .arg(data)
        .env("WORKER_DATASET_MIRRORS", "http://127.0.0.1:9")
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    Killed(child)
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
    let _one = slurm_here();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = fixture(dir);
    let log = dir.join("coordinator.log");
    let mut child = started(
        &mut coordinator(dir, &["--max-workers", "2", "--sbatch-arg=--gres=gpu:1"]),
        &data,
        &log,
    );
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
    // Each worker's record names the SLURM job it ran in.
    for w in results["environment"]["workers"].as_array().unwrap() {
        let job = w["slurm_job"].as_str().unwrap_or_default();
        assert!(
            !job.is_empty() && w["name"] == format!("slurm-{job}"),
            "{w}"
        );
    }
    let port = port_of(&text);
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
    // A worker job cancelled while still queued (the grid done first) never wrote a log.
    assert!((1..=submitted).contains(&logs.len()), "{} logs", logs.len());
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
    let _one = slurm_here();
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
    let _one = slurm_here();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = fixture(dir);
    let grid = "name: slurmy\nactivations: [relu]\ncheckpoint_every: 1\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 12, target_accuracy: 0.5, test_limit: 200, latency_samples: 10}\n";
    let log = dir.join("coordinator.log");
    let flags = ["--max-workers", "1", "--lease-seconds", "4"];
    let mut child = started(&mut coordinator_for(dir, grid, &flags), &data, &log);
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
    // Status shows the worker job with SLURM's state (as last read: every 2 s).
    let port = port_of(&std::fs::read_to_string(&log).unwrap());
    let (_, shown, _) = output(Command::new(bin("coordinator")).args([
        "status",
        "--connect",
        &format!("http://127.0.0.1:{port}"),
    ]));
    assert!(
        ["RUNNING", "PENDING"]
            .iter()
            .any(|s| shown.contains(&format!("SLURM worker jobs: {first} {s}"))),
        "{shown}"
    );
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
