//! Datasets fetched from a (loopback) mirror and verified.

use integration_tests::{output, serve_dir};
use serde_json::Value;

use crate::support::{real_datasets, train};

/// Missing files are fetched from a mirror, checked against the canonical SHA-256 and cached;
/// a file whose checksum is wrong is refused with a message naming the folder and the files.
#[test]
fn missing_dataset_is_downloaded_and_verified() {
    let tmp = tempfile::tempdir().unwrap();
    // A mirror serving files that are not the real MNIST: every checksum fails.
    let fake = tmp.path().join("fake-mirror");
    let fake_mnist = fake.join("mnist");
    std::fs::create_dir_all(&fake_mnist).unwrap();
    for name in [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ] {
        let f = std::fs::File::create(fake_mnist.join(format!("{name}.gz"))).unwrap();
        let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, b"not mnist").unwrap();
        gz.finish().unwrap();
    }
    let (fake_url, _fake) = serve_dir(&fake);
    let empty = tmp.path().join("cache");
    let (status, _, stderr) = output(
        train(&empty, &["--activation", "relu", "--epochs", "1"])
            .env("WORKER_DATASET_MIRRORS", &fake_url),
    );
    assert!(!status.success());
    assert!(stderr.contains("does not match the canonical"), "{stderr}");
    assert!(
        stderr.contains(&empty.join("mnist").display().to_string()),
        "{stderr}"
    );
    assert!(stderr.contains("train-images-idx3-ubyte"), "{stderr}");
    assert!(
        !empty
            .join("mnist")
            .join("train-images-idx3-ubyte.gz")
            .exists(),
        "nothing unverified is kept"
    );
    // Nor the folders made for the failed download: a wrong --data-dir leaves nothing behind.
    assert!(!empty.exists(), "{} was made and left", empty.display());
}

/// The real files download from a (loopback) mirror, verify and train, after a first mirror
/// that does not have them.
#[test]
#[cfg_attr(
    not(any(ci, have_datasets)),
    ignore = "needs DATASETS_DIR (the real MNIST and CIFAR-10; CI sets it)"
)]
fn real_dataset_downloads_from_a_mirror_and_trains() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = tmp.path().join("fake-mirror");
    std::fs::create_dir_all(fake.join("mnist")).unwrap();
    let (fake_url, _fake) = serve_dir(&fake);
    let empty = tmp.path().join("cache");
    let real = real_datasets();
    let (url, _server) = serve_dir(&real);
    let (status, stdout, stderr) = output(
        train(
            &empty,
            &[
                "--activation",
                "relu",
                "--epochs",
                "1",
                "--train-limit",
                "2000",
            ],
        )
        .env("WORKER_DATASET_MIRRORS", format!("{fake_url},{url}")),
    );
    assert!(status.success(), "{stderr}");
    let job: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(job["status"], "succeeded");
    assert!(
        empty
            .join("mnist")
            .join("train-images-idx3-ubyte.gz")
            .is_file(),
        "cached"
    );
}

/// A mirror serving gzip bombs (64 KiB that inflate to 64 MiB): refused once a file inflates
/// past the size the dataset's file has, before any checksum, and nothing is kept. (The worker
/// used to inflate without a cap: a 1.5 MB gzip took 2 GB.)
#[test]
fn a_gzip_bomb_from_a_mirror_is_refused_at_the_files_size() {
    let tmp = tempfile::tempdir().unwrap();
    let mirror = tmp.path().join("mirror").join("mnist");
    std::fs::create_dir_all(&mirror).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for name in [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ] {
        let f = std::fs::File::create(mirror.join(format!("{name}.gz"))).unwrap();
        let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::best());
        for _ in 0..64 {
            std::io::Write::write_all(&mut gz, &zeros).unwrap();
        }
        gz.finish().unwrap();
    }
    let (url, _server) = serve_dir(&tmp.path().join("mirror"));
    let cache = tmp.path().join("cache");
    let (status, _, stderr) = output(
        train(&cache, &["--activation", "relu", "--epochs", "1"])
            .env("WORKER_DATASET_MIRRORS", &url),
    );
    assert!(!status.success());
    assert!(
        stderr.contains("inflates to more than the 47040016 bytes the file has: refused"),
        "{stderr}"
    );
    assert!(!cache.exists(), "{} was left", cache.display());
}
