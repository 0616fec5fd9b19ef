//! The engine choices measured on this machine, kept in `<data dir>/engine-cache.json` (or in
//! the user's cache folder where the data folder is read-only), one per
//! CPU model, instruction set, thread count, libtorch, our kernels' sources, device, model shape
//! and precision, so every later job of that shape trains with the same engine without measuring
//! again.
//!
//! The cache is an optimisation and never an error: a data folder that cannot be written, or a
//! file that cannot be read, means measuring again (with a warning). Processes take turns with
//! a lock file beside it while they measure and write.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use common::metrics::now_ms;
use common::{KernelSet, Layout, TrainSpec};
use serde::{Deserialize, Serialize};

use crate::ops;

const FILE: &str = "engine-cache.json";

/// One candidate engine: a memory layout and a kernel set. The cache stores choices among
/// them; `engine.rs` measures them (and so depends on this module, not the other way round).
pub type Candidate = (Layout, KernelSet);

/// One measured choice, with what it was chosen over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub layout: Layout,
    pub kernels: KernelSet,
    /// Milliseconds per step of every candidate, by `layout/kernels`.
    pub ms_per_step: BTreeMap<String, f64>,
    pub measured_at_ms: u64,
}

impl Entry {
    pub fn new(choice: Candidate, timed: &[(Candidate, f64)]) -> Entry {
        Entry {
            layout: choice.0,
            kernels: choice.1,
            ms_per_step: timed
                .iter()
                .map(|((l, k), s)| (format!("{l}/{k}"), (s * 1e6).round() / 1e3))
                .collect(),
            measured_at_ms: now_ms(),
        }
    }

    pub fn choice(&self) -> Candidate {
        (self.layout, self.kernels)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File1 {
    version: u32,
    entries: BTreeMap<String, Entry>,
}

/// The cache file under a data folder.
#[derive(Debug, Clone)]
pub struct Cache {
    path: PathBuf,
}

impl Cache {
    pub fn at(data_dir: &Path) -> Cache {
        Cache {
            path: data_dir.join(FILE),
        }
    }

    /// The cache of a worker reading `data_dir`: the data folder's own, shared by every worker
    /// of the machine, where this process may write there; else the one in `fallback` (the
    /// user's cache folder), as where the datasets are a read-only mount (Kubernetes' datasets
    /// volume), so that a worker measures once rather than at every job.
    pub fn for_data(data_dir: &Path, fallback: &Path) -> Cache {
        let here = Cache::at(data_dir);
        if here.open_lock().is_ok() {
            return here;
        }
        let there = Cache::at(fallback);
        if std::fs::create_dir_all(fallback).is_ok() && there.open_lock().is_ok() {
            tracing::debug!(path = %there.path.display(), "engine cache: the data folder is read-only");
            return there;
        }
        here
    }

    /// What a measurement depends on: the machine (CPU model, our best kernels, threads,
    /// libtorch), our kernels' sources (a worker whose kernels changed measures again), the
    /// device (`cpu`, or the GPU's UUID), the job's shape and the candidates.
    pub fn key(spec: &TrainSpec, device: &str, cands: &[Candidate]) -> String {
        let shape = spec.dataset.info().shape;
        let cands: Vec<String> = cands.iter().map(|(l, k)| format!("{l}/{k}")).collect();
        format!(
            "cpu={}; best={}; threads={}; libtorch={}; kernels={}; device={device}; {} {}x{}x{}; {}; {}; batch={}; {}; candidates={}",
            orchestrator_proto::host::cpu_model(),
            ops::best_kernels(),
            tch::get_num_threads(),
            crate::LIBTORCH_VERSION,
            &crate::KERNELS_SOURCE[..12],
            spec.model,
            shape.channels,
            shape.height,
            shape.width,
            spec.activation,
            spec.optimizer,
            spec.batch_size,
            spec.precision,
            cands.join(",")
        )
    }

    /// Waits for other processes measuring (or writing) to finish; held until dropped. None
    /// where the lock file cannot be made (then nothing is shared anyway).
    pub fn lock(&self) -> Option<File> {
        let file = self
            .open_lock()
            .map_err(|e| tracing::warn!(path = %self.lock_path().display(), error = %e, "engine cache: no lock file"))
            .ok()?;
        file.lock().ok()?;
        Some(file)
    }

    fn lock_path(&self) -> PathBuf {
        self.path.with_extension("lock")
    }

    /// The lock file beside the cache, made where missing: whether this process may write here.
    fn open_lock(&self) -> std::io::Result<File> {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.lock_path())
    }

    pub fn get(&self, key: &str) -> Option<Entry> {
        self.read().entries.remove(key)
    }

    /// Adds `entry` (replacing the key's), written to a temporary file and renamed into place.
    pub fn put(&self, key: &str, entry: Entry) {
        let mut f = self.read();
        f.version = 1;
        f.entries.insert(key.to_string(), entry);
        let tmp = self
            .path
            .with_extension(format!("json.{}.tmp", std::process::id()));
        let written = serde_json::to_vec_pretty(&f)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            tracing::warn!(path = %self.path.display(), error = %e, "engine cache not written; the next job of this shape measures again");
        }
    }

    fn read(&self) -> File1 {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return File1::default(),
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "engine cache unreadable; measuring again");
                return File1::default();
            }
        };
        serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(path = %self.path.display(), error = %e, "engine cache corrupt; measuring again");
            File1::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::Grid;

    fn spec() -> TrainSpec {
        let g = Grid::parse(
            "name: g\nactivations: [relu]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 1, target_accuracy: 0.9}\n",
            Path::new("g.yaml"),
        )
        .unwrap();
        g.jobs().remove(0).spec
    }

    #[test]
    fn entries_survive_a_round_trip_and_a_corrupt_file_is_no_error() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path());
        let cands = [
            (Layout::Nchw, KernelSet::Aten),
            (Layout::ChannelsLast, KernelSet::Aten),
        ];
        let key = Cache::key(&spec(), "cpu", &cands);
        assert!(
            key.contains("paper-cnn 1x28x28") && key.contains("relu"),
            "{key}"
        );
        assert_eq!(cache.get(&key), None);
        let entry = Entry::new(cands[1], &[(cands[0], 0.004), (cands[1], 0.0031)]);
        {
            let _lock = cache.lock().unwrap();
            cache.put(&key, entry.clone());
        }
        assert_eq!(cache.get(&key), Some(entry.clone()));
        assert_eq!(entry.ms_per_step["channels-last/aten"], 3.1);
        std::fs::write(dir.path().join(FILE), b"{not json").unwrap();
        assert_eq!(cache.get(&key), None);
        cache.put(&key, entry.clone());
        assert_eq!(cache.get(&key), Some(entry));
    }

    #[test]
    fn a_read_only_data_folder_keeps_its_cache_in_the_fallback() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let fallback = dir.path().join("cache/dlgrid");
        assert_eq!(Cache::for_data(&data, &fallback).path, data.join(FILE));
        let ro = Path::new("/proc/no-such-dir");
        assert_eq!(Cache::for_data(ro, &fallback).path, fallback.join(FILE));
        // Neither writable: the data folder's, which only warns.
        assert_eq!(Cache::for_data(ro, ro).path, ro.join(FILE));
    }

    #[test]
    fn an_unwritable_folder_only_warns() {
        let cache = Cache::at(Path::new("/proc/no-such-dir"));
        assert!(cache.lock().is_none());
        cache.put("k", Entry::new((Layout::Nchw, KernelSet::Aten), &[]));
        assert_eq!(cache.get("k"), None);
    }
}
