//! The three ways the binary runs: one job alone, one job as a daemon's child, the daemon.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use common::{CheckpointEvery, Job, JobRecord, Outcome, RunFacts, TrainSpec, WorkerInfo};
use orchestrator_proto::host;
use worker::data::DataSource;
use worker::job_process::{self, Launcher};
use worker::{daemon, device, preflight, train};

use crate::cli::{CommonArgs, DaemonArgs, TrainArgs};
use crate::Env;

fn options(
    common: &CommonArgs,
    device: device::Resolved,
    checkpoint: Option<PathBuf>,
    checkpoint_every: CheckpointEvery,
    env: &Env,
) -> train::Options {
    train::Options {
        data: DataSource {
            dir: common
                .data_dir
                .clone()
                .unwrap_or_else(|| env.cache.join("datasets")),
            mirrors: env.mirrors.clone(),
        },
        device: device.device,
        device_uuid: device.gpu.map(|g| g.uuid),
        checkpoint,
        checkpoint_every,
        on_checkpoint: None,
        engine: common.engine(),
        abort_after_epoch: env.fault,
    }
}

fn set_threads(threads: usize) {
    if threads > 0 {
        tch::set_num_threads(threads as i32);
    }
}

/// `worker train`: one job, its epochs printed as they finish, then its record.
pub fn train(a: TrainArgs, env: &Env) -> anyhow::Result<ExitCode> {
    let (spec, target) = a.spec()?;
    let dev = device::resolve(a.common.device)?;
    if spec.deterministic && dev.device.is_cuda() {
        // cuBLAS is only deterministic with a fixed workspace; set before any CUDA work, while
        // this process has one thread.
        std::env::set_var("CUBLAS_WORKSPACE_CONFIG", ":4096:8");
    }
    set_threads(worker::cpus::per_job(a.threads, 1));
    let opts = options(
        &a.common,
        dev,
        a.checkpoint.clone(),
        a.checkpoint_every,
        env,
    );
    let job = Job::new(spec, target);
    let json = a.json;
    let outcome = train::run(&job.spec, &opts, &mut |m| {
        if !json {
            println!(
                "epoch {:>3}  train {:>8.2}s  train loss {:.4}  test loss {:.4}  test acc {:.2}%",
                m.epoch,
                m.train_seconds,
                m.train_loss,
                m.test_loss,
                100.0 * m.test_accuracy
            );
        }
    })?;
    let failed = outcome.status != Outcome::Succeeded;
    let status = outcome.status.into();
    let record = JobRecord::new(
        &job,
        status,
        RunFacts::of_outcome(outcome, Some(host::hostname())),
    );
    if json {
        println!("{}", serde_json::to_string_pretty(&record)?);
    } else {
        print_summary(&record, target);
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn print_summary(r: &JobRecord, target: f64) {
    println!(
        "{}: {}  params {}  final acc {}  latency {} ms/sample  first epoch at {:.1}%: {}",
        r.id,
        r.status,
        r.param_count.unwrap_or(0),
        r.final_test_accuracy
            .map_or("-".into(), |a| format!("{:.2}%", 100.0 * a)),
        r.latency_ms_per_sample
            .map_or("-".into(), |l| format!("{l:.3}")),
        100.0 * target,
        r.first_epoch_at_target
            .map_or("never".into(), |e| e.to_string()),
    );
    if let Some(e) = &r.error {
        println!("error: {e}");
    }
}

/// Exits the process as soon as its parent is gone: at once by the kernel's parent-death
/// signal on Linux, and by a check twice a second everywhere (which also covers a parent that
/// died before the signal was asked for).
fn exit_with_parent() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(PR_SET_PDEATHSIG) only sets which signal this process gets when its parent
    // thread exits; SIGTERM's default action ends the process.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
    }
    let parent = std::os::unix::process::parent_id();
    std::thread::spawn(move || loop {
        std::thread::sleep(std::time::Duration::from_millis(500));
        if std::os::unix::process::parent_id() != parent {
            tracing::warn!(parent, "parent process gone; exiting");
            std::process::exit(1);
        }
    });
}

/// `worker run-job`: the daemon's child for one job; the spec arrives as JSON on stdin.
pub fn run_job(
    common: CommonArgs,
    threads: usize,
    checkpoint: Option<PathBuf>,
    checkpoint_every: CheckpointEvery,
    env: &Env,
) -> anyhow::Result<ExitCode> {
    // A job whose daemon died (kill -9) must not train on as an orphan.
    exit_with_parent();
    set_threads(threads);
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("reading the job spec from stdin")?;
    let spec: TrainSpec = serde_json::from_str(&input).context("parsing the job spec")?;
    let dev = device::resolve_for_job(common.device)?;
    let opts = options(&common, dev, checkpoint, checkpoint_every, env);
    job_process::child_main(&spec, &opts)?;
    Ok(ExitCode::SUCCESS)
}

/// `worker preflight`: the GPU preflight's verdict, as text or JSON; exit 2 when the GPUs
/// cannot be used (the JSON then has `error`).
pub fn preflight(json: bool) -> anyhow::Result<ExitCode> {
    let verdict = preflight::check(&preflight::Facts::gather());
    if json {
        let out = match &verdict {
            Ok(v) => serde_json::json!({"gpus": v.gpus, "notes": v.notes, "error": null}),
            Err(e) => serde_json::json!({"gpus": [], "notes": [], "error": e}),
        };
        println!("{out}");
        return Ok(if verdict.is_ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        });
    }
    let v = verdict.map_err(|e| anyhow::anyhow!("GPU preflight: {e}"))?;
    for note in &v.notes {
        println!("{note}");
    }
    if v.gpus.is_empty() {
        println!("no GPU to train on: jobs run on the CPU");
    }
    for g in &v.gpus {
        println!(
            "cuda:{}  {}  {} MiB  {}",
            g.ordinal, g.name, g.memory_mb, g.uuid
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The token in `file`, if one is given.
fn token_of(file: Option<&std::path::Path>) -> anyhow::Result<Option<String>> {
    let token = file.map(orchestrator_proto::read_token_file);
    token.transpose().map_err(anyhow::Error::msg)
}

/// The daemon: serves a coordinator until its grid is finished or SIGTERM.
pub fn daemon(
    a: DaemonArgs,
    log_format: orchestrator_proto::telemetry::LogFormat,
    env: &Env,
) -> anyhow::Result<ExitCode> {
    if a.exit_with_parent {
        exit_with_parent();
    }
    let Some(coordinator) = a.coordinator else {
        anyhow::bail!(
            "give --coordinator URL to serve a coordinator, or use `worker train` (see --help)"
        );
    };
    let dev = device::resolve(a.common.device)?;
    let spec = device::spec_of(dev.device);
    let token = token_of(a.token_file.as_deref())?;
    let threads = match (a.threads, dev.device) {
        (t, tch::Device::Cpu) => worker::cpus::per_job(t, a.slots),
        (t, _) => t,
    };
    let passive_wait = threads > 0 && worker::cpus::oversubscribed(threads, a.slots);
    if passive_wait {
        tracing::warn!(threads, slots = a.slots, cores = worker::cpus::available(), "jobs' threads outnumber the cores: their OpenMP threads will wait passively (OMP_WAIT_POLICY=PASSIVE)");
    }
    let engine = a.common.engine();
    // A --kernels this CPU cannot run is refused now, not at every job.
    train::engine::candidates(engine, dev.device)?;
    let tls = orchestrator_proto::client::ClientTls {
        ca: a.tls_ca,
        cert: a.tls_cert,
        key: a.tls_key,
    };
    let cfg = daemon::Config {
        coordinator,
        token,
        token_file: a.token_file.clone(),
        tls,
        info: WorkerInfo {
            name: a
                .name
                .unwrap_or_else(|| format!("{}/{spec}", host::hostname())),
            hostname: host::hostname(),
            device: spec,
            device_name: dev.name(),
            libtorch_version: worker::LIBTORCH_VERSION.into(),
            slots: a.slots,
            memory_mb: dev.memory_mb(),
            slurm_job: common::worker::slurm_job_from_env(),
        },
        launcher: Launcher {
            exe: std::env::current_exe().context("locating the worker binary")?,
            data_dir: a
                .common
                .data_dir
                .unwrap_or_else(|| env.cache.join("datasets")),
            device: spec,
            threads,
            passive_wait,
            engine,
            log_format,
            checkpoint_dir: a
                .checkpoint_dir
                .unwrap_or_else(|| env.cache.join("checkpoints")),
            checkpoints_shared: a.shared_checkpoint_dir,
            job_log_dir: a.job_log_dir,
        },
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(daemon::run(
        cfg,
        orchestrator_proto::shutdown::shutdown_signal(),
    ))?;
    Ok(ExitCode::SUCCESS)
}
