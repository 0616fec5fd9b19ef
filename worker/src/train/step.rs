//! One training pass: shuffled mini-batches, the forward pass in the job's precision, the
//! loss, the backward pass and the optimizer step, with the loss summed on the device.

use common::{Precision, TrainSpec};
use tch::nn::ModuleT;
use tch::{Device, Kind, Tensor};

use super::augment::Augmenter;
use crate::data::DeviceSplit;
use crate::ops::{self, AutocastDtype};
use crate::optim::Optim;

/// One pass over the shuffled training set; returns the summed (not mean) loss.
pub fn train_epoch(
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
    let mut grids = None;
    let mut start = 0;
    while start < n {
        let len = bs.min(n - start);
        let idx = perm.narrow(0, start, len);
        let mut x = train.gather(&idx)?;
        if spec.augment {
            x = train.in_layout(&Augmenter::apply(&mut grids, &x)?)?;
        }
        let y = train.labels.f_index_select(0, &idx)?;
        let loss = step(net, opt, &x, &y, spec.precision)?;
        let _ = loss_sum.f_add_(&loss.f_mul_scalar(len as f64)?)?;
        start += len;
    }
    Ok(loss_sum.f_double_value(&[])?)
}

/// One optimizer step on images `x` with labels `y`; returns the batch's mean loss (detached,
/// still on the device).
pub fn step(
    net: &dyn ModuleT,
    opt: &mut Optim,
    x: &Tensor,
    y: &Tensor,
    precision: Precision,
) -> anyhow::Result<Tensor> {
    let logits = forward(precision, x.device(), || net.forward_t(x, true))?;
    let loss = cross_entropy(&logits, y, tch::Reduction::Mean)?;
    opt.zero_grad()?;
    loss.f_backward()?;
    opt.step()?;
    Ok(loss.detach())
}

/// Runs `f` (a forward pass) in `precision`: as is for fp32, under bfloat16 autocast for bf16.
/// The loss is computed outside, in float32 (log_softmax is told so), like the backward pass.
pub fn forward<T>(
    precision: Precision,
    device: Device,
    f: impl FnOnce() -> T,
) -> Result<T, tch::TchError> {
    match precision {
        Precision::Fp32 => Ok(f()),
        Precision::Bf16 => ops::with_autocast(device, AutocastDtype::BFloat16, f),
    }
}

pub fn cross_entropy(
    logits: &Tensor,
    labels: &Tensor,
    reduction: tch::Reduction,
) -> Result<Tensor, tch::TchError> {
    logits
        .f_log_softmax(-1, Kind::Float)?
        .f_nll_loss(labels, None::<Tensor>, reduction, -100)
}
