//! GPU readiness, proven on machines without a GPU: the preflight against a made-up
//! `nvidia-smi` (an old driver; GPUs libtorch cannot see; CUDA_VISIBLE_DEVICES hiding them),
//! `--device auto` refusing to fall back to the CPU in silence, the coordinator stopping before
//! it starts workers that could only die, and the checkpoint cadence.

use std::path::{Path, PathBuf};
use std::process::Command;

use integration_tests::{bin, output};
use serde_json::Value;

use crate::support::{curves, fixture, train, train_on, LONG_JOB};

/// A folder holding an `nvidia-smi` that lists two H100s on `driver`, like the real one.
fn fake_smi(dir: &Path, driver: &str) -> PathBuf {
    let bin_dir = dir.join(format!("smi-{driver}"));
    std::fs::create_dir_all(&bin_dir).unwrap();
    let script = bin_dir.join("nvidia-smi");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             echo '0, GPU-5a7c3e01-9b2d-4f60-8122-aabbccddeeff, NVIDIA H100 80GB HBM3, 81559, {driver}'\n\
             echo '1, GPU-77e1c2d0-1111-4a2b-9c3d-00112233aabb, NVIDIA H100 80GB HBM3, 81559, {driver}'\n"
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin_dir
}

fn with_path<'a>(cmd: &'a mut Command, smi_dir: &Path) -> &'a mut Command {
    let path = std::env::var("PATH").unwrap_or_default();
    cmd.env("PATH", format!("{}:{path}", smi_dir.display()))
        .env_remove("CUDA_VISIBLE_DEVICES")
}

fn preflight(smi_dir: Option<&Path>, extra: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(bin("worker"));
    cmd.arg("preflight").args(extra);
    if let Some(d) = smi_dir {
        with_path(&mut cmd, d);
    }
    let (status, out, err) = output(&mut cmd);
    (status.code(), out, err)
}

#[test]
#[cfg_attr(
    have_gpu,
    ignore = "fakes a machine whose GPUs cannot be used; this one has a real GPU"
)]
fn preflight_names_an_old_driver_and_both_ways_out() {
    let tmp = tempfile::tempdir().unwrap();
    // Without nvidia-smi or a driver: a CPU machine, said plainly.
    let (code, out, err) = preflight(None, &[]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("no GPU to train on"), "{out}");
    // Driver 550 (CUDA 12.4) under libtorch's CUDA 13 build: the driver needed, and the
    // torch build that would run on this one.
    let old = fake_smi(tmp.path(), "550.54.15");
    let (code, out, err) = preflight(Some(&old), &[]);
    assert_eq!(code, Some(2), "{out}{err}");
    for needed in [
        "built for CUDA 13.0",
        "needs NVIDIA driver 580 or newer",
        "550.54.15",
        "TORCH_CUDA=cu126 scripts/env.sh",
    ] {
        assert!(err.contains(needed), "`{needed}` missing: {err}");
    }
    let (code, out, _) = preflight(Some(&old), &["--json"]);
    assert_eq!(code, Some(2));
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert!(v["error"].as_str().unwrap().contains("580"), "{v}");
    // A new enough driver, yet libtorch sees nothing: that is an error too, with the reason.
    let new = fake_smi(tmp.path(), "580.82.07");
    let (code, _, err) = preflight(Some(&new), &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("2 GPU(s) are visible to this process but libtorch sees 0"),
        "{err}"
    );
    assert!(err.contains("libcuda.so.1"), "{err}");
    // CUDA_VISIBLE_DEVICES="" hides them all: a CPU machine as far as CUDA goes.
    let mut cmd = Command::new(bin("worker"));
    with_path(cmd.arg("preflight"), &new).env("CUDA_VISIBLE_DEVICES", "");
    let (status, out, err) = output(&mut cmd);
    assert!(status.success(), "{out}{err}");
    assert!(
        out.contains("0 visible to this process (CUDA_VISIBLE_DEVICES=)"),
        "{out}"
    );
}

/// `worker train --device auto` on a GPU machine whose GPUs cannot be used stops with the
/// reason, where it used to train on the CPU in silence; `--device cpu` still trains.
#[test]
#[cfg_attr(
    have_gpu,
    ignore = "fakes a machine whose GPUs cannot be used; this one has a real GPU"
)]
fn device_auto_never_falls_back_to_the_cpu_in_silence() {
    let tmp = tempfile::tempdir().unwrap();
    let data = fixture(tmp.path());
    let old = fake_smi(tmp.path(), "550.54.15");
    let args = [
        "--activation",
        "relu",
        "--epochs",
        "1",
        "--train-limit",
        "200",
    ];
    let auto = || train_on("auto", &data, &args);
    let (status, _, err) = output(with_path(&mut auto(), &old));
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("GPU preflight"), "{err}");
    assert!(
        err.contains("--device cpu trains on the CPU anyway"),
        "{err}"
    );
    let (status, _, err) = output(with_path(&mut train(&data, &args), &old));
    assert!(status.success(), "--device cpu: {err}");
    // Without any GPU, auto chooses the CPU and says why.
    let (status, _, err) = output(auto().env_remove("CUDA_VISIBLE_DEVICES"));
    assert!(status.success(), "{err}");
    assert!(err.contains("device auto: chose the CPU"), "{err}");
}

/// The coordinator runs the workers' preflight before starting local GPU workers: an old
/// driver stops it at once with the reason (exit 2), no worker started.
#[test]
#[cfg_attr(
    have_gpu,
    ignore = "fakes a machine whose GPUs cannot be used; this one has a real GPU"
)]
fn coordinator_stops_before_starting_workers_that_could_only_die() {
    let tmp = tempfile::tempdir().unwrap();
    let data = fixture(tmp.path());
    let grid = tmp.path().join("grid.yaml");
    std::fs::write(&grid, LONG_JOB).unwrap();
    let out = tmp.path().join("out");
    let old = fake_smi(tmp.path(), "550.54.15");
    let mut cmd = Command::new(bin("coordinator"));
    cmd.arg("--grid").arg(&grid).arg("--out").arg(&out);
    cmd.arg("--data-dir")
        .arg(&data)
        .args(["--listen", "127.0.0.1:0"]);
    cmd.args(["--http", "127.0.0.1:0", "--device", "auto"]);
    cmd.env("WORKER_BIN", bin("worker"));
    let (status, _, err) = output(with_path(&mut cmd, &old));
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("GPU preflight") && err.contains("580 or newer"),
        "{err}"
    );
    assert!(
        !out.join("logs").join("worker-0.log").exists(),
        "no worker was started"
    );
}

/// `--checkpoint-every 2`: a job killed after epoch 3 resumes from epoch 2 (the last
/// checkpoint), not 3, and ends bit for bit as an uninterrupted run; with the default (60 s),
/// a short job killed after its first epoch has written none.
#[test]
fn checkpoints_follow_their_cadence() {
    let tmp = tempfile::tempdir().unwrap();
    let data = fixture(tmp.path());
    let args = [
        "--activation",
        "relu",
        "--epochs",
        "4",
        "--train-limit",
        "600",
    ];
    let run = |extra: &[&str], fault: Option<&str>| {
        let mut cmd = train(&data, &[&args[..], extra].concat());
        if let Some(f) = fault {
            cmd.env("WORKER_FAULT", f);
        }
        output(&mut cmd)
    };
    let ckpt = tmp.path().join("every-2.ckpt");
    let every2 = [
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--checkpoint-every",
        "2",
    ];
    let (status, _, err) = run(&every2, Some("abort-after-epoch:3"));
    assert!(!status.success(), "{err}");
    assert!(ckpt.is_file(), "{err}");
    let (status, resumed, err) = run(&every2, None);
    assert!(status.success(), "{err}");
    assert!(err.contains("epochs_done=2"), "resumed from epoch 2: {err}");
    let (status, straight, err) = run(&[], None);
    assert!(status.success(), "{err}");
    let (a, b): (Value, Value) = (
        serde_json::from_str(&resumed).unwrap(),
        serde_json::from_str(&straight).unwrap(),
    );
    assert_eq!(curves(&a), curves(&b), "resumed = uninterrupted");

    let default = tmp.path().join("default.ckpt");
    let (status, _, err) = run(
        &["--checkpoint", default.to_str().unwrap()],
        Some("abort-after-epoch:1"),
    );
    assert!(!status.success(), "{err}");
    assert!(!default.exists(), "no checkpoint within the first minute");
}

/// `bench/gpu_check.sh dry-run`: every step of the GPU check on the CPU with tiny limits, so
/// the script that runs once on a GPU machine is known to work before it gets there.
#[test]
#[cfg_attr(
    not(any(ci, have_python_torch)),
    ignore = "needs python3 with torch (scripts/env.sh puts it on PATH)"
)]
fn gpu_check_dry_run_runs_every_step() {
    let python_torch = Command::new("python3")
        .args(["-c", "import torch"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !python_torch {
        crate::support::missing("python3 with torch (scripts/env.sh puts it on PATH)");
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = fixture(tmp.path());
    integration_tests::write_synthetic_cifar10(&data.join("cifar-10"), 40, 60);
    let out = tmp.path().join("gpu-check");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let (status, stdout, stderr) = output(
        Command::new(root.join("bench/gpu_check.sh"))
            .arg("dry-run")
            .arg(&data)
            .arg(&out)
            .env("COORDINATOR_BIN", bin("coordinator"))
            .env("WORKER_BIN", bin("worker"))
            .env("PYTHON", "python3")
            .env("WORKER_DATASET_MIRRORS", "http://127.0.0.1:9"),
    );
    assert!(status.success(), "{stdout}{stderr}");
    for file in [
        "preflight.txt",
        "mnist/report.md",
        "vgg11-fp32.json",
        "vgg11-bf16.json",
        "vgg11-precision.txt",
        "speed-paper-cnn.txt",
        "speed-vgg11-bn.txt",
        "shared/report.md",
        "gpu_check.log",
    ] {
        assert!(out.join(file).is_file(), "{file} missing: {stdout}{stderr}");
    }
    let speed = std::fs::read_to_string(out.join("speed-vgg11-bn.txt")).unwrap();
    assert!(
        speed.contains("cpu: ") && speed.contains("ours / pytorch-eager"),
        "{speed}"
    );
    let mnist = std::fs::read_to_string(out.join("mnist/report.md")).unwrap();
    assert!(
        mnist.contains("| relu |") && mnist.contains("| tanh |"),
        "{mnist}"
    );
    let precision = std::fs::read_to_string(out.join("vgg11-precision.txt")).unwrap();
    assert!(precision.contains("bf16 / fp32 epoch time"), "{precision}");
}
