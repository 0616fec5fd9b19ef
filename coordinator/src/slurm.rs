//! `--launcher slurm`: the coordinator starts its workers as SLURM batch jobs, as a user runs
//! it from a login node. It writes one batch script (`<out>/slurm/worker.sh`) and submits it
//! with `sbatch` as the queue needs workers: never more worker jobs than `--max-workers`, never
//! more waiting in SLURM's queue than jobs waiting in the grid's. Every 2 s it reads SLURM's
//! view of its jobs (`squeue`, and `scontrol show job` for one that left the queue), submits a
//! replacement when a worker job ends before the grid does, and `scancel`s every job it
//! submitted when the grid ends, is cancelled or the coordinator exits (also when the task is
//! dropped). Workers connect back over the network with the token and TLS, like any remote
//! worker; their files (the token, certificates, data) must be where the batch job can read
//! them: a shared filesystem.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tokio::sync::watch;

use crate::service::Shared;

/// How often SLURM's view of the worker jobs is read.
const EVERY: Duration = Duration::from_secs(2);

/// What `--launcher slurm` was given.
#[derive(Debug, Clone)]
pub struct SlurmConfig {
    /// Worker jobs at most, queued or running (`--max-workers`).
    pub max_workers: u32,
    /// Passed to `sbatch` verbatim, after the coordinator's own (`--sbatch-arg`).
    pub sbatch_args: Vec<String>,
    /// Passed to each worker verbatim, after the coordinator's own (`--worker-arg`).
    pub worker_args: Vec<String>,
}

/// Whether `program` is on `PATH`.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// Checks before anything starts: SLURM's commands are there, and `sbatch` would take the
/// request (`--test-only`: nothing is submitted); its own words when it would not.
pub fn check(cfg: &SlurmConfig) -> Result<(), String> {
    if cfg.max_workers == 0 {
        return Err(
            "--max-workers 0: with --launcher slurm at least one worker job is needed".into(),
        );
    }
    for program in ["sbatch", "squeue", "scancel", "scontrol"] {
        if !on_path(program) {
            return Err(format!(
                "--launcher slurm: `{program}` is not on PATH: run the coordinator where SLURM's \
                 commands are (a login node), or use --launcher local"
            ));
        }
    }
    let out = Command::new("sbatch")
        .arg("--test-only")
        .args(&cfg.sbatch_args)
        .args(["--wrap", "true"])
        .output()
        .map_err(|e| format!("--launcher slurm: cannot run sbatch: {e}"))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "sbatch refuses the worker job (--sbatch-arg {}): {}",
            cfg.sbatch_args.join(" "),
            said.trim()
        ));
    }
    Ok(())
}

/// `s` quoted for a POSIX shell.
fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The batch script: the worker, connecting back to `url`, named after its SLURM job.
pub fn script(worker: &[String]) -> String {
    let args: Vec<String> = worker.iter().map(|a| quoted(a)).collect();
    format!(
        "#!/bin/sh\n# A dlgrid worker, submitted by the coordinator (--launcher slurm).\n\
         exec {} --name \"slurm-$SLURM_JOB_ID\"\n",
        args.join(" ")
    )
}

/// A worker job as SLURM last described it.
#[derive(Debug, Clone, PartialEq)]
struct WorkerJob {
    state: String,
}

/// The worker jobs of one coordinator.
pub struct Launcher {
    cfg: SlurmConfig,
    script: PathBuf,
    /// `--job-name` of this coordinator's worker jobs (its grid and port: unique per run).
    name: String,
    log_dir: PathBuf,
    jobs: BTreeMap<u64, WorkerJob>,
}

impl Launcher {
    /// Writes the batch script for `worker` (the command and its arguments) into
    /// `<out>/slurm/worker.sh`, mode 700.
    pub fn new(
        cfg: SlurmConfig,
        out: &Path,
        name: String,
        worker: &[String],
    ) -> anyhow::Result<Launcher> {
        use std::os::unix::fs::PermissionsExt;
        let dir = out.join("slurm");
        std::fs::create_dir_all(&dir)?;
        let script = dir.join("worker.sh");
        std::fs::write(&script, self::script(worker))?;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700))?;
        let log_dir = out.join("logs");
        std::fs::create_dir_all(&log_dir)?;
        Ok(Launcher {
            cfg,
            script,
            name,
            log_dir,
            jobs: BTreeMap::new(),
        })
    }

    /// Submits one worker job; its id.
    fn submit(&mut self) -> anyhow::Result<u64> {
        let out = Command::new("sbatch")
            .arg("--parsable")
            .arg(format!("--job-name={}", self.name))
            .arg(format!(
                "--output={}",
                self.log_dir.join("slurm-%j.log").display()
            ))
            .args(&self.cfg.sbatch_args)
            .arg(&self.script)
            .output()?;
        if !out.status.success() {
            anyhow::bail!("sbatch: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        let text = String::from_utf8_lossy(&out.stdout);
        // --parsable prints "id" or "id;cluster".
        let id: u64 = text.trim().split(';').next().unwrap_or("").parse()?;
        self.jobs.insert(
            id,
            WorkerJob {
                state: "PENDING".into(),
            },
        );
        tracing::info!(slurm_job = id, "slurm: worker job submitted");
        Ok(id)
    }

    /// SLURM's state of this coordinator's jobs still in its queue.
    fn queued(&self) -> Option<BTreeMap<u64, String>> {
        let out = Command::new("squeue")
            .args(["-h", "-n", &self.name, "-o", "%i %T"])
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&out.stdout);
        Some(
            text.lines()
                .filter_map(|l| {
                    let (id, state) = l.trim().split_once(' ')?;
                    Some((id.parse().ok()?, state.to_string()))
                })
                .collect(),
        )
    }

    /// Brings SLURM's view up to date, then submits the worker jobs the grid needs:
    /// `waiting` jobs wait in the grid and `unfinished` are not finished.
    pub fn tick(&mut self, waiting: u32, unfinished: u32) {
        let Some(queued) = self.queued() else {
            tracing::warn!("slurm: squeue failed; trying again");
            return;
        };
        let ids: Vec<u64> = self.jobs.keys().copied().collect();
        for id in ids {
            match queued.get(&id) {
                Some(state) => {
                    let job = self.jobs.get_mut(&id).expect("listed");
                    if job.state != *state {
                        tracing::info!(slurm_job = id, state = %state, "slurm: worker job {}", state.to_lowercase());
                        job.state = state.clone();
                    }
                }
                None => {
                    let why = ended(id);
                    tracing::info!(slurm_job = id, state = %why, "slurm: worker job ended");
                    self.jobs.remove(&id);
                }
            }
        }
        let active = self.jobs.len() as u32;
        let queued_workers = self.jobs.values().filter(|j| j.state == "PENDING").count() as u32;
        let want = self.cfg.max_workers.min(unfinished);
        let more = want
            .saturating_sub(active)
            .min(waiting.saturating_sub(queued_workers));
        for _ in 0..more {
            if let Err(e) = self.submit() {
                tracing::warn!(error = %format!("{e:#}"), "slurm: could not submit a worker job");
                break;
            }
        }
    }

    /// The worker jobs SLURM holds, with their SLURM state.
    pub fn jobs(&self) -> Vec<(u64, String)> {
        self.jobs
            .iter()
            .map(|(id, j)| (*id, j.state.clone()))
            .collect()
    }

    /// `scancel`s every worker job this coordinator submitted and SLURM still holds.
    pub fn cancel_all(&mut self) {
        if self.jobs.is_empty() {
            return;
        }
        let ids: Vec<String> = self.jobs.keys().map(u64::to_string).collect();
        match Command::new("scancel").args(&ids).status() {
            Ok(s) if s.success() => {
                tracing::info!(jobs = %ids.join(","), "slurm: worker jobs cancelled")
            }
            Ok(s) => tracing::warn!(jobs = %ids.join(","), status = %s, "slurm: scancel failed"),
            Err(e) => tracing::warn!(error = %e, "slurm: cannot run scancel"),
        }
        self.jobs.clear();
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        self.cancel_all();
    }
}

/// Why job `id` left SLURM's queue: its final state (and reason), from `scontrol`.
fn ended(id: u64) -> String {
    let out = Command::new("scontrol")
        .args(["show", "job", &id.to_string(), "-o"])
        .output();
    let Ok(out) = out else {
        return "unknown".into();
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |k: &str| {
        text.split_whitespace()
            .find_map(|kv| kv.strip_prefix(k))
            .map(str::to_string)
    };
    match (field("JobState="), field("Reason=")) {
        (Some(s), Some(r)) if r != "None" => format!("{s} ({r})"),
        (Some(s), _) => s,
        _ => "gone from SLURM's records".into(),
    }
}

/// Keeps the grid's worker jobs going until `stop`, then cancels them.
pub async fn run(shared: Shared, mut launcher: Launcher, mut stop: watch::Receiver<bool>) {
    loop {
        let counts = shared.lock().counts();
        let unfinished = counts.pending + counts.running;
        let waiting = counts.pending;
        let mut l = launcher;
        launcher = tokio::task::spawn_blocking(move || {
            l.tick(waiting, unfinished);
            l
        })
        .await
        .expect("the SLURM tick does not panic");
        publish(&shared, &launcher.jobs());
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    tokio::task::spawn_blocking(move || launcher.cancel_all())
        .await
        .ok();
    publish(&shared, &[]);
}

/// What status, the live page and `/metrics` show of the worker jobs.
fn publish(shared: &Shared, jobs: &[(u64, String)]) {
    *shared.slurm_jobs.lock().unwrap_or_else(|p| p.into_inner()) = jobs.to_vec();
    let gauge = &shared.metrics.slurm_jobs;
    gauge.reset();
    for (_, state) in jobs {
        gauge.with_label_values(&[state.as_str()]).inc();
    }
}

/// `jobs` in words: "5 RUNNING, 6 PENDING" (by job id).
pub fn summary(jobs: &[(u64, String)]) -> String {
    let parts: Vec<String> = jobs.iter().map(|(id, s)| format!("{id} {s}")).collect();
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_quotes_every_argument() {
        let s = script(&[
            "/shared/bin/worker".into(),
            "--coordinator".into(),
            "https://login1:50051".into(),
            "--data-dir".into(),
            "/data/it's here".into(),
        ]);
        assert!(s.starts_with("#!/bin/sh\n"), "{s}");
        assert!(
            s.contains(r"exec '/shared/bin/worker' '--coordinator' 'https://login1:50051' '--data-dir' '/data/it'\''s here' --name ")
                && s.contains("\"slurm-$SLURM_JOB_ID\""),
            "{s}"
        );
    }
}
