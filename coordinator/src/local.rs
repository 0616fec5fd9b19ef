//! Local worker processes that the coordinator starts itself (`--local-workers`).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context;
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

/// GPUs visible on this machine, via `nvidia-smi -L` (the coordinator does not link libtorch).
pub fn visible_gpus() -> u32 {
    std::process::Command::new("nvidia-smi")
        .arg("-L")
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.starts_with("GPU "))
                .count() as u32
        })
        .unwrap_or(0)
}

/// The `--device` of each local worker, from `--local-workers` and the coordinator's `--device`.
pub fn plan(workers: LocalWorkers, device: &str, gpus: u32) -> Vec<String> {
    match (workers, device) {
        (LocalWorkers::Count(0), _) => vec![],
        (_, "cpu") => {
            let n = match workers {
                LocalWorkers::Auto => 1,
                LocalWorkers::Count(n) => n,
            };
            vec!["cpu".into(); n as usize]
        }
        (_, d) if d.starts_with("cuda:") => vec![d.to_string()],
        // auto or cuda: one worker per GPU (or per requested worker, round-robin over GPUs).
        (w, d) => {
            if gpus == 0 {
                let n = match w {
                    LocalWorkers::Auto => 1,
                    LocalWorkers::Count(n) => n,
                };
                // `cuda` without a GPU: let the worker report the error clearly.
                let dev = if d == "cuda" { "cuda" } else { "cpu" };
                vec![dev.to_string(); n as usize]
            } else {
                let n = match w {
                    LocalWorkers::Auto => gpus,
                    LocalWorkers::Count(n) => n,
                };
                (0..n).map(|i| format!("cuda:{}", i % gpus)).collect()
            }
        }
    }
}

/// The worker binary: `$WORKER_BIN`, else `worker` beside this executable.
pub fn worker_binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("WORKER_BIN") {
        return Ok(PathBuf::from(p));
    }
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
}

/// Starts one local worker per entry of `devices`, logging to `log_dir/worker-<i>.log`.
pub fn spawn_all(s: &Spawn<'_>, devices: &[String]) -> anyhow::Result<Vec<Child>> {
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
        let mut cmd = Command::new(s.binary);
        cmd.arg("--coordinator")
            .arg(s.coordinator_url)
            .arg("--device")
            .arg(device)
            .arg("--slots")
            .arg(s.slots.to_string())
            .arg("--name")
            .arg(format!("local-{i}/{device}"))
            .arg("--checkpoint-dir")
            .arg(s.checkpoint_dir)
            .arg("--exit-with-parent")
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
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", s.binary.display()))?;
        tracing::info!(worker = i, device, log = %log_path.display(), "local worker started");
        children.push(child);
    }
    Ok(children)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans() {
        assert_eq!(plan(LocalWorkers::Auto, "auto", 0), vec!["cpu"]);
        assert_eq!(
            plan(LocalWorkers::Auto, "auto", 2),
            vec!["cuda:0", "cuda:1"]
        );
        assert_eq!(
            plan(LocalWorkers::Count(0), "auto", 2),
            Vec::<String>::new()
        );
        assert_eq!(plan(LocalWorkers::Count(2), "cpu", 4), vec!["cpu", "cpu"]);
        assert_eq!(plan(LocalWorkers::Auto, "cuda:1", 2), vec!["cuda:1"]);
        assert_eq!(
            plan(LocalWorkers::Count(3), "cuda", 2),
            vec!["cuda:0", "cuda:1", "cuda:0"]
        );
        assert_eq!("auto".parse(), Ok(LocalWorkers::Auto));
        assert_eq!("3".parse(), Ok(LocalWorkers::Count(3)));
        assert!("x".parse::<LocalWorkers>().is_err());
    }
}
