//! The worker: trains jobs with libtorch, alone (`worker train`) or for a coordinator.
//!
//! # Layout
//! - [`data`]: dataset files → tensors on the training device.
//! - [`model`]: the paper's networks and activations.
//! - [`train`]: the training engine (one job, one device, metrics per epoch).
//! - [`job_process`]: one job in a child process, its events as JSON lines.
//! - [`daemon`]: registers with the coordinator, leases jobs, runs each in a child process.

pub mod daemon;
pub mod data;
pub mod fetch;
pub mod job_process;
pub mod model;
pub mod ops;
pub mod optim;
pub mod train;

/// The libtorch this binary was built against (from `torch.__version__` at build time).
pub const LIBTORCH_VERSION: &str = env!("LIBTORCH_VERSION");

/// This machine's host name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into())
}

/// A human-readable name of the device: the GPU's name and driver, or the CPU model.
pub fn device_name(device: tch::Device) -> String {
    match device {
        tch::Device::Cuda(i) => std::process::Command::new("nvidia-smi")
            .args([
                "--query-gpu=name",
                "--format=csv,noheader",
                "-i",
                &i.to_string(),
            ])
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| format!("CUDA device {i}")),
        _ => std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|s| s.trim().to_string())
            })
            .unwrap_or_else(|| "CPU".into()),
    }
}

/// Memory of the device, MiB: the GPU's total memory, or the machine's RAM.
pub fn device_memory_mb(device: tch::Device) -> u64 {
    match device {
        tch::Device::Cuda(i) => std::process::Command::new("nvidia-smi")
            .args([
                "--query-gpu=memory.total",
                "--format=csv,noheader,nounits",
                "-i",
                &i.to_string(),
            ])
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0),
        _ => std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<u64>().ok())
            })
            .map_or(0, |kb| kb / 1024),
    }
}
