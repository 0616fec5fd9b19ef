//! One job in its own child process, so that a panic, an abort inside libtorch or running out
//! of memory fails that job and never the daemon, and cancelling frees all of its memory.
//!
//! The child is this same binary (`worker run-job`); it reads the [`TrainSpec`] as JSON on
//! stdin and writes one [`Event`] per line on stdout. Logs go to stderr, whose tail becomes the
//! error message if the child dies without reporting an outcome.

use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;

use common::{CheckpointEvery, DeviceSpec, EpochMetrics, Outcome, TrainOutcome, TrainSpec};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::sync::{mpsc, watch};

use crate::train;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Epoch(EpochMetrics),
    /// The checkpoint holding this many epochs is in place.
    Checkpoint(u32),
    Outcome(TrainOutcome),
}

/// Writes one event as a line on stdout (from the training thread or the checkpoint writer's).
fn emit(e: &Event) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, e)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// The child's side: train `spec` and write events to stdout.
pub fn child_main(spec: &TrainSpec, opts: &train::Options) -> anyhow::Result<()> {
    let init_start_ms = common::metrics::now_ms();
    let opts = train::Options {
        on_checkpoint: Some(train::CheckpointHook(std::sync::Arc::new(|epoch| {
            let _ = emit(&Event::Checkpoint(epoch));
        }))),
        ..opts.clone()
    };
    let result = train::run(spec, &opts, &mut |m| {
        if let Err(e) = emit(&Event::Epoch(m.clone())) {
            // Nobody reads our results any more (the daemon is gone): stop training now.
            tracing::error!(error = %e, "cannot report to the daemon; exiting");
            std::process::exit(1);
        }
    });
    let outcome = result.unwrap_or_else(|e| TrainOutcome {
        // Failed before training began (no data, say): the run ends where it started.
        clock: Some(common::RunClock {
            init_start_ms,
            run_start_ms: None,
            run_stop_ms: common::metrics::now_ms(),
        }),
        ..TrainOutcome::failed(
            crate::device::spec_of(opts.device),
            format!("{e:#}"),
            Vec::new(),
        )
    });
    emit(&Event::Outcome(outcome))?;
    Ok(())
}

/// What a job process reports as it goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    Epoch(EpochMetrics),
    /// Its checkpoint now holds this many epochs.
    Checkpoint(u32),
}

/// How to start job children.
#[derive(Debug, Clone)]
pub struct Launcher {
    pub exe: PathBuf,
    pub data_dir: PathBuf,
    pub device: DeviceSpec,
    /// libtorch intra-op threads per job; 0 = libtorch's default.
    pub threads: usize,
    /// Jobs' threads outnumber the cores: OpenMP threads sleep instead of spinning while they
    /// wait (`OMP_WAIT_POLICY=PASSIVE`, unless the worker's environment sets it).
    pub passive_wait: bool,
    /// `--layout` and `--kernels`, passed on.
    pub engine: train::engine::Wanted,
    /// The daemon's own `--log-format`, so its log reads alike throughout.
    pub log_format: orchestrator_proto::telemetry::LogFormat,
    /// Jobs checkpoint to `<dir>/<job id>.ckpt` and resume from it after a crash.
    pub checkpoint_dir: PathBuf,
    /// `checkpoint_dir` is the coordinator's own checkpoint folder (a worker it started on its
    /// machine): checkpoints are neither uploaded nor downloaded, as they are already there.
    pub checkpoints_shared: bool,
    /// Each job's output also goes to `<dir>/<job id>.log` (appended to, one section per
    /// attempt), besides the daemon's own log.
    pub job_log_dir: Option<PathBuf>,
}

/// Keeps the last bytes of stderr for the error message.
const STDERR_TAIL: usize = 4000;

impl Launcher {
    /// Runs `spec` in a child process, checkpointing as `every` says. Every finished epoch and
    /// written checkpoint is sent on `progress`; setting `cancel` to true kills the child.
    /// Always returns an outcome: a child that crashed or was cancelled yields a failed one
    /// with the reason.
    pub async fn run(
        &self,
        spec: &TrainSpec,
        every: CheckpointEvery,
        progress: mpsc::Sender<Progress>,
        mut cancel: watch::Receiver<bool>,
    ) -> TrainOutcome {
        let failed =
            |why: String, epochs: Vec<EpochMetrics>| TrainOutcome::failed(self.device, why, epochs);
        let checkpoint = self.checkpoint_path(spec);
        let mut child = match self.command(spec, &checkpoint, every).spawn() {
            Ok(c) => c,
            Err(e) => {
                return failed(
                    format!("cannot start job process {}: {e}", self.exe.display()),
                    vec![],
                )
            }
        };
        let spec_json = serde_json::to_vec(spec).expect("TrainSpec always serializes");
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let job_log = self.job_log(spec);
        let stderr_tail = tokio::spawn(pass_through(stderr, job_log));
        // A spec is a few hundred bytes: the pipe buffer takes it whole.
        let _ = stdin.write_all(&spec_json).await;
        drop(stdin);

        let mut lines = BufReader::new(stdout).lines();
        let mut seen = Vec::new();
        let mut outcome = None;
        loop {
            tokio::select! {
                line = lines.next_line() => match line {
                    Ok(Some(line)) => match serde_json::from_str::<Event>(&line) {
                        Ok(Event::Epoch(m)) => {
                            seen.push(m.clone());
                            let _ = progress.send(Progress::Epoch(m)).await;
                        }
                        Ok(Event::Checkpoint(n)) => {
                            let _ = progress.send(Progress::Checkpoint(n)).await;
                        }
                        Ok(Event::Outcome(o)) => outcome = Some(o),
                        Err(e) => tracing::warn!(error = %e, line, "unexpected output from job process"),
                    },
                    _ => break,
                },
                changed = cancel.changed() => {
                    if changed.is_err() || *cancel.borrow() {
                        let _ = child.kill().await;
                        return failed("cancelled".into(), seen);
                    }
                }
            }
        }
        let status = child.wait().await;
        let tail = stderr_tail.await.unwrap_or_default();
        match (outcome, status) {
            (Some(o), _) => {
                if o.status == Outcome::Succeeded {
                    let _ = std::fs::remove_file(&checkpoint);
                }
                o
            }
            (None, Ok(status)) => failed(
                format!(
                    "job process exited with {status} before finishing: {}",
                    last_lines(&tail)
                ),
                seen,
            ),
            (None, Err(e)) => failed(format!("job process lost: {e}"), seen),
        }
    }

    /// The job's log file, opened for appending with a line that starts this attempt; None
    /// without a log folder, or (after a warning) when it cannot be written.
    fn job_log(&self, spec: &TrainSpec) -> Option<tokio::fs::File> {
        let dir = self.job_log_dir.as_ref()?;
        let path = dir.join(format!("{}.log", spec.id()));
        let opened = std::fs::create_dir_all(dir).and_then(|()| {
            let mut f = std::os::unix::fs::OpenOptionsExt::mode(
                std::fs::OpenOptions::new().create(true).append(true),
                0o600,
            )
            .open(&path)?;
            let host = orchestrator_proto::host::hostname();
            let started = common::metrics::now_ms();
            writeln!(
                f,
                "== attempt started at {started} ms (Unix time) on {host}, device {}",
                self.device
            )?;
            Ok(f)
        });
        match opened {
            Ok(f) => Some(tokio::fs::File::from_std(f)),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot write the job's log");
                None
            }
        }
    }

    /// Where the job of `spec` checkpoints on this worker.
    pub fn checkpoint_path(&self, spec: &TrainSpec) -> PathBuf {
        self.checkpoint_dir.join(format!("{}.ckpt", spec.id()))
    }

    fn command(
        &self,
        spec: &TrainSpec,
        checkpoint: &std::path::Path,
        every: CheckpointEvery,
    ) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.arg("run-job")
            .arg("--checkpoint")
            .arg(checkpoint)
            .arg("--checkpoint-every")
            .arg(every.to_string())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--device")
            .arg(self.device.to_string())
            .arg("--threads")
            .arg(self.threads.to_string())
            .arg("--layout")
            .arg(self.engine.layout.map_or("auto", |l| l.as_str()))
            .arg("--kernels")
            .arg(self.engine.kernels.map_or("auto", |k| k.as_str()))
            .arg("--log-format")
            .arg(self.log_format.as_str())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if self.passive_wait && std::env::var_os("OMP_WAIT_POLICY").is_none() {
            cmd.env("OMP_WAIT_POLICY", "PASSIVE");
        }
        if spec.deterministic && self.device != DeviceSpec::Cpu {
            // cuBLAS is only deterministic with a fixed workspace (CUDA's documentation).
            cmd.env("CUBLAS_WORKSPACE_CONFIG", ":4096:8");
        }
        cmd
    }
}

/// Passes the child's log lines through to the daemon's stderr (so they land in its log) and
/// to the job's own log, if any, and returns the last [`STDERR_TAIL`] bytes of them.
async fn pass_through(
    stderr: tokio::process::ChildStderr,
    mut job_log: Option<tokio::fs::File>,
) -> String {
    let mut lines = BufReader::new(stderr).lines();
    let mut tail = VecDeque::new();
    let mut size = 0;
    while let Ok(Some(line)) = lines.next_line().await {
        eprintln!("{line}");
        if let Some(f) = job_log.as_mut() {
            if f.write_all(format!("{line}\n").as_bytes()).await.is_err() {
                job_log = None;
            }
        }
        size += line.len() + 1;
        tail.push_back(line);
        while size > STDERR_TAIL {
            size -= tail.pop_front().map_or(0, |l| l.len() + 1);
        }
    }
    Vec::from(tail).join("\n")
}

fn last_lines(tail: &str) -> String {
    let lines: Vec<&str> = tail.lines().rev().take(8).collect();
    let text = lines.into_iter().rev().collect::<Vec<_>>().join("\n");
    if text.trim().is_empty() {
        "no output on stderr".into()
    } else {
        text
    }
}
