//! The training engine through `worker train` and the daemon: the job record, real data,
//! determinism and exact resume, bf16, divergence, crashes.

use std::process::Command;

use integration_tests::{bin, output};
use serde_json::Value;

use crate::support::{
    coordinator, curves, fixture, jobs, read_json, real_datasets, train, JOB_FIELDS,
};

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
    // Each epoch says how the host treated it: CPU time used, and contention from others.
    let host = &job["epochs"][0]["host"];
    assert!(host["cpu_seconds"].as_f64().unwrap() > 0.0, "{job}");
    assert!(host["contention"].as_f64().unwrap() >= 0.0, "{job}");
}

/// Where the real datasets are available (CI sets DATASETS_DIR): real MNIST, paper settings.
#[test]
#[cfg_attr(
    not(any(ci, have_datasets)),
    ignore = "needs DATASETS_DIR (the real MNIST; CI sets it)"
)]
fn real_mnist_reaches_97_percent_in_two_epochs() {
    let dir = real_datasets();
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
    // The first run measured the engine; the second found the choice in the data folder.
    assert_eq!(a["engine"]["chosen"], "measured", "{a}");
    assert_eq!(b["engine"]["chosen"], "cached", "{b}");
    assert_eq!(a["engine"]["layout"], b["engine"]["layout"]);
    assert_eq!(a["engine"]["kernels"], b["engine"]["kernels"]);

    let ckpt = tmp.path().join("job.ckpt");
    let ckpt_arg = ckpt.to_str().unwrap();
    let every = ["--checkpoint", ckpt_arg, "--checkpoint-every", "1"];
    let (status, _, stderr) = run(&every, Some("abort-after-epoch:2"));
    assert!(!status.success(), "the fault hook aborts: {stderr}");
    assert!(ckpt.is_file());
    // Without the cache, the resumed job still trains with the engine it began with.
    std::fs::remove_file(data.join("engine-cache.json")).unwrap();
    let (status, resumed, stderr) = run(&every, None);
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("resumed from checkpoint"), "{stderr}");
    let resumed: Value = serde_json::from_str(&resumed).unwrap();
    assert_eq!(resumed["epochs"].as_array().unwrap().len(), 3);
    assert_eq!(resumed["engine"]["chosen"], "resumed", "{resumed}");
    assert_eq!(resumed["engine"]["layout"], a["engine"]["layout"]);
    assert_eq!(resumed["engine"]["kernels"], a["engine"]["kernels"]);
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

/// `--layout` and `--kernels` fix the engine (no measuring); a kernel set that does not exist
/// is refused, naming the choices; every fixed engine trains to the same accuracy.
#[test]
fn the_engine_can_be_fixed_and_each_one_learns() {
    let tmp = tempfile::tempdir().unwrap();
    let data = fixture(tmp.path());
    let base = [
        "--activation",
        "relu",
        "--epochs",
        "2",
        "--train-limit",
        "2000",
    ];
    let (status, _, stderr) = output(&mut train(
        &data,
        &[&base[..], &["--kernels", "avx3"]].concat(),
    ));
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("avx3") && stderr.contains("avx2"),
        "{stderr}"
    );
    let mut accs = Vec::new();
    for (layout, kernels) in [("nchw", "aten"), ("channels-last", "auto")] {
        let (status, stdout, stderr) = output(
            train(&data, &[&base[..], &["--layout", layout]].concat())
                .env("WORKER_KERNELS", kernels),
        );
        assert!(status.success(), "{stderr}");
        let rec: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(rec["engine"]["layout"], layout, "{rec}");
        if kernels == "aten" {
            assert_eq!(rec["engine"]["chosen"], "fixed", "{rec}");
            assert_eq!(rec["engine"]["kernels"], "aten", "{rec}");
        }
        accs.push(rec["final_test_accuracy"].as_f64().unwrap());
    }
    // Chance is 10%.
    assert!(accs.iter().all(|a| *a > 0.5), "{accs:?}");
    // Kernels the CPU lacks (here: made to lack all of ours) are refused by the daemon at once,
    // before it contacts the coordinator, rather than failing every job.
    let out = Command::new(bin("worker"))
        .args([
            "--coordinator",
            "http://127.0.0.1:9",
            "--device",
            "cpu",
            "--kernels",
            "avx2",
        ])
        .env("DLGRID_MAX_CPU_ISA", "aten")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--kernels avx2: this CPU cannot run them"),
        "{stderr}"
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

/// Where the real datasets are available: vgg11-bn (paper Table 2) learns on a CIFAR-10 subset
/// on the CPU, well above the 10% of chance after one short epoch.
#[test]
#[cfg_attr(
    not(any(ci, have_datasets)),
    ignore = "needs DATASETS_DIR (the real CIFAR-10; CI sets it)"
)]
fn real_cifar10_vgg11_bn_learns() {
    let dir = real_datasets();
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
