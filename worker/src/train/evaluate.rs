//! Evaluation: test loss and accuracy after each epoch, and DAWNBench's latency at the end.

use std::time::Instant;

use common::Precision;
use tch::nn::ModuleT;
use tch::{Device, Kind, Tensor};

use super::step::{cross_entropy, forward};
use crate::data::DeviceSplit;

/// Images per forward pass when evaluating; large enough to keep the device busy, small
/// enough for VGG activations to fit comfortably.
const EVAL_BATCH: i64 = 500;
/// Single-image forwards run before timing latency.
const LATENCY_WARMUP: i64 = 10;
/// Timed passes over the latency images; the median one is the result.
const LATENCY_PASSES: usize = 3;

/// Test loss (mean cross-entropy) and accuracy, without gradients.
pub fn evaluate(
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
/// host (which waits for the device), after a short warm-up; total time / count. Measured in
/// [`LATENCY_PASSES`] passes over the same images, and the median pass taken: one pass slowed
/// by something else on the machine does not become the result.
pub fn latency_ms_per_sample(
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
    let classify = |i: i64| -> anyhow::Result<()> {
        let x = test.slice(i, 1)?;
        let _ = forward(precision, device, || net.forward_t(&x, false))?
            .f_argmax(-1, false)?
            .f_int64_value(&[0])?;
        Ok(())
    };
    tch::no_grad(|| {
        for i in 0..LATENCY_WARMUP.min(n) {
            classify(i)?;
        }
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
        let mut passes = Vec::with_capacity(LATENCY_PASSES);
        for _ in 0..LATENCY_PASSES {
            let started = Instant::now();
            for i in 0..count {
                classify(i)?;
            }
            passes.push(started.elapsed().as_secs_f64() * 1000.0 / count.max(1) as f64);
        }
        passes.sort_by(f64::total_cmp);
        Ok(passes[passes.len() / 2])
    })
}
