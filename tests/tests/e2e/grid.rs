//! A grid from start to finish: results, resume, re-rendering, failures, bad input, extension.

use std::process::Command;

use integration_tests::{bin, output};

use crate::support::{
    coordinator, fixture, jobs, read_json, waiting_coordinator, EPOCH_FIELDS, JOB_FIELDS,
};

#[test]
fn grid_runs_end_to_end_resumes_and_rerenders() {
    let tmp = tempfile::tempdir().unwrap();
    let data = fixture(tmp.path());
    let grid = tmp.path().join("grid.yaml");
    std::fs::write(
        &grid,
        "name: e2e\nactivations: [relu, elu]\ndatasets:\n  - dataset: mnist\n    model: paper-cnn\n    epochs: 2\n    target_accuracy: 0.5\n    latency_samples: 50\n",
    )
    .unwrap();
    let out = tmp.path().join("out");

    let (status, _, stderr) = output(&mut coordinator(&grid, &out, &data));
    assert!(status.success(), "coordinator failed: {stderr}");
    let results = read_json(&out.join("results.json"));
    assert_eq!(results["grid"]["name"], "e2e");
    assert!(
        results["environment"]["workers"].as_array().unwrap().len() == 1,
        "{results}"
    );
    let jobs = jobs(&results);
    assert_eq!(jobs.len(), 2);
    for job in jobs {
        for f in JOB_FIELDS {
            assert!(job.get(f).is_some(), "job lacks `{f}`: {job}");
        }
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["attempts"], 1);
        assert_eq!(job["param_count"], 21840);
        let epochs = job["epochs"].as_array().unwrap();
        assert_eq!(epochs.len(), 2);
        for e in epochs {
            for f in EPOCH_FIELDS {
                assert!(e.get(f).is_some(), "epoch lacks `{f}`: {e}");
            }
        }
        // Real learning: chance is 10%.
        let acc = job["final_test_accuracy"].as_f64().unwrap();
        assert!(acc > 0.6, "accuracy {acc} is not well above chance: {job}");
        assert!(job["latency_ms_per_sample"].as_f64().unwrap() > 0.0);
        assert!(epochs[1]["train_seconds"].as_f64() > epochs[0]["train_seconds"].as_f64());
        assert!(job["first_epoch_at_target"].as_u64().is_some());
        assert!(job["error"].is_null());
        // The engine each job trained with: measured by the first job of the shape (relu and
        // elu are two shapes), as the worker's job process reported it.
        let chosen = job["engine"]["chosen"].as_str().unwrap_or_default();
        assert!(["measured", "cached"].contains(&chosen), "{job}");
        assert!(job["engine"]["layout"].is_string() && job["engine"]["kernels"].is_string());
    }
    assert!(data.join("engine-cache.json").is_file());
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains("| relu |") && report.contains("| elu |"),
        "{report}"
    );
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        html.contains("<th>relu</th>") && html.contains("<th>elu</th>"),
        "{html}"
    );
    assert_eq!(html.matches("<svg").count(), 3, "three figures per table");
    assert_eq!(
        html.matches(r#"class="series" data-name="relu""#).count(),
        3
    );
    assert!(!html.contains("<script") && !html.contains("http://") && !html.contains("https://"));
    let id = jobs[0]["id"].as_str().unwrap();
    let tsv = std::fs::read_to_string(out.join("dawnbench").join(id).join("train.tsv")).unwrap();
    assert_eq!(tsv.lines().count(), 3, "{tsv}");
    assert!(out
        .join("dawnbench")
        .join(id)
        .join("inference.json")
        .is_file());

    // The same command again: nothing is re-run.
    let (status, _, stderr) = output(&mut coordinator(&grid, &out, &data));
    assert!(status.success(), "{stderr}");
    let again = read_json(&out.join("results.json"));
    for (a, b) in jobs.iter().zip(self::jobs(&again)) {
        assert_eq!(a["epochs"], b["epochs"], "finished jobs keep their results");
        assert_eq!(b["attempts"], 1);
    }
    assert!(
        !out.join("logs").join("worker-0.log").exists() || !stderr.contains("job started"),
        "{stderr}"
    );

    // `coordinator report` re-renders every file from the state alone.
    let out2 = tmp.path().join("rerendered");
    let (status, _, stderr) = output(
        Command::new(bin("coordinator"))
            .arg("report")
            .arg("--state")
            .arg(out.join("state.db"))
            .arg("--out")
            .arg(&out2),
    );
    assert!(status.success(), "{stderr}");
    let rerendered = read_json(&out2.join("results.json"));
    assert_eq!(rerendered["jobs"], again["jobs"]);
    assert_eq!(
        std::fs::read_to_string(out2.join("results.csv")).unwrap(),
        std::fs::read_to_string(out.join("results.csv")).unwrap()
    );
    assert!(out2.join("report.md").is_file());
}

#[test]
fn a_failing_job_is_recorded_and_the_grid_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let data = fixture(tmp.path());
    let grid = tmp.path().join("grid.yaml");
    // No fashion-mnist files exist: those jobs fail; the mnist jobs after them still run.
    std::fs::write(
        &grid,
        "name: mixed\nactivations: [relu]\ndatasets:\n  - {dataset: fashion-mnist, model: paper-cnn, epochs: 1, target_accuracy: 0.5}\n  - {dataset: mnist, model: paper-cnn, epochs: 1, target_accuracy: 0.5, latency_samples: 10}\n",
    )
    .unwrap();
    let out = tmp.path().join("out");
    let (status, _, stderr) = output(&mut coordinator(&grid, &out, &data));
    assert!(status.success(), "a failed job still exits 0: {stderr}");
    // ... and says how to make it exit otherwise, and where the failed job's log is.
    let logs = out.join("logs").join("jobs");
    assert!(
        stderr.contains(&format!(
            "failed jobs are results, so this exits 0: --fail-on-job-failure makes it exit 3 \
             (each job's log is in {})",
            logs.display()
        )),
        "{stderr}"
    );
    let results = read_json(&out.join("results.json"));
    let jobs = jobs(&results);
    let failed = jobs
        .iter()
        .find(|j| j["dataset"] == "fashion-mnist")
        .unwrap();
    assert_eq!(failed["status"], "failed");
    let err = failed["error"].as_str().unwrap();
    assert!(
        err.contains("fashion-mnist") && err.contains("train-images-idx3-ubyte"),
        "{err}"
    );
    let ok = jobs.iter().find(|j| j["dataset"] == "mnist").unwrap();
    assert_eq!(ok["status"], "succeeded", "{ok}");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("Failed and diverged jobs"), "{report}");
}

/// Each bad grid: exit code 2, a message naming the file (and line where known), nothing written.
#[test]
fn bad_grid_files_exit_2_and_start_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let good = "name: g\nactivations: [relu, tanh]\ndatasets:\n  - dataset: mnist\n    model: paper-cnn\n    epochs: 2\n    target_accuracy: 0.9\n";
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("missing", None, "cannot read grid file"),
        ("not-yaml", Some("name: [unclosed\n  - : :".into()), ":"),
        (
            "unknown-key",
            Some(format!("{good}color: blue\n")),
            "unknown field `color`",
        ),
        (
            "unknown-activation",
            Some(good.replace("tanh", "swishy")),
            "unknown variant `swishy`",
        ),
        (
            "unknown-dataset",
            Some(good.replace("dataset: mnist", "dataset: imagenet")),
            "unknown variant `imagenet`",
        ),
        (
            "unknown-model",
            Some(good.replace("paper-cnn", "resnet50")),
            "unknown variant `resnet50`",
        ),
        (
            "empty-activations",
            Some(good.replace("[relu, tanh]", "[]")),
            "must not be empty",
        ),
        (
            "empty-datasets",
            Some("name: g\nactivations: [relu]\ndatasets: []\n".into()),
            "must not be empty",
        ),
        (
            "zero-epochs",
            Some(good.replace("epochs: 2", "epochs: 0")),
            "epochs must be at least 1",
        ),
        ("target-high", Some(good.replace("0.9", "1.2")), "(0, 1]"),
        ("target-zero", Some(good.replace("0.9", "0")), "(0, 1]"),
        (
            "duplicate-activation",
            Some(good.replace("[relu, tanh]", "[relu, tanh, relu]")),
            "duplicate entry relu",
        ),
    ];
    for (name, content, expect) in cases {
        let grid = tmp.path().join(format!("{name}.yaml"));
        if let Some(c) = &content {
            std::fs::write(&grid, c).unwrap();
        }
        let out = tmp.path().join(format!("out-{name}"));
        let (status, _, stderr) = output(
            Command::new(bin("coordinator"))
                .arg("--grid")
                .arg(&grid)
                .arg("--out")
                .arg(&out)
                .args(["--listen", "127.0.0.1:0"]),
        );
        assert_eq!(status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.contains(&grid.display().to_string()),
            "{name}: message must name the file: {stderr}"
        );
        assert!(
            stderr.contains(expect),
            "{name}: expected `{expect}` in: {stderr}"
        );
        if content.is_some() && name != "missing" {
            assert!(
                stderr.contains(&format!("{}:", grid.display())) && stderr.lines().count() <= 2,
                "{name}: one clear message with a location: {stderr}"
            );
        }
        assert!(!out.exists(), "{name}: nothing may be written");
    }
    // Bad flags are bad input too.
    let grid = tmp.path().join("good.yaml");
    std::fs::write(&grid, good).unwrap();
    for args in [
        ["--listen", "nowhere"],
        ["--device", "tpu"],
        ["--local-workers", "many"],
    ] {
        let (status, _, stderr) = output(
            Command::new(bin("coordinator"))
                .arg("--grid")
                .arg(&grid)
                .args(args),
        );
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(args[0]), "{args:?}: {stderr}");
    }
}

/// A grid extended after it finished runs only its new cells.
#[test]
fn extended_grid_runs_only_new_cells() {
    let tmp = tempfile::tempdir().unwrap();
    let data = fixture(tmp.path());
    let grid = tmp.path().join("grid.yaml");
    let cell = "datasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 1, target_accuracy: 0.5, train_limit: 800, latency_samples: 5}\n";
    std::fs::write(&grid, format!("name: ext\nactivations: [relu]\n{cell}")).unwrap();
    let out = tmp.path().join("out");
    assert!(output(&mut coordinator(&grid, &out, &data)).0.success());
    let first = read_json(&out.join("results.json"));
    std::fs::write(
        &grid,
        format!("name: ext\nactivations: [relu, tanh]\n{cell}"),
    )
    .unwrap();
    let (status, _, stderr) = output(&mut coordinator(&grid, &out, &data));
    assert!(status.success(), "{stderr}");
    let second = read_json(&out.join("results.json"));
    assert_eq!(jobs(&second).len(), 2);
    assert_eq!(
        jobs(&second)[0]["epochs"],
        jobs(&first)[0]["epochs"],
        "relu reused"
    );
    assert_eq!(jobs(&second)[1]["status"], "succeeded");
    assert_eq!(
        stderr.matches("job started").count(),
        1,
        "only tanh ran: {stderr}"
    );
}

/// `coordinator status` pages through a grid larger than one GridStatus page (1,000 jobs by
/// default, at most 10,000): every job is listed once.
#[test]
fn status_lists_every_job_of_a_large_grid() {
    let tmp = tempfile::tempdir().unwrap();
    let seeds: Vec<String> = (0..12_500).map(|s| s.to_string()).collect();
    let grid = tmp.path().join("grid.yaml");
    std::fs::write(
        &grid,
        format!("name: big\nactivations: [relu]\ndatasets:\n  - {{dataset: mnist, model: paper-cnn, epochs: 1, target_accuracy: 0.5}}\nseeds: [{}]\n", seeds.join(", ")),
    )
    .unwrap();
    let (mut coord, port) = waiting_coordinator(&grid, tmp.path());
    let (status, stdout, stderr) = output(Command::new(bin("coordinator")).args([
        "status",
        "--connect",
        &format!("http://127.0.0.1:{port}"),
    ]));
    let _ = coord.kill();
    let _ = coord.wait();
    assert!(status.success(), "{stderr}");
    assert!(
        stdout.starts_with("grid big: 12500 pending, 0 running"),
        "{}",
        &stdout[..200]
    );
    let listed: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("mnist-paper-cnn-relu-s"))
        .collect();
    assert_eq!(listed.len(), 12_500);
    let unique: std::collections::HashSet<&str> = listed
        .iter()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(unique.len(), 12_500, "each job once");
}
