//! Local worker processes that the coordinator starts itself (`--local-workers`).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context;
use common::DeviceSpec;
use tokio::process::{Child, Command};

/// How many local workers to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalWorkers {
    /// One per visible GPU, else one CPU worker.
    Auto,
    Count(u32),
}

impl std::str::FromStr for LocalWorkers {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(LocalWorkers::Auto),
            n => n
                .parse()
                .map(LocalWorkers::Count)
                .map_err(|_| format!("expected `auto` or a number of workers, got `{n}`")),
        }
    }
}

/// A GPU of this machine, as the worker's preflight lists it: `ordinal` is its `cuda:N` number
/// for this coordinator (after any inherited CUDA_VISIBLE_DEVICES).
pub use orchestrator_proto::host::Gpu;

/// One local worker to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalWorker {
    /// Its `--device`.
    pub device: DeviceSpec,
    /// The GPU it is given alone, by `CUDA_VISIBLE_DEVICES=<uuid>` (it then trains on
    /// `cuda:0`): UUIDs name the same GPU whatever order CUDA and nvidia-smi number them in.
    pub gpu: Option<Gpu>,
}

impl LocalWorker {
    fn on(device: DeviceSpec) -> LocalWorker {
        LocalWorker { device, gpu: None }
    }

    fn on_gpu(gpu: &Gpu) -> LocalWorker {
        LocalWorker {
            device: DeviceSpec::Cuda(Some(0)),
            gpu: Some(gpu.clone()),
        }
    }

    /// How the worker is named: `local-<i>/cpu` or `local-<i>/cuda:<ordinal>`.
    pub fn label(&self) -> String {
        match &self.gpu {
            Some(g) => format!("cuda:{}", g.ordinal),
            None => self.device.to_string(),
        }
    }
}

/// The local workers to start, from `--local-workers`, the coordinator's `--device` and the
/// GPUs the worker's preflight found: one per GPU by default.
pub fn plan(workers: LocalWorkers, device: DeviceSpec, gpus: &[Gpu]) -> Vec<LocalWorker> {
    let count = |auto: usize| match workers {
        LocalWorkers::Auto => auto,
        LocalWorkers::Count(n) => n as usize,
    };
    match device {
        _ if workers == LocalWorkers::Count(0) => vec![],
        DeviceSpec::Cpu => vec![LocalWorker::on(DeviceSpec::Cpu); count(1)],
        DeviceSpec::Cuda(Some(i)) => match gpus.iter().find(|g| g.ordinal == i) {
            Some(g) => vec![LocalWorker::on_gpu(g)],
            // Let the worker report the error clearly.
            None => vec![LocalWorker::on(device)],
        },
        // `cuda` without a GPU: let the worker report the error clearly.
        DeviceSpec::Cuda(None) if gpus.is_empty() => vec![LocalWorker::on(device); count(1)],
        DeviceSpec::Auto if gpus.is_empty() => vec![LocalWorker::on(DeviceSpec::Cpu); count(1)],
        // One worker per GPU (or per requested worker, round-robin over the GPUs).
        DeviceSpec::Auto | DeviceSpec::Cuda(None) => (0..count(gpus.len()))
            .map(|i| LocalWorker::on_gpu(&gpus[i % gpus.len()]))
            .collect(),
    }
}

/// The GPUs local workers may use, from `worker preflight --json` (the coordinator does not
/// link libtorch); its error (an old driver, GPUs CUDA cannot see) stops the coordinator
/// before it starts workers that could only die.
pub fn gpus(worker: &Path) -> anyhow::Result<Vec<Gpu>> {
    #[derive(serde::Deserialize)]
    struct Verdict {
        gpus: Vec<Gpu>,
        error: Option<String>,
    }
    let out = std::process::Command::new(worker)
        .args(["preflight", "--json"])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {} preflight", worker.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Verdict = text
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .with_context(|| format!("`{} preflight --json` printed no verdict", worker.display()))?;
    if let Some(e) = v.error {
        anyhow::bail!("GPU preflight: {e}");
    }
    Ok(v.gpus)
}

/// A warning when jobs would share GPUs (timings then include each other's work).
pub fn sharing_warning(plan: &[LocalWorker], slots: u32) -> Option<String> {
    let on_gpus: Vec<&Gpu> = plan.iter().filter_map(|w| w.gpu.as_ref()).collect();
    let mut distinct: Vec<&str> = on_gpus.iter().map(|g| g.uuid.as_str()).collect();
    distinct.sort_unstable();
    distinct.dedup();
    let jobs = on_gpus.len() * slots as usize;
    (jobs > distinct.len()).then(|| {
        format!(
            "{} local worker(s) with {slots} slot(s) each on {} GPU(s): jobs will share GPUs, \
             so their times include each other's work (the report marks them)",
            on_gpus.len(),
            distinct.len()
        )
    })
}

/// The worker binary: `worker` beside this executable (`$WORKER_BIN` is read in `main`).
pub fn worker_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the coordinator binary")?;
    Ok(exe.with_file_name("worker"))
}

pub struct Spawn<'a> {
    pub binary: &'a Path,
    pub coordinator_url: &'a str,
    pub data_dir: Option<&'a Path>,
    pub token_file: Option<&'a Path>,
    pub log_dir: &'a Path,
    pub checkpoint_dir: &'a Path,
    pub slots: u32,
    /// The coordinator's own `--log-format`, so all logs of a run read alike.
    pub log_format: orchestrator_proto::telemetry::LogFormat,
}

/// The local worker processes.
#[derive(Default)]
pub struct Processes(Vec<Child>);

impl Processes {
    /// Starts one local worker per entry of `devices`, logging to `log_dir/worker-<i>.log`.
    pub fn spawn(s: &Spawn<'_>, devices: &[LocalWorker]) -> anyhow::Result<Processes> {
        if !devices.is_empty() && !s.binary.is_file() {
            anyhow::bail!(
                "worker binary not found at {} (build the workspace, or set WORKER_BIN)",
                s.binary.display()
            );
        }
        std::fs::create_dir_all(s.log_dir)
            .with_context(|| format!("creating {}", s.log_dir.display()))?;
        let mut children = Vec::new();
        let threads = cpu_threads_per_job(devices, s.slots, cores());
        for (i, device) in devices.iter().enumerate() {
            let log_path = s.log_dir.join(format!("worker-{i}.log"));
            let log = std::os::unix::fs::OpenOptionsExt::mode(
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true),
                0o600,
            )
            .open(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
            let mut cmd = command(s, i, device, log)?;
            if let (Some(t), DeviceSpec::Cpu) = (threads, device.device) {
                cmd.arg("--threads").arg(t.to_string());
            }
            let child = cmd
                .spawn()
                .with_context(|| format!("starting {}", s.binary.display()))?;
            let uuid = device.gpu.as_ref().map_or("", |g| g.uuid.as_str());
            tracing::info!(worker = i, device = %device.label(), uuid, log = %log_path.display(), "local worker started");
            children.push(child);
        }
        Ok(Processes(children))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether every process has exited.
    pub fn all_exited(&mut self) -> bool {
        self.0.iter_mut().all(|c| !matches!(c.try_wait(), Ok(None)))
    }

    pub async fn kill_all(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill().await;
        }
    }
}

/// The cores this process may use (affinity mask, cgroup quota).
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Threads per job for local CPU workers, where there are several: each worker would otherwise
/// divide all the cores among its own slots alone, and the workers' jobs would spin against
/// each other (two 2-thread jobs on 2 cores run 4x slower each, two 1-thread jobs 1.8x).
fn cpu_threads_per_job(devices: &[LocalWorker], slots: u32, cores: usize) -> Option<usize> {
    let on_cpu = devices
        .iter()
        .filter(|w| w.device == DeviceSpec::Cpu)
        .count();
    (on_cpu > 1).then(|| (cores / (on_cpu * slots.max(1) as usize)).max(1))
}

fn command(
    s: &Spawn<'_>,
    i: usize,
    w: &LocalWorker,
    log: std::fs::File,
) -> anyhow::Result<Command> {
    let mut cmd = Command::new(s.binary);
    cmd.arg("--coordinator")
        .arg(s.coordinator_url)
        .arg("--device")
        .arg(w.device.to_string())
        .arg("--slots")
        .arg(s.slots.to_string())
        .arg("--name")
        .arg(format!("local-{i}/{}", w.label()))
        // The coordinator's own checkpoint folder: nothing to copy over the socket.
        .arg("--checkpoint-dir")
        .arg(s.checkpoint_dir)
        .arg("--shared-checkpoint-dir")
        .arg("--job-log-dir")
        .arg(s.log_dir.join("jobs"))
        .arg("--exit-with-parent")
        .arg("--log-format")
        .arg(s.log_format.as_str())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    if let Some(d) = s.data_dir {
        cmd.arg("--data-dir").arg(d);
    }
    if let Some(g) = &w.gpu {
        cmd.env("CUDA_VISIBLE_DEVICES", &g.uuid);
    }
    if let Some(t) = s.token_file {
        cmd.arg("--token-file").arg(t);
    }
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(ordinal: u32) -> Gpu {
        Gpu {
            ordinal,
            uuid: format!("GPU-{ordinal}000"),
            name: "NVIDIA H100".into(),
            memory_mb: 81559,
        }
    }

    #[test]
    fn several_cpu_workers_share_the_cores() {
        let cpu = |n| vec![LocalWorker::on(DeviceSpec::Cpu); n];
        assert_eq!(cpu_threads_per_job(&cpu(1), 2, 16), None);
        assert_eq!(cpu_threads_per_job(&cpu(2), 1, 16), Some(8));
        assert_eq!(cpu_threads_per_job(&cpu(2), 2, 16), Some(4));
        assert_eq!(cpu_threads_per_job(&cpu(4), 2, 2), Some(1));
        let gpus = vec![LocalWorker::on(DeviceSpec::Cuda(Some(0))); 2];
        assert_eq!(cpu_threads_per_job(&gpus, 1, 16), None);
    }

    fn shown(plan: Vec<LocalWorker>) -> Vec<String> {
        plan.iter()
            .map(|w| match &w.gpu {
                Some(g) => format!("{}@{}", w.device, g.uuid),
                None => w.device.to_string(),
            })
            .collect()
    }

    #[test]
    fn plans() {
        let d = |s: &str| s.parse::<DeviceSpec>().unwrap();
        let two = [gpu(0), gpu(1)];
        assert_eq!(shown(plan(LocalWorkers::Auto, d("auto"), &[])), ["cpu"]);
        assert_eq!(
            shown(plan(LocalWorkers::Auto, d("auto"), &two)),
            ["cuda:0@GPU-0000", "cuda:0@GPU-1000"]
        );
        assert!(plan(LocalWorkers::Count(0), d("auto"), &two).is_empty());
        assert_eq!(
            shown(plan(LocalWorkers::Count(2), d("cpu"), &two)),
            ["cpu", "cpu"]
        );
        assert_eq!(
            shown(plan(LocalWorkers::Auto, d("cuda:1"), &two)),
            ["cuda:0@GPU-1000"]
        );
        assert_eq!(
            shown(plan(LocalWorkers::Auto, d("cuda:5"), &two)),
            ["cuda:5"]
        );
        assert_eq!(
            shown(plan(LocalWorkers::Count(3), d("cuda"), &two)),
            ["cuda:0@GPU-0000", "cuda:0@GPU-1000", "cuda:0@GPU-0000"]
        );
        assert_eq!(shown(plan(LocalWorkers::Auto, d("cuda"), &[])), ["cuda"]);
        assert_eq!(
            plan(LocalWorkers::Auto, d("auto"), &two)[1].label(),
            "cuda:1"
        );
        assert_eq!("auto".parse(), Ok(LocalWorkers::Auto));
        assert_eq!("3".parse(), Ok(LocalWorkers::Count(3)));
        assert!("x".parse::<LocalWorkers>().is_err());
    }

    #[test]
    fn sharing_a_gpu_is_warned_about() {
        let d = DeviceSpec::Auto;
        let two = [gpu(0), gpu(1)];
        assert_eq!(sharing_warning(&plan(LocalWorkers::Auto, d, &two), 1), None);
        let w = sharing_warning(&plan(LocalWorkers::Count(3), d, &two), 1).unwrap();
        assert!(
            w.starts_with("3 local worker(s) with 1 slot(s) each on 2 GPU(s)"),
            "{w}"
        );
        assert!(sharing_warning(&plan(LocalWorkers::Auto, d, &two), 2).is_some());
        assert_eq!(
            sharing_warning(&plan(LocalWorkers::Count(4), DeviceSpec::Cpu, &two), 2),
            None
        );
    }
}
