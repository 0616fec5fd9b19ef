//! The training engine: one job, start to finish, on one device.
//!
//! The whole dataset is put on the device once; shuffling and augmentation happen there, and
//! the loss is accumulated on the device and read once per epoch, so a step never waits for
//! the host.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use common::{EpochMetrics, JobStatus, TrainOutcome, TrainSpec};
use tch::nn::{self, ModuleT, OptimizerConfig};
use tch::{Device, Kind, Tensor};

use crate::data::{self, DeviceSplit};
use crate::model;

/// Where and how to train.
#[derive(Debug, Clone)]
pub struct Options {
    pub data_dir: PathBuf,
    pub device: Device,
}

/// Images per forward pass when evaluating; large enough to keep the device busy, small
/// enough for VGG activations to fit comfortably.
const EVAL_BATCH: i64 = 500;
/// Single-image forwards run before timing latency.
const LATENCY_WARMUP: i64 = 10;

/// Trains `spec`, calling `on_epoch` after each epoch's evaluation.
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
    let mut opt = match spec.optimizer {
        common::Optimizer::Adam => nn::Adam::default()
            .wd(spec.weight_decay)
            .build(&vs, spec.learning_rate)?,
        common::Optimizer::Sgd => nn::Sgd {
            momentum: spec.momentum,
            wd: spec.weight_decay,
            ..Default::default()
        }
        .build(&vs, spec.learning_rate)?,
    };

    let mut epochs = Vec::with_capacity(spec.epochs as usize);
    let mut train_seconds = 0.0;
    for epoch in 1..=spec.epochs {
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
        let (test_loss, test_accuracy) = evaluate(&*net, &test)?;
        let m = EpochMetrics {
            epoch,
            train_seconds,
            train_loss,
            test_loss,
            test_accuracy,
        };
        on_epoch(&m);
        epochs.push(m);
    }

    let latency = latency_ms_per_sample(&*net, &test, spec.latency_samples, device)?;
    Ok(TrainOutcome {
        status: JobStatus::Succeeded,
        device: device_label(device),
        param_count,
        epochs,
        latency_ms_per_sample: Some(latency),
        error: None,
    })
}

/// One pass over the shuffled training set; returns the summed (not mean) loss.
fn train_epoch(
    net: &dyn ModuleT,
    opt: &mut nn::Optimizer,
    train: &DeviceSplit,
    spec: &TrainSpec,
) -> anyhow::Result<f64> {
    let n = train.samples();
    let device = train.images.device();
    let bs = spec.batch_size as i64;
    let perm = Tensor::randperm(n, (Kind::Int64, device));
    let mut loss_sum = Tensor::zeros([], (Kind::Float, device));
    let mut start = 0;
    while start < n {
        let len = bs.min(n - start);
        let idx = perm.narrow(0, start, len);
        let mut x = train.images.f_index_select(0, &idx)?;
        if spec.augment {
            x = augment(&x)?;
        }
        let y = train.labels.f_index_select(0, &idx)?;
        let loss = cross_entropy(&net.forward_t(&x, true), &y, tch::Reduction::Mean)?;
        opt.backward_step(&loss);
        let _ = loss_sum.f_add_(&loss.detach().f_mul_scalar(len as f64)?)?;
        start += len;
    }
    Ok(loss_sum.f_double_value(&[])?)
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
fn evaluate(net: &dyn ModuleT, test: &DeviceSplit) -> anyhow::Result<(f64, f64)> {
    tch::no_grad(|| {
        let n = test.samples();
        let device = test.images.device();
        let mut loss = Tensor::zeros([], (Kind::Double, device));
        let mut correct = Tensor::zeros([], (Kind::Int64, device));
        let mut start = 0;
        while start < n {
            let len = EVAL_BATCH.min(n - start);
            let x = test.images.narrow(0, start, len);
            let y = test.labels.narrow(0, start, len);
            let logits = net.forward_t(&x, false);
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
            let _ = net
                .forward_t(&test.images.narrow(0, i, 1), false)
                .f_argmax(-1, false)?
                .f_int64_value(&[0])?;
        }
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
        let started = Instant::now();
        for i in 0..count {
            let _ = net
                .forward_t(&test.images.narrow(0, i, 1), false)
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
