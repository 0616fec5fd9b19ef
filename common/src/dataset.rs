//! Every fact about a dataset, in one table: where its files live, what they must hash to,
//! where to download them, image geometry, normalization and the default target.
//!
//! The worker's loader and downloader, the coordinator's cost model and `worker train`'s
//! defaults all read this table, so a dataset is described exactly once.

use crate::names::Dataset;

/// Image geometry and class count of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub classes: usize,
}

/// A file as it must end up in the dataset folder (raw, or gzipped as `<name>.gz`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataFile {
    pub name: &'static str,
    /// SHA-256 of the uncompressed content; None where no canonical value is known.
    pub sha256: Option<&'static str>,
}

/// Where a dataset's files come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// One gzip file per data file: `<mirror><name>.gz`, mirrors tried in order.
    GzFiles(&'static [&'static str]),
    /// One tar.gz holding every data file (in a sub-folder), URLs tried in order.
    Archive(&'static [&'static str]),
}

/// How a dataset's records are laid out on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// MNIST-style IDX: image and label files for train and test.
    Idx,
    /// CIFAR binary: records of `label_bytes` label bytes (the last one is the class) and a
    /// 3×32×32 image; the last file is the test split.
    CifarBinary { label_bytes: usize },
}

/// The facts about one dataset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DatasetInfo {
    /// Folder under `--data-dir`.
    pub folder: &'static str,
    /// The folder the canonical archive unpacks into, also accepted inside `folder`.
    pub archive_folder: Option<&'static str>,
    pub shape: Shape,
    pub format: Format,
    pub train_images: u64,
    pub test_images: u64,
    /// Per-channel mean and standard deviation of the training images, in [0, 1] units.
    pub mean: &'static [f64],
    pub std: &'static [f64],
    /// Every file the loader needs, in the order the loader reads them.
    pub files: &'static [DataFile],
    pub source: Source,
    /// Where a person can get the files by hand, for error messages.
    pub source_hint: &'static str,
    /// The test accuracy `worker train` targets when none is given.
    pub default_target: f64,
}

const IDX_FILE_NAMES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

const MNIST_GRAY: Shape = Shape {
    channels: 1,
    height: 28,
    width: 28,
    classes: 10,
};

/// The table. Checksums are of the uncompressed files, so a re-compressed copy (Debian
/// rewrites the gzip headers of Fashion-MNIST) verifies as well as upstream's.
const MNIST: DatasetInfo = DatasetInfo {
    folder: "mnist",
    archive_folder: None,
    shape: MNIST_GRAY,
    format: Format::Idx,
    train_images: 60_000,
    test_images: 10_000,
    mean: &[0.1307],
    std: &[0.3081],
    files: &[
        DataFile {
            name: IDX_FILE_NAMES[0],
            sha256: Some("ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
        },
        DataFile {
            name: IDX_FILE_NAMES[1],
            sha256: Some("65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
        },
        DataFile {
            name: IDX_FILE_NAMES[2],
            sha256: Some("0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
        },
        DataFile {
            name: IDX_FILE_NAMES[3],
            sha256: Some("ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
        },
    ],
    source: Source::GzFiles(&[
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ]),
    source_hint: "https://ossci-datasets.s3.amazonaws.com/mnist/",
    default_target: 0.98,
};

const FASHION_MNIST: DatasetInfo = DatasetInfo {
    folder: "fashion-mnist",
    mean: &[0.2860],
    std: &[0.3530],
    files: &[
        DataFile {
            name: IDX_FILE_NAMES[0],
            sha256: Some("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
        },
        DataFile {
            name: IDX_FILE_NAMES[1],
            sha256: Some("bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
        },
        DataFile {
            name: IDX_FILE_NAMES[2],
            sha256: Some("5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
        },
        DataFile {
            name: IDX_FILE_NAMES[3],
            sha256: Some("0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
        },
    ],
    // Zalando's repository holds the gzip files; its S3 website serves plain HTTP only.
    source: Source::GzFiles(&[
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ]),
    source_hint: "https://github.com/zalandoresearch/fashion-mnist (or Debian's dataset-fashion-mnist package)",
    default_target: 0.90,
    ..MNIST
};

const CIFAR10: DatasetInfo = DatasetInfo {
    folder: "cifar-10",
    archive_folder: Some("cifar-10-batches-bin"),
    shape: Shape {
        channels: 3,
        height: 32,
        width: 32,
        classes: 10,
    },
    format: Format::CifarBinary { label_bytes: 1 },
    train_images: 50_000,
    test_images: 10_000,
    mean: &[0.4914, 0.4822, 0.4465],
    std: &[0.2470, 0.2435, 0.2616],
    files: &[
        DataFile {
            name: "data_batch_1.bin",
            sha256: Some("cee916563c9f80d84e3cc88e17fdc0941787f1244f00a67874d45b261883ada5"),
        },
        DataFile {
            name: "data_batch_2.bin",
            sha256: Some("a591ca11fa1708a91ee40f54b3da4784ccd871ecf2137de63f51ada8b3fa57ed"),
        },
        DataFile {
            name: "data_batch_3.bin",
            sha256: Some("bbe8596564c0f86427f876058170b84dac6670ddf06d79402899d93ceea26f67"),
        },
        DataFile {
            name: "data_batch_4.bin",
            sha256: Some("014e562d6e23c72197cc727519169a60359f5eccd8945ad5a09d710285ff4e48"),
        },
        DataFile {
            name: "data_batch_5.bin",
            sha256: Some("755304fc0b379caeae8c14f0dac912fbc7d6cd469eb67a1029a08a39453a9add"),
        },
        DataFile {
            name: "test_batch.bin",
            sha256: Some("8e2eb146ae340b09e24670f29cabc6326dba54da8789dab6768acf480273f65b"),
        },
    ],
    source: Source::Archive(&["https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"]),
    source_hint: "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz (unpacked)",
    default_target: 0.87,
};

/// No canonical per-file SHA-256 was available to us for CIFAR-100; its loader still checks
/// every record's size and label range. Each record has a coarse and a fine label; we
/// classify the 100 fine labels.
const CIFAR100: DatasetInfo = DatasetInfo {
    folder: "cifar-100",
    archive_folder: Some("cifar-100-binary"),
    shape: Shape {
        classes: 100,
        ..CIFAR10.shape
    },
    format: Format::CifarBinary { label_bytes: 2 },
    mean: &[0.5071, 0.4865, 0.4409],
    std: &[0.2673, 0.2564, 0.2762],
    files: &[
        DataFile {
            name: "train.bin",
            sha256: None,
        },
        DataFile {
            name: "test.bin",
            sha256: None,
        },
    ],
    source: Source::Archive(&["https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz"]),
    source_hint: "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz (unpacked)",
    default_target: 0.60,
    ..CIFAR10
};

impl Dataset {
    /// Every fact about this dataset.
    pub fn info(self) -> &'static DatasetInfo {
        match self {
            Dataset::Mnist => &MNIST,
            Dataset::FashionMnist => &FASHION_MNIST,
            Dataset::Cifar10 => &CIFAR10,
            Dataset::Cifar100 => &CIFAR100,
        }
    }

    /// Folder under `--data-dir` (the contract's dataset table).
    pub fn folder(self) -> &'static str {
        self.info().folder
    }
}

impl DatasetInfo {
    /// The file names, in the loader's order.
    pub fn file_names(&self) -> Vec<&'static str> {
        self.files.iter().map(|f| f.name).collect()
    }

    /// The size in bytes of the complete, uncompressed file `name` of this dataset: a download
    /// that inflates past it is refused before its checksum is computed.
    pub fn file_size(&self, name: &str) -> Option<u64> {
        let i = self.files.iter().position(|f| f.name == name)?;
        let s = self.shape;
        let image = (s.channels * s.height * s.width) as u64;
        Some(match self.format {
            Format::Idx => {
                let n = if name.starts_with("train") {
                    self.train_images
                } else {
                    self.test_images
                };
                if name.contains("images") {
                    16 + n * image
                } else {
                    8 + n
                }
            }
            Format::CifarBinary { label_bytes } => {
                // The training images split evenly over every file but the last (the test).
                let train_files = (self.files.len() - 1) as u64;
                let n = if i + 1 == self.files.len() {
                    self.test_images
                } else {
                    self.train_images / train_files
                };
                n * (label_bytes as u64 + image)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dataset_has_its_files_and_matching_normalization() {
        for d in Dataset::ALL {
            let info = d.info();
            assert!(!info.files.is_empty(), "{d}");
            assert_eq!(info.mean.len(), info.shape.channels, "{d}");
            assert_eq!(info.std.len(), info.shape.channels, "{d}");
            assert!(info.default_target > 0.0 && info.default_target <= 1.0);
        }
        assert_eq!(Dataset::Cifar10.folder(), "cifar-10");
        assert_eq!(Dataset::FashionMnist.info().shape.height, 28);
        assert_eq!(Dataset::Cifar100.info().shape.classes, 100);
        assert_eq!(
            Dataset::Mnist.info().file_names()[0],
            "train-images-idx3-ubyte"
        );
    }

    /// Every download is over TLS (Fashion-MNIST's S3 website served plain HTTP).
    #[test]
    fn every_source_is_https() {
        for d in Dataset::ALL {
            let urls = match d.info().source {
                Source::GzFiles(u) | Source::Archive(u) => u,
            };
            assert!(!urls.is_empty(), "{d}");
            for u in urls {
                assert!(u.starts_with("https://"), "{d}: {u}");
            }
        }
    }

    #[test]
    fn file_sizes_are_those_of_the_canonical_files() {
        let mnist = Dataset::Mnist.info();
        let sizes: Vec<_> = IDX_FILE_NAMES
            .iter()
            .map(|n| mnist.file_size(n).unwrap())
            .collect();
        assert_eq!(sizes, [47_040_016, 60_008, 7_840_016, 10_008]);
        let cifar = Dataset::Cifar10.info();
        assert_eq!(cifar.file_size("data_batch_3.bin"), Some(30_730_000));
        assert_eq!(cifar.file_size("test_batch.bin"), Some(30_730_000));
        let c100 = Dataset::Cifar100.info();
        assert_eq!(c100.file_size("train.bin"), Some(50_000 * 3074));
        assert_eq!(c100.file_size("test.bin"), Some(10_000 * 3074));
        assert_eq!(mnist.file_size("elsewhere"), None);
    }
}
