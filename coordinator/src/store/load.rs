//! Reading the whole database back, for the state to be rebuilt in memory after a restart (or
//! for `coordinator report`). One query per table, not per job: a million jobs load in one pass.

use std::collections::HashMap;

use common::{
    EpochClock, EpochMetrics, Grid, JobId, JobStatus, LeaseId, RunClock, WorkerId, WorkerInfo,
};
use rusqlite::{Connection, OptionalExtension};

use super::{Result, StoreError};

/// A job's row and its epochs.
#[derive(Debug, Clone)]
pub struct StoredJob {
    pub status: JobStatus,
    pub attempts: u32,
    pub lost: u32,
    pub failures: u32,
    pub finished_lease: Option<LeaseId>,
    pub worker: Option<String>,
    pub device: Option<String>,
    pub param_count: Option<u64>,
    pub latency: Option<f64>,
    pub error: Option<String>,
    pub clock: Option<RunClock>,
    pub device_uuid: Option<String>,
    pub engine: Option<String>,
    /// The run in which it reached its final status.
    pub run: Option<u32>,
    pub epochs: Vec<EpochMetrics>,
}

/// A worker of an earlier run: its id, what it declared, and the digest of its session.
pub struct StoredWorker {
    pub id: WorkerId,
    pub info: WorkerInfo,
    pub session: Option<[u8; 32]>,
    /// Started by the coordinator itself (see `Change::WorkerRegistered`).
    pub local: bool,
}

/// Everything stored.
pub struct Loaded {
    pub grid: Grid,
    pub grid_file: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// Every run on this state, oldest first.
    pub runs: Vec<report::RunInfo>,
    /// Every job stored (also of earlier grids in this state), sorted by id.
    pub jobs: Vec<(JobId, StoredJob)>,
    pub workers: Vec<StoredWorker>,
    /// The latest attempt of each job that has not ended: its lease and worker.
    pub open_attempts: HashMap<JobId, (LeaseId, WorkerId)>,
    /// The sequence number of the next fencing token (see [`LeaseId::compose`]).
    pub next_lease_seq: u64,
}

/// Every run on this state, oldest first (`jobs_finished` is counted from the jobs).
fn runs(db: &Connection) -> Result<Vec<report::RunInfo>> {
    let mut q = db.prepare(
        "SELECT id, started_at, finished_at, grid_file, grid_sha256, coordinator_version, host,
         (SELECT COUNT(*) FROM jobs WHERE run_id = runs.id), slurm_job FROM runs ORDER BY id",
    )?;
    let rows = q.query_map([], |r| {
        Ok(report::RunInfo {
            id: r.get(0)?,
            started_at: r.get(1)?,
            finished_at: r.get(2)?,
            grid_file: r.get(3)?,
            grid_sha256: r.get(4)?,
            coordinator_version: r.get(5)?,
            host: r.get(6)?,
            jobs_finished: r.get(7)?,
            slurm_job: r.get(8)?,
        })
    })?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
}

pub(super) fn load(db: &Connection) -> Result<Loaded> {
    let (spec_json, grid_file, started_at, finished_at): (String, String, String, Option<String>) =
        db.query_row(
            "SELECT spec_json, grid_file, started_at, finished_at FROM grid WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?
        .ok_or_else(|| StoreError::Corrupt("no grid has been run with this state".into()))?;
    let grid: Grid = serde_json::from_str(&spec_json)
        .map_err(|e| StoreError::Corrupt(format!("grid spec: {e}")))?;
    let next_lease_seq: i64 = db.query_row(
        "SELECT (COALESCE(MAX(lease_id), 0) >> 32) + 1 FROM attempts",
        [],
        |r| r.get(0),
    )?;
    Ok(Loaded {
        grid,
        grid_file,
        started_at,
        finished_at,
        runs: runs(db)?,
        jobs: jobs(db)?,
        workers: workers(db)?,
        open_attempts: open_attempts(db)?,
        next_lease_seq: next_lease_seq as u64,
    })
}

/// Sorts a job's epochs, in the order written, by epoch number; where an epoch was written
/// more than once (a report sent again, then the outcome's series), the last write counts.
fn latest_of_each_epoch(series: &mut Vec<EpochMetrics>) {
    // Stable: the writes of one epoch stay in the order written.
    series.sort_by_key(|m| m.epoch);
    series.reverse();
    series.dedup_by_key(|m| m.epoch);
    series.reverse();
}

/// One row of `epochs`: the job's id and the epoch's metrics.
fn epoch_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, EpochMetrics)> {
    Ok((
        r.get::<_, String>(0)?,
        EpochMetrics {
            epoch: r.get(1)?,
            train_seconds: r.get(2)?,
            train_loss: r.get(3)?,
            test_loss: r.get(4)?,
            test_accuracy: r.get(5)?,
            clock: match (
                r.get::<_, Option<i64>>(6)?,
                r.get::<_, Option<i64>>(7)?,
                r.get::<_, Option<i64>>(8)?,
            ) {
                (Some(s), Some(t), Some(e)) => Some(EpochClock {
                    start_ms: s as u64,
                    train_end_ms: t as u64,
                    eval_end_ms: e as u64,
                }),
                _ => None,
            },
            host: match (r.get::<_, Option<f64>>(9)?, r.get::<_, Option<f64>>(10)?) {
                (Some(cpu_seconds), Some(contention)) => Some(common::EpochHost {
                    cpu_seconds,
                    contention,
                }),
                _ => None,
            },
        },
    ))
}

fn jobs(db: &Connection) -> Result<Vec<(JobId, StoredJob)>> {
    // The log in the order written; a job's rows up to its marker were superseded.
    let mut epochs: HashMap<String, Vec<EpochMetrics>> = HashMap::new();
    let mut q = db.prepare(
        "SELECT e.job_id, e.epoch, e.train_seconds, e.train_loss, e.test_loss, e.test_accuracy,
         e.start_ms, e.train_end_ms, e.eval_end_ms, e.cpu_seconds, e.contention
         FROM epochs e JOIN jobs j ON j.id = e.job_id
         WHERE e.rowid > IFNULL(j.epochs_after, 0) ORDER BY e.rowid",
    )?;
    let rows = q.query_map([], epoch_row)?;
    for row in rows {
        let (job, m) = row?;
        epochs.entry(job).or_default().push(m);
    }
    for series in epochs.values_mut() {
        latest_of_each_epoch(series);
    }
    let mut q = db.prepare(
        "SELECT id, status, attempts, lost, finished_lease, worker, device, param_count, latency_ms, error, failures,
         init_start_ms, run_start_ms, run_stop_ms, device_uuid, run_id, engine FROM jobs ORDER BY id",
    )?;
    let rows = q.query_map([], |r| {
        let id: String = r.get(0)?;
        let status: String = r.get(1)?;
        Ok((
            id,
            StoredJob {
                status: JobStatus::parse(&status).unwrap_or(JobStatus::Pending),
                attempts: r.get(2)?,
                lost: r.get(3)?,
                finished_lease: r.get::<_, Option<i64>>(4)?.map(|l| LeaseId::new(l as u64)),
                worker: r.get(5)?,
                device: r.get(6)?,
                param_count: r.get::<_, Option<i64>>(7)?.map(|p| p as u64),
                latency: r.get(8)?,
                error: r.get(9)?,
                failures: r.get(10)?,
                clock: match (r.get::<_, Option<i64>>(11)?, r.get::<_, Option<i64>>(13)?) {
                    (Some(init), Some(stop)) => Some(RunClock {
                        init_start_ms: init as u64,
                        run_start_ms: r.get::<_, Option<i64>>(12)?.map(|t| t as u64),
                        run_stop_ms: stop as u64,
                    }),
                    _ => None,
                },
                device_uuid: r.get(14)?,
                run: r.get(15)?,
                engine: r.get(16)?,
                epochs: Vec::new(),
            },
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, mut job) = row?;
        job.epochs = epochs.remove(&id).unwrap_or_default();
        out.push((JobId::from_stored(id), job));
    }
    Ok(out)
}

fn workers(db: &Connection) -> Result<Vec<StoredWorker>> {
    let mut q = db.prepare(
        "SELECT id, name, hostname, device, device_name, libtorch_version, slots, memory_mb, session_sha256, local, slurm_job FROM workers",
    )?;
    let rows = q.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(3)?,
            WorkerInfo {
                name: r.get(1)?,
                hostname: r.get(2)?,
                device: common::DeviceSpec::Cpu,
                device_name: r.get(4)?,
                libtorch_version: r.get(5)?,
                slots: r.get(6)?,
                memory_mb: r.get::<_, i64>(7)? as u64,
                slurm_job: r.get(10)?,
            },
            r.get::<_, Option<Vec<u8>>>(8)?,
            r.get::<_, Option<bool>>(9)?.unwrap_or(false),
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, device, mut info, session, local) = row?;
        info.device = device
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("worker {id}: device {e}")))?;
        // Workers registered before sessions existed have none: they cannot act until they
        // register again.
        let session = session.and_then(|s| <[u8; 32]>::try_from(s).ok());
        out.push(StoredWorker {
            id: WorkerId::from_stored(id),
            info,
            session,
            local,
        });
    }
    Ok(out)
}

fn open_attempts(db: &Connection) -> Result<HashMap<JobId, (LeaseId, WorkerId)>> {
    let mut q = db.prepare(
        "SELECT job_id, lease_id, worker_id FROM attempts WHERE ended_at IS NULL ORDER BY lease_id",
    )?;
    let rows = q.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    let mut out = HashMap::new();
    for row in rows {
        // Ordered by lease: the latest open attempt of a job wins.
        let (job, lease, worker) = row?;
        out.insert(
            JobId::from_stored(job),
            (LeaseId::new(lease as u64), WorkerId::from_stored(worker)),
        );
    }
    Ok(out)
}
