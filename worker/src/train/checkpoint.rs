//! Checkpoints: every model variable (batch-norm statistics too), the optimizer state and the
//! metrics so far, in one file, so a job resumes exactly where it stopped.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use domain::{EpochMetrics, JobId};

use super::Started;
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Tensor};

use crate::optim::Optim;

#[derive(Serialize, Deserialize)]
struct CheckpointMeta {
    job_id: JobId,
    step: i64,
    epochs: Vec<EpochMetrics>,
    /// When the attempt that began the job started (absent in older checkpoints).
    #[serde(default)]
    started: Option<Started>,
}

/// Writes the checkpoint of job `id` to `path`: the metrics are stored as JSON bytes beside
/// the tensors. Written to a temporary file and renamed, so a crash while saving leaves the
/// previous checkpoint intact.
pub fn save(
    path: &Path,
    id: &JobId,
    vs: &nn::VarStore,
    opt: &Optim,
    epochs: &[EpochMetrics],
    started: Started,
) -> anyhow::Result<()> {
    let (mut tensors, step) = opt.state();
    for (name, t) in vs.variables() {
        tensors.push((format!("model.{name}"), t));
    }
    let meta = serde_json::to_vec(&CheckpointMeta {
        job_id: id.clone(),
        step,
        epochs: epochs.to_vec(),
        started: Some(started),
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

/// What a checkpoint holds besides the tensors.
pub struct Restored {
    pub epochs: Vec<EpochMetrics>,
    /// When the attempt that began the job started, where the checkpoint says.
    pub started: Option<Started>,
}

/// Restores job `id` from `path` into `vs` and `opt`.
pub fn restore(
    path: &Path,
    id: &JobId,
    vs: &nn::VarStore,
    opt: &mut Optim,
) -> anyhow::Result<Restored> {
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
    Ok(Restored {
        epochs: meta.epochs,
        started: meta.started,
    })
}
