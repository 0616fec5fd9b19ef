//! `coordinator`: runs a grid (`--grid`), re-renders reports (`report`), shows status
//! (`status`) and cancels jobs (`cancel`). Flags are checked in [`cli`]; the work is the
//! library's.

mod cli;
mod control;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use coordinator::state::State;
use coordinator::{output, Config, Ending};

use cli::{BadInput, Cli, Cmd, Listen};
use orchestrator_proto::telemetry::{announce, fail, LogFormat};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log = cli.log_format;
    // A live display on a terminal, unless logs are asked for (JSON, or RUST_LOG set).
    let display = cli.cmd.is_none()
        && log == LogFormat::Text
        && std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("RUST_LOG").is_none();
    orchestrator_proto::telemetry::init_tracing(log, if display { "warn" } else { "info" });
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("coordinator: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let env = cli::Env {
        worker_bin: std::env::var_os("WORKER_BIN").map(PathBuf::from),
        author: std::env::var("DLGRID_AUTHOR").ok(),
        author_email: std::env::var("DLGRID_AUTHOR_EMAIL").ok(),
    };
    let result = match cli.cmd {
        Some(Cmd::Report { state, .. }) if !state.is_file() => Err(Ok(BadInput(format!(
            "--state {}: no such file",
            state.display()
        )))),
        Some(Cmd::Report { state, out }) => report(&state, &out),
        Some(Cmd::Uncancel { state, .. }) if !state.is_file() => Err(Ok(BadInput(format!(
            "--state {}: no such file",
            state.display()
        )))),
        Some(Cmd::Uncancel { state, jobs, all }) => uncancel(&state, jobs, all),
        Some(Cmd::Compare { a, b, out }) => compare(&a, &b, out.as_deref()),
        Some(Cmd::Plan {
            grid,
            out,
            state,
            rerun,
        }) => plan(&grid, out, state, rerun),
        Some(Cmd::Status { conn }) => rt.block_on(control::status(conn)).map(|_| 0).map_err(Err),
        Some(Cmd::Cancel { conn, jobs, all }) => rt
            .block_on(control::cancel(conn, jobs, all))
            .map(|_| 0)
            .map_err(Err),
        None => match cli::validate(cli.run, env) {
            Ok((cfg, listen)) => {
                let cfg = Config {
                    log_format: cli.log_format,
                    display,
                    ..cfg
                };
                rt.block_on(run(cfg, listen)).map_err(Err)
            }
            Err(bad) => Err(Ok(bad)),
        },
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(Ok(BadInput(msg))) => {
            fail(log, "coordinator", &msg);
            ExitCode::from(2)
        }
        Err(Err(e)) => {
            fail(log, "coordinator", &format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

/// Exit codes of a run (README: What it does).
const FAILED_JOBS: u8 = 3;
const CANCELLED_JOBS: u8 = 4;

/// Runs the grid; returns the exit code.
async fn run(cfg: Config, listen: Listen) -> anyhow::Result<u8> {
    let local = match coordinator::plan_local_workers(&cfg) {
        Ok(plan) => plan,
        Err(e) => {
            // The machine cannot run what was asked (its GPUs unusable): bad input, like a
            // wrong flag, found before anything starts.
            fail(cfg.log_format, "coordinator", &format!("{e:#}"));
            return Ok(2);
        }
    };
    let listener = tokio::net::TcpListener::bind(listen.grpc)
        .await
        .with_context(|| format!("cannot listen on {} (--listen)", listen.grpc))?;
    let http = match listen.http {
        Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen on {addr} (--http; `--http off` disables the live report)")
        })?),
        None => None,
    };
    let (out, log, strict) = (cfg.out.clone(), cfg.log_format, cfg.fail_on_job_failure);
    let signal = std::sync::Arc::new(std::sync::Mutex::new(None));
    let heard = signal.clone();
    let shutdown = async move {
        let which = orchestrator_proto::shutdown::shutdown_which().await;
        *heard.lock().unwrap_or_else(|p| p.into_inner()) = Some(which);
    };
    let (said, code) = match coordinator::run(cfg, local, listener, http, shutdown).await? {
        Ending::Finished { counts: c } => {
            let cancelled_note = match c.cancelled {
                0 => String::new(),
                n => format!(", {n} cancelled (`coordinator uncancel` runs them again)"),
            };
            let said = format!(
                "grid finished: {} succeeded, {} failed, {} diverged{cancelled_note}; report in {}",
                c.succeeded,
                c.failed,
                c.diverged,
                out.join("report.md").display()
            );
            let code = if c.cancelled > 0 {
                CANCELLED_JOBS
            } else if strict && c.failed > 0 {
                FAILED_JOBS
            } else {
                0
            };
            (said, code)
        }
        Ending::Interrupted(c) => {
            let said = format!(
                "interrupted with {}/{} jobs done; run the same command to resume",
                c.finished(),
                c.total()
            );
            let which = *signal.lock().unwrap_or_else(|p| p.into_inner());
            let code = which.map_or(130, orchestrator_proto::shutdown::Signal::exit_code);
            (said, code)
        }
    };
    announce(log, "coordinator", &said);
    Ok(code)
}

/// A run's results, from a results.json or a state file.
fn load_results(path: &Path) -> Result<report::Results, Result<BadInput, anyhow::Error>> {
    if !path.is_file() {
        return Err(Ok(BadInput(format!("{}: no such file", path.display()))));
    }
    if path.extension().is_some_and(|e| e == "json") {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading {}", path.display()))
            .map_err(Err)?;
        return serde_json::from_str(&text).map_err(|e| {
            Ok(BadInput(format!(
                "{}: not a results.json of this tool: {e}",
                path.display()
            )))
        });
    }
    let state = State::open_existing(path)
        .with_context(|| format!("reading state {}", path.display()))
        .map_err(Err)?;
    Ok(state.results())
}

/// `coordinator compare A B`: the comparison, printed or written to `out`.
fn compare(a: &Path, b: &Path, out: Option<&Path>) -> Result<u8, Result<BadInput, anyhow::Error>> {
    let (ra, rb) = (load_results(a)?, load_results(b)?);
    let md = report::compare::compare(&ra, &rb, &a.display().to_string(), &b.display().to_string());
    match out {
        Some(path) => {
            std::fs::write(path, md)
                .with_context(|| format!("writing {}", path.display()))
                .map_err(Err)?;
            eprintln!("coordinator: comparison written to {}", path.display());
        }
        None => print!("{md}"),
    }
    Ok(0)
}

/// `coordinator plan`: the plan of a run, printed; nothing is started or written.
fn plan(
    grid_file: &Path,
    out: Option<PathBuf>,
    state: Option<PathBuf>,
    rerun: bool,
) -> Result<u8, Result<BadInput, anyhow::Error>> {
    let grid = domain::Grid::from_file(grid_file).map_err(|e| Ok(BadInput(e.to_string())))?;
    let out = out.unwrap_or_else(|| PathBuf::from("runs").join(grid.name()));
    let state_path = state.unwrap_or_else(|| out.join("state.db"));
    let (records, slots, source) = if state_path.is_file() {
        let s = State::open_existing(&state_path)
            .with_context(|| format!("reading state {}", state_path.display()))
            .map_err(Err)?;
        let workers = s.worker_statuses(std::time::Instant::now());
        let slots = workers.iter().map(|w| w.env.info.slots).sum();
        (
            s.records(),
            slots,
            format!("state {}", state_path.display()),
        )
    } else {
        let none = format!("no state yet at {}", state_path.display());
        (Vec::new(), 0, none)
    };
    println!(
        "plan for grid {} ({}), {source}",
        grid.name(),
        grid_file.display()
    );
    print!(
        "{}",
        coordinator::plan::render(&grid, &records, slots, rerun)
    );
    Ok(0)
}

/// `coordinator uncancel`: cancelled jobs of `state` pending again (unknown ids: bad input).
fn uncancel(
    state: &Path,
    jobs: Vec<String>,
    all: bool,
) -> Result<u8, Result<BadInput, anyhow::Error>> {
    let _lock = coordinator::lock_state(state).map_err(Err)?;
    let mut store = coordinator::store::Store::open(state, coordinator::store::Durability::Full)
        .map_err(|e| Err(anyhow::Error::from(e)))?;
    let ids = (!all).then_some(jobs.as_slice());
    match store.uncancel(ids) {
        Ok(n) => {
            println!("{n} job(s) uncancelled: the next run of the grid runs them");
            Ok(0)
        }
        Err(e @ coordinator::store::StoreError::UnknownJobs(_)) => Err(Ok(BadInput(e.to_string()))),
        Err(e) => Err(Err(e.into())),
    }
}

/// `coordinator report`: every report file rendered again from a state or a results.json.
fn report(state: &Path, out: &Path) -> Result<u8, Result<BadInput, anyhow::Error>> {
    let results = load_results(state)?;
    output::write_all(&results, out).map_err(Err)?;
    eprintln!("coordinator: report written to {}", out.display());
    Ok(0)
}
