//! `results.json`: the grid, where and when it ran, and every job's record.

use serde::{Deserialize, Serialize};

use common::{Grid, JobRecord, JobStatus, WorkerId, WorkerInfo};

/// A worker that ran jobs, as recorded in `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerEnv {
    pub id: WorkerId,
    #[serde(flatten)]
    pub info: WorkerInfo,
}

/// One run of the coordinator on this state: what produced the jobs that finished in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// 1, 2, ... in order; a job record's `run` refers to it.
    pub id: u32,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub finished_at: Option<String>,
    pub grid_file: String,
    pub grid_sha256: String,
    pub coordinator_version: String,
    pub host: String,
    /// Jobs whose final status was reached in this run.
    #[serde(default)]
    pub jobs_finished: u32,
    /// The SLURM job the coordinator ran in (`123`, `123_4` for an array task), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm_job: Option<String>,
}

/// Where and when the grid ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    pub coordinator_version: String,
    pub coordinator_host: String,
    pub grid_file: String,
    pub grid_sha256: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub finished_at: Option<String>,
    pub workers: Vec<WorkerEnv>,
    /// Every run on this state, oldest first (absent in states made before runs were kept).
    #[serde(default)]
    pub runs: Vec<RunInfo>,
}

/// The content of `results.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    pub grid: Grid,
    pub environment: Environment,
    pub jobs: Vec<JobRecord>,
}

impl Results {
    /// Jobs that failed, diverged or were cancelled, for the reports' list of problems.
    pub fn problem_jobs(&self) -> Vec<&JobRecord> {
        self.jobs
            .iter()
            .filter(|j| {
                matches!(
                    j.status,
                    JobStatus::Failed | JobStatus::Diverged | JobStatus::Cancelled
                )
            })
            .collect()
    }
}

/// One run in words, for the reports' environment.
pub fn run_text(r: &RunInfo) -> String {
    let slurm = r
        .slurm_job
        .as_deref()
        .map_or_else(String::new, |j| format!(" in SLURM job {j}"));
    format!(
        "Run {}: {} to {}, grid file {} (SHA-256 {}), coordinator {} on {}{slurm}: {} job(s) finished in it",
        r.id,
        r.started_at,
        r.finished_at.as_deref().unwrap_or("(not finished)"),
        r.grid_file,
        // Cut by characters: a results file from elsewhere may hold anything here.
        r.grid_sha256.chars().take(12).collect::<String>(),
        r.coordinator_version,
        r.host,
        r.jobs_finished
    )
}

/// How many attempts a job took, and why the extra ones happened: a lost worker
/// (infrastructure, retried automatically) or a failure in training (retried per `retries`).
pub fn attempts_text(j: &JobRecord) -> String {
    let mut why = Vec::new();
    if j.lost_attempts > 0 {
        why.push(format!("{} lost worker", j.lost_attempts));
    }
    if j.failed_attempts > 0 {
        why.push(format!("{} failed and retried", j.failed_attempts));
    }
    if why.is_empty() {
        j.attempts.to_string()
    } else {
        format!("{} ({})", j.attempts, why.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_say_why() {
        let mut r = crate::fixtures::results();
        let j = &mut r.jobs[0];
        (j.attempts, j.lost_attempts, j.failed_attempts) = (3, 1, 1);
        assert_eq!(attempts_text(j), "3 (1 lost worker, 1 failed and retried)");
        assert_eq!(attempts_text(&r.jobs[1]), "1");
    }

    #[test]
    fn workers_keep_their_flat_json_fields() {
        let w = WorkerEnv {
            id: WorkerId::nth(1),
            info: WorkerInfo {
                name: "n".into(),
                hostname: "h".into(),
                device: common::DeviceSpec::Cuda(Some(0)),
                device_name: "GPU".into(),
                libtorch_version: "2.11.0".into(),
                slots: 1,
                memory_mb: 8,
                slurm_job: Some("77_3".into()),
            },
        };
        let json = serde_json::to_value(&w).unwrap();
        assert_eq!(json["id"], "w1");
        assert_eq!(json["device"], "cuda:0");
        assert_eq!(json["memory_mb"], 8);
        assert_eq!(json["slurm_job"], "77_3");
        assert_eq!(serde_json::from_value::<WorkerEnv>(json).unwrap(), w);
    }
}
