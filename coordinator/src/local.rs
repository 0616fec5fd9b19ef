//! Local worker processes that the coordinator starts itself (`--local-workers`).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context;
use domain::DeviceSpec;
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

/// The `--device` of each local worker, from `--local-workers`, the coordinator's `--device`
/// and the number of GPUs on this machine.
pub fn plan(workers: LocalWorkers, device: DeviceSpec, gpus: u32) -> Vec<DeviceSpec> {
    let count = |auto: u32| match workers {
        LocalWorkers::Auto => auto,
        LocalWorkers::Count(n) => n,
    };
    match device {
        _ if workers == LocalWorkers::Count(0) => vec![],
        DeviceSpec::Cpu => vec![DeviceSpec::Cpu; count(1) as usize],
        DeviceSpec::Cuda(Some(_)) => vec![device],
        // `cuda` without a GPU: let the worker report the error clearly.
        DeviceSpec::Cuda(None) if gpus == 0 => vec![device; count(1) as usize],
        DeviceSpec::Auto if gpus == 0 => vec![DeviceSpec::Cpu; count(1) as usize],
        // One worker per GPU (or per requested worker, round-robin over the GPUs).
        DeviceSpec::Auto | DeviceSpec::Cuda(None) => (0..count(gpus))
            .map(|i| DeviceSpec::Cuda(Some(i % gpus)))
            .collect(),
    }
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
    pub fn spawn(s: &Spawn<'_>, devices: &[DeviceSpec]) -> anyhow::Result<Processes> {
        if !devices.is_empty() && !s.binary.is_file() {
            anyhow::bail!(
                "worker binary not found at {} (build the workspace, or set WORKER_BIN)",
                s.binary.display()
            );
        }
        std::fs::create_dir_all(s.log_dir)
            .with_context(|| format!("creating {}", s.log_dir.display()))?;
        let mut children = Vec::new();
        for (i, device) in devices.iter().enumerate() {
            let log_path = s.log_dir.join(format!("worker-{i}.log"));
            let log = std::fs::File::create(&log_path)
                .with_context(|| format!("creating {}", log_path.display()))?;
            let child = command(s, i, *device, log)?
                .spawn()
                .with_context(|| format!("starting {}", s.binary.display()))?;
            tracing::info!(worker = i, %device, log = %log_path.display(), "local worker started");
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

fn command(
    s: &Spawn<'_>,
    i: usize,
    device: DeviceSpec,
    log: std::fs::File,
) -> anyhow::Result<Command> {
    let mut cmd = Command::new(s.binary);
    cmd.arg("--coordinator")
        .arg(s.coordinator_url)
        .arg("--device")
        .arg(device.to_string())
        .arg("--slots")
        .arg(s.slots.to_string())
        .arg("--name")
        .arg(format!("local-{i}/{device}"))
        .arg("--checkpoint-dir")
        .arg(s.checkpoint_dir)
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
    if let Some(t) = s.token_file {
        cmd.arg("--token-file").arg(t);
    }
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn devices(list: &[&str]) -> Vec<DeviceSpec> {
        list.iter().map(|d| d.parse().unwrap()).collect()
    }

    #[test]
    fn plans() {
        let d = |s: &str| s.parse::<DeviceSpec>().unwrap();
        assert_eq!(plan(LocalWorkers::Auto, d("auto"), 0), devices(&["cpu"]));
        assert_eq!(
            plan(LocalWorkers::Auto, d("auto"), 2),
            devices(&["cuda:0", "cuda:1"])
        );
        assert_eq!(plan(LocalWorkers::Count(0), d("auto"), 2), vec![]);
        assert_eq!(
            plan(LocalWorkers::Count(2), d("cpu"), 4),
            devices(&["cpu", "cpu"])
        );
        assert_eq!(
            plan(LocalWorkers::Auto, d("cuda:1"), 2),
            devices(&["cuda:1"])
        );
        assert_eq!(
            plan(LocalWorkers::Count(3), d("cuda"), 2),
            devices(&["cuda:0", "cuda:1", "cuda:0"])
        );
        assert_eq!(plan(LocalWorkers::Auto, d("cuda"), 0), devices(&["cuda"]));
        assert_eq!("auto".parse(), Ok(LocalWorkers::Auto));
        assert_eq!("3".parse(), Ok(LocalWorkers::Count(3)));
        assert!("x".parse::<LocalWorkers>().is_err());
    }
}
