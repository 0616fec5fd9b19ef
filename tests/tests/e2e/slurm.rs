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
fn slurm_here() -> std::sync::MutexGuard<'static, ()> {
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

/// `scontrol show job`'s `key=value` for job `id`.
fn job_field(id: &str, key: &str) -> Option<String> {
    let (_, out, _) = output(Command::new("scontrol").args(["show", "job", id, "-o"]));
    out.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .map(str::to_string)
}

/// Waits (up to `secs`) for `cond`, saying `what` if it never holds.
fn until(secs: u64, what: &str, cond: impl Fn() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(started.elapsed() < Duration::from_secs(secs), "{what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// deploy/slurm/dlgrid.sbatch end to end: the coordinator and a worker in one allocation; at
/// the time limit's signal (`scancel --signal=TERM --batch`) and at a preemption (`scontrol
/// requeue`) it saves and requeues, and the same script resumes from the state: every job
/// succeeds once, the interrupted ones resume from their checkpoints, no finished one runs
/// again.
#[test]
#[cfg_attr(
    not(any(ci, have_slurm)),
    ignore = "needs a SLURM cluster (scripts/slurm-local.sh starts one, as root)"
)]
fn the_batch_script_requeues_at_the_time_limit_and_on_preemption() {
    let _one = slurm_here();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = fixture(dir);
    std::fs::write(
        dir.join("grid.yaml"),
        "name: alloc\nactivations: [relu, tanh, elu, selu]\ncheckpoint_every: 1\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 8, target_accuracy: 0.5, test_limit: 200, latency_samples: 10}\n",
    )
    .unwrap();
    let script = crate::support::repo().join("deploy/slurm/dlgrid.sbatch");
    let out = dir.join("out");
    let log = dir.join("job.log");
    let (s, id, err) = output(
        Command::new("sbatch")
            .arg("--parsable")
            .arg(format!("--chdir={}", dir.display()))
            .arg(format!("--output={}", log.display()))
            .arg(&script)
            .env("GRID", "grid.yaml")
            .env("OUT", &out)
            .env("DATA_DIR", &data)
            .env("DLGRID_BIN", integration_tests::bin_dir())
            .env("WORKER_DATASET_MIRRORS", "http://127.0.0.1:9"),
    );
    assert!(s.success(), "{err}");
    let id = id.trim().to_string();
    let _cancel = Cancel(id.clone());
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    let restarted = |n: u32| {
        until(120, "the job was not requeued", || {
            job_field(&id, "Restarts").is_some_and(|r| r == n.to_string())
        });
        // A requeued job may start only two minutes later: once it has been pending for 3 s,
        // let it start now (asked again every 2 s: the update is lost while the job is still
        // ending). Not sooner: slurmd revokes the last run's credential with a one-second
        // clock, and a start in that same second is killed ("Job credential revoked").
        let pending_since = std::cell::Cell::new(None::<Instant>);
        let asked = std::cell::Cell::new(Instant::now() - Duration::from_secs(5));
        let started = || {
            let pending = job_field(&id, "JobState").is_some_and(|s| s == "PENDING");
            if !pending {
                pending_since.set(None);
            } else if pending_since.get().is_none() {
                pending_since.set(Some(Instant::now()));
            }
            let settled = pending_since
                .get()
                .is_some_and(|t| t.elapsed() >= Duration::from_secs(3));
            if settled && asked.get().elapsed() >= Duration::from_secs(2) {
                asked.set(Instant::now());
                let _ = output(Command::new("scontrol").args([
                    "update",
                    &format!("JobId={id}"),
                    "StartTime=now",
                ]));
            }
            text().contains(&format!("(restart {n})"))
        };
        let waited = Instant::now();
        while !started() {
            let (_, job, _) = output(Command::new("scontrol").args(["show", "job", &id]));
            assert!(
                waited.elapsed() < Duration::from_secs(150),
                "the requeued job did not start:\n{job}\n{}",
                text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let checkpoints = out.join("checkpoints");
    let stored = || std::fs::read_dir(&checkpoints).map_or(0, |d| d.flatten().count());
    until(120, "no checkpoint", || stored() > 0);
    // The time limit's warning signal, to the batch shell.
    let (s, _, err) = output(Command::new("scancel").args(["--signal=TERM", "--batch", &id]));
    assert!(s.success(), "{err}");
    restarted(1);
    // A preemption: SLURM requeues the running job itself.
    until(120, "no progress after the restart", || {
        text().matches("job started").count() >= 2
    });
    let (s, _, err) = output(Command::new("scontrol").args(["requeue", &id]));
    assert!(s.success(), "{err}");
    restarted(2);
    until(180, "the grid did not finish", || {
        job_field(&id, "JobState").is_some_and(|s| s == "COMPLETED")
    });
    let t = text();
    assert!(t.contains("grid finished: 4 succeeded"), "{t}");
    let results = read_json(&out.join("results.json"));
    assert_eq!(jobs(&results).len(), 4);
    let mut resumed = 0;
    for j in jobs(&results) {
        assert_eq!(j["status"], "succeeded", "{j}");
        crate::support::assert_complete_series(j, 8);
        resumed += usize::from(j["attempts"].as_u64().unwrap() > 1);
    }
    assert!(resumed >= 1, "{results}");
    // The first run and the two after the requeues, each with the SLURM job in its provenance
    // (and the workers it started in theirs).
    let runs = results["environment"]["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3, "{runs:?}");
    assert!(
        runs.iter().all(|r| r["slurm_job"] == id.as_str()),
        "{runs:?}"
    );
    let workers = results["environment"]["workers"].as_array().unwrap();
    assert!(
        workers.iter().all(|w| w["slurm_job"] == id.as_str()),
        "{workers:?}"
    );
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains(&format!("in SLURM job {id}: ")), "{report}");
    let worker_log = std::fs::read_to_string(out.join("logs").join("worker-0.log")).unwrap();
    assert!(
        worker_log.contains("resumed from checkpoint"),
        "{worker_log}"
    );
}

/// Cancels a SLURM job when dropped (a failed test leaves nothing in the queue).
struct Cancel(String);

impl Drop for Cancel {
    fn drop(&mut self) {
        let _ = Command::new("scancel").arg(&self.0).status();
    }
}
