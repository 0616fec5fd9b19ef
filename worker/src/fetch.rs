//! Downloading missing dataset files: mirrors tried in order, SHA-256 verified, written
//! atomically, cached in `--data-dir`.
//!
//! Checksums are of the uncompressed files, so a re-compressed copy (Debian rewrites the gzip
//! headers of Fashion-MNIST) verifies as well as upstream's. See [`mirrors_override`] for
//! using other mirrors.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::Dataset;
use sha2::{Digest, Sha256};

/// A file as it must end up in the dataset folder.
struct Expected {
    /// Name in the folder (and in the archive, for CIFAR).
    name: &'static str,
    /// SHA-256 of the uncompressed content; None where no canonical value is known.
    sha256: Option<&'static str>,
}

/// Where a dataset comes from.
enum Source {
    /// One gzip file per expected file: `<mirror><name>.gz`.
    GzFiles(&'static [&'static str]),
    /// One tar.gz holding every expected file (in a sub-folder).
    Archive(&'static [&'static str]),
}

fn catalogue(dataset: Dataset) -> (Source, &'static [Expected]) {
    match dataset {
        Dataset::Mnist => (
            Source::GzFiles(&[
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
                "https://storage.googleapis.com/cvdf-datasets/mnist/",
            ]),
            &[
                Expected {
                    name: "train-images-idx3-ubyte",
                    sha256: Some(
                        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                    ),
                },
                Expected {
                    name: "train-labels-idx1-ubyte",
                    sha256: Some(
                        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                    ),
                },
                Expected {
                    name: "t10k-images-idx3-ubyte",
                    sha256: Some(
                        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                    ),
                },
                Expected {
                    name: "t10k-labels-idx1-ubyte",
                    sha256: Some(
                        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
                    ),
                },
            ],
        ),
        Dataset::FashionMnist => (
            Source::GzFiles(&["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]),
            &[
                Expected {
                    name: "train-images-idx3-ubyte",
                    sha256: Some(
                        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                    ),
                },
                Expected {
                    name: "train-labels-idx1-ubyte",
                    sha256: Some(
                        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                    ),
                },
                Expected {
                    name: "t10k-images-idx3-ubyte",
                    sha256: Some(
                        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                    ),
                },
                Expected {
                    name: "t10k-labels-idx1-ubyte",
                    sha256: Some(
                        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
                    ),
                },
            ],
        ),
        Dataset::Cifar10 => (
            Source::Archive(&["https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"]),
            &[
                Expected {
                    name: "data_batch_1.bin",
                    sha256: Some(
                        "cee916563c9f80d84e3cc88e17fdc0941787f1244f00a67874d45b261883ada5",
                    ),
                },
                Expected {
                    name: "data_batch_2.bin",
                    sha256: Some(
                        "a591ca11fa1708a91ee40f54b3da4784ccd871ecf2137de63f51ada8b3fa57ed",
                    ),
                },
                Expected {
                    name: "data_batch_3.bin",
                    sha256: Some(
                        "bbe8596564c0f86427f876058170b84dac6670ddf06d79402899d93ceea26f67",
                    ),
                },
                Expected {
                    name: "data_batch_4.bin",
                    sha256: Some(
                        "014e562d6e23c72197cc727519169a60359f5eccd8945ad5a09d710285ff4e48",
                    ),
                },
                Expected {
                    name: "data_batch_5.bin",
                    sha256: Some(
                        "755304fc0b379caeae8c14f0dac912fbc7d6cd469eb67a1029a08a39453a9add",
                    ),
                },
                Expected {
                    name: "test_batch.bin",
                    sha256: Some(
                        "8e2eb146ae340b09e24670f29cabc6326dba54da8789dab6768acf480273f65b",
                    ),
                },
            ],
        ),
        // No canonical per-file SHA-256 was available to us for CIFAR-100; its loader still
        // checks every record's size and label range.
        Dataset::Cifar100 => (
            Source::Archive(&["https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz"]),
            &[
                Expected {
                    name: "train.bin",
                    sha256: None,
                },
                Expected {
                    name: "test.bin",
                    sha256: None,
                },
            ],
        ),
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(10))
        .timeout_read(Duration::from_secs(60))
        .build()
}

/// `WORKER_DATASET_MIRRORS=URL[,URL...]`: mirrors laid out like `--data-dir`
/// (`URL/mnist/train-images-idx3-ubyte.gz`, `URL/cifar-10/data_batch_1.bin`), used instead of
/// the canonical sources: for sites with an internal mirror, and for tests that must not
/// reach the internet.
fn mirrors_override() -> Option<Vec<String>> {
    let list = std::env::var("WORKER_DATASET_MIRRORS").ok()?;
    Some(
        list.split(',')
            .map(|m| m.trim().trim_end_matches('/').to_string())
            .filter(|m| !m.is_empty())
            .collect(),
    )
}

fn get(url: &str) -> Result<Vec<u8>, String> {
    let resp = agent().get(url).call().map_err(|e| format!("{url}: {e}"))?;
    let mut body = Vec::new();
    resp.into_reader()
        .take(1 << 30)
        .read_to_end(&mut body)
        .map_err(|e| format!("{url}: {e}"))?;
    Ok(body)
}

fn gunzip(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .map_err(|e| format!("not a gzip file: {e}"))?;
    Ok(out)
}

fn verify(e: &Expected, content: &[u8]) -> Result<(), String> {
    match e.sha256 {
        Some(want) => {
            let got = hex::encode(Sha256::digest(content));
            if got == want {
                Ok(())
            } else {
                Err(format!(
                    "{}: SHA-256 {got} does not match the canonical {want}",
                    e.name
                ))
            }
        }
        None => Ok(()),
    }
}

/// Writes via a temporary file and a rename, so a crash never leaves half a file.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension("part");
    std::fs::write(&tmp, bytes).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Downloads every file of `dataset` that `folder` lacks (`missing`), verifying each.
/// Returns every source's failure when none worked.
pub fn fetch(dataset: Dataset, folder: &Path, missing: &[&str]) -> Result<(), String> {
    std::fs::create_dir_all(folder).map_err(|e| format!("{}: {e}", folder.display()))?;
    // One download at a time per folder, across the slots of a worker and across workers
    // sharing a data volume.
    let lock_path = folder.join(".download.lock");
    let lock =
        std::fs::File::create(&lock_path).map_err(|e| format!("{}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("{}: {e}", lock_path.display()))?;
    let (source, expected) = catalogue(dataset);
    let todo: Vec<&Expected> = expected
        .iter()
        .filter(|e| missing.contains(&e.name) && !has(folder, e.name))
        .collect();
    let mut errors = Vec::new();
    let gz = matches!(source, Source::GzFiles(_));
    match (mirrors_override(), source) {
        (Some(mirrors), _) => {
            for e in todo {
                let file = if gz {
                    format!("{}.gz", e.name)
                } else {
                    e.name.to_string()
                };
                let fetched = mirrors.iter().any(|m| {
                    let url = format!("{m}/{}/{file}", dataset.folder());
                    let result = get(&url).and_then(|bytes| {
                        let content = if gz { gunzip(&bytes)? } else { bytes.clone() };
                        verify(e, &content)?;
                        write_atomic(&folder.join(&file), &bytes)
                    });
                    result.map_err(|why| errors.push(why)).is_ok()
                });
                if !fetched {
                    return Err(errors.join("; "));
                }
            }
        }
        (None, Source::GzFiles(mirrors)) => {
            for e in todo {
                let fetched = mirrors.iter().any(|m| {
                    let url = format!("{m}{}.gz", e.name);
                    let result = get(&url).and_then(|bytes| {
                        verify(e, &gunzip(&bytes)?)?;
                        write_atomic(&folder.join(format!("{}.gz", e.name)), &bytes)
                    });
                    result.map_err(|why| errors.push(why)).is_ok()
                });
                if !fetched {
                    return Err(errors.join("; "));
                }
            }
        }
        (None, Source::Archive(urls)) => {
            let unpacked = urls.iter().any(|url| {
                let result = get(url).and_then(|tgz| unpack(&tgz, folder, expected));
                result.map_err(|why| errors.push(why)).is_ok()
            });
            if !unpacked {
                return Err(errors.join("; "));
            }
        }
    }
    let _ = std::fs::remove_file(&lock_path);
    Ok(())
}

/// Extracts the expected files from a CIFAR tar.gz (they sit in a sub-folder) into `folder`.
fn unpack(tgz: &[u8], folder: &Path, expected: &[Expected]) -> Result<(), String> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tgz));
    let mut found = Vec::new();
    for entry in archive.entries().map_err(|e| format!("archive: {e}"))? {
        let mut entry = entry.map_err(|e| format!("archive: {e}"))?;
        let path: PathBuf = entry
            .path()
            .map_err(|e| format!("archive: {e}"))?
            .into_owned();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(e) = expected.iter().find(|e| e.name == name) {
            let mut bytes = Vec::new();
            entry
                .read_to_end(&mut bytes)
                .map_err(|e| format!("archive: {e}"))?;
            verify(e, &bytes)?;
            write_atomic(&folder.join(e.name), &bytes)?;
            found.push(e.name);
        }
    }
    let absent: Vec<&str> = expected
        .iter()
        .map(|e| e.name)
        .filter(|n| !found.contains(n))
        .collect();
    if absent.is_empty() {
        Ok(())
    } else {
        Err(format!("archive lacks {}", absent.join(", ")))
    }
}

fn has(folder: &Path, name: &str) -> bool {
    folder.join(name).is_file() || folder.join(format!("{name}.gz")).is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_checks_sha256() {
        let e = Expected {
            name: "x",
            // SHA-256 of "abc".
            sha256: Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        };
        assert!(verify(&e, b"abc").is_ok());
        let err = verify(&e, b"abd").unwrap_err();
        assert!(err.contains("does not match"), "{err}");
    }

    #[test]
    fn offline_fetch_fails_with_reasons() {
        let tmp = tempfile::tempdir().unwrap();
        // Nothing listens on port 9 of loopback: every mirror fails fast.
        // SAFETY: no other test of this binary reads or writes this variable.
        unsafe { std::env::set_var("WORKER_DATASET_MIRRORS", "http://127.0.0.1:9") };
        let err = fetch(Dataset::Mnist, tmp.path(), &["train-images-idx3-ubyte"]).unwrap_err();
        assert!(
            err.contains("127.0.0.1:9/mnist/train-images-idx3-ubyte.gz"),
            "{err}"
        );
    }
}
