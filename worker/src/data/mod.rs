//! Dataset files → tensors: MNIST-format IDX ([`idx`], raw or .gz) and the CIFAR binary
//! versions ([`cifar`]); missing files downloaded and verified ([`fetch`]); a split moved to
//! the training device once ([`DeviceSplit`]). Which files a dataset has, and where they come
//! from, is the domain's dataset table.
//!
//! Readers check every header and length, so a truncated or corrupt file is an error that
//! names the file, never a panic or silently wrong data.

mod cifar;
mod device_split;
mod error;
pub mod fetch;
#[cfg(test)]
mod fuzz;
mod idx;
#[cfg(test)]
mod tests;

use std::io::Read;
use std::path::{Path, PathBuf};

use common::dataset::Format;
use common::Dataset;
use tch::Tensor;

pub use device_split::{channels_last, to_device, DeviceSplit};
pub use error::DataError;

/// Where dataset files are, and where missing ones come from.
#[derive(Debug, Clone, Default)]
pub struct DataSource {
    /// `--data-dir`: one folder per dataset (or the dataset folder itself).
    pub dir: PathBuf,
    /// Mirrors laid out like `dir`, used instead of the canonical sources
    /// (`WORKER_DATASET_MIRRORS`); None: the canonical sources.
    pub mirrors: Option<Vec<String>>,
}

/// Images as uint8 `[N, C, H, W]` and labels as int64 `[N]`, on the CPU.
pub struct Split {
    pub images: Tensor,
    pub labels: Tensor,
}

pub struct RawDataset {
    pub train: Split,
    pub test: Split,
}

/// The folder holding `dataset` under `data_dir`: `DIR/<folder>/`, the archive's own inner
/// folder for CIFAR, or `DIR` itself when it is already that folder (e.g.
/// `--data-dir /usr/share/datasets/fashion-mnist`).
pub fn locate(dataset: Dataset, data_dir: &Path) -> PathBuf {
    let info = dataset.info();
    let base = data_dir.join(info.folder);
    let first = info.files[0].name;
    let has = |dir: &Path| find_file(dir, first).is_some();
    if has(&base) {
        return base;
    }
    if let Some(inner) = info.archive_folder.map(|f| base.join(f)).filter(|d| has(d)) {
        return inner;
    }
    if data_dir.file_name().and_then(|n| n.to_str()) == Some(info.folder) && has(data_dir) {
        return data_dir.to_path_buf();
    }
    base
}

/// `name` or `name.gz` in `dir`.
fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    let raw = dir.join(name);
    if raw.is_file() {
        return Some(raw);
    }
    let gz = dir.join(format!("{name}.gz"));
    gz.is_file().then_some(gz)
}

/// A file's content, gunzipped when its name ends in `.gz`; more than `max` bytes (raw or
/// once decompressed) is an error, so a small file that inflates to gigabytes never does.
fn read_all(path: &Path, max: u64) -> Result<Vec<u8>, DataError> {
    let io = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let too_big = || error::corrupt(path, format!("more than the {max} bytes such a file holds"));
    let file = std::fs::File::open(path).map_err(io)?;
    let gz = path.extension().is_some_and(|e| e == "gz");
    let size = file.metadata().map_err(io)?.len();
    if !gz && size > max {
        return Err(too_big());
    }
    let mut out = Vec::new();
    let read = if gz {
        flate2::read::GzDecoder::new(file)
            .take(max + 1)
            .read_to_end(&mut out)
            .map_err(|e| error::corrupt(path, format!("gzip: {e}")))?
    } else {
        std::io::BufReader::new(file)
            .take(max + 1)
            .read_to_end(&mut out)
            .map_err(io)?
    };
    if read as u64 > max {
        return Err(too_big());
    }
    Ok(out)
}

/// Loads a dataset's files from `source.dir`, downloading missing ones first.
pub fn load(dataset: Dataset, source: &DataSource) -> Result<RawDataset, DataError> {
    let info = dataset.info();
    let folder = locate(dataset, &source.dir);
    let names = info.file_names();
    let absent = |folder: &Path| -> Vec<&str> {
        names
            .iter()
            .copied()
            .filter(|n| find_file(folder, n).is_none())
            .collect()
    };
    let missing = absent(&folder);
    if !missing.is_empty() {
        let fetched = fetch::fetch(dataset, &folder, &missing, source.mirrors.as_deref());
        let why = match fetched {
            Err(why) => Some(why),
            Ok(()) if !absent(&folder).is_empty() => Some("the download left files missing".into()),
            Ok(()) => None,
        };
        if let Some(why) = why {
            return Err(DataError::Missing {
                dataset,
                folder,
                missing: missing.join(", "),
                expected: names.join(", "),
                source_hint: info.source_hint,
                why,
            });
        }
    }
    let paths: Vec<PathBuf> = names
        .iter()
        .map(|n| {
            find_file(&folder, n).expect("every file exists: checked, or fetched and checked again")
        })
        .collect();
    match info.format {
        Format::Idx => Ok(RawDataset {
            train: idx::split(&paths[0], &paths[1], info)?,
            test: idx::split(&paths[2], &paths[3], info)?,
        }),
        Format::CifarBinary { label_bytes } => {
            // The last file is the test split.
            let (test, train) = paths.split_last().expect("the table lists every file");
            Ok(RawDataset {
                train: cifar::split(train, label_bytes, info)?,
                test: cifar::split(std::slice::from_ref(test), label_bytes, info)?,
            })
        }
    }
}
