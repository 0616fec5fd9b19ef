//! The training engine: one job, start to finish, on one device.
//!
//! The whole dataset is put on the device once; shuffling and augmentation happen there, and
//! the loss is accumulated on the device and read once per epoch, so a step never waits for
//! the host. The random generator is re-seeded from (seed, epoch) at the start of every epoch,
//! so an epoch's shuffle, dropout masks and augmentation are the same whether the job ran
//! straight through or resumed from a checkpoint.
//!
//! # Layout
//! - [`run`] (here): the epoch loop; [`step`]: one pass over the training set;
//!   [`augment`]: crop and flip on the device; [`evaluate`]: test metrics and latency;
//!   [`checkpoint`]: save and restore; [`host`]: CPU time and contention per epoch;
//!   [`engine`]: the layout and kernels, by measurement; [`engine_cache`]: the measured
//!   choices kept.

mod augment;
pub mod checkpoint;
mod contention;
pub mod engine;
mod engine_cache;
mod evaluate;
mod step;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use common::metrics::now_ms;
use common::{
    CheckpointEvery, Engine, EpochClock, EpochMetrics, JobId, Layout, Outcome, RunClock,
    TrainOutcome, TrainSpec,
};
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::Device;

use crate::data::{self, DataSource, DeviceSplit};
use crate::device::spec_of;
use crate::model;
use crate::optim::Optim;

/// Where and how to train.
#[derive(Debug, Clone)]
pub struct Options {
    pub data: DataSource,
    pub device: Device,
    /// The GPU's UUID, recorded with the outcome.
    pub device_uuid: Option<String>,
    /// Checkpoint file: written as `checkpoint_every` says, resumed from when it exists.
    pub checkpoint: Option<PathBuf>,
    pub checkpoint_every: CheckpointEvery,
    /// Called (from the writer thread) with the epoch of each checkpoint once it is in place.
    pub on_checkpoint: Option<CheckpointHook>,
    /// The layout and kernels asked for (`auto`, measured, where None).
    pub engine: engine::Wanted,
    /// Testing hook: abort the process right after this epoch's checkpoint is written, as a
    /// crash or a kill would (`WORKER_FAULT=abort-after-epoch:N`, read by `main`).
    pub abort_after_epoch: Option<u32>,
}

/// A callback for written checkpoints.
#[derive(Clone)]
pub struct CheckpointHook(pub Arc<dyn Fn(u32) + Send + Sync>);

impl std::fmt::Debug for CheckpointHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CheckpointHook")
    }
}

/// When a job's first attempt started, by the wall clock, milliseconds since the Unix epoch:
/// kept in its checkpoints, so a resumed job's run spans all its attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Started {
    pub init_ms: u64,
    pub run_ms: u64,
}

/// The data, model and optimizer of one job, ready to train.
struct Setup {
    train: DeviceSplit,
    test: DeviceSplit,
    vs: nn::VarStore,
    net: Box<dyn ModuleT>,
    opt: Optim,
    param_count: u64,
    engine: Engine,
}

fn setup(spec: &TrainSpec, opts: &Options, resumed: Option<Engine>) -> anyhow::Result<Setup> {
    let device = opts.device;
    if device.is_cuda() {
        crate::cuda::Backend {
            tf32: spec.tf32,
            deterministic: spec.deterministic,
        }
        .apply()?;
    }
    let raw = data::load(spec.dataset, &opts.data)?;
    let label =
        opts.device_uuid
            .as_deref()
            .unwrap_or(if device.is_cuda() { "cuda" } else { "cpu" });
    let cache = engine_cache::Cache::for_data(&opts.data.dir, &crate::user_cache_dir());
    let engine = engine::choose(spec, opts.engine, device, label, &raw, &cache, resumed)?;
    // Seeded after measuring (which draws from the generator), so the model starts the same
    // whatever was measured.
    tch::manual_seed(spec.seed as i64);
    let train = data::to_device(
        &raw.train,
        spec.train_limit,
        spec.dataset,
        device,
        engine.layout,
    )
    .context("moving the training set to the device")?;
    let test = data::to_device(
        &raw.test,
        spec.test_limit,
        spec.dataset,
        device,
        engine.layout,
    )
    .context("moving the test set to the device")?;
    let (vs, net, opt) = model_and_optimizer(spec, device, engine.layout)?;
    let param_count = model::param_count(&vs);
    Ok(Setup {
        train,
        test,
        vs,
        net,
        opt,
        param_count,
        engine,
    })
}

/// Job `spec`'s model (its weights drawn from the generator) and optimizer on `device`, the
/// convolution weights in `layout`.
fn model_and_optimizer(
    spec: &TrainSpec,
    device: Device,
    layout: Layout,
) -> anyhow::Result<(nn::VarStore, Box<dyn ModuleT>, Optim)> {
    let vs = nn::VarStore::new(device);
    let shape = spec.dataset.info().shape;
    let net = model::build(&vs.root(), spec.model, shape, spec.activation);
    if layout == Layout::ChannelsLast {
        weights_channels_last(&vs)?;
    }
    let opt = Optim::new(
        &vs,
        spec.optimizer,
        spec.learning_rate,
        spec.momentum,
        spec.weight_decay,
    );
    Ok((vs, net, opt))
}

/// Trains `spec`, calling `on_epoch` after each epoch's evaluation (also for epochs restored
/// from a checkpoint, so the caller always sees the whole series).
///
/// Errors (missing data, libtorch failures) are returned; a loss that becomes NaN or infinite
/// is not an error but an outcome with status `diverged`.
pub fn run(
    spec: &TrainSpec,
    opts: &Options,
    on_epoch: &mut dyn FnMut(&EpochMetrics),
) -> anyhow::Result<TrainOutcome> {
    let init_ms = now_ms();
    let id = spec.id();
    // Read once: the engine it trained with decides the set-up, its tensors restore it.
    let saved = read_checkpoint(opts, &id);
    let mut s = setup(
        spec,
        opts,
        saved.as_ref().and_then(|c| c.as_ref().ok()?.engine()),
    )?;
    // Our kernels (or aten's) as chosen, for every step and evaluation on this thread.
    let _kernels = crate::ops::use_kernels_on_this_thread(s.engine.kernels)?;
    let restored = resume(opts, &id, saved, &s.vs, &mut s.opt);
    let started = restored.started.unwrap_or(Started {
        init_ms,
        run_ms: now_ms(),
    });
    let mut epochs = restored.epochs;
    epochs.iter().for_each(&mut *on_epoch);
    let (param_count, engine) = (s.param_count, s.engine);
    let outcome = |status, epochs, latency, error| TrainOutcome {
        status,
        device: spec_of(opts.device),
        param_count,
        epochs,
        latency_ms_per_sample: latency,
        error,
        clock: Some(RunClock {
            init_start_ms: started.init_ms,
            run_start_ms: Some(started.run_ms),
            run_stop_ms: now_ms(),
        }),
        device_uuid: opts.device_uuid.clone(),
        engine: Some(engine),
    };
    let mut writer = checkpoint_writer(opts);
    let mut last_checkpoint = Instant::now();
    for epoch in epochs.len() as u32 + 1..=spec.epochs {
        let m = match train_and_evaluate(&mut s, spec, epoch, &epochs)? {
            Ok(m) => m,
            Err(why) => return Ok(outcome(Outcome::Diverged, epochs, None, Some(why))),
        };
        epochs.push(m.clone());
        on_epoch(&m);
        if let Some(w) = writer.as_mut() {
            if opts
                .checkpoint_every
                .due(epoch, last_checkpoint.elapsed().as_secs_f64())
            {
                w.save(&id, &s.vs, &s.opt, &epochs, started, s.engine)?;
                last_checkpoint = Instant::now();
            }
            if opts.abort_after_epoch == Some(epoch) {
                w.wait()?;
            }
        }
        if opts.abort_after_epoch == Some(epoch) {
            tracing::error!(epoch, "WORKER_FAULT: aborting on purpose");
            std::process::abort();
        }
    }
    if let Some(w) = writer.as_mut() {
        w.wait()?;
    }
    let latency = evaluate::latency_ms_per_sample(
        &*s.net,
        &s.test,
        spec.latency_samples,
        spec.precision,
        opts.device,
    )?;
    Ok(outcome(Outcome::Succeeded, epochs, Some(latency), None))
}

/// One epoch of training and its evaluation: its metrics, or why it diverged.
fn train_and_evaluate(
    s: &mut Setup,
    spec: &TrainSpec,
    epoch: u32,
    done: &[EpochMetrics],
) -> anyhow::Result<Result<EpochMetrics, String>> {
    tch::manual_seed(epoch_seed(spec.seed, epoch));
    let start_ms = now_ms();
    let probe = contention::Probe::start(tch::get_num_threads().max(1) as usize);
    let clock = Instant::now();
    let loss_sum = step::train_epoch(&*s.net, &mut s.opt, &s.train, spec)?;
    // Reading the loss waits for the device, so the clock stops after the last step.
    let train_loss = loss_sum / s.train.samples() as f64;
    let host = probe.finish();
    warn_if_sharing(epoch, host.as_ref());
    let train_seconds =
        done.last().map_or(0.0, |m| m.train_seconds) + clock.elapsed().as_secs_f64();
    let train_end_ms = now_ms();
    if !train_loss.is_finite() {
        return Ok(Err(format!(
            "training loss became {train_loss} in epoch {epoch}"
        )));
    }
    let (test_loss, test_accuracy) = evaluate::evaluate(&*s.net, &s.test, spec.precision)?;
    Ok(Ok(EpochMetrics {
        epoch,
        train_seconds,
        train_loss,
        test_loss,
        test_accuracy,
        clock: Some(EpochClock {
            start_ms,
            train_end_ms,
            eval_end_ms: now_ms(),
        }),
        host,
    }))
}

/// Says, on the job's log, when other processes wanted this job's cores all through an epoch
/// while it ran several threads: each side's spinning threads then slow the other several-fold
/// (see [`crate::cpus`]), and giving each its share of the cores is the remedy.
fn warn_if_sharing(epoch: u32, host: Option<&common::EpochHost>) {
    let threads = tch::get_num_threads();
    if let Some(h) = host.filter(|h| h.contention >= 1.0 && threads > 1) {
        tracing::warn!(
            epoch,
            threads,
            contention = format!("{:.1}", h.contention),
            "other processes competed for this job's cores all through the epoch; training \
             processes sharing cores slow each other several-fold: give each worker its share \
             (--threads, or --slots on one worker)"
        );
    }
}

/// Puts every 4-d weight (the convolutions') in channels-last memory, as the images are in that
/// layout, so the convolutions do not convert them at every step (as `model.to(memory_format=
/// torch.channels_last)` does in PyTorch). Optimizer state made later follows the layout.
fn weights_channels_last(vs: &nn::VarStore) -> anyhow::Result<()> {
    tch::no_grad(|| {
        for (_, mut t) in vs.variables() {
            if t.dim() == 4 {
                let cl = data::channels_last(&t)?;
                t.set_data(&cl);
            }
        }
        Ok(())
    })
}

/// Writes the job's checkpoints, where it has a path for them, calling the checkpoint hook.
fn checkpoint_writer(opts: &Options) -> Option<checkpoint::Writer> {
    opts.checkpoint.clone().map(|path| {
        let hook = opts.on_checkpoint.clone();
        checkpoint::Writer::new(
            path,
            Arc::new(move |e| hook.as_ref().map_or((), |h| (h.0)(e))),
        )
    })
}

/// The job's checkpoint, read, if there is one.
fn read_checkpoint(opts: &Options, id: &JobId) -> Option<anyhow::Result<checkpoint::Saved>> {
    let path = opts.checkpoint.as_deref().filter(|p| p.is_file())?;
    Some(checkpoint::read(path, id))
}

/// What the job's checkpoint holds, if it has a usable one.
fn resume(
    opts: &Options,
    id: &JobId,
    saved: Option<anyhow::Result<checkpoint::Saved>>,
    vs: &nn::VarStore,
    opt: &mut Optim,
) -> checkpoint::Restored {
    let nothing = checkpoint::Restored {
        epochs: Vec::new(),
        started: None,
    };
    let Some(saved) = saved else {
        return nothing;
    };
    match saved.and_then(|s| s.restore(vs, opt)) {
        Ok(done) => {
            tracing::info!(job_id = %id, epochs_done = done.epochs.len(), "resumed from checkpoint");
            done
        }
        Err(e) => {
            // Not resumed from, and not overwritten either: moved aside, so nothing is lost
            // (a file given to `worker train --checkpoint` may be someone's own).
            let path = opts.checkpoint.as_deref().unwrap_or(Path::new(""));
            let mut aside = path.as_os_str().to_owned();
            aside.push(".unusable");
            let aside = std::path::PathBuf::from(aside);
            let moved = std::fs::rename(path, &aside).is_ok();
            tracing::warn!(
                job_id = %id,
                error = %format!("{e:#}"),
                path = %path.display(),
                moved_to = %if moved { aside.display().to_string() } else { "nowhere (could not move it)".into() },
                "ignoring unusable checkpoint, starting from epoch 0"
            );
            nothing
        }
    }
}

/// A distinct, reproducible generator seed for each epoch of each run.
fn epoch_seed(seed: u64, epoch: u32) -> i64 {
    (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ epoch as u64) as i64 & i64::MAX
}
