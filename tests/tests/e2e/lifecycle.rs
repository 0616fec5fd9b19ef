//! A grid's life as a user lives it: exit codes scripts can trust, a fast resume after Ctrl-C,
//! failures on the console as they happen, cancel that refuses unknown ids, and a worker that
//! says it is waiting.

use std::process::Command;
use std::time::{Duration, Instant};

use integration_tests::{bin, output, wait_exit, wait_until};

use crate::support::{
    bound_ports, coordinator, epochs_done, fixture, get_json, signal, waiting_coordinator, Killed,
    LONG_JOB,
};

/// Interrupted runs exit 128 + the signal (130 for Ctrl-C, 143 for SIGTERM), never 0.
#[test]
fn interrupted_runs_exit_with_the_signal() {
    for (sig, code) in [("-INT", 130), ("-TERM", 143)] {
        let tmp = tempfile::tempdir().unwrap();
        let grid = tmp.path().join("grid.yaml");
        std::fs::write(&grid, LONG_JOB).unwrap();
        let (coord, _) = waiting_coordinator(&grid, tmp.path());
        let mut coord = Killed(coord);
        signal(coord.0.id(), sig);
        let status = wait_exit(&mut coord.0, Duration::from_secs(10));
        assert_eq!(status.code(), Some(code), "{sig}");
        let log = std::fs::read_to_string(tmp.path().join("coordinator.log")).unwrap();
        assert!(log.contains("run the same command to resume"), "{log}");
    }
}

/// Ctrl-C with local workers mid-job, then the same command: the job the coordinator's own
/// worker held (it died with the coordinator) runs again at once, not after its lease.
#[test]
fn resume_after_ctrl_c_does_not_wait_out_the_lease() {
    let tmp = tempfile::tempdir().unwrap();
    let data = fixture(tmp.path());
    let grid = tmp.path().join("grid.yaml");
    std::fs::write(&grid, LONG_JOB).unwrap();
    let out = tmp.path().join("out");
    let log = tmp.path().join("coordinator.log");
    let start = |from: usize| {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        // The default 30 s lease: waiting it out is what must not happen.
        let child = coordinator(&grid, &out, &data)
            .stderr(file)
            .spawn()
            .unwrap();
        let http = bound_ports(&log, from, true).1.unwrap();
        (child, format!("http://127.0.0.1:{http}/results.json"))
    };
    let (mut first, url) = start(0);
    // The local worker writes its checkpoint straight into the coordinator's folder, by another
    // thread after the epoch is reported (synced and renamed into place: under load that can
    // come well after the report), so wait for both before interrupting.
    let ckpts = out.join("checkpoints");
    let has_checkpoint = || {
        std::fs::read_dir(&ckpts).is_ok_and(|d| {
            d.flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "ckpt"))
        })
    };
    wait_until(
        Duration::from_secs(60),
        "an epoch and its checkpoint",
        || get_json(&url).is_some_and(|r| epochs_done(&r, 0) >= 1) && has_checkpoint(),
    );
    private_files_and_socket_folder(&out, first.id());
    signal(first.id(), "-INT");
    assert_eq!(
        wait_exit(&mut first, Duration::from_secs(10)).code(),
        Some(130)
    );
    // The interrupted run kept it.
    assert!(has_checkpoint(), "a checkpoint in {}", ckpts.display());
    let from = std::fs::metadata(&log).unwrap().len() as usize;
    let restarted = Instant::now();
    let (mut second, url) = start(from);
    // Running again (a new attempt) well within the 30 s lease.
    wait_until(Duration::from_secs(20), "the job leased again", || {
        get_json(&url).is_some_and(|r| r["jobs"][0]["attempts"] == 2)
    });
    let took = restarted.elapsed();
    assert!(took < Duration::from_secs(5), "{took:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text[from..].contains("queued again at once"),
        "{}",
        &text[from..]
    );
    assert!(wait_exit(&mut second, Duration::from_secs(120)).success());
    // Resumed from that file in place: nothing was copied over the coordinator's socket.
    let worker_log = std::fs::read_to_string(out.join("logs").join("worker-0.log")).unwrap();
    assert!(
        worker_log.contains("resumed from checkpoint"),
        "{worker_log}"
    );
    assert!(
        !worker_log.contains("stored with the coordinator"),
        "{worker_log}"
    );
    // The job's own log holds both attempts' output.
    let results = crate::support::read_json(&out.join("results.json"));
    let id = results["jobs"][0]["id"].as_str().unwrap();
    let job_log = out.join("logs").join("jobs").join(format!("{id}.log"));
    let job_log = std::fs::read_to_string(&job_log).unwrap();
    assert_eq!(
        job_log.matches("== attempt started").count(),
        2,
        "{job_log}"
    );
    assert!(job_log.contains("resumed from checkpoint"), "{job_log}");
}

/// What holds results or a job's state is its owner's alone: the state (mode 600, and so its
/// WAL), logs and checkpoints 600, the local workers' socket folder 700. (They were 644 and
/// 755.)
fn private_files_and_socket_folder(out: &std::path::Path, coordinator: u32) {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let mut files = vec![out.join("state.db"), out.join("logs").join("worker-0.log")];
    for dir in [out.join("checkpoints"), out.join("logs").join("jobs")] {
        files.extend(std::fs::read_dir(dir).unwrap().flatten().map(|e| e.path()));
    }
    for f in &files {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    // The socket its local worker was told to connect to.
    let socket = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let after = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
            after.split(' ').nth(1) == Some(&coordinator.to_string())
        })
        .find_map(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            args.iter()
                .find_map(|a| a.strip_prefix("unix:").map(str::to_string))
        })
        .expect("a local worker connected over the socket");
    let folder = std::path::Path::new(&socket).parent().unwrap();
    assert_eq!(mode(folder), 0o700, "{}", folder.display());
}

/// A job that fails says why on the console when it happens; `--fail-on-job-failure` makes
/// the run exit 3 (by default failures are results: 0).
#[test]
fn failures_reach_the_console_and_the_exit_code() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("no-data");
    std::fs::create_dir_all(&empty).unwrap();
    let grid = tmp.path().join("grid.yaml");
    std::fs::write(
        &grid,
        "name: nodata\nactivations: [relu]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 1, target_accuracy: 0.5}\n",
    )
    .unwrap();
    for (strict, code) in [(false, 0), (true, 3)] {
        let out = tmp.path().join(format!("out-{strict}"));
        let mut cmd = coordinator(&grid, &out, &empty);
        cmd.env("WORKER_DATASET_MIRRORS", "http://127.0.0.1:9");
        if strict {
            cmd.arg("--fail-on-job-failure");
        }
        let (status, _, stderr) = output(&mut cmd);
        assert_eq!(status.code(), Some(code), "{stderr}");
        let failed = stderr
            .lines()
            .find(|l| l.contains("job failed"))
            .unwrap_or_else(|| panic!("no failure line:\n{stderr}"));
        assert!(
            failed.contains("mnist") && failed.contains("error="),
            "{failed}"
        );
    }
}

/// A systematic error (no dataset) stops its dataset × model after `stop_after_failures` (3)
/// jobs failed alike: the rest are not run, each saying why, and the console says so once.
#[test]
fn a_group_failing_alike_stops_after_three() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("no-data");
    std::fs::create_dir_all(&empty).unwrap();
    let grid = tmp.path().join("grid.yaml");
    std::fs::write(
        &grid,
        "name: nodata\nactivations: [relu, tanh, selu, elu, gelu, silu, mish]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 1, target_accuracy: 0.5}\n",
    )
    .unwrap();
    let out = tmp.path().join("out");
    let mut cmd = coordinator(&grid, &out, &empty);
    cmd.env("WORKER_DATASET_MIRRORS", "http://127.0.0.1:9");
    let (status, _, stderr) = output(&mut cmd);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(
        stderr.matches("stopping this dataset/model").count(),
        1,
        "{stderr}"
    );
    assert_eq!(stderr.matches("job failed").count(), 3, "{stderr}");
    let results = crate::support::read_json(&out.join("results.json"));
    let jobs = crate::support::jobs(&results);
    let ran: Vec<_> = jobs.iter().filter(|j| j["attempts"] == 1).collect();
    let unrun: Vec<_> = jobs.iter().filter(|j| j["attempts"] == 0).collect();
    assert_eq!((ran.len(), unrun.len()), (3, 4), "{results}");
    for j in unrun {
        assert_eq!(j["status"], "failed");
        let e = j["error"].as_str().unwrap();
        assert!(
            e.starts_with("not run: 3 jobs of mnist / paper-cnn failed with the same error first:"),
            "{e}"
        );
    }
}

/// Cancelling every job ends the run with exit 4; an unknown job id is an error that names it
/// and cancels nothing; cancelled jobs stay cancelled when the grid runs again, until
/// `coordinator uncancel`; one coordinator per state.
#[test]
fn cancel_refuses_unknown_ids_and_cancelled_jobs_stay_cancelled_until_uncancel() {
    let tmp = tempfile::tempdir().unwrap();
    let grid = tmp.path().join("grid.yaml");
    std::fs::write(&grid, LONG_JOB).unwrap();
    let (coord, port) = waiting_coordinator(&grid, tmp.path());
    let mut coord = Killed(coord);
    let url = format!("http://127.0.0.1:{port}");
    let cancel = |args: &[&str]| {
        output(
            Command::new(bin("coordinator"))
                .args(["cancel", "--connect", &url])
                .args(args),
        )
    };
    // Neither ids nor --all: the usage error names both ways.
    let (status, _, stderr) = cancel(&[]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--job <JOBS>|--all"), "{stderr}");
    let (status, _, stderr) = cancel(&["--job", "no-such-job"]);
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("CancelJobs: unknown job id(s) \"no-such-job\": nothing cancelled"),
        "{stderr}"
    );
    // One coordinator per state: a second one, or `uncancel`, is refused while it runs.
    let state = tmp.path().join("out").join("state.db");
    let uncancel = |args: &[&str]| {
        output(
            Command::new(bin("coordinator"))
                .arg("uncancel")
                .arg("--state")
                .arg(&state)
                .args(args),
        )
    };
    let (status, _, stderr) = uncancel(&["--all"]);
    assert!(
        !status.success() && stderr.contains("in use by a running coordinator"),
        "{stderr}"
    );
    let (status, _, stderr) = output(
        Command::new(bin("coordinator"))
            .arg("--grid")
            .arg(&grid)
            .arg("--out")
            .arg(tmp.path().join("out"))
            .args([
                "--local-workers",
                "0",
                "--listen",
                "127.0.0.1:0",
                "--http",
                "off",
            ]),
    );
    assert!(
        !status.success() && stderr.contains("in use by a running coordinator"),
        "{stderr}"
    );
    let (status, stdout, stderr) = cancel(&["--all"]);
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("1 job(s) cancelled"), "{stdout}");
    let status = wait_exit(&mut coord.0, Duration::from_secs(30));
    assert_eq!(status.code(), Some(4));

    // Cancelled is kept: the same command again trains nothing and still exits 4.
    let (again, _) = waiting_coordinator(&grid, tmp.path());
    let mut again = Killed(again);
    assert_eq!(
        wait_exit(&mut again.0, Duration::from_secs(30)).code(),
        Some(4)
    );
    let results = crate::support::read_json(&tmp.path().join("out").join("results.json"));
    assert_eq!(results["jobs"][0]["status"], "cancelled", "{results}");
    let report = std::fs::read_to_string(tmp.path().join("out").join("report.md")).unwrap();
    assert!(report.contains("1 cancelled"), "{report}");

    // Until `uncancel`: unknown ids are bad input; then the job runs and the grid exits 0.
    let (status, _, stderr) = uncancel(&["--job", "no-such-job"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("unknown job id(s) \"no-such-job\""),
        "{stderr}"
    );
    let (status, stdout, stderr) = uncancel(&["--all"]);
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("1 job(s) uncancelled"), "{stdout}");
    let data = fixture(tmp.path());
    let (status, _, stderr) = output(&mut coordinator(&grid, &tmp.path().join("out"), &data));
    assert_eq!(status.code(), Some(0), "{stderr}");
    let results = crate::support::read_json(&tmp.path().join("out").join("results.json"));
    assert_eq!(results["jobs"][0]["status"], "succeeded", "{results}");
}

/// A worker whose coordinator is not there says so, instead of staying silent.
#[test]
fn a_worker_says_it_is_waiting_for_its_coordinator() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("worker.log");
    let mut w = Command::new(bin("worker"))
        .args(["--coordinator", "http://127.0.0.1:9", "--device", "cpu"])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(20), "the waiting message", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("waiting for the coordinator"))
    });
    let _ = w.kill();
    let _ = w.wait();
    let (status, _, stderr) = output(Command::new(bin("worker")).args([
        "--coordinator",
        "127.0.0.1:50051",
        "--device",
        "cpu",
    ]));
    assert!(!status.success() && stderr.contains("http://"), "{stderr}");
}

/// `coordinator plan` says what a run would do, and after the run, that nothing is left, with
/// an estimate from the jobs that finished.
#[test]
fn plan_shows_what_would_run_and_compare_reads_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let data = fixture(tmp.path());
    let grid = tmp.path().join("grid.yaml");
    let text = "name: plan\ncost_per_hour: 3.6\nactivations: [relu, tanh]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 1, target_accuracy: 0.5, train_limit: 500, test_limit: 100, latency_samples: 5}\n";
    std::fs::write(&grid, text).unwrap();
    let out = tmp.path().join("out");
    let plan = || {
        let (status, stdout, stderr) = output(
            Command::new(bin("coordinator"))
                .args(["plan", "--grid"])
                .arg(&grid)
                .arg("--out")
                .arg(&out),
        );
        assert!(status.success(), "{stderr}");
        stdout
    };
    let before = plan();
    assert!(
        before.contains("2 jobs: 2 to run, 0 already done"),
        "{before}"
    );
    assert!(before.contains("no state yet"), "{before}");
    assert!(!out.exists(), "plan writes nothing");
    let (status, _, stderr) = output(&mut coordinator(&grid, &out, &data));
    assert!(status.success(), "{stderr}");
    std::fs::write(&grid, text.replace("[relu, tanh]", "[relu, tanh, elu]")).unwrap();
    let after = plan();
    assert!(
        after.contains("3 jobs: 1 to run, 2 already done (2 succeeded)"),
        "{after}"
    );
    assert!(after.contains("(from 2 finished job(s))"), "{after}");
    assert!(after.contains("at $3.6/worker-hour"), "{after}");
    assert!(after.contains("mnist-paper-cnn-elu-s0-"), "{after}");

    // `compare` reads a state or a results.json; the run against itself differs by nothing.
    let (status, md, stderr) = output(
        Command::new(bin("coordinator"))
            .arg("compare")
            .arg(out.join("state.db"))
            .arg(out.join("results.json")),
    );
    assert!(status.success(), "{stderr}");
    assert!(md.starts_with("# Comparison: A = plan"), "{md}");
    let relu = md
        .lines()
        .find(|l| l.starts_with("| relu | Error rate |"))
        .unwrap();
    assert!(relu.contains("| +0.00% |"), "{relu}");
    let (status, _, stderr) = output(
        Command::new(bin("coordinator"))
            .args(["compare", "no-such.db"])
            .arg(out.join("results.json")),
    );
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no-such.db: no such file"), "{stderr}");
    // A results.json that is not one is bad input too, for `report` as for `compare`.
    let bogus = tmp.path().join("bogus.json");
    std::fs::write(&bogus, "{\"jobs\": 3}").unwrap();
    let (status, _, stderr) = output(
        Command::new(bin("coordinator"))
            .args(["report", "--state"])
            .arg(&bogus)
            .arg("--out")
            .arg(tmp.path().join("r")),
    );
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("bogus.json: not a results.json of this tool"),
        "{stderr}"
    );
}

/// Provenance: each run on a state is kept (when, which grid file and hash, which coordinator),
/// each job names the run that finished it, and a rerun that trains nothing (only the target
/// changed) reports as finished, with both runs listed.
#[test]
fn every_run_is_kept_and_each_job_names_its_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = fixture(tmp.path());
    let grid = tmp.path().join("grid.yaml");
    let text = "name: prov\nactivations: [relu, tanh]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 1, target_accuracy: 0.5, train_limit: 500, test_limit: 100, latency_samples: 5}\n";
    std::fs::write(&grid, text).unwrap();
    let out = tmp.path().join("out");
    let (status, _, stderr) = output(&mut coordinator(&grid, &out, &data));
    assert!(status.success(), "{stderr}");
    std::fs::write(
        &grid,
        text.replace("target_accuracy: 0.5", "target_accuracy: 0.6"),
    )
    .unwrap();
    let (status, _, stderr) = output(&mut coordinator(&grid, &out, &data));
    assert!(status.success(), "{stderr}");
    let results = crate::support::read_json(&out.join("results.json"));
    let env = &results["environment"];
    let runs = env["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{env}");
    assert_eq!(
        (
            runs[0]["jobs_finished"].as_u64(),
            runs[1]["jobs_finished"].as_u64()
        ),
        (Some(2), Some(0)),
        "{env}"
    );
    assert!(runs.iter().all(|r| r["finished_at"].is_string()), "{env}");
    assert_ne!(
        runs[0]["grid_sha256"], runs[1]["grid_sha256"],
        "the grid file changed"
    );
    assert!(env["finished_at"].is_string(), "{env}");
    for job in crate::support::jobs(&results) {
        assert_eq!(job["run"], 1, "{job}");
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(!report.contains("(still running)"), "{report}");
    assert!(
        report.contains("- Run 1: ") && report.contains("- Run 2: "),
        "{report}"
    );
    assert!(report.contains("2 job(s) finished in it"), "{report}");
}
