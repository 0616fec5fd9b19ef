//! The SLURM batch scripts in deploy/slurm/ against a real SLURM (see [`crate::slurm`]): one
//! allocation for the whole grid, on one node or over several with `srun`, through the time
//! limit and preemption.

use std::process::Command;
use std::time::{Duration, Instant};

use integration_tests::{bin, output};

use crate::slurm::slurm_here;
use crate::support::{fixture, jobs, read_json};

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

/// Waits for job `id`'s `n`-th requeue and for its script to start again (its log, read by
/// `text`, says "(restart n)").
fn restarted(id: &str, n: u32, text: &dyn Fn() -> String) {
    until(120, "the job was not requeued", || {
        job_field(id, "Restarts").is_some_and(|r| r == n.to_string())
    });
    // A requeued job may start only two minutes later: once it has been pending for 3 s, let
    // it start now (asked again every 2 s: the update is lost while the job is still ending).
    // Not sooner: slurmd revokes the last run's credential with a one-second clock, and a
    // start in that same second is killed ("Job credential revoked").
    let pending_since = std::cell::Cell::new(None::<Instant>);
    let asked = std::cell::Cell::new(Instant::now() - Duration::from_secs(5));
    let started = || {
        let pending = job_field(id, "JobState").is_some_and(|s| s == "PENDING");
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
            let update = ["update", &format!("JobId={id}"), "StartTime=now"];
            let _ = output(Command::new("scontrol").args(update));
        }
        text().contains(&format!("(restart {n})"))
    };
    let waited = Instant::now();
    while !started() {
        let (_, job, _) = output(Command::new("scontrol").args(["show", "job", id]));
        assert!(
            waited.elapsed() < Duration::from_secs(150),
            "the requeued job did not start:\n{job}\n{}",
            text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Once the grid under `out` stored a checkpoint, job `id`'s batch shell gets the time limit's
/// warning signal (`scancel --signal=TERM --batch`).
fn time_limit_after_a_checkpoint(id: &str, out: &std::path::Path) {
    let checkpoints = out.join("checkpoints");
    let stored = || std::fs::read_dir(&checkpoints).map_or(0, |d| d.flatten().count());
    until(120, "no checkpoint", || stored() > 0);
    let (s, _, err) = output(Command::new("scancel").args(["--signal=TERM", "--batch", id]));
    assert!(s.success(), "{err}");
}

/// Every job of `results` succeeded with its 8 epochs, and at least one resumed (attempt > 1).
fn every_job_once_some_resumed(results: &serde_json::Value) {
    let mut resumed = 0;
    for j in jobs(results) {
        assert_eq!(j["status"], "succeeded", "{j}");
        crate::support::assert_complete_series(j, 8);
        resumed += usize::from(j["attempts"].as_u64().unwrap() > 1);
    }
    assert!(resumed >= 1, "{results}");
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
    let restarted = |n: u32| restarted(&id, n, &text);
    time_limit_after_a_checkpoint(&id, &out);
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
    every_job_once_some_resumed(&results);
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

/// deploy/slurm/dlgrid-nodes.sbatch: the coordinator on the allocation's first node and one
/// worker per task with `srun` (two tasks, one "GPU" each), over mutual TLS with the job's own
/// token and PKI. At the time limit's signal the workers hand back, the coordinator saves, the
/// job requeues and resumes: every job succeeds once, the interrupted ones from their
/// checkpoints; the workers register under the job's id, and its secrets are gone at the end.
#[test]
#[cfg_attr(
    not(any(ci, have_slurm)),
    ignore = "needs a SLURM cluster (scripts/slurm-local.sh starts one, as root)"
)]
fn the_multinode_script_runs_one_worker_per_task_with_srun() {
    let _one = slurm_here();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = fixture(dir);
    std::fs::write(
        dir.join("grid.yaml"),
        "name: nodes\nactivations: [relu, tanh, elu, selu]\ncheckpoint_every: 1\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 8, target_accuracy: 0.5, test_limit: 200, latency_samples: 10}\n",
    )
    .unwrap();
    // DLGRID_BIN: the binaries and lab-certs.sh, as a cluster's shared folder would hold them.
    let bins = dir.join("bin");
    std::fs::create_dir(&bins).unwrap();
    let repo = crate::support::repo();
    for (name, from) in [
        ("coordinator", bin("coordinator")),
        ("worker", bin("worker")),
        ("lab-certs.sh", repo.join("scripts/lab-certs.sh")),
    ] {
        std::os::unix::fs::symlink(from, bins.join(name)).unwrap();
    }
    let port = std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (out, log) = (dir.join("out"), dir.join("job.log"));
    let (s, id, err) = output(
        Command::new("sbatch")
            .args(["--parsable", "--ntasks=2", "--gpus-per-task=1"])
            .arg(format!("--chdir={}", dir.display()))
            .arg(format!("--output={}", log.display()))
            .arg(repo.join("deploy/slurm/dlgrid-nodes.sbatch"))
            .env("GRID", "grid.yaml")
            .env("OUT", &out)
            .env("DATA_DIR", &data)
            .env("DLGRID_BIN", &bins)
            .env("DLGRID_PORT", port.to_string())
            .env("WORKER_DATASET_MIRRORS", "http://127.0.0.1:9"),
    );
    assert!(s.success(), "{err}");
    let id = id.trim().to_string();
    let _cancel = Cancel(id.clone());
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    time_limit_after_a_checkpoint(&id, &out);
    restarted(&id, 1, &text);
    let begun = Instant::now();
    while job_field(&id, "JobState").is_none_or(|s| s != "COMPLETED") {
        let (_, job, _) = output(Command::new("scontrol").args(["show", "job", &id]));
        assert!(
            begun.elapsed() < Duration::from_secs(180),
            "the job did not complete:\n{job}\n{}",
            text()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let t = text();
    assert!(t.contains("grid finished: 4 succeeded"), "{t}");
    assert!(t.contains("2 worker task(s)"), "{t}");
    assert!(t.contains("workers hand back, coordinator saves"), "{t}");
    let results = read_json(&out.join("results.json"));
    every_job_once_some_resumed(&results);
    assert_eq!(results["environment"]["runs"].as_array().unwrap().len(), 2);
    let mut names: Vec<String> = results["environment"]["workers"]
        .as_array()
        .unwrap()
        .iter()
        .inspect(|w| assert_eq!(w["slurm_job"], id.as_str(), "{w}"))
        .map(|w| w["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names, [format!("slurm-{id}.0"), format!("slurm-{id}.1")]);
    assert!(
        !out.join(format!(".slurm-job-{id}")).exists(),
        "secrets left"
    );
}
