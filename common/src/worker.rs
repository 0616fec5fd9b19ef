//! A worker as it describes itself when it registers.

use serde::{Deserialize, Serialize};

use crate::device::DeviceSpec;

/// What a worker declares about itself: where it runs and what it can train on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub name: String,
    pub hostname: String,
    /// The device it trains on: `cpu` or `cuda:N`.
    pub device: DeviceSpec,
    /// Human-readable device description, e.g. the GPU's or the CPU's model.
    pub device_name: String,
    pub libtorch_version: String,
    /// Jobs it runs at once.
    pub slots: u32,
    /// Device memory (GPU memory on CUDA, RAM on CPU), MiB.
    #[serde(default)]
    pub memory_mb: u64,
    /// The SLURM job it runs in (`123`, or `123_4` for an array task), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm_job: Option<String>,
}

/// The SLURM job this process runs in, from the environment SLURM sets: `SLURM_JOB_ID`, or
/// `SLURM_ARRAY_JOB_ID_SLURM_ARRAY_TASK_ID` for an array task (as `squeue` shows it); None
/// outside SLURM or when the values are not ids.
pub fn slurm_job_from_env() -> Option<String> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let id = match (var("SLURM_ARRAY_JOB_ID"), var("SLURM_ARRAY_TASK_ID")) {
        (Some(job), Some(task)) => format!("{job}_{task}"),
        _ => var("SLURM_JOB_ID")?,
    };
    is_slurm_job(&id).then_some(id)
}

/// Whether `s` reads as a SLURM job id: digits, or digits `_` digits (an array task), at most
/// 32 characters.
pub fn is_slurm_job(s: &str) -> bool {
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    s.len() <= 32
        && match s.split_once('_') {
            Some((job, task)) => digits(job) && digits(task),
            None => digits(s),
        }
}

#[cfg(test)]
mod tests {
    use super::is_slurm_job;

    #[test]
    fn slurm_job_ids_are_digits_with_one_optional_array_task() {
        for good in ["1", "123456", "77_3"] {
            assert!(is_slurm_job(good), "{good}");
        }
        for bad in ["", "_", "1_", "_2", "1_2_3", "12a", "1 2", &"9".repeat(33)] {
            assert!(!is_slurm_job(bad), "{bad:?}");
        }
    }
}
