//! The readers against small files written here: valid, truncated, corrupt, missing.

use std::path::Path;

use common::Dataset;

use super::*;

const IDX_FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// `dir` as the data folder, offline: a mirror where nothing listens.
fn source(dir: &Path) -> DataSource {
    DataSource {
        dir: dir.to_path_buf(),
        mirrors: Some(vec!["http://127.0.0.1:9".into()]),
    }
}

fn write_idx(dir: &Path, name: &str, dims: &[u32], data: &[u8]) {
    let mut b = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    std::fs::write(dir.join(name), b).unwrap();
}

fn fixture(dir: &Path, n: u32) {
    let imgs = vec![7u8; (n * 28 * 28) as usize];
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    write_idx(dir, IDX_FILES[0], &[n, 28, 28], &imgs);
    write_idx(dir, IDX_FILES[1], &[n], &labels);
    write_idx(dir, IDX_FILES[2], &[n, 28, 28], &imgs);
    write_idx(dir, IDX_FILES[3], &[n], &labels);
}

#[test]
fn loads_idx() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mnist");
    std::fs::create_dir(&dir).unwrap();
    fixture(&dir, 20);
    let d = load(Dataset::Mnist, &source(tmp.path())).unwrap();
    assert_eq!(d.train.images.size(), vec![20, 1, 28, 28]);
    assert_eq!(d.test.labels.int64_value(&[13]), 3);
    // The folder itself also works as --data-dir.
    assert!(load(Dataset::Mnist, &source(&dir)).is_ok());
}

#[test]
fn missing_files_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let err = load(Dataset::FashionMnist, &source(tmp.path()))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("fashion-mnist"), "{err}");
    assert!(err.contains("train-images-idx3-ubyte"), "{err}");
    assert!(err.contains(&tmp.path().display().to_string()), "{err}");
    // The failed download leaves nothing behind in the new data folder.
    let left: Vec<_> = std::fs::read_dir(tmp.path().join("fashion-mnist"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn truncated_file_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mnist");
    std::fs::create_dir(&dir).unwrap();
    fixture(&dir, 20);
    let p = dir.join(IDX_FILES[0]);
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 100]).unwrap();
    let err = load(Dataset::Mnist, &source(tmp.path()))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("corrupt or truncated") && err.contains("train-images"),
        "{err}"
    );
}

#[test]
fn bad_magic_and_bad_gzip_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mnist");
    std::fs::create_dir(&dir).unwrap();
    fixture(&dir, 20);
    std::fs::write(dir.join(IDX_FILES[1]), b"\x00\x00\x09\x01garbage").unwrap();
    let err = load(Dataset::Mnist, &source(tmp.path()))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("bad IDX magic"), "{err}");
    std::fs::remove_file(dir.join(IDX_FILES[1])).unwrap();
    std::fs::write(dir.join(format!("{}.gz", IDX_FILES[1])), b"not gzip at all").unwrap();
    let err = load(Dataset::Mnist, &source(tmp.path()))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("gzip"), "{err}");
}

#[test]
fn cifar_records() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cifar-10").join("cifar-10-batches-bin");
    std::fs::create_dir_all(&dir).unwrap();
    for (i, name) in Dataset::Cifar10.info().file_names().iter().enumerate() {
        let mut b = Vec::new();
        for r in 0..3u8 {
            b.push((r + i as u8) % 10);
            b.extend(std::iter::repeat_n(r, cifar::RECORD_IMAGE));
        }
        std::fs::write(dir.join(name), b).unwrap();
    }
    let d = load(Dataset::Cifar10, &source(tmp.path())).unwrap();
    assert_eq!(d.train.images.size(), vec![15, 3, 32, 32]);
    assert_eq!(d.test.labels.size(), vec![3]);
    std::fs::write(dir.join("test_batch.bin"), vec![1u8; 100]).unwrap();
    let err = load(Dataset::Cifar10, &source(tmp.path()))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("whole number"), "{err}");
}

/// Headers that lie are errors naming the file, never a panic: dimensions whose product
/// overflows, images of another size, no images at all, and a small `.gz` that inflates past
/// what such a file can hold.
#[test]
fn hostile_headers_and_bombs_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mnist");
    std::fs::create_dir(&dir).unwrap();
    let load_err = || {
        load(Dataset::Mnist, &source(tmp.path()))
            .err()
            .unwrap()
            .to_string()
    };
    fixture(&dir, 20);
    write_idx(&dir, IDX_FILES[0], &[u32::MAX, u32::MAX, u32::MAX], &[]);
    let e = load_err();
    assert!(e.contains("overflow") && e.contains("train-images"), "{e}");
    write_idx(&dir, IDX_FILES[0], &[20, 32, 32], &vec![0u8; 20 * 32 * 32]);
    let e = load_err();
    assert!(e.contains("32x32, expected 28x28"), "{e}");
    write_idx(&dir, IDX_FILES[0], &[0, 28, 28], &[]);
    write_idx(&dir, IDX_FILES[1], &[0], &[]);
    let e = load_err();
    assert!(e.contains("no images"), "{e}");
    fixture(&dir, 20);
    std::fs::remove_file(dir.join(IDX_FILES[1])).unwrap();
    // 4 KB of gzip that inflates to 4 MB, where a label file holds at most 60,008 bytes.
    let f = std::fs::File::create(dir.join(format!("{}.gz", IDX_FILES[1]))).unwrap();
    let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::best());
    std::io::Write::write_all(&mut gz, &vec![0u8; 4 << 20]).unwrap();
    gz.finish().unwrap();
    let e = load_err();
    assert!(e.contains("more than the 60008 bytes"), "{e}");
}
