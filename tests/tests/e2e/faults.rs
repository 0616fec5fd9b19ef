//! Failures: workers and the coordinator killed, paused, restarted, drained; cancellation.

use std::process::Command;
use std::time::Duration;

use integration_tests::{bin, output, wait_exit};

use crate::support::{assert_complete_series, epochs_done, jobs, signal, Cluster, LONG_JOB};

/// kill -9 of a worker mid-job: the job finishes on another worker (another checkpoint folder,
/// as on another host), resumed from the checkpoint stored with the coordinator; one result.
#[test]
fn killed_worker_job_resumes_elsewhere_from_its_checkpoint() {
    let c = Cluster::new(LONG_JOB);
    let mut coord = c.coordinator("0");
    let mut a = c.worker("a");
    c.wait_live("two epochs on worker a", |r| epochs_done(r, 0) >= 2);
    signal(a.id(), "-KILL");
    let _ = a.wait();
    let mut b = c.worker("b");
    assert!(wait_exit(&mut coord, Duration::from_secs(120)).success());
    assert!(wait_exit(&mut b, Duration::from_secs(30)).success());
    let results = c.results();
    let job = &jobs(&results)[0];
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["attempts"], 2);
    assert_eq!(job["worker"], "b");
    assert_complete_series(job, 8);
    assert!(
        c.log("b")
            .contains("resuming from the checkpoint stored with the coordinator"),
        "{}",
        c.log("b")
    );
    assert!(
        c.log("b").contains("resumed from checkpoint"),
        "{}",
        c.log("b")
    );
    assert!(
        !c.out.join("checkpoints").read_dir().unwrap().any(|e| e
            .unwrap()
            .path()
            .extension()
            .is_some_and(|x| x == "ckpt")),
        "cleaned up"
    );
}

/// kill -9 of the coordinator mid-grid, then the same command again: finished jobs keep their
/// results and are not re-run; the interrupted one completes; all results exactly once.
#[test]
fn killed_coordinator_restarts_without_rerunning_finished_jobs() {
    let c = Cluster::new(
        "name: restart\nactivations: [relu, tanh, elu]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 4, target_accuracy: 0.5, latency_samples: 5}\n",
    );
    let mut coord = c.coordinator("1");
    c.wait_live("one job finished and another started", |r| {
        let j = r["jobs"].as_array().unwrap();
        j.iter().any(|x| x["status"] == "succeeded")
            && j.iter()
                .any(|x| x["status"] == "running" && !x["epochs"].as_array().unwrap().is_empty())
    });
    let before = c.live().unwrap();
    signal(coord.id(), "-KILL");
    let _ = coord.wait();
    let mut again = c.coordinator("1");
    assert!(wait_exit(&mut again, Duration::from_secs(120)).success());
    let after = c.results();
    for job in jobs(&after) {
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_complete_series(job, 4);
    }
    for old in jobs(&before).iter().filter(|j| j["status"] == "succeeded") {
        let new = jobs(&after).iter().find(|j| j["id"] == old["id"]).unwrap();
        assert_eq!(
            new["epochs"], old["epochs"],
            "a finished job is not run again"
        );
        assert_eq!(new["attempts"], 1);
    }
}

/// A worker paused (SIGSTOP) past its lease loses the job to another worker; when it resumes,
/// its late reports are rejected and the result is the other worker's, exactly once.
#[test]
fn paused_worker_late_reports_are_rejected() {
    let c = Cluster::new(LONG_JOB);
    let mut coord = c.coordinator("0");
    let mut a = c.worker("a");
    c.wait_live("an epoch on worker a", |r| epochs_done(r, 0) >= 1);
    signal(a.id(), "-STOP");
    let mut b = c.worker("b");
    c.wait_live("the job re-leased to b", |r| r["jobs"][0]["attempts"] == 2);
    signal(a.id(), "-CONT");
    assert!(wait_exit(&mut coord, Duration::from_secs(120)).success());
    let _ = wait_exit(&mut b, Duration::from_secs(30));
    let _ = wait_exit(&mut a, Duration::from_secs(30));
    let results = c.results();
    let job = &jobs(&results)[0];
    assert_eq!(
        (job["status"].as_str(), job["worker"].as_str()),
        (Some("succeeded"), Some("b")),
        "{job}"
    );
    assert_eq!(job["attempts"], 2);
    assert_complete_series(job, 8);
    let log = std::fs::read_to_string(c.tmp.path().join("coordinator.log")).unwrap();
    assert!(
        log.contains("stale epoch report rejected")
            || log.contains("stale result rejected")
            || c.log("a").contains("lease revoked"),
        "{log}\n---\n{}",
        c.log("a")
    );
}

/// `coordinator cancel --all` stops a running grid: the running job's worker stops it at its
/// next heartbeat, every unfinished job ends as `cancelled`, and the run completes.
#[test]
fn cancel_stops_the_grid() {
    let c = Cluster::new(
        "name: cancel\ncheckpoint_every: 1\nactivations: [relu, tanh]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 40, target_accuracy: 0.5}\n",
    );
    let mut coord = c.coordinator("1");
    c.wait_live("a running job with an epoch", |r| {
        r["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["status"] == "running" && !j["epochs"].as_array().unwrap().is_empty())
    });
    let (status, stdout, stderr) =
        output(Command::new(bin("coordinator")).args(["cancel", "--all", "--connect", &c.url()]));
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("2 job(s) cancelled"), "{stdout}");
    // A grid ended by cancelling exits 4, not 0 (docs: exit codes), and says how to undo it.
    assert_eq!(
        wait_exit(&mut coord, Duration::from_secs(60)).code(),
        Some(4)
    );
    let said = c.log("coordinator");
    let hint = format!(
        "2 cancelled (`coordinator uncancel --state {} --all` runs them again)",
        c.out.join("state.db").display()
    );
    assert!(said.contains(&hint), "{said}");
    let results = c.results();
    for job in jobs(&results) {
        assert_eq!(job["status"], "cancelled", "{job}");
        assert_eq!(job["error"], "cancelled by the operator");
        assert!(
            job["epochs"].as_array().unwrap().len() < 40,
            "stopped early: {job}"
        );
    }
    // Their checkpoints (written every epoch here) do not outlive them.
    let left: Vec<_> = std::fs::read_dir(c.out.join("checkpoints"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

/// SIGTERM drains a worker: it stops its job, hands the lease back (the job is not counted as
/// lost) and exits 0; another worker resumes the job from its stored checkpoint at once.
#[test]
fn sigterm_drains_a_worker_and_hands_its_job_back() {
    let c = Cluster::new(LONG_JOB);
    let mut coord = c.coordinator("0");
    let mut a = c.worker("a");
    c.wait_live("two epochs on worker a", |r| epochs_done(r, 0) >= 2);
    signal(a.id(), "-TERM");
    assert!(
        wait_exit(&mut a, Duration::from_secs(20)).success(),
        "{}",
        c.log("a")
    );
    assert!(c.log("a").contains("lease handed back"), "{}", c.log("a"));
    c.wait_live("the job queued again", |r| {
        r["jobs"][0]["status"] == "pending"
    });
    let mut b = c.worker("b");
    assert!(wait_exit(&mut coord, Duration::from_secs(120)).success());
    let _ = wait_exit(&mut b, Duration::from_secs(30));
    let results = c.results();
    let job = &jobs(&results)[0];
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(
        (job["attempts"].as_u64(), job["lost_attempts"].as_u64()),
        (Some(2), Some(0)),
        "{job}"
    );
    assert_complete_series(job, 8);
    assert!(
        c.log("b").contains("resumed from checkpoint"),
        "{}",
        c.log("b")
    );
}
