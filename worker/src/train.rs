//! The training engine: one job, start to finish, on one device.
//!
//! The whole dataset is put on the device once; shuffling and augmentation happen there, and
//! the loss is accumulated on the device and read once per epoch, so a step never waits for
//! the host. The random generator is re-seeded from (seed, epoch) at the start of every epoch,
//! so an epoch's shuffle, dropout masks and augmentation are the same whether the job ran
//! straight through or resumed from a checkpoint.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use common::{EpochMetrics, JobId, JobStatus, Precision, TrainOutcome, TrainSpec};
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

use crate::data::{self, DeviceSplit};
use crate::model;
use crate::ops::{self, AutocastDtype};
use crate::optim::Optim;

/// Where and how to train.
#[derive(Debug, Clone)]
pub struct Options {
    pub data_dir: PathBuf,
    pub device: Device,
    /// Checkpoint file: written after every epoch, resumed from when it exists.
    pub checkpoint: Option<PathBuf>,
    /// Testing hook: abort the process right after this epoch's checkpoint is written, as a
    /// crash or a kill would (`WORKER_FAULT=abort-after-epoch:N`).
    pub abort_after_epoch: Option<u32>,
}

impl Options {
    pub fn new(data_dir: PathBuf, device: Device) -> Options {
        Options {
            data_dir,
            device,
            checkpoint: None,
            abort_after_epoch: fault_from_env(),
        }
    }
}

fn fault_from_env() -> Option<u32> {
    std::env::var("WORKER_FAULT")
        .ok()?
        .strip_prefix("abort-after-epoch:")?
        .parse()
        .ok()
}

/// Images per forward pass when evaluating; large enough to keep the device busy, small
/// enough for VGG activations to fit comfortably.
const EVAL_BATCH: i64 = 500;
/// Single-image forwards run before timing latency.
const LATENCY_WARMUP: i64 = 10;

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
    let device = opts.device;
    tch::manual_seed(spec.seed as i64);
    let raw = data::load(spec.dataset, &opts.data_dir)?;
    let train = data::to_device(&raw.train, spec.train_limit, spec.dataset, device)
        .context("moving the training set to the device")?;
    let test = data::to_device(&raw.test, spec.test_limit, spec.dataset, device)
        .context("moving the test set to the device")?;
    drop(raw);

    let vs = nn::VarStore::new(device);
    let net = model::build(
        &vs.root(),
        spec.model,
        spec.dataset.shape(),
        spec.activation,
    );
    let param_count = model::param_count(&vs);
    let mut opt = Optim::new(
        &vs,
        spec.optimizer,
        spec.learning_rate,
        spec.momentum,
        spec.weight_decay,
    );

    let id = JobId::for_spec(spec);
    let mut epochs = Vec::with_capacity(spec.epochs as usize);
    if let Some(path) = opts.checkpoint.as_deref().filter(|p| p.is_file()) {
        match restore(path, &id, &vs, &mut opt) {
            Ok(done) => {
                tracing::info!(job_id = %id, epochs_done = done.len(), "resumed from checkpoint");
                epochs = done;
            }
            Err(e) => {
                tracing::warn!(job_id = %id, error = %e, path = %path.display(), "ignoring unusable checkpoint; starting over")
            }
        }
    }
    for m in &epochs {
        on_epoch(m);
    }
    let mut train_seconds = epochs.last().map_or(0.0, |m| m.train_seconds);
    let first = epochs.len() as u32 + 1;
    for epoch in first..=spec.epochs {
        tch::manual_seed(epoch_seed(spec.seed, epoch));
        let started = Instant::now();
        let loss_sum = train_epoch(&*net, &mut opt, &train, spec)?;
        // Reading the loss waits for the device, so the clock stops after the last step.
        let train_loss = loss_sum / train.samples() as f64;
        train_seconds += started.elapsed().as_secs_f64();
        if !train_loss.is_finite() {
            return Ok(TrainOutcome {
                status: JobStatus::Diverged,
                device: device_label(device),
                param_count,
                epochs,
                latency_ms_per_sample: None,
                error: Some(format!(
                    "training loss became {train_loss} in epoch {epoch}"
                )),
            });
        }
        let (test_loss, test_accuracy) = evaluate(&*net, &test, spec.precision)?;
        let m = EpochMetrics {
            epoch,
            train_seconds,
            train_loss,
            test_loss,
            test_accuracy,
        };
        epochs.push(m.clone());
        if let Some(path) = &opts.checkpoint {
            save(path, &id, &vs, &opt, &epochs)
                .with_context(|| format!("writing checkpoint {}", path.display()))?;
        }
        on_epoch(&m);
        if opts.abort_after_epoch == Some(epoch) {
            tracing::error!(epoch, "WORKER_FAULT: aborting on purpose");
            std::process::abort();
        }
    }

    let latency =
        latency_ms_per_sample(&*net, &test, spec.latency_samples, spec.precision, device)?;
    Ok(TrainOutcome {
        status: JobStatus::Succeeded,
        device: device_label(device),
        param_count,
        epochs,
        latency_ms_per_sample: Some(latency),
        error: None,
    })
}

/// Makes glibc keep freed memory for reuse instead of returning it to the kernel: by default
/// every tensor above its (adaptive) mmap threshold is a fresh mapping, so each training step
/// pays page faults for its activations and gradients all over again. Measured on the 2-core
/// CPU, in a process that had not yet freed a large buffer (which raises that threshold): a
/// paper-CNN step 15% slower, a VGG-11 step 5% slower without these settings. Loading a dataset
/// happens to raise the threshold too, so `worker train` ran as fast either way; this makes the
/// speed independent of such history. Call once, before the first tensor.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts glibc's allocator parameters; it is called before other
    // threads allocate.
    unsafe {
        // Allocations up to 32 MiB (glibc's upper limit for this setting) come from the heap...
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        // ...which is only trimmed once 1 GiB at its top is free.
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

/// A distinct, reproducible generator seed for each epoch of each run.
fn epoch_seed(seed: u64, epoch: u32) -> i64 {
    (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ epoch as u64) as i64 & i64::MAX
}

#[derive(Serialize, Deserialize)]
struct CheckpointMeta {
    job_id: JobId,
    step: i64,
    epochs: Vec<EpochMetrics>,
}

/// One file: every model variable (batch-norm statistics too), the optimizer state, and the
/// metrics so far as JSON bytes. Written to a temporary file and renamed, so a crash while
/// saving leaves the previous checkpoint intact.
fn save(
    path: &Path,
    id: &JobId,
    vs: &nn::VarStore,
    opt: &Optim,
    epochs: &[EpochMetrics],
) -> anyhow::Result<()> {
    let (mut tensors, step) = opt.state();
    for (name, t) in vs.variables() {
        tensors.push((format!("model.{name}"), t));
    }
    let meta = serde_json::to_vec(&CheckpointMeta {
        job_id: id.clone(),
        step,
        epochs: epochs.to_vec(),
    })?;
    tensors.push(("meta".into(), Tensor::from_slice(&meta)));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    Tensor::save_multi(&tensors, &tmp)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn restore(
    path: &Path,
    id: &JobId,
    vs: &nn::VarStore,
    opt: &mut Optim,
) -> anyhow::Result<Vec<EpochMetrics>> {
    let saved: HashMap<String, Tensor> = Tensor::load_multi_with_device(path, vs.device())?
        .into_iter()
        .collect();
    let meta = saved
        .get("meta")
        .context("no metadata")?
        .to_device(Device::Cpu);
    let bytes: Vec<u8> = Vec::<u8>::try_from(&meta)?;
    let meta: CheckpointMeta = serde_json::from_slice(&bytes)?;
    anyhow::ensure!(
        meta.job_id == *id,
        "checkpoint belongs to job {}",
        meta.job_id
    );
    tch::no_grad(|| -> anyhow::Result<()> {
        for (name, mut t) in vs.variables() {
            let src = saved
                .get(&format!("model.{name}"))
                .with_context(|| format!("no variable {name}"))?;
            t.f_copy_(src)?;
        }
        Ok(())
    })?;
    opt.restore(&saved, meta.step).map_err(anyhow::Error::msg)?;
    Ok(meta.epochs)
}

/// One pass over the shuffled training set; returns the summed (not mean) loss.
fn train_epoch(
    net: &dyn ModuleT,
    opt: &mut Optim,
    train: &DeviceSplit,
    spec: &TrainSpec,
) -> anyhow::Result<f64> {
    let n = train.samples();
    let device = train.device();
    let bs = spec.batch_size as i64;
    let perm = Tensor::randperm(n, (Kind::Int64, device));
    let mut loss_sum = Tensor::zeros([], (Kind::Float, device));
    let mut start = 0;
    while start < n {
        let len = bs.min(n - start);
        let idx = perm.narrow(0, start, len);
        let mut x = train.gather(&idx)?;
        if spec.augment {
            x = train.in_layout(&augment(&x)?)?;
        }
        let y = train.labels.f_index_select(0, &idx)?;
        let logits = forward(spec.precision, device, || net.forward_t(&x, true))?;
        let loss = cross_entropy(&logits, &y, tch::Reduction::Mean)?;
        opt.zero_grad()?;
        loss.f_backward()?;
        opt.step()?;
        let _ = loss_sum.f_add_(&loss.detach().f_mul_scalar(len as f64)?)?;
        start += len;
    }
    Ok(loss_sum.f_double_value(&[])?)
}

/// Runs `f` (a forward pass) in `precision`: as is for fp32, under bfloat16 autocast for bf16.
/// The loss is computed outside, in float32 (log_softmax is told so), like the backward pass.
fn forward<T>(
    precision: Precision,
    device: Device,
    f: impl FnOnce() -> T,
) -> Result<T, tch::TchError> {
    match precision {
        Precision::Fp32 => Ok(f()),
        Precision::Bf16 => ops::with_autocast(device, AutocastDtype::BFloat16, f),
    }
}

fn cross_entropy(
    logits: &Tensor,
    labels: &Tensor,
    reduction: tch::Reduction,
) -> Result<Tensor, tch::TchError> {
    logits
        .f_log_softmax(-1, Kind::Float)?
        .f_nll_loss(labels, None::<Tensor>, reduction, -100)
}
/// Random crop with 4-pixel zero padding and random horizontal flip, per image, on the device.
fn augment(x: &Tensor) -> Result<Tensor, tch::TchError> {
    let (b, c, h, w) = x.size4()?;
    let device = x.device();
    let opts = (Kind::Int64, device);
    let padded = x.f_constant_pad_nd([4, 4, 4, 4])?;
    let oy = Tensor::f_randint(9, [b, 1, 1, 1], opts)?;
    let ox = Tensor::f_randint(9, [b, 1, 1, 1], opts)?;
    let rows = Tensor::f_arange(h, opts)?
        .f_view([1, 1, h, 1])?
        .f_add(&oy)?;
    let cols = Tensor::f_arange(w, opts)?
        .f_view([1, 1, 1, w])?
        .f_add(&ox)?;
    let bi = Tensor::f_arange(b, opts)?.f_view([b, 1, 1, 1])?;
    let ci = Tensor::f_arange(c, opts)?.f_view([1, c, 1, 1])?;
    let cropped = padded.f_index(&[Some(bi), Some(ci), Some(rows), Some(cols)])?;
    let flip = Tensor::f_rand([b, 1, 1, 1], (Kind::Float, device))?.f_lt(0.5)?;
    cropped.f_where_self(&flip, &cropped.f_flip([3])?)
}

/// Test loss (mean cross-entropy) and accuracy, without gradients.
fn evaluate(
    net: &dyn ModuleT,
    test: &DeviceSplit,
    precision: Precision,
) -> anyhow::Result<(f64, f64)> {
    tch::no_grad(|| {
        let n = test.samples();
        let device = test.device();
        let mut loss = Tensor::zeros([], (Kind::Double, device));
        let mut correct = Tensor::zeros([], (Kind::Int64, device));
        let mut start = 0;
        while start < n {
            let len = EVAL_BATCH.min(n - start);
            let x = test.slice(start, len)?;
            let y = test.labels.narrow(0, start, len);
            let logits = forward(precision, device, || net.forward_t(&x, false))?;
            let batch_loss = cross_entropy(&logits, &y, tch::Reduction::Sum)?;
            let _ = loss.f_add_(&batch_loss.f_to_kind(Kind::Double)?)?;
            let hits = logits
                .f_argmax(-1, false)?
                .f_eq_tensor(&y)?
                .f_sum(Kind::Int64)?;
            let _ = correct.f_add_(&hits)?;
            start += len;
        }
        Ok((
            loss.f_double_value(&[])? / n as f64,
            correct.f_int64_value(&[])? as f64 / n as f64,
        ))
    })
}

/// DAWNBench latency: test images classified one at a time, each prediction read back to the
/// host (which waits for the device), after a short warm-up; total time / count.
fn latency_ms_per_sample(
    net: &dyn ModuleT,
    test: &DeviceSplit,
    samples: u64,
    precision: Precision,
    device: Device,
) -> anyhow::Result<f64> {
    let n = test.samples();
    let count = if samples == 0 {
        n
    } else {
        n.min(samples as i64)
    };
    tch::no_grad(|| {
        for i in 0..LATENCY_WARMUP.min(n) {
            let x = test.slice(i, 1)?;
            let _ = forward(precision, device, || net.forward_t(&x, false))?
                .f_argmax(-1, false)?
                .f_int64_value(&[0])?;
        }
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
        let started = Instant::now();
        for i in 0..count {
            let x = test.slice(i, 1)?;
            let _ = forward(precision, device, || net.forward_t(&x, false))?
                .f_argmax(-1, false)?
                .f_int64_value(&[0])?;
        }
        Ok(started.elapsed().as_secs_f64() * 1000.0 / count.max(1) as f64)
    })
}

pub fn device_label(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// `auto` → the first GPU if any, else the CPU; `cuda` → GPU 0; `cuda:N` → GPU N (checked).
pub fn parse_device(s: &str) -> anyhow::Result<Device> {
    let gpus = tch::Cuda::device_count();
    match s {
        "auto" => Ok(if gpus > 0 {
            Device::Cuda(0)
        } else {
            Device::Cpu
        }),
        "cpu" => Ok(Device::Cpu),
        _ => {
            let index = match s.strip_prefix("cuda") {
                Some("") => 0,
                Some(rest) => rest
                    .strip_prefix(':')
                    .and_then(|n| n.parse::<usize>().ok())
                    .with_context(|| {
                        format!("invalid --device `{s}`: expected auto, cpu, cuda or cuda:N")
                    })?,
                None => anyhow::bail!("invalid --device `{s}`: expected auto, cpu, cuda or cuda:N"),
            };
            if (index as i64) >= gpus {
                anyhow::bail!(
                    "--device {s}: this machine has {gpus} CUDA device(s) visible to libtorch"
                );
            }
            Ok(Device::Cuda(index))
        }
    }
}
