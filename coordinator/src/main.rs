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

use cli::{exit, Cli, Cmd, Failure, Listen};
use orchestrator_proto::telemetry::{announce, fail, LogFormat};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log = cli.log_format;
    match try_main(cli) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            fail(log, "coordinator", &failure.to_string());
            ExitCode::from(failure.exit_code())
        }
    }
}

fn try_main(cli: Cli) -> Result<u8, Failure> {
    let log = cli.log_format;
    // A live display on a terminal, unless logs are asked for (JSON, or RUST_LOG set).
    let display = cli.cmd.is_none()
        && log == LogFormat::Text
        && std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("RUST_LOG").is_none();
    orchestrator_proto::telemetry::init_tracing(log, if display { "warn" } else { "info" });
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let env = cli::Env {
        worker_bin: std::env::var_os("WORKER_BIN").map(PathBuf::from),
        author: std::env::var("DLGRID_AUTHOR").ok(),
        author_email: std::env::var("DLGRID_AUTHOR_EMAIL").ok(),
    };
    match cli.cmd {
        Some(Cmd::Report { state, out }) => report(&existing(state)?, &out),
        Some(Cmd::Uncancel { state, jobs, all }) => uncancel(&existing(state)?, jobs, all),
        Some(Cmd::Compare { a, b, out }) => compare(&a, &b, out.as_deref()),
        Some(Cmd::Plan {
            grid,
            out,
            state,
            rerun,
        }) => plan(&grid, out, state, rerun),
        Some(Cmd::Status { conn }) => Ok(rt.block_on(control::status(conn)).map(|_| exit::OK)?),
        Some(Cmd::Cancel { conn, jobs, all }) => Ok(rt
            .block_on(control::cancel(conn, jobs, all))
            .map(|_| exit::OK)?),
        None => {
            let (cfg, listen) = cli::validate(cli.run, env)?;
            let cfg = Config {
                log_format: cli.log_format,
                display,
                ..cfg
            };
            rt.block_on(run(cfg, listen))
        }
    }
}

/// `--state FILE` of a command that reads it: bad input when there is no such file.
fn existing(state: PathBuf) -> Result<PathBuf, Failure> {
    if state.is_file() {
        Ok(state)
    } else {
        Err(Failure::BadInput(format!(
            "--state {}: no such file",
            state.display()
        )))
    }
}

/// Runs the grid; returns the exit code.
async fn run(cfg: Config, listen: Listen) -> Result<u8, Failure> {
    // The machine cannot run what was asked (its GPUs unusable): bad input, like a wrong
    // flag, found before anything starts.
    let local =
        coordinator::plan_local_workers(&cfg).map_err(|e| Failure::BadInput(format!("{e:#}")))?;
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
    let ending = coordinator::run(cfg, local, listener, http, shutdown).await?;
    let (said, code) = match ending {
        Ending::Finished { counts: c } => {
            let cancelled_note = match c.cancelled {
                0 => String::new(),
                n => format!(
                    ", {n} cancelled (`coordinator uncancel --state {} --all` runs them again)",
                    out.join("state.db").display()
                ),
            };
            let failed_note = if c.failed > 0 && !strict {
                format!(
                    "; failed jobs are results, so this exits {}: --fail-on-job-failure makes it \
                     exit {} (each job's log is in {})",
                    exit::OK,
                    exit::FAILED_JOBS,
                    out.join("logs").join("jobs").display()
                )
            } else {
                String::new()
            };
            let held_note = match c.held {
                0 => String::new(),
                n => format!("; the seed race decided without {n} seed(s)"),
            };
            let said = format!(
                "grid finished: {} succeeded, {} failed, {} diverged{cancelled_note}{held_note}; report in {}{failed_note}",
                c.succeeded,
                c.failed,
                c.diverged,
                out.join("report.md").display()
            );
            let code = if c.cancelled > 0 {
                exit::CANCELLED_JOBS
            } else if strict && c.failed > 0 {
                exit::FAILED_JOBS
            } else {
                exit::OK
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

/// A run's results, from a results.json or a state file, which may come from anyone: opened
/// read-only (a state file through a private copy) and every job id checked before it can name
/// a file.
fn load_results(path: &Path) -> Result<report::Results, Failure> {
    let results = load_unchecked(path)?;
    for job in &results.jobs {
        common::JobId::parse(job.id.as_str())
            .map_err(|e| Failure::BadInput(format!("{}: {e}", path.display())))?;
    }
    Ok(results)
}

fn load_unchecked(path: &Path) -> Result<report::Results, Failure> {
    if !path.is_file() {
        return Err(Failure::BadInput(format!(
            "{}: no such file",
            path.display()
        )));
    }
    if path.extension().is_some_and(|e| e == "json") {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        return serde_json::from_str(&text).map_err(|e| {
            Failure::BadInput(format!(
                "{}: not a results.json of this tool: {e}",
                path.display()
            ))
        });
    }
    let state =
        State::open_existing(path).with_context(|| format!("reading state {}", path.display()))?;
    Ok(state.results())
}

/// `coordinator compare A B`: the comparison, printed or written to `out`.
fn compare(a: &Path, b: &Path, out: Option<&Path>) -> Result<u8, Failure> {
    let (ra, rb) = (load_results(a)?, load_results(b)?);
    let md = report::compare::compare(&ra, &rb, &a.display().to_string(), &b.display().to_string());
    match out {
        Some(path) => {
            std::fs::write(path, md).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("coordinator: comparison written to {}", path.display());
        }
        None => print!("{md}"),
    }
    Ok(exit::OK)
}

/// `coordinator plan`: the plan of a run, printed; nothing is started or written.
fn plan(
    grid_file: &Path,
    out: Option<PathBuf>,
    state: Option<PathBuf>,
    rerun: bool,
) -> Result<u8, Failure> {
    let grid = common::Grid::from_file(grid_file).map_err(|e| Failure::BadInput(e.to_string()))?;
    let out = out.unwrap_or_else(|| PathBuf::from("runs").join(grid.name()));
    let state_path = state.unwrap_or_else(|| out.join("state.db"));
    let (records, slots, source) = if state_path.is_file() {
        let s = State::open_existing(&state_path)
            .with_context(|| format!("reading state {}", state_path.display()))?;
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
    Ok(exit::OK)
}

/// `coordinator uncancel`: cancelled jobs of `state` pending again (unknown ids: bad input).
fn uncancel(state: &Path, jobs: Vec<String>, all: bool) -> Result<u8, Failure> {
    let _lock = coordinator::lock_state(state)?;
    let mut store = coordinator::store::Store::open(state, coordinator::store::Durability::Full)
        .map_err(anyhow::Error::from)?;
    let ids = (!all).then_some(jobs.as_slice());
    match store.uncancel(ids) {
        Ok(n) => {
            println!("{n} job(s) uncancelled: the next run of the grid runs them");
            Ok(exit::OK)
        }
        Err(e @ coordinator::store::StoreError::UnknownJobs(_)) => {
            Err(Failure::BadInput(e.to_string()))
        }
        Err(e) => Err(anyhow::Error::from(e).into()),
    }
}

/// `coordinator report`: every report file rendered again from a state or a results.json.
fn report(state: &Path, out: &Path) -> Result<u8, Failure> {
    let results = load_results(state)?;
    output::write_all(&results, out)?;
    eprintln!("coordinator: report written to {}", out.display());
    Ok(exit::OK)
}
