//! The CIFAR binary versions: fixed-size records of label byte(s) and a 3×32×32 image.

use std::path::PathBuf;

use tch::{Kind, Tensor};

use common::DatasetInfo;

use super::error::{corrupt, DataError};
use super::{read_all, Split};

const IMAGE: usize = 3 * 32 * 32;

/// One split from `files`, whose records start with `label_bytes` label bytes (the class is
/// the last one: CIFAR-100's fine label); labels must be below `classes`.
pub fn split(
    files: &[PathBuf],
    label_bytes: usize,
    info: &DatasetInfo,
) -> Result<Split, DataError> {
    let classes = info.shape.classes;
    let record = label_bytes + IMAGE;
    // No file holds more records than the training set.
    let max = info.train_images.max(info.test_images) * record as u64;
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for path in files {
        let bytes = read_all(path, max)?;
        if bytes.is_empty() || bytes.len() % record != 0 {
            let why = format!(
                "{} bytes is not a whole number of {record}-byte records",
                bytes.len()
            );
            return Err(corrupt(path, why));
        }
        for rec in bytes.chunks_exact(record) {
            let label = rec[label_bytes - 1];
            if label as usize >= classes {
                return Err(corrupt(
                    path,
                    format!("label {label} is not below {classes}"),
                ));
            }
            labels.push(label);
            images.extend_from_slice(&rec[label_bytes..]);
        }
    }
    let n = labels.len() as i64;
    Ok(Split {
        images: Tensor::from_slice(&images).view([n, 3, 32, 32]),
        labels: Tensor::from_slice(&labels).to_kind(Kind::Int64),
    })
}

#[cfg(test)]
pub(super) const RECORD_IMAGE: usize = IMAGE;
