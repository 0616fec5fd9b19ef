//! Helpers for the end-to-end tests: locating the built binaries, generating small datasets
//! with learnable structure, and waiting for conditions without fixed sleeps.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// `target/<profile>/` of this build, where cargo puts the workspace's binaries.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

/// Every process the tests start fetches datasets only from loopback: a mirror where nothing
/// listens, unless a test sets `WORKER_DATASET_MIRRORS` itself on its command.
fn offline() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // Set before any test starts a process, so every child inherits it.
    ONCE.call_once(|| std::env::set_var("WORKER_DATASET_MIRRORS", "http://127.0.0.1:9"));
}

/// The path of a workspace binary; panics with a hint when it has not been built.
pub fn bin(name: &str) -> PathBuf {
    offline();
    let p = bin_dir().join(name);
    assert!(
        p.is_file(),
        "{} not found: build the binaries first (`cargo build --workspace --bins`, as scripts/test.sh does)",
        p.display()
    );
    p
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for `child` to exit; kills it and panics after `timeout`.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

/// A tiny deterministic PRNG (xorshift), so fixtures are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `n` 28×28 images of class `i % 10`: a bright 8×8 block at a class-specific position,
/// jittered by up to 2 pixels, on noise. Learnable by a CNN in an epoch, far above chance.
fn synthetic(n: u32, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut images = vec![0u8; n as usize * 784];
    let mut labels = Vec::with_capacity(n as usize);
    for i in 0..n as usize {
        let class = (rng.below(10)) as usize;
        labels.push(class as u8);
        let img = &mut images[i * 784..(i + 1) * 784];
        for px in img.iter_mut() {
            *px = rng.below(60) as u8;
        }
        let (row, col) = (2 + (class / 5) * 12, 1 + (class % 5) * 5);
        let (jr, jc) = (rng.below(3) as usize, rng.below(2) as usize);
        for r in 0..8 {
            for c in 0..5 {
                let (y, x) = (row + jr + r, col + jc + c);
                if y < 28 && x < 28 {
                    img[y * 28 + x] = 200 + rng.below(56) as u8;
                }
            }
        }
    }
    (images, labels)
}

/// Writes an MNIST-format dataset into `dir` (training files raw, test files gzipped, so both
/// readers are exercised).
pub fn write_synthetic_mnist(dir: &Path, train: u32, test: u32) {
    std::fs::create_dir_all(dir).unwrap();
    let (ti, tl) = synthetic(train, 1);
    std::fs::write(
        dir.join("train-images-idx3-ubyte"),
        idx_bytes(&[train, 28, 28], &ti),
    )
    .unwrap();
    std::fs::write(
        dir.join("train-labels-idx1-ubyte"),
        idx_bytes(&[train], &tl),
    )
    .unwrap();
    let (vi, vl) = synthetic(test, 2);
    for (name, bytes) in [
        ("t10k-images-idx3-ubyte.gz", idx_bytes(&[test, 28, 28], &vi)),
        ("t10k-labels-idx1-ubyte.gz", idx_bytes(&[test], &vl)),
    ] {
        let f = std::fs::File::create(dir.join(name)).unwrap();
        let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
        gz.write_all(&bytes).unwrap();
        gz.finish().unwrap();
    }
}

/// Writes CIFAR-10 binary batches into `dir`: `per_batch` records in each of the five training
/// files and `test` in the test file, labels cycling through the ten classes.
pub fn write_synthetic_cifar10(dir: &Path, per_batch: u32, test: u32) {
    std::fs::create_dir_all(dir).unwrap();
    let batch = |n: u32, salt: u32| -> Vec<u8> {
        let mut out = Vec::with_capacity(n as usize * 3073);
        for r in 0..n {
            let label = ((r + salt) % 10) as u8;
            out.push(label);
            // Each class a different brightness, plus a little texture.
            out.extend((0..3072u32).map(|p| (label as u32 * 25 + (p * 7 + r) % 13) as u8));
        }
        out
    };
    for i in 1..=5 {
        std::fs::write(dir.join(format!("data_batch_{i}.bin")), batch(per_batch, i)).unwrap();
    }
    std::fs::write(dir.join("test_batch.bin"), batch(test, 0)).unwrap();
}

/// Runs a command to completion, returning (status, stdout, stderr).
pub fn output(cmd: &mut Command) -> (ExitStatus, String, String) {
    let o = cmd.output().expect("run command");
    (
        o.status,
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Serves the files under `root` over HTTP on a loopback port, in a background thread, for
/// as long as the returned server lives. Returns its base URL.
pub fn serve_dir(root: &Path) -> (String, std::sync::Arc<tiny_http::Server>) {
    let server = std::sync::Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind"));
    let url = format!("http://{}", server.server_addr());
    let (s, root) = (server.clone(), root.to_path_buf());
    std::thread::spawn(move || {
        for req in s.incoming_requests() {
            let rel = req.url().trim_start_matches('/').to_string();
            let path = root.join(&rel);
            let _ = if !rel.contains("..") && path.is_file() {
                req.respond(tiny_http::Response::from_file(
                    std::fs::File::open(path).unwrap(),
                ))
            } else {
                req.respond(tiny_http::Response::empty(404))
            };
        }
    });
    (url, server)
}
