//! What can be wrong with a dataset on disk; every message names the file or folder.

use std::path::PathBuf;

use common::Dataset;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(
        "dataset `{dataset}`: missing file(s) {missing} in {}; expected {expected} \
         (raw or .gz). The download failed ({why}). Get them from {source_hint} into that \
         folder, or pass --data-dir", folder.display()
    )]
    Missing {
        dataset: Dataset,
        folder: PathBuf,
        missing: String,
        expected: String,
        source_hint: &'static str,
        why: String,
    },
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: corrupt or truncated dataset file: {why}", path.display())]
    Corrupt { path: PathBuf, why: String },
}

/// A corrupt-file error for `path`.
pub(crate) fn corrupt(path: &std::path::Path, why: impl Into<String>) -> DataError {
    DataError::Corrupt {
        path: path.to_path_buf(),
        why: why.into(),
    }
}
