//! End to end: the real `coordinator` and `worker` binaries on loopback.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use integration_tests::{bin, output, serve_dir, wait_exit, write_synthetic_mnist};
use serde_json::Value;

/// Fields every job of results.json carries (CONTRACT.md).
const JOB_FIELDS: [&str; 18] = [
    "id",
    "dataset",
    "model",
    "activation",
    "seed",
    "status",
    "attempts",
    "worker",
    "device",
    "param_count",
    "epochs",
    "total_train_seconds",
    "first_epoch_at_target",
    "seconds_to_target",
    "final_test_accuracy",
    "error_rate",
    "latency_ms_per_sample",
    "error",
];
const EPOCH_FIELDS: [&str; 5] = [
    "epoch",
    "train_seconds",
    "train_loss",
    "test_loss",
    "test_accuracy",
];

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn coordinator(grid: &Path, out: &Path, data: &Path) -> Command {
    let mut cmd = Command::new(bin("coordinator"));
    cmd.arg("--grid")
        .arg(grid)
        .arg("--out")
        .arg(out)
        .arg("--data-dir")
        .arg(data)
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--device")
        .arg("cpu")
        .args(["--http", "127.0.0.1:0"])
        .env("WORKER_BIN", bin("worker"))
        .env_remove("WORKER_FAULT")
        .env("RUST_LOG", "info");
    cmd
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn jobs(results: &Value) -> &Vec<Value> {
    results["jobs"].as_array().expect("jobs array")
}

fn fixture(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    write_synthetic_mnist(&data.join("mnist"), 3000, 500);
    data
}

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
    }
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

#[test]
fn external_worker_with_token() {
    let tmp = tempfile::tempdir().unwrap();
    let data = fixture(tmp.path());
    let grid = tmp.path().join("grid.yaml");
    std::fs::write(
        &grid,
        "name: ext\nactivations: [tanh]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 1, target_accuracy: 0.5, train_limit: 1000, latency_samples: 10}\n",
    )
    .unwrap();
    let token = tmp.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let wrong = tmp.path().join("wrong");
    std::fs::write(&wrong, "nope\n").unwrap();
    let port = free_port();
    let out = tmp.path().join("out");
    let mut coord = Command::new(bin("coordinator"))
        .args([
            "--local-workers",
            "0",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--grid")
        .arg(&grid)
        .arg("--out")
        .arg(&out)
        .arg("--token-file")
        .arg(&token)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let worker = |token: &Path| {
        let mut c = Command::new(bin("worker"));
        c.args([
            "--coordinator",
            &url,
            "--device",
            "cpu",
            "--name",
            "ext-worker",
        ])
        .arg("--data-dir")
        .arg(&data)
        .arg("--token-file")
        .arg(token);
        c
    };
    // A wrong token is refused, with a message that says so.
    let (status, _, stderr) = output(&mut worker(&wrong));
    assert!(!status.success());
    assert!(stderr.contains("token"), "{stderr}");
    // The right one works; the worker exits when the grid is done.
    let (status, _, stderr) = output(&mut worker(&token));
    assert!(status.success(), "{stderr}");
    let status = wait_exit(&mut coord, Duration::from_secs(60));
    assert!(status.success());
    let results = read_json(&out.join("results.json"));
    assert_eq!(jobs(&results)[0]["status"], "succeeded");
    assert!(jobs(&results)[0]["worker"]
        .as_str()
        .unwrap()
        .contains("ext-worker"));
}

#[test]
fn worker_train_json_prints_one_job_record() {
    let tmp = tempfile::tempdir().unwrap();
    let data = fixture(tmp.path());
    let (status, stdout, stderr) = output(
        Command::new(bin("worker"))
            .args([
                "train",
                "--dataset",
                "mnist",
                "--model",
                "paper-cnn",
                "--activation",
                "prelu",
            ])
            .args([
                "--epochs",
                "1",
                "--test-limit",
                "200",
                "--latency-samples",
                "20",
                "--json",
                "--device",
                "cpu",
            ])
            .arg("--data-dir")
            .arg(&data),
    );
    assert!(status.success(), "{stderr}");
    let job: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    for f in JOB_FIELDS {
        assert!(job.get(f).is_some(), "job lacks `{f}`: {job}");
    }
    assert_eq!(job["param_count"], 21843);
    assert_eq!(job["status"], "succeeded");
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

/// Where the real datasets are available (CI sets DATASETS_DIR): real MNIST, paper settings.
#[test]
fn real_mnist_reaches_97_percent_in_two_epochs() {
    let Some(dir) = std::env::var_os("DATASETS_DIR") else {
        eprintln!("DATASETS_DIR not set; skipping the real-MNIST run");
        return;
    };
    // Relative to the workspace root (CI: ../shared/datasets), not to this crate.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir);
    let (status, stdout, stderr) = output(
        Command::new(bin("worker"))
            .args([
                "train",
                "--dataset",
                "mnist",
                "--model",
                "paper-cnn",
                "--activation",
                "relu",
            ])
            .args([
                "--epochs",
                "2",
                "--latency-samples",
                "1000",
                "--json",
                "--device",
                "cpu",
            ])
            .arg("--data-dir")
            .arg(&dir),
    );
    assert!(status.success(), "{stderr}");
    let job: Value = serde_json::from_str(&stdout).unwrap();
    let acc = job["final_test_accuracy"].as_f64().unwrap();
    assert!(
        acc >= 0.97,
        "paper-cnn/relu reached only {acc} on MNIST in 2 epochs"
    );
}

fn train(data: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(bin("worker"));
    c.args([
        "train",
        "--dataset",
        "mnist",
        "--model",
        "paper-cnn",
        "--device",
        "cpu",
        "--json",
    ])
    .args(["--test-limit", "300", "--latency-samples", "5"])
    .arg("--data-dir")
    .arg(data)
    .args(extra);
    c
}

fn curves(job: &Value) -> Vec<(f64, f64, f64)> {
    job["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["train_loss"].as_f64().unwrap(),
                e["test_loss"].as_f64().unwrap(),
                e["test_accuracy"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// A fixed seed gives bitwise-identical results on CPU, and a job killed after epoch 2 and
/// resumed from its checkpoint ends exactly where an uninterrupted run ends.
#[test]
fn deterministic_and_resumes_from_checkpoint_seamlessly() {
    let tmp = tempfile::tempdir().unwrap();
    let data = fixture(tmp.path());
    let args = [
        "--activation",
        "prelu",
        "--epochs",
        "3",
        "--train-limit",
        "1500",
        "--seed",
        "7",
    ];
    let run = |extra: &[&str], fault: Option<&str>| {
        let mut cmd = train(&data, &[&args[..], extra].concat());
        if let Some(f) = fault {
            cmd.env("WORKER_FAULT", f);
        }
        output(&mut cmd)
    };
    let (s1, a, e1) = run(&[], None);
    let (s2, b, e2) = run(&[], None);
    assert!(s1.success() && s2.success(), "{e1}{e2}");
    let (a, b): (Value, Value) = (
        serde_json::from_str(&a).unwrap(),
        serde_json::from_str(&b).unwrap(),
    );
    assert_eq!(
        curves(&a),
        curves(&b),
        "same seed, same numbers, bit for bit"
    );

    let ckpt = tmp.path().join("job.ckpt");
    let ckpt_arg = ckpt.to_str().unwrap();
    let (status, _, stderr) = run(&["--checkpoint", ckpt_arg], Some("abort-after-epoch:2"));
    assert!(!status.success(), "the fault hook aborts: {stderr}");
    assert!(ckpt.is_file());
    let (status, resumed, stderr) = run(&["--checkpoint", ckpt_arg], None);
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("resumed from checkpoint"), "{stderr}");
    let resumed: Value = serde_json::from_str(&resumed).unwrap();
    assert_eq!(resumed["epochs"].as_array().unwrap().len(), 3);
    assert_eq!(
        curves(&resumed),
        curves(&a),
        "resumed run = uninterrupted run"
    );
    let secs: Vec<f64> = resumed["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["train_seconds"].as_f64().unwrap())
        .collect();
    assert!(
        secs[0] < secs[1] && secs[1] < secs[2],
        "cumulative time continues: {secs:?}"
    );
}

/// bf16 autocast (on the CPU here; the same code path as CUDA's): the job trains to nearly the
/// float32 run's accuracy, its record says so, and it is a different job (id) from fp32's.
#[test]
fn bf16_autocast_trains_and_is_a_separate_job() {
    let tmp = tempfile::tempdir().unwrap();
    let data = fixture(tmp.path());
    let run = |precision: &str| {
        let (status, stdout, stderr) = output(&mut train(
            &data,
            &[
                "--activation",
                "relu",
                "--epochs",
                "2",
                "--train-limit",
                "2000",
                "--precision",
                precision,
            ],
        ));
        assert!(status.success(), "{stderr}");
        serde_json::from_str::<Value>(&stdout).unwrap()
    };
    let (fp32, bf16) = (run("fp32"), run("bf16"));
    assert_eq!(bf16["spec"]["precision"], "bf16", "{bf16}");
    assert!(
        fp32["spec"].get("precision").is_none(),
        "fp32 is the default"
    );
    assert_ne!(fp32["id"], bf16["id"]);
    let acc = |j: &Value| j["final_test_accuracy"].as_f64().unwrap();
    assert!(
        acc(&bf16) > 0.8 && acc(&bf16) > acc(&fp32) - 0.05,
        "bf16 {} vs fp32 {}",
        acc(&bf16),
        acc(&fp32)
    );
    assert_ne!(curves(&fp32), curves(&bf16), "bf16 arithmetic differs");
}

#[test]
fn divergence_ends_the_job_as_diverged() {
    let tmp = tempfile::tempdir().unwrap();
    let data = fixture(tmp.path());
    let (status, stdout, stderr) = output(&mut train(
        &data,
        &[
            "--activation",
            "relu",
            "--epochs",
            "2",
            "--train-limit",
            "500",
            "--optimizer",
            "sgd",
            "--learning-rate",
            "1e30",
        ],
    ));
    assert!(!status.success());
    let job: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}{stderr}"));
    assert_eq!(job["status"], "diverged", "{job}");
    assert!(job["error"].as_str().unwrap().contains("epoch 1"), "{job}");
}

/// A job whose process dies (here: aborts after its first epoch) fails alone; the daemon
/// lives on and runs the next job.
#[test]
fn a_crashing_job_fails_and_the_daemon_lives_on() {
    let tmp = tempfile::tempdir().unwrap();
    let data = fixture(tmp.path());
    let grid = tmp.path().join("grid.yaml");
    std::fs::write(
        &grid,
        "name: crash\nactivations: [relu, tanh]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 2, target_accuracy: 0.5, train_limit: 500, test_limit: 100}\n",
    )
    .unwrap();
    let out = tmp.path().join("out");
    let (status, _, stderr) =
        output(coordinator(&grid, &out, &data).env("WORKER_FAULT", "abort-after-epoch:1"));
    assert!(status.success(), "{stderr}");
    let results = read_json(&out.join("results.json"));
    for job in jobs(&results) {
        assert_eq!(job["status"], "failed", "{job}");
        assert_eq!(job["attempts"], 1, "{job}");
        let err = job["error"].as_str().unwrap();
        assert!(
            err.contains("exited") && err.contains("before finishing"),
            "{err}"
        );
        assert_eq!(
            job["epochs"].as_array().unwrap().len(),
            1,
            "the finished epoch is kept: {job}"
        );
    }
}

/// Missing files are fetched from a mirror, checked against the canonical SHA-256 and cached;
/// a file whose checksum is wrong is refused with a message naming the folder and the files.
#[test]
fn missing_dataset_is_downloaded_and_verified() {
    let tmp = tempfile::tempdir().unwrap();
    // A mirror serving files that are not the real MNIST: every checksum fails.
    let fake = tmp.path().join("fake-mirror");
    let fake_mnist = fake.join("mnist");
    std::fs::create_dir_all(&fake_mnist).unwrap();
    for name in [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ] {
        let f = std::fs::File::create(fake_mnist.join(format!("{name}.gz"))).unwrap();
        let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, b"not mnist").unwrap();
        gz.finish().unwrap();
    }
    let (fake_url, _fake) = serve_dir(&fake);
    let empty = tmp.path().join("cache");
    let (status, _, stderr) = output(
        train(&empty, &["--activation", "relu", "--epochs", "1"])
            .env("WORKER_DATASET_MIRRORS", &fake_url),
    );
    assert!(!status.success());
    assert!(stderr.contains("does not match the canonical"), "{stderr}");
    assert!(
        stderr.contains(&empty.join("mnist").display().to_string()),
        "{stderr}"
    );
    assert!(stderr.contains("train-images-idx3-ubyte"), "{stderr}");
    assert!(
        !empty
            .join("mnist")
            .join("train-images-idx3-ubyte.gz")
            .exists(),
        "nothing unverified is kept"
    );

    // The real files (where available) download, verify and train.
    let Some(real) = std::env::var_os("DATASETS_DIR") else {
        return;
    };
    let real = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(real);
    let (url, _server) = serve_dir(&real);
    let (status, stdout, stderr) = output(
        train(
            &empty,
            &[
                "--activation",
                "relu",
                "--epochs",
                "1",
                "--train-limit",
                "2000",
            ],
        )
        .env("WORKER_DATASET_MIRRORS", format!("{fake_url},{url}")),
    );
    assert!(status.success(), "{stderr}");
    let job: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(job["status"], "succeeded");
    assert!(
        empty
            .join("mnist")
            .join("train-images-idx3-ubyte.gz")
            .is_file(),
        "cached"
    );
}

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
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/");
    let mut coord = coordinator(&grid, &tmp.path().join("out"), &data)
        .args(["--http", &format!("127.0.0.1:{port}")])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
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

// ---- failures: workers and the coordinator killed, paused, restarted -----------------------

fn get_json(url: &str) -> Option<Value> {
    ureq::get(url)
        .call()
        .ok()?
        .into_string()
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// Epochs of job `i` in the coordinator's live results.
fn epochs_done(results: &Value, i: usize) -> usize {
    results["jobs"][i]["epochs"]
        .as_array()
        .map_or(0, |e| e.len())
}

struct Cluster {
    tmp: tempfile::TempDir,
    data: PathBuf,
    grid: PathBuf,
    out: PathBuf,
    port: u16,
    http: u16,
}

impl Cluster {
    fn new(grid_yaml: &str) -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        let data = fixture(tmp.path());
        let grid = tmp.path().join("grid.yaml");
        std::fs::write(&grid, grid_yaml).unwrap();
        let out = tmp.path().join("out");
        Cluster {
            data,
            grid,
            out,
            port: free_port(),
            http: free_port(),
            tmp,
        }
    }

    fn coordinator(&self, local_workers: &str) -> std::process::Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.tmp.path().join("coordinator.log"))
            .unwrap();
        coordinator(&self.grid, &self.out, &self.data)
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--http", &format!("127.0.0.1:{}", self.http)])
            .args(["--local-workers", local_workers, "--lease-seconds", "2"])
            .stderr(log)
            .spawn()
            .unwrap()
    }

    /// An external worker with its own checkpoint folder, as on another host.
    fn worker(&self, name: &str) -> std::process::Child {
        let log = std::fs::File::create(self.tmp.path().join(format!("{name}.log"))).unwrap();
        Command::new(bin("worker"))
            .args([
                "--coordinator",
                &format!("http://127.0.0.1:{}", self.port),
                "--device",
                "cpu",
            ])
            .args(["--name", name])
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--checkpoint-dir")
            .arg(self.tmp.path().join(format!("{name}-checkpoints")))
            .stderr(log)
            .spawn()
            .unwrap()
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.tmp.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    fn live(&self) -> Option<Value> {
        get_json(&format!("http://127.0.0.1:{}/results.json", self.http))
    }

    fn wait_live(&self, what: &str, cond: impl Fn(&Value) -> bool) {
        integration_tests::wait_until(Duration::from_secs(60), what, || {
            self.live().is_some_and(|r| cond(&r))
        });
    }

    fn results(&self) -> Value {
        read_json(&self.out.join("results.json"))
    }
}

const LONG_JOB: &str = "name: faults\nactivations: [relu]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 8, target_accuracy: 0.5, latency_samples: 5}\n";

fn assert_complete_series(job: &Value, epochs: usize) {
    let series = job["epochs"].as_array().unwrap();
    let numbers: Vec<u64> = series
        .iter()
        .map(|e| e["epoch"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, (1..=epochs as u64).collect::<Vec<_>>(), "{job}");
    let secs: Vec<f64> = series
        .iter()
        .map(|e| e["train_seconds"].as_f64().unwrap())
        .collect();
    assert!(
        secs.windows(2).all(|w| w[0] < w[1]),
        "seamless cumulative time: {secs:?}"
    );
}

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

/// `coordinator cancel --all` stops a running grid: the running job's worker stops it at its
/// next heartbeat, every unfinished job ends as failed ("cancelled"), and the run completes.
#[test]
fn cancel_stops_the_grid() {
    let c = Cluster::new(
        "name: cancel\nactivations: [relu, tanh]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 40, target_accuracy: 0.5}\n",
    );
    let mut coord = c.coordinator("1");
    c.wait_live("a running job with an epoch", |r| {
        r["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["status"] == "running" && !j["epochs"].as_array().unwrap().is_empty())
    });
    let (status, stdout, stderr) = output(Command::new(bin("coordinator")).args([
        "cancel",
        "--all",
        "--connect",
        &format!("http://127.0.0.1:{}", c.port),
    ]));
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("2 job(s) cancelled"), "{stdout}");
    assert!(wait_exit(&mut coord, Duration::from_secs(60)).success());
    let results = c.results();
    for job in jobs(&results) {
        assert_eq!(job["status"], "failed", "{job}");
        assert_eq!(job["error"], "cancelled by the operator");
        assert!(
            job["epochs"].as_array().unwrap().len() < 40,
            "stopped early: {job}"
        );
    }
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

/// The HTML report in a real browser (Debian's headless Chromium, where installed): no console
/// errors, both tables, every figure with its lines and seed bands, the significance marks.
#[test]
fn report_html_renders_in_chromium() {
    let Some(chromium) = ["chromium", "chromium-browser"].into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }) else {
        eprintln!(
            "chromium not installed; skipping the browser test (scripts/test.sh installs it)"
        );
        return;
    };
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
        Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
            ])
            .args([
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .args(["--enable-logging=stderr", "--v=0", "--dump-dom"])
            .arg(format!(
                "--user-data-dir={}",
                tmp.path().join("profile").display()
            ))
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
        dom.contains("Recommendation for mnist / paper-cnn"),
        "summary in words"
    );
}

/// Where the real datasets are available: vgg11-bn (paper Table 2) learns on a CIFAR-10 subset
/// on the CPU, well above the 10% of chance after one short epoch.
#[test]
fn real_cifar10_vgg11_bn_learns() {
    let Some(dir) = std::env::var_os("DATASETS_DIR") else {
        eprintln!("DATASETS_DIR not set; skipping the real CIFAR-10 run");
        return;
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir);
    let (status, stdout, stderr) = output(
        Command::new(bin("worker"))
            .args([
                "train",
                "--dataset",
                "cifar10",
                "--model",
                "vgg11-bn",
                "--activation",
                "relu",
            ])
            .args([
                "--epochs",
                "1",
                "--train-limit",
                "4000",
                "--test-limit",
                "1000",
            ])
            .args(["--latency-samples", "20", "--json", "--device", "cpu"])
            .arg("--data-dir")
            .arg(&dir),
    );
    assert!(status.success(), "{stderr}");
    let job: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(job["param_count"], 9_231_114);
    let acc = job["final_test_accuracy"].as_f64().unwrap();
    assert!(
        acc >= 0.2,
        "vgg11-bn reached only {acc} after one epoch on 4,000 CIFAR-10 images"
    );
}
