//! `worker`: the daemon (`worker --coordinator URL`), one job alone (`worker train`), and the
//! per-job child process (`worker run-job`, internal). The environment is read here and
//! nowhere else.

mod cli;
mod commands;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Cmd};

/// What the process takes from its environment, passed down as configuration.
pub struct Env {
    /// `WORKER_DATASET_MIRRORS=URL[,URL...]`: mirrors laid out like `--data-dir`, used instead
    /// of the canonical dataset sources.
    pub mirrors: Option<Vec<String>>,
    /// `WORKER_FAULT=abort-after-epoch:N`: a testing hook that aborts a job after epoch N.
    pub fault: Option<u32>,
    /// `$XDG_CACHE_HOME/dlgrid` or `~/.cache/dlgrid`: default datasets and checkpoints.
    pub cache: PathBuf,
    /// `DLGRID_MAX_CPU_ISA=avx512|avx2|aten`: our kernel sets above this one are treated as
    /// missing, as on an older CPU (the counterpart of oneDNN's `ONEDNN_MAX_CPU_ISA` and ATen's
    /// `ATEN_CPU_CAPABILITY`); an unknown value is an error.
    pub max_isa: Option<Result<common::KernelSet, String>>,
}

impl Env {
    fn read() -> Env {
        let var = |name| std::env::var(name).ok();
        let mirrors = var("WORKER_DATASET_MIRRORS").map(|list| {
            list.split(',')
                .map(|m| m.trim().trim_end_matches('/').to_string())
                .filter(|m| !m.is_empty())
                .collect()
        });
        let fault =
            var("WORKER_FAULT").and_then(|f| f.strip_prefix("abort-after-epoch:")?.parse().ok());
        let cache = worker::user_cache_dir();
        let max_isa = var("DLGRID_MAX_CPU_ISA").map(|v| {
            v.to_ascii_lowercase()
                .parse()
                .map_err(|e| format!("DLGRID_MAX_CPU_ISA: {e}"))
        });
        Env {
            mirrors,
            fault,
            cache,
            max_isa,
        }
    }
}

fn main() -> ExitCode {
    worker::alloc::keep_freed_memory();
    let cli = Cli::parse();
    let log = cli.log_format;
    orchestrator_proto::telemetry::init_tracing(log, "info");
    let env = Env::read();
    match &env.max_isa {
        Some(Ok(cap)) => worker::ops::cap_kernels(*cap),
        Some(Err(e)) => {
            orchestrator_proto::telemetry::fail(log, "worker", e);
            return ExitCode::from(2);
        }
        None => {}
    }
    let result = match cli.cmd {
        Some(Cmd::Train(args)) => commands::train(args, &env),
        Some(Cmd::RunJob {
            common,
            threads,
            checkpoint,
            checkpoint_every,
        }) => commands::run_job(common, threads, checkpoint, checkpoint_every, &env),
        Some(Cmd::Preflight { json }) => commands::preflight(json),
        None => commands::daemon(cli.daemon, log, &env),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            orchestrator_proto::telemetry::fail(log, "worker", &format!("{e:#}"));
            ExitCode::from(2)
        }
    }
}
