//! Checkpoints: every model variable (batch-norm statistics too), the optimizer state and the
//! metrics so far, in one file, so a job resumes exactly where it stopped. The file is
//! safetensors (`orchestrator_proto::checkpoint`): read as data, never run; and each tensor is
//! checked against the job's model (name, shape, dtype) before anything is restored.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use common::{Engine, EpochMetrics, JobId};
use orchestrator_proto::checkpoint;

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
    /// The layout and kernels it trained with (absent in older checkpoints).
    #[serde(default)]
    engine: Option<Engine>,
}

/// Every tensor of the checkpoint, copied (to the CPU), so training can go on changing the
/// originals while the copy is written; the metrics as JSON bytes beside them.
fn snapshot(
    id: &JobId,
    vs: &nn::VarStore,
    opt: &Optim,
    epochs: &[EpochMetrics],
    started: Started,
    engine: Engine,
) -> anyhow::Result<Vec<(String, Tensor)>> {
    let (mut tensors, step) = opt.state();
    for (name, t) in vs.variables() {
        tensors.push((format!("model.{name}"), t));
    }
    let mut copies = tch::no_grad(|| -> Result<Vec<_>, tch::TchError> {
        tensors
            .into_iter()
            .map(|(name, t)| {
                // A GPU tensor's copy to the host is new memory already; a CPU tensor needs
                // an explicit copy (to_device would return the tensor itself).
                let copy = match t.device() {
                    Device::Cpu => t.f_detach()?.copy(),
                    _ => t.f_detach()?.f_to_device(Device::Cpu)?,
                };
                // safetensors holds dense row-major data: channels-last weights are laid out
                // so (restoring copies them back into whatever layout the model uses).
                let copy = copy.f_contiguous()?;
                Ok((name, copy))
            })
            .collect()
    })?;
    let meta = serde_json::to_vec(&CheckpointMeta {
        job_id: id.clone(),
        step,
        epochs: epochs.to_vec(),
        started: Some(started),
        engine: Some(engine),
    })?;
    copies.push((checkpoint::META.into(), Tensor::from_slice(&meta)));
    Ok(copies)
}

/// The most bytes job `spec`'s checkpoint can have: every model variable and up to two
/// optimizer tensors per trainable one (Adam's moments), at up to 8 bytes a value, plus the
/// header and metadata (4 KiB an epoch and 1 MiB besides). A download beyond it is refused
/// before it fills the disk or memory.
pub fn largest(spec: &common::TrainSpec) -> u64 {
    let vs = nn::VarStore::new(Device::Cpu);
    let _net = crate::model::build(
        &vs.root(),
        spec.model,
        spec.dataset.info().shape,
        spec.activation,
    );
    let values: u64 = vs
        .variables()
        .values()
        .map(|t| t.numel() as u64)
        .sum::<u64>()
        + 2 * crate::model::param_count(&vs);
    values * 8 + u64::from(spec.epochs) * 4096 + (1 << 20)
}

/// Writes `tensors` to a temporary file beside `path` (named for this process, so two
/// processes never share one), syncs it and renames it into place: a crash while saving
/// leaves the previous checkpoint intact.
fn write(path: &Path, tensors: Vec<(String, Tensor)>) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    let written = Tensor::write_safetensors(&tensors, &tmp)
        .map_err(anyhow::Error::from)
        .and_then(|()| {
            // Mode 600 before it takes its name: a checkpoint holds a job's whole state.
            use std::os::unix::fs::PermissionsExt;
            let private = std::fs::Permissions::from_mode(0o600);
            Ok(std::fs::set_permissions(&tmp, private)?)
        })
        .and_then(|()| Ok(std::fs::File::open(&tmp)?.sync_all()?))
        .and_then(|()| Ok(std::fs::rename(&tmp, path)?));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Writes checkpoints off the training thread, one at a time: [`Writer::save`] copies the
/// tensors (the only part training waits for) and hands the copy to a thread that writes it
/// and then calls `done` with the epoch it holds.
pub struct Writer {
    path: std::path::PathBuf,
    pending: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
    done: std::sync::Arc<dyn Fn(u32) + Send + Sync>,
}

impl Writer {
    pub fn new(path: std::path::PathBuf, done: std::sync::Arc<dyn Fn(u32) + Send + Sync>) -> Self {
        Writer {
            path,
            pending: None,
            done,
        }
    }

    /// Starts writing the checkpoint after `epochs`, once the previous write has finished.
    pub fn save(
        &mut self,
        id: &JobId,
        vs: &nn::VarStore,
        opt: &Optim,
        epochs: &[EpochMetrics],
        started: Started,
        engine: Engine,
    ) -> anyhow::Result<()> {
        let tensors = snapshot(id, vs, opt, epochs, started, engine)?;
        self.wait()?;
        let (path, done) = (self.path.clone(), self.done.clone());
        let epoch = epochs.last().map_or(0, |m| m.epoch);
        self.pending = Some(std::thread::spawn(move || {
            write(&path, tensors)?;
            done(epoch);
            Ok(())
        }));
        Ok(())
    }

    /// Waits for the write in progress, if any; its error, if it failed.
    pub fn wait(&mut self) -> anyhow::Result<()> {
        match self.pending.take().map(|h| h.join()) {
            None => Ok(()),
            Some(Ok(r)) => r.with_context(|| format!("writing checkpoint {}", self.path.display())),
            Some(Err(_)) => anyhow::bail!("the checkpoint writer panicked"),
        }
    }
}

/// What a checkpoint holds besides the tensors.
pub struct Restored {
    pub epochs: Vec<EpochMetrics>,
    /// When the attempt that began the job started, where the checkpoint says.
    pub started: Option<Started>,
}

/// A checkpoint file as read and checked to be job `id`'s: its tensors by name (on the CPU) and
/// its metadata. Read once: its engine is needed before the model is built, its tensors after.
pub struct Saved {
    tensors: HashMap<String, Tensor>,
    meta: CheckpointMeta,
}

/// Reads job `id`'s checkpoint at `path` as data (see the module's doc): a file that is not
/// one (another format, another job's, damaged) is an error that says which.
pub fn read(path: &Path, id: &JobId) -> anyhow::Result<Saved> {
    let bytes = std::fs::read(path)?;
    let parsed = checkpoint::parse(&bytes, id.as_str())?;
    let meta: CheckpointMeta = serde_json::from_value(parsed.meta)
        .map_err(|e| checkpoint::CheckpointError::BadMeta(e.to_string()))?;
    let mut tensors = HashMap::new();
    for (name, view) in parsed.tensors.tensors() {
        if name != checkpoint::META {
            let t = Tensor::try_from(view).with_context(|| format!("tensor `{name}`"))?;
            tensors.insert(name, t);
        }
    }
    Ok(Saved { tensors, meta })
}

impl Saved {
    /// The engine the checkpoint trained with, where it says.
    pub fn engine(&self) -> Option<Engine> {
        self.meta.engine
    }

    /// Restores the job into `vs` and `opt` (on their device), once every tensor the model and
    /// optimizer need is there with their shape and dtype: nothing is changed otherwise.
    pub fn restore(&self, vs: &nn::VarStore, opt: &mut Optim) -> anyhow::Result<Restored> {
        let vars = vs.variables();
        for (name, t) in &vars {
            crate::optim::fits(&self.tensors, &format!("model.{name}"), t)?;
        }
        opt.check(&self.tensors).map_err(anyhow::Error::msg)?;
        tch::no_grad(|| -> anyhow::Result<()> {
            for (name, mut t) in vars {
                t.f_copy_(&self.tensors[&format!("model.{name}")])?;
            }
            Ok(())
        })?;
        opt.restore(&self.tensors, self.meta.step)
            .map_err(anyhow::Error::msg)?;
        let meta = &self.meta;
        Ok(Restored {
            epochs: meta.epochs.clone(),
            started: meta.started,
        })
    }
}
