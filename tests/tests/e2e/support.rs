//! What the end-to-end tests share: the binaries' command lines, fixtures, reading results,
//! signals, and a [`Cluster`] of a coordinator and external workers started one by one.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use integration_tests::{bin, wait_until, write_synthetic_mnist};
use serde_json::Value;

/// Fields every job of results.json carries (CONTRACT.md).
pub const JOB_FIELDS: [&str; 18] = [
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

pub const EPOCH_FIELDS: [&str; 5] = [
    "epoch",
    "train_seconds",
    "train_loss",
    "test_loss",
    "test_accuracy",
];

/// `coordinator --grid` on CPU, with local workers, ports picked by the system.
pub fn coordinator(grid: &Path, out: &Path, data: &Path) -> Command {
    let mut cmd = Command::new(bin("coordinator"));
    cmd.arg("--grid")
        .arg(grid)
        .arg("--out")
        .arg(out)
        .arg("--data-dir")
        .arg(data)
        // Port 0: the system picks a free port; local workers learn it from the coordinator.
        .args(["--listen", "127.0.0.1:0"])
        .arg("--device")
        .arg("cpu")
        .args(["--http", "127.0.0.1:0"])
        .env("WORKER_BIN", bin("worker"))
        .env_remove("WORKER_FAULT")
        .env("RUST_LOG", "info");
    cmd
}

pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

pub fn jobs(results: &Value) -> &Vec<Value> {
    results["jobs"].as_array().expect("jobs array")
}

pub fn fixture(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    write_synthetic_mnist(&data.join("mnist"), 3000, 500);
    data
}

/// `worker train --json` of a small MNIST job on `data` on the CPU, plus `extra` flags.
pub fn train(data: &Path, extra: &[&str]) -> Command {
    train_on("cpu", data, extra)
}

/// [`train`] on `device`.
pub fn train_on(device: &str, data: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(bin("worker"));
    c.args([
        "train",
        "--dataset",
        "mnist",
        "--model",
        "paper-cnn",
        "--device",
        device,
        "--json",
    ])
    .args(["--test-limit", "300", "--latency-samples", "5"])
    .arg("--data-dir")
    .arg(data)
    .args(extra);
    c
}

pub fn curves(job: &Value) -> Vec<(f64, f64, f64)> {
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

pub fn get_json(url: &str) -> Option<Value> {
    ureq::get(url)
        .call()
        .ok()?
        .into_string()
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
}

pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// Epochs of job `i` in the coordinator's live results.
pub fn epochs_done(results: &Value, i: usize) -> usize {
    results["jobs"][i]["epochs"]
        .as_array()
        .map_or(0, |e| e.len())
}

pub const LONG_JOB: &str = "name: faults\ncheckpoint_every: 1\nactivations: [relu]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 8, target_accuracy: 0.5, latency_samples: 5}\n";

pub fn assert_complete_series(job: &Value, epochs: usize) {
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

/// The workspace root (this crate lives in `tests/`).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The real datasets, seen through a folder of this test's own: a link to each dataset of the
/// shared folder, so what a worker writes beside them (its engine cache, measured while other
/// tests load the machine) stays with the test instead of misleading later benchmarks.
pub struct RealDatasets(tempfile::TempDir);

impl std::ops::Deref for RealDatasets {
    type Target = Path;
    fn deref(&self) -> &Path {
        self.0.path()
    }
}

impl AsRef<std::ffi::OsStr> for RealDatasets {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.path().as_os_str()
    }
}

/// A test that needs an outside tool or data runs only where the build found it (`build.rs`
/// sets `cfg(have_...)`; elsewhere the test is ignored, with its reason) or under `CI=true`,
/// where every test runs. So a test that runs without its tool fails here, naming it.
pub fn missing(what: &str) -> ! {
    panic!(
        "{what} is not available, and this test needs it (it runs where the build found it, \
         and always under CI=true; docs/development.md lists every tool)"
    )
}

/// The real datasets `DATASETS_DIR` names (relative to the workspace root, as CI's
/// `../shared/datasets`). Tests that call this are ignored where it is not set (`build.rs`).
pub fn real_datasets() -> RealDatasets {
    let Some(dir) = std::env::var_os("DATASETS_DIR") else {
        missing("DATASETS_DIR (a folder holding the real MNIST and CIFAR-10)")
    };
    let shared = repo().join(dir);
    let own = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&shared).unwrap().flatten() {
        if entry.path().is_dir() {
            std::os::unix::fs::symlink(entry.path(), own.path().join(entry.file_name())).unwrap();
        }
    }
    RealDatasets(own)
}

/// Writes `text` to `path`, readable by its owner only (as a token file must be).
pub fn private_file(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// The value of `key=` in a log line (up to the next space).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(key)? + key.len();
    line[at..].split_whitespace().next()
}

/// The gRPC port and, when `http`, the live page's port that the coordinator logging to `log`
/// bound, read from its start-up lines after byte `from` (a restarted coordinator appends to
/// the same log). Ports are picked by the system (`127.0.0.1:0`) and learnt here, so no port
/// is chosen by a test and then raced for.
pub fn bound_ports(log: &Path, from: usize, http: bool) -> (u16, Option<u16>) {
    let mut ports = None;
    wait_until(
        Duration::from_secs(60),
        "the coordinator's start-up lines",
        || {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let text = text.get(from..).unwrap_or("");
            let port = |s: &str| s.rsplit(':').next()?.trim_end_matches('/').parse().ok();
            let grpc = text
                .lines()
                .find(|l| l.contains("coordinator started"))
                .and_then(|l| field(l, "listen="))
                .and_then(port);
            let live = text
                .lines()
                .find_map(|l| field(l, "live report at "))
                .and_then(port);
            match (grpc, live) {
                (Some(g), live) if live.is_some() || !http => {
                    ports = Some((g, live));
                    true
                }
                _ => false,
            }
        },
    );
    ports.expect("found")
}

/// A coordinator for `grid` that starts no workers of its own (external ones may connect),
/// with the live page on `http` (`127.0.0.1:0` or `off`) and `extra` flags, appending to
/// `dir/coordinator.log`, with its output in `dir/out`; and its gRPC and HTTP ports.
fn external_workers_only(
    grid: &Path,
    dir: &Path,
    http: &str,
    extra: &[&str],
) -> (std::process::Child, u16, Option<u16>) {
    let log = dir.join("coordinator.log");
    let from = std::fs::metadata(&log).map_or(0, |m| m.len() as usize);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap();
    let child = Command::new(bin("coordinator"))
        .arg("--grid")
        .arg(grid)
        .arg("--out")
        .arg(dir.join("out"))
        .args([
            "--local-workers",
            "0",
            "--listen",
            "127.0.0.1:0",
            "--http",
            http,
        ])
        .args(extra)
        .stderr(file)
        .spawn()
        .unwrap();
    let (grpc, page) = bound_ports(&log, from, http != "off");
    (child, grpc, page)
}

/// A coordinator for `grid` that starts no workers of its own (external ones may connect),
/// logging to `dir/coordinator.log`, with its output in `dir/out`; and its gRPC port.
pub fn waiting_coordinator(grid: &Path, dir: &Path) -> (std::process::Child, u16) {
    let (child, grpc, _) = external_workers_only(grid, dir, "off", &[]);
    (child, grpc)
}

/// The same with the live page on and `extra` flags, killed when dropped; its gRPC and HTTP
/// ports.
pub fn waiting_coordinator_with(grid: &Path, dir: &Path, extra: &[&str]) -> (Killed, u16, u16) {
    let (child, grpc, http) = external_workers_only(grid, dir, "127.0.0.1:0", extra);
    (Killed(child), grpc, http.expect("the live page is on"))
}

/// A raw worker client for `url` (as a buggy or hostile worker would use), with `token`, and
/// with `session` once registered.
pub fn worker_rpc(
    url: &str,
    token: Option<&str>,
    session: Option<&str>,
) -> orchestrator_proto::client::WorkerClient {
    use orchestrator_proto::client::{unregistered_worker, worker_client, ClientTls};
    let (channel, auth, c) = unregistered_worker(url, &ClientTls::default(), token).unwrap();
    match session {
        None => c,
        Some(s) => worker_client(channel, auth.with_session(s).unwrap()),
    }
}

/// Register as a one-slot CPU worker named `name`.
pub fn register_request(name: &str) -> orchestrator_proto::v1::RegisterRequest {
    use orchestrator_proto::v1 as pb;
    pb::RegisterRequest {
        info: Some(pb::WorkerInfo {
            name: name.into(),
            device: "cpu".into(),
            slots: 1,
            ..Default::default()
        }),
    }
}

/// A coordinator and external workers, each logging to a file in a temporary folder.
pub struct Cluster {
    pub tmp: tempfile::TempDir,
    pub data: PathBuf,
    pub grid: PathBuf,
    pub out: PathBuf,
    /// The ports of the coordinator started last.
    pub port: Cell<u16>,
    pub http: Cell<u16>,
}

impl Cluster {
    pub fn new(grid_yaml: &str) -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        let data = fixture(tmp.path());
        let grid = tmp.path().join("grid.yaml");
        std::fs::write(&grid, grid_yaml).unwrap();
        let out = tmp.path().join("out");
        Cluster {
            data,
            grid,
            out,
            port: Cell::new(0),
            http: Cell::new(0),
            tmp,
        }
    }

    /// Starts the coordinator (2 s leases) and waits until it listens.
    pub fn coordinator(&self, local_workers: &str) -> std::process::Child {
        let path = self.tmp.path().join("coordinator.log");
        let from = std::fs::metadata(&path).map_or(0, |m| m.len() as usize);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        let child = coordinator(&self.grid, &self.out, &self.data)
            .args(["--http", "127.0.0.1:0"])
            .args(["--local-workers", local_workers, "--lease-seconds", "2"])
            .stderr(log)
            .spawn()
            .unwrap();
        let (grpc, http) = bound_ports(&path, from, true);
        self.port.set(grpc);
        self.http.set(http.expect("the live page is on"));
        child
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port.get())
    }

    /// An external worker with its own checkpoint folder, as on another host.
    pub fn worker(&self, name: &str) -> std::process::Child {
        let log = std::fs::File::create(self.tmp.path().join(format!("{name}.log"))).unwrap();
        Command::new(bin("worker"))
            .args(["--coordinator", &self.url(), "--device", "cpu"])
            .args(["--name", name])
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--checkpoint-dir")
            .arg(self.tmp.path().join(format!("{name}-checkpoints")))
            .stderr(log)
            .spawn()
            .unwrap()
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.tmp.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    pub fn live(&self) -> Option<Value> {
        get_json(&format!(
            "http://127.0.0.1:{}/results.json",
            self.http.get()
        ))
    }

    pub fn wait_live(&self, what: &str, cond: impl Fn(&Value) -> bool) {
        wait_until(Duration::from_secs(60), what, || {
            self.live().is_some_and(|r| cond(&r))
        });
    }

    pub fn results(&self) -> Value {
        read_json(&self.out.join("results.json"))
    }
}

/// A child process killed when dropped, so a failing test leaves none behind (one left
/// running would hold the test's output pipe open).
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
