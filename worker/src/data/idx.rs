//! MNIST-format IDX files: a magic number (unsigned bytes, the number of dimensions), the
//! dimensions as big-endian u32s, then the data.

use std::path::Path;

use tch::{Kind, Tensor};

use common::DatasetInfo;

use super::error::{corrupt, DataError};
use super::{read_all, Split};

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parses one IDX file of `want_dims` dimensions, of at most `max` bytes; returns the
/// dimensions and the payload.
fn parse(path: &Path, want_dims: usize, max: u64) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let bytes = read_all(path, max)?;
    if bytes.len() < 4 {
        return Err(corrupt(path, "shorter than the 4-byte IDX header"));
    }
    let (zero, kind, dims) = (u16::from_be_bytes([bytes[0], bytes[1]]), bytes[2], bytes[3]);
    if zero != 0 || kind != 0x08 || dims as usize != want_dims {
        return Err(corrupt(
            path,
            format!(
                "bad IDX magic {:02x}{:02x}{:02x}{:02x}: expected unsigned bytes with {want_dims} dimension(s)",
                bytes[0], bytes[1], bytes[2], bytes[3]
            ),
        ));
    }
    let header = 4 + 4 * want_dims;
    if bytes.len() < header {
        return Err(corrupt(path, "truncated IDX header"));
    }
    let shape: Vec<usize> = (0..want_dims)
        .map(|i| be_u32(&bytes, 4 + 4 * i) as usize)
        .collect();
    let expected = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| corrupt(path, format!("header dimensions {shape:?} overflow")))?;
    let payload = bytes.len() - header;
    if payload != expected {
        return Err(corrupt(
            path,
            format!("header says {shape:?} = {expected} bytes of data, file has {payload}"),
        ));
    }
    Ok((shape, bytes[header..].to_vec()))
}

/// One split from its image and label files, of the geometry and classes `info` gives.
pub fn split(images: &Path, labels: &Path, info: &DatasetInfo) -> Result<Split, DataError> {
    let (h, w, classes) = (info.shape.height, info.shape.width, info.shape.classes);
    // No split is larger than the dataset's training set.
    let most = info.train_images.max(info.test_images);
    let (ishape, ibytes) = parse(images, 3, 16 + most * (h * w) as u64)?;
    if ishape[1..] != [h, w] {
        let why = format!("images are {}x{}, expected {h}x{w}", ishape[1], ishape[2]);
        return Err(corrupt(images, why));
    }
    if ishape[0] == 0 {
        return Err(corrupt(images, "the file holds no images"));
    }
    let (lshape, lbytes) = parse(labels, 1, 8 + most)?;
    if ishape[0] != lshape[0] {
        return Err(corrupt(
            labels,
            format!(
                "{} labels for {} images in {}",
                lshape[0],
                ishape[0],
                images.display()
            ),
        ));
    }
    if let Some(i) = lbytes.iter().position(|&l| l as usize >= classes) {
        let why = format!("label {} at record {i} is not below {classes}", lbytes[i]);
        return Err(corrupt(labels, why));
    }
    let n = ishape[0] as i64;
    let images = Tensor::from_slice(&ibytes).view([n, 1, ishape[1] as i64, ishape[2] as i64]);
    let labels = Tensor::from_slice(&lbytes).to_kind(Kind::Int64);
    Ok(Split { images, labels })
}
