//! Property tests of the dataset readers: IDX and CIFAR files with arbitrary bytes, or with
//! valid-looking headers whose dimensions, magic and length are mutated (overflowing
//! products, zero images, wrong geometry, truncation), raw and gzipped. Never a panic: either a
//! split whose sizes agree, or an error naming the file. Cases: `PROPTEST_CASES` (256 by
//! default), so CI runs a bounded number.

use std::io::Write;
use std::path::{Path, PathBuf};

use common::Dataset;
use proptest::prelude::*;

use super::{cifar, idx};

/// An IDX file: magic (type byte and dimension count possibly wrong), dimensions, and a
/// payload of the length they imply (when small) or of another length.
#[derive(Debug, Clone)]
struct Idx {
    kind: u8,
    dims: Vec<u32>,
    exact: bool,
    other_len: usize,
}

fn dim() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(28),
        Just(u32::MAX),
        Just(1 << 16),
        0..40u32
    ]
}

fn idx_file(want_dims: usize) -> impl Strategy<Value = Idx> {
    (
        prop_oneof![4 => Just(0x08u8), 1 => any::<u8>()],
        prop_oneof![
            4 => prop::collection::vec(dim(), want_dims..=want_dims),
            1 => prop::collection::vec(dim(), 0..5),
        ],
        any::<bool>(),
        0..20_000usize,
    )
        .prop_map(|(kind, dims, exact, other_len)| Idx {
            kind,
            dims,
            exact,
            other_len,
        })
}

impl Idx {
    fn bytes(&self) -> Vec<u8> {
        let mut b = vec![0, 0, self.kind, self.dims.len() as u8];
        for d in &self.dims {
            b.extend_from_slice(&d.to_be_bytes());
        }
        let implied = self
            .dims
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d as usize))
            .filter(|&n| n <= 200_000);
        let len = match implied {
            Some(n) if self.exact => n,
            _ => self.other_len,
        };
        b.extend((0..len).map(|i| (i % 11) as u8));
        b
    }
}

/// Writes `bytes` as `dir/name`, gzipped (`name.gz`) when `gz`.
fn write(dir: &Path, name: &str, bytes: &[u8], gz: bool) -> PathBuf {
    if gz {
        let path = dir.join(format!("{name}.gz"));
        let mut e = flate2::write::GzEncoder::new(
            std::fs::File::create(&path).unwrap(),
            flate2::Compression::fast(),
        );
        e.write_all(bytes).unwrap();
        e.finish().unwrap();
        path
    } else {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

fn names_a_file(e: &super::DataError, files: &[&Path]) {
    let msg = e.to_string();
    assert!(
        files.iter().any(|f| msg.contains(&*f.to_string_lossy())),
        "error without its file: {msg}"
    );
    assert!(
        !msg.contains("panicked") && !msg.contains("backtrace"),
        "{msg}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn idx_files_never_panic(images in idx_file(3), labels in idx_file(1), gz in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let i = write(dir.path(), "images-idx3-ubyte", &images.bytes(), gz);
        let l = write(dir.path(), "labels-idx1-ubyte", &labels.bytes(), gz);
        match idx::split(&i, &l, Dataset::Mnist.info()) {
            Ok(s) => {
                let n = s.labels.size()[0];
                prop_assert!(n > 0);
                prop_assert_eq!(s.images.size(), vec![n, 1, 28, 28]);
            }
            Err(e) => names_a_file(&e, &[&i, &l]),
        }
    }

    #[test]
    fn arbitrary_bytes_as_idx_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let dir = tempfile::tempdir().unwrap();
        let i = write(dir.path(), "images", &bytes, false);
        let l = write(dir.path(), "labels", &bytes, false);
        if let Err(e) = idx::split(&i, &l, Dataset::Mnist.info()) {
            names_a_file(&e, &[&i, &l]);
        }
    }

    #[test]
    fn cifar_files_never_panic(
        records in 0..4usize,
        extra in prop_oneof![Just(0usize), 1..3073usize],
        label in any::<u8>(),
        fine in any::<bool>(),
        gz in any::<bool>(),
    ) {
        let (label_bytes, dataset) = if fine { (2, Dataset::Cifar100) } else { (1, Dataset::Cifar10) };
        let record = label_bytes + cifar::RECORD_IMAGE;
        let mut bytes = Vec::new();
        for r in 0..records {
            bytes.push(label);
            if fine {
                bytes.push(label);
            }
            bytes.extend((0..cifar::RECORD_IMAGE).map(|i| ((i + r) % 251) as u8));
        }
        bytes.truncate(bytes.len().saturating_sub(extra % record));
        let dir = tempfile::tempdir().unwrap();
        let f = write(dir.path(), "data_batch_1.bin", &bytes, gz);
        match cifar::split(std::slice::from_ref(&f), label_bytes, dataset.info()) {
            Ok(s) => {
                let n = s.labels.size()[0];
                prop_assert!(n > 0);
                prop_assert_eq!(s.images.size(), vec![n, 3, 32, 32]);
            }
            Err(e) => names_a_file(&e, &[&f]),
        }
    }
}
