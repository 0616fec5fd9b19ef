//! The layout and kernels a job trains with, chosen by measurement rather than assumption.
//!
//! Which memory layout is faster (NCHW or channels-last), and whether our kernels beat aten's,
//! depends on the CPU (AVX-512 or AVX2, Intel or AMD), the thread count and the model: on an
//! Intel Xeon oneDNN ran VGG-11 14% faster from NCHW, while on an AMD EPYC without AVX-512
//! PyTorch's paper CNN ran 31% faster channels-last. So at the first use of a model shape, the
//! engine times a few optimizer steps of each candidate on a throwaway copy of the model and
//! keeps the fastest, as cuDNN's benchmark mode does for its algorithms; the choice is cached
//! per CPU model, thread count and shape ([`super::engine_cache`]), so later jobs of that shape
//! start at once and train with the same engine. A job resumed from a checkpoint keeps the
//! engine it began with, so it ends bit for bit as an uninterrupted run would.

use std::time::Instant;

use common::{Chosen, Engine, KernelSet, Layout, TrainSpec};
use tch::{nn, Device, Tensor};

use super::engine_cache::{Cache, Candidate, Entry};
use crate::data::{self, RawDataset};
use crate::ops;
use crate::optim::Optim;

/// What the worker was told (`--layout`, `--kernels`); `None` is `auto`: measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wanted {
    pub layout: Option<Layout>,
    pub kernels: Option<KernelSet>,
}

/// The candidates on `device`: both layouts, and on the CPU our best kernels and aten's, less
/// what was fixed. An error for kernels this CPU cannot run.
pub fn candidates(wanted: Wanted, device: Device) -> anyhow::Result<Vec<Candidate>> {
    let layouts = match wanted.layout {
        Some(l) => vec![l],
        None => vec![Layout::Nchw, Layout::ChannelsLast],
    };
    let kernels = match (wanted.kernels, device) {
        (Some(k), Device::Cpu) => {
            anyhow::ensure!(
                ops::kernels_supported(k),
                "--kernels {k}: this CPU cannot run them (it has: {})",
                supported_list()
            );
            vec![k]
        }
        (None, Device::Cpu) => match ops::best_kernels() {
            KernelSet::Aten => vec![KernelSet::Aten],
            ours => vec![ours, KernelSet::Aten],
        },
        // Our kernels are CPU kernels: on a GPU aten's (cuDNN's) always run.
        _ => vec![KernelSet::Aten],
    };
    Ok(layouts
        .iter()
        .flat_map(|l| kernels.iter().map(move |k| (*l, *k)))
        .collect())
}

fn supported_list() -> String {
    [KernelSet::Avx512, KernelSet::Avx2, KernelSet::Aten]
        .into_iter()
        .filter(|k| ops::kernels_supported(*k))
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The engine for job `spec`: the one it resumes with, the only candidate, the cached choice,
/// or the fastest candidate measured now (and cached under `data_dir`).
pub fn choose(
    spec: &TrainSpec,
    wanted: Wanted,
    device: Device,
    device_label: &str,
    raw: &RawDataset,
    cache: &Cache,
    resumed: Option<Engine>,
) -> anyhow::Result<Engine> {
    let engine = |(layout, kernels): Candidate, chosen| Engine {
        layout,
        kernels,
        chosen,
    };
    if let Some(e) = resumed.filter(|e| device.is_cuda() || ops::kernels_supported(e.kernels)) {
        return Ok(Engine {
            chosen: Chosen::Resumed,
            ..e
        });
    }
    let cands = candidates(wanted, device)?;
    if let [only] = cands[..] {
        return Ok(engine(only, Chosen::Fixed));
    }
    let key = Cache::key(spec, device_label, &cands);
    // One process measures a shape at a time; the others wait, then find its choice.
    let _lock = cache.lock();
    if let Some(hit) = cache.get(&key).filter(|e| cands.contains(&e.choice())) {
        return Ok(engine(hit.choice(), Chosen::Cached));
    }
    let timed = match measure(spec, device, raw, &cands) {
        Ok(t) => t,
        Err(e) => {
            // Measuring is an optimisation: a failure (two copies of the model not fitting on a
            // GPU, say) leaves the first candidate, and the job goes on; training itself reports
            // any real problem with the model.
            tracing::warn!(error = %format!("{e:#}"), "measuring the engine candidates failed; using the first");
            return Ok(engine(cands[0], Chosen::Fixed));
        }
    };
    let best = timed
        .iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|t| t.0)
        .expect("at least two candidates");
    let report: Vec<String> = timed
        .iter()
        .map(|((l, k), s)| format!("{l}/{k} {:.2} ms", s * 1e3))
        .collect();
    tracing::info!(candidates = %report.join(", "), chosen = %format!("{}/{}", best.0, best.1), "engine measured (ms per step)");
    cache.put(&key, Entry::new(best, &timed));
    Ok(engine(best, Chosen::Measured))
}

/// Rounds of timing; each candidate's score is its median round.
const ROUNDS: usize = 3;
/// Steps per round: enough for about this long, at least one and at most 20.
const ROUND_SECONDS: f64 = 0.1;

/// Seconds per optimizer step of each candidate, on the job's first batch. The candidates run
/// in turn within each round, so a change in the machine's load hits all of them alike.
fn measure(
    spec: &TrainSpec,
    device: Device,
    raw: &RawDataset,
    cands: &[Candidate],
) -> anyhow::Result<Vec<(Candidate, f64)>> {
    let batch = data::to_device(
        &raw.train,
        spec.batch_size as u64,
        spec.dataset,
        device,
        Layout::Nchw,
    )?;
    let x = batch.slice(0, batch.samples())?;
    // One model per layout; the kernel sets share it (they are switched per call).
    let mut models: Vec<(Layout, Trial)> = Vec::new();
    for (layout, _) in cands {
        if !models.iter().any(|(l, _)| l == layout) {
            models.push((*layout, Trial::new(spec, device, &x, *layout)?));
        }
    }
    let mut trial = |c: &Candidate, steps: usize| -> anyhow::Result<f64> {
        let (_, t) = models.iter_mut().find(|(l, _)| *l == c.0).expect("built");
        let _kernels = ops::use_kernels_on_this_thread(c.1)?;
        t.run(&batch.labels, steps, spec)
    };
    // A first step each builds oneDNN's or cuDNN's kernels for the shape; its time estimates
    // how many steps fill a round.
    let mut slowest: f64 = 0.0;
    for c in cands {
        slowest = slowest.max(trial(c, 1)?);
    }
    let steps = (ROUND_SECONDS / slowest.max(1e-6)).clamp(1.0, 20.0) as usize;
    let mut rounds = vec![Vec::with_capacity(ROUNDS); cands.len()];
    for _ in 0..ROUNDS {
        for (i, c) in cands.iter().enumerate() {
            rounds[i].push(trial(c, steps)?);
        }
    }
    Ok(cands
        .iter()
        .zip(rounds)
        .map(|(c, mut r)| {
            r.sort_by(f64::total_cmp);
            (*c, r[r.len() / 2])
        })
        .collect())
}

/// A throwaway copy of the job's model and optimizer in one layout, with the batch in it.
struct Trial {
    _vs: nn::VarStore,
    net: Box<dyn nn::ModuleT>,
    opt: Optim,
    x: Tensor,
}

impl Trial {
    fn new(spec: &TrainSpec, device: Device, x: &Tensor, layout: Layout) -> anyhow::Result<Trial> {
        let (vs, net, opt) = super::model_and_optimizer(spec, device, layout)?;
        let x = match layout {
            Layout::ChannelsLast => data::channels_last(x)?,
            Layout::Nchw => x.f_contiguous()?,
        };
        Ok(Trial {
            _vs: vs,
            net,
            opt,
            x,
        })
    }

    /// Seconds per step over `steps` steps (reading the last loss waits for a GPU).
    fn run(&mut self, y: &Tensor, steps: usize, spec: &TrainSpec) -> anyhow::Result<f64> {
        let clock = Instant::now();
        let mut loss = None;
        for _ in 0..steps {
            loss = Some(super::step::step(
                &*self.net,
                &mut self.opt,
                &self.x,
                y,
                spec.precision,
            )?);
        }
        if let Some(l) = loss {
            l.f_double_value(&[])?;
        }
        Ok(clock.elapsed().as_secs_f64() / steps as f64)
    }
}
