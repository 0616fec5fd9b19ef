//! Downloading missing dataset files: mirrors tried in order, SHA-256 verified, written
//! atomically, cached in `--data-dir`.
//!
//! What to fetch, from where, and the checksums are the domain's dataset table. Checksums are
//! of the uncompressed files, so a re-compressed copy (Debian rewrites the gzip headers of
//! Fashion-MNIST) verifies as well as upstream's. `mirrors` (`WORKER_DATASET_MIRRORS`,
//! read by `main`) replace the canonical sources with mirrors laid out like `--data-dir`
//! (`URL/mnist/train-images-idx3-ubyte.gz`, `URL/cifar-10/data_batch_1.bin`): for sites with an
//! internal mirror, and for tests that must not reach the internet.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::dataset::{DataFile, Source};
use common::Dataset;
use sha2::{Digest, Sha256};

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(10))
        .timeout_read(Duration::from_secs(60))
        .build()
}

/// Reads all of `r`, refusing it past `most` bytes (`what` names it in the error).
fn read_capped(r: impl Read, most: u64, what: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    r.take(most + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("{what}: {e}"))?;
    if out.len() as u64 > most {
        return Err(format!(
            "{what}: more than the {most} bytes it can have: refused"
        ));
    }
    Ok(out)
}

/// What a compressed download of `content` bytes may take: deflate's stored blocks add 5 bytes
/// in 64 KiB, gzip and tar headers a little more.
fn compressed_bound(content: u64) -> u64 {
    content + content / 1024 + (1 << 20)
}

/// The body at `url`, at most `most` bytes.
fn get(url: &str, most: u64) -> Result<Vec<u8>, String> {
    let resp = agent().get(url).call().map_err(|e| format!("{url}: {e}"))?;
    read_capped(resp.into_reader(), most, url)
}

/// `bytes` inflated, at most `most` bytes (a small gzip can inflate to gigabytes).
fn gunzip(bytes: &[u8], most: u64) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .take(most + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("not a gzip file: {e}"))?;
    if out.len() as u64 > most {
        return Err(format!(
            "inflates to more than the {most} bytes the file has: refused"
        ));
    }
    Ok(out)
}

fn verify(e: &DataFile, content: &[u8]) -> Result<(), String> {
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
/// Returns every source's failure when none worked. A folder made for the download and left
/// empty by its failure is removed, so a wrong `--data-dir` leaves nothing behind.
pub fn fetch(
    dataset: Dataset,
    folder: &Path,
    missing: &[&str],
    mirrors: Option<&[String]>,
) -> Result<(), String> {
    // The folders the download will make: `folder` and those of its parents that are missing.
    let made: Vec<&Path> = folder.ancestors().take_while(|p| !p.exists()).collect();
    let result = fetch_into(dataset, folder, missing, mirrors);
    if result.is_err() {
        for dir in made {
            if std::fs::remove_dir(dir).is_err() {
                break; // not empty (or not ours to remove): leave it and its parents
            }
        }
    }
    result
}

fn fetch_into(
    dataset: Dataset,
    folder: &Path,
    missing: &[&str],
    mirrors: Option<&[String]>,
) -> Result<(), String> {
    std::fs::create_dir_all(folder).map_err(|e| format!("{}: {e}", folder.display()))?;
    // One download at a time per folder, across the slots of a worker and across workers
    // sharing a data volume.
    let lock_path = folder.join(".download.lock");
    let lock =
        std::fs::File::create(&lock_path).map_err(|e| format!("{}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("{}: {e}", lock_path.display()))?;
    // Removed however this ends (a failed download left it behind in a new data folder).
    let _remove = RemoveOnDrop(&lock_path);
    let info = dataset.info();
    let (source, expected) = (info.source, info.files);
    let todo: Vec<&DataFile> = expected
        .iter()
        .filter(|e| missing.contains(&e.name) && !has(folder, e.name))
        .collect();
    let mut errors = Vec::new();
    // Every file's size is known (the table's geometry), so no download may exceed it.
    let size = |e: &DataFile| info.file_size(e.name).unwrap_or(1 << 30);
    let per_file: &[&str] = match (mirrors, source) {
        (None, Source::Archive(urls)) => {
            let total: u64 = expected.iter().map(size).sum();
            let unpacked = urls.iter().any(|url| {
                let result = get(url, compressed_bound(total))
                    .and_then(|tgz| unpack(&tgz, folder, expected, &size, total));
                result.map_err(|why| errors.push(why)).is_ok()
            });
            return if unpacked {
                Ok(())
            } else {
                Err(errors.join("; "))
            };
        }
        (Some(_), _) => &[],
        (None, Source::GzFiles(urls)) => urls,
    };
    let gz = matches!(source, Source::GzFiles(_));
    for e in todo {
        let file = if gz {
            format!("{}.gz", e.name)
        } else {
            e.name.to_string()
        };
        // Mirrors are laid out like --data-dir; the canonical sources hold the files at the top.
        let urls: Vec<String> = match mirrors {
            Some(ms) => ms
                .iter()
                .map(|m| format!("{m}/{}/{file}", dataset.folder()))
                .collect(),
            None => per_file.iter().map(|m| format!("{m}{file}")).collect(),
        };
        let fetched = urls.iter().any(|url| {
            let result = get(url, compressed_bound(size(e))).and_then(|bytes| {
                if gz {
                    let content = gunzip(&bytes, size(e)).map_err(|why| format!("{url}: {why}"))?;
                    verify(e, &content)?;
                } else {
                    verify(e, &bytes)?;
                }
                write_atomic(&folder.join(&file), &bytes)
            });
            result.map_err(|why| errors.push(why)).is_ok()
        });
        if !fetched {
            return Err(errors.join("; "));
        }
    }
    Ok(())
}

/// Removes its file when dropped.
struct RemoveOnDrop<'a>(&'a Path);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
    }
}

/// Extracts the expected files from a CIFAR tar.gz (they sit in a sub-folder) into `folder`,
/// each at most `size` bytes, and inflating at most `total` bytes (and 16 MiB for the rest of
/// the archive: headers, a readme) in all.
fn unpack(
    tgz: &[u8],
    folder: &Path,
    expected: &[DataFile],
    size: &dyn Fn(&DataFile) -> u64,
    total: u64,
) -> Result<(), String> {
    let inflated = flate2::read::GzDecoder::new(tgz).take(total + (16 << 20));
    let mut archive = tar::Archive::new(inflated);
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
            let bytes = read_capped(&mut entry, size(e), &format!("archive: {}", e.name))?;
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
        let e = DataFile {
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
        let mirrors = ["http://127.0.0.1:9".to_string()];
        let missing = ["train-images-idx3-ubyte"];
        let err = fetch(Dataset::Mnist, tmp.path(), &missing, Some(&mirrors)).unwrap_err();
        assert!(
            err.contains("127.0.0.1:9/mnist/train-images-idx3-ubyte.gz"),
            "{err}"
        );
    }
}
