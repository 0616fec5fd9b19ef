//! The coordinator's state: jobs, leases and workers in memory, written through to SQLite.
//!
//! Every method takes `now`, so lease expiry is unit-testable without sleeping. Every change
//! is committed to SQLite before the method returns, so the RPC that caused it can safely be
//! answered (and a `kill -9` right after loses nothing that was acknowledged).

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::report::{Environment, Results, WorkerEnv};
use common::{EpochMetrics, Grid, Job, JobId, JobRecord, JobStatus, TrainOutcome};
use rusqlite::{params, Connection, OptionalExtension};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("state database holds invalid data: {0}")]
    Corrupt(String),
}

pub type Result<T> = std::result::Result<T, StateError>;

/// A worker as registered.
#[derive(Debug, Clone)]
pub struct WorkerEntry {
    pub env: WorkerEnv,
    /// None for workers of an earlier run, loaded from the database.
    pub last_seen: Option<Instant>,
}

impl WorkerEntry {
    /// Heard from within `ttl` (the lease time) before `now`.
    fn live(&self, now: Instant, ttl: Duration) -> bool {
        self.last_seen
            .is_some_and(|seen| now.saturating_duration_since(seen) < ttl)
    }
}

#[derive(Debug, Clone)]
struct ActiveLease {
    worker_id: String,
    expires: Instant,
}

#[derive(Debug, Clone)]
struct JobEntry {
    job: Job,
    status: JobStatus,
    attempts: u32,
    /// Attempts that ended because the worker vanished (lease expired).
    lost: u32,
    /// Attempts that failed in training and were retried.
    failures: u32,
    /// The cost under which the job sits in the pending queue, while it is pending.
    queued: Option<u64>,
    lease: Option<ActiveLease>,
    /// The lease that produced the terminal status, so a retried CompleteJob is acknowledged.
    finished_lease: Option<u64>,
    worker: Option<String>,
    device: Option<String>,
    param_count: Option<u64>,
    latency: Option<f64>,
    error: Option<String>,
    epochs: Vec<EpochMetrics>,
}

/// A lease granted to a worker.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub job: Job,
    pub lease_id: u64,
    pub attempt: u32,
}

/// Counts by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub pending: u32,
    pub running: u32,
    pub succeeded: u32,
    pub failed: u32,
    pub diverged: u32,
}

impl Counts {
    pub fn finished(&self) -> u32 {
        self.succeeded + self.failed + self.diverged
    }
    pub fn total(&self) -> u32 {
        self.finished() + self.pending + self.running
    }
}

/// How many times a job may lose its worker before it is failed for good.
pub const MAX_LOST_ATTEMPTS: u32 = 5;

pub struct State {
    db: Connection,
    grid: Grid,
    grid_file: String,
    started_at: String,
    finished_at: Option<String>,
    jobs: Vec<JobEntry>,
    index: HashMap<JobId, usize>,
    /// Active lease id → job index.
    leases: HashMap<u64, usize>,
    /// Pending jobs by expected cost, longest first, then grid order: leasing is O(log n).
    pending: std::collections::BTreeSet<(u64, std::cmp::Reverse<usize>)>,
    /// Expected job durations, refined by the epoch times workers report.
    estimates: Estimates,
    /// LeaseJob request id → lease id, so a retried request gets its lease back.
    requests: HashMap<String, u64>,
    workers: HashMap<String, WorkerEntry>,
    /// Workers that have been told the grid is finished.
    told_finished: std::collections::HashSet<String>,
    next_lease: u64,
    lease_ttl: Duration,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS grid (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    name TEXT NOT NULL, spec_json TEXT NOT NULL, grid_file TEXT NOT NULL,
    started_at TEXT NOT NULL, finished_at TEXT);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, spec_json TEXT NOT NULL, target_accuracy REAL NOT NULL,
    status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, lost INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    finished_lease INTEGER, worker TEXT, device TEXT, param_count INTEGER, latency_ms REAL, error TEXT);
CREATE TABLE IF NOT EXISTS epochs (
    job_id TEXT NOT NULL, epoch INTEGER NOT NULL, lease_id INTEGER NOT NULL,
    train_seconds REAL NOT NULL, train_loss REAL NOT NULL, test_loss REAL NOT NULL,
    test_accuracy REAL NOT NULL, PRIMARY KEY (job_id, epoch));
CREATE TABLE IF NOT EXISTS attempts (
    lease_id INTEGER PRIMARY KEY, job_id TEXT NOT NULL, attempt INTEGER NOT NULL,
    worker_id TEXT NOT NULL, started_at TEXT NOT NULL, ended_at TEXT, outcome TEXT, error TEXT);
CREATE TABLE IF NOT EXISTS workers (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, hostname TEXT NOT NULL, device TEXT NOT NULL,
    device_name TEXT NOT NULL, libtorch_version TEXT NOT NULL, slots INTEGER NOT NULL,
    registered_at TEXT NOT NULL, memory_mb INTEGER NOT NULL DEFAULT 0);
";

/// RFC 3339 UTC timestamp of the wall clock, for records humans read.
pub fn timestamp() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn open_db(path: &Path) -> Result<Connection> {
    let db = Connection::open(path)?;
    // WAL: readers never block the writer, and a crash cannot corrupt committed data.
    db.pragma_update(None, "journal_mode", "WAL")?;
    db.pragma_update(None, "synchronous", "NORMAL")?;
    db.busy_timeout(Duration::from_secs(5))?;
    db.execute_batch(SCHEMA)?;
    Ok(db)
}

impl State {
    /// Opens (or creates) the state at `path` for `grid`. Jobs already finished there are kept
    /// (succeeded and diverged ones are not run again, unless `rerun`); failed and pending ones
    /// are queued to run. A job that was running when the coordinator stopped keeps its lease
    /// for one more lease time: its worker may still be running it and reconnect; if it does
    /// not, the lease expires and the job runs again from its last checkpoint.
    pub fn open(
        path: &Path,
        grid: &Grid,
        grid_file: &str,
        lease_ttl: Duration,
        rerun: bool,
    ) -> Result<State> {
        let mut db = open_db(path)?;
        let spec_json = serde_json::to_string(grid).expect("a grid always serializes");
        let started_at = timestamp();
        let tx = db.transaction()?;
        tx.execute(
            "INSERT INTO grid (id, name, spec_json, grid_file, started_at) VALUES (1, ?1, ?2, ?3, ?4)
             ON CONFLICT(id) DO UPDATE SET name = ?1, spec_json = ?2, grid_file = ?3, started_at = ?4,
             finished_at = NULL",
            params![grid.name, spec_json, grid_file, started_at],
        )?;
        for job in grid.jobs() {
            let spec = serde_json::to_string(&job.spec).expect("a spec always serializes");
            tx.execute(
                "INSERT INTO jobs (id, spec_json, target_accuracy, status) VALUES (?1, ?2, ?3, 'pending')
                 ON CONFLICT(id) DO UPDATE SET target_accuracy = ?3",
                params![job.id.as_str(), spec, job.target_accuracy],
            )?;
        }
        if rerun {
            for job in grid.jobs() {
                tx.execute(
                    "UPDATE jobs SET status = 'failed' WHERE id = ?1 AND status != 'running'",
                    [job.id.as_str()],
                )?;
            }
        }
        // Failed jobs run again: a fresh start, so no stale epochs remain.
        tx.execute(
            "DELETE FROM epochs WHERE job_id IN (SELECT id FROM jobs WHERE status IN ('failed', 'pending'))",
            [],
        )?;
        tx.execute(
            "UPDATE jobs SET status = 'pending', lost = 0, failures = 0, error = NULL, finished_lease = NULL
             WHERE status = 'failed'",
            [],
        )?;
        tx.execute(
            "UPDATE attempts SET ended_at = ?1, outcome = 'interrupted'
             WHERE ended_at IS NULL AND job_id NOT IN (SELECT id FROM jobs WHERE status = 'running')",
            params![started_at],
        )?;
        tx.commit()?;
        let mut state = State::load(db, lease_ttl)?;
        state.started_at = started_at;
        Ok(state)
    }

    /// Opens existing state read-only in spirit (for `coordinator report`): nothing is reset.
    pub fn open_existing(path: &Path) -> Result<State> {
        if !path.is_file() {
            return Err(StateError::Corrupt(format!(
                "{} does not exist",
                path.display()
            )));
        }
        State::load(open_db(path)?, Duration::from_secs(30))
    }

    fn load(db: Connection, lease_ttl: Duration) -> Result<State> {
        let (spec_json, grid_file, started_at, finished_at): (
            String,
            String,
            String,
            Option<String>,
        ) = db
            .query_row(
                "SELECT spec_json, grid_file, started_at, finished_at FROM grid WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?
            .ok_or_else(|| StateError::Corrupt("no grid has been run with this state".into()))?;
        let grid: Grid = serde_json::from_str(&spec_json)
            .map_err(|e| StateError::Corrupt(format!("grid spec: {e}")))?;
        let mut jobs = Vec::new();
        {
            let mut q = db.prepare(
                "SELECT status, attempts, lost, finished_lease, worker, device, param_count, latency_ms, error, failures
                 FROM jobs WHERE id = ?1",
            )?;
            let mut qe = db.prepare(
                "SELECT epoch, train_seconds, train_loss, test_loss, test_accuracy FROM epochs
                 WHERE job_id = ?1 ORDER BY epoch",
            )?;
            for job in grid.jobs() {
                let mut entry = q.query_row([job.id.as_str()], |r| {
                    let status: String = r.get(0)?;
                    Ok(JobEntry {
                        job: job.clone(),
                        status: JobStatus::parse(&status).unwrap_or(JobStatus::Pending),
                        attempts: r.get(1)?,
                        lost: r.get(2)?,
                        failures: r.get(9)?,
                        queued: None,
                        lease: None,
                        finished_lease: r.get::<_, Option<i64>>(3)?.map(|l| l as u64),
                        worker: r.get(4)?,
                        device: r.get(5)?,
                        param_count: r.get::<_, Option<i64>>(6)?.map(|p| p as u64),
                        latency: r.get(7)?,
                        error: r.get(8)?,
                        epochs: vec![],
                    })
                })?;
                entry.epochs = qe
                    .query_map([job.id.as_str()], |r| {
                        Ok(EpochMetrics {
                            epoch: r.get(0)?,
                            train_seconds: r.get(1)?,
                            train_loss: r.get(2)?,
                            test_loss: r.get(3)?,
                            test_accuracy: r.get(4)?,
                        })
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                jobs.push(entry);
            }
        }
        let next_lease: u64 = db.query_row(
            "SELECT COALESCE(MAX(lease_id), 0) + 1 FROM attempts",
            [],
            |r| r.get::<_, i64>(0),
        )? as u64;
        let workers = {
            let mut q = db.prepare(
                "SELECT id, name, hostname, device, device_name, libtorch_version, slots, memory_mb FROM workers",
            )?;
            let rows = q.query_map([], |r| {
                Ok(WorkerEnv {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    hostname: r.get(2)?,
                    device: r.get(3)?,
                    device_name: r.get(4)?,
                    libtorch_version: r.get(5)?,
                    slots: r.get(6)?,
                    memory_mb: r.get::<_, i64>(7)? as u64,
                })
            })?;
            rows.map(|w| {
                w.map(|env| {
                    (
                        env.id.clone(),
                        WorkerEntry {
                            env,
                            last_seen: None,
                        },
                    )
                })
            })
            .collect::<rusqlite::Result<HashMap<_, _>>>()?
        };
        // Leases of jobs that were running when the coordinator stopped, renewed for one lease
        // time from now.
        let mut leases = HashMap::new();
        {
            let mut q = db.prepare(
                "SELECT lease_id, worker_id FROM attempts WHERE job_id = ?1 AND ended_at IS NULL
                 ORDER BY lease_id DESC LIMIT 1",
            )?;
            let now = Instant::now();
            for (i, e) in jobs.iter_mut().enumerate() {
                if e.status != JobStatus::Running {
                    continue;
                }
                let open: Option<(i64, String)> = q
                    .query_row([e.job.id.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                match open {
                    Some((lease_id, worker_id)) => {
                        e.lease = Some(ActiveLease {
                            worker_id,
                            expires: now + lease_ttl,
                        });
                        leases.insert(lease_id as u64, i);
                    }
                    None => e.status = JobStatus::Pending,
                }
            }
        }
        let index = jobs
            .iter()
            .enumerate()
            .map(|(i, e)| (e.job.id.clone(), i))
            .collect();

        let mut state = State {
            db,
            grid,
            grid_file,
            started_at,
            finished_at,
            jobs,
            pending: Default::default(),
            estimates: Estimates::default(),
            index,
            leases,
            requests: HashMap::new(),
            workers,
            told_finished: Default::default(),
            next_lease,
            lease_ttl,
        };
        for i in 0..state.jobs.len() {
            if state.jobs[i].status == JobStatus::Pending {
                state.enqueue(i);
            }
        }
        Ok(state)
    }

    pub fn grid(&self) -> &Grid {
        &self.grid
    }

    pub fn lease_ttl(&self) -> Duration {
        self.lease_ttl
    }

    pub fn register(&mut self, mut env: WorkerEnv, now: Instant) -> Result<String> {
        // Unique per registration, across coordinator restarts too (every worker ever
        // registered is loaded): a restarted worker is a new worker; its old leases expire.
        env.id = format!("w{}", self.workers.len() + 1);
        self.db.execute(
            "INSERT OR REPLACE INTO workers (id, name, hostname, device, device_name, libtorch_version, slots, registered_at, memory_mb)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![env.id, env.name, env.hostname, env.device, env.device_name, env.libtorch_version, env.slots, timestamp(), env.memory_mb as i64],
        )?;
        let id = env.id.clone();
        self.workers.insert(
            id.clone(),
            WorkerEntry {
                env,
                last_seen: Some(now),
            },
        );
        Ok(id)
    }

    pub fn knows_worker(&self, worker_id: &str) -> bool {
        self.workers.contains_key(worker_id)
    }

    fn touch(&mut self, worker_id: &str, now: Instant) {
        if let Some(w) = self.workers.get_mut(worker_id) {
            w.last_seen = Some(now);
        }
    }

    /// Grants the pending job expected to run longest (so the grid's makespan is short), or
    /// `None` when nothing is pending. A retried request (same `request_id`) gets the same lease.
    pub fn lease(
        &mut self,
        worker_id: &str,
        request_id: &str,
        now: Instant,
    ) -> Result<Option<Grant>> {
        self.touch(worker_id, now);
        if let Some(&lease_id) = self.requests.get(request_id) {
            if let Some(&i) = self.leases.get(&lease_id) {
                let e = &self.jobs[i];
                return Ok(Some(Grant {
                    job: e.job.clone(),
                    lease_id,
                    attempt: e.attempts,
                }));
            }
        }
        // The longest pending job this worker is able to run.
        let worker = self
            .workers
            .get(worker_id)
            .map(|w| (w.env.device.as_str(), w.env.memory_mb));
        let Some(&(_, std::cmp::Reverse(i))) =
            self.pending.iter().rev().find(|(_, std::cmp::Reverse(i))| {
                worker
                    .is_none_or(|(device, memory)| self.jobs[*i].job.requires.admit(device, memory))
            })
        else {
            return Ok(None);
        };
        self.dequeue(i);
        let lease_id = self.next_lease;
        let worker_name = self.workers.get(worker_id).map(|w| w.env.name.clone());
        let e = &mut self.jobs[i];
        let attempt = e.attempts + 1;
        let tx = self.db.transaction()?;
        tx.execute(
            "UPDATE jobs SET status = 'running', attempts = ?2, worker = ?3 WHERE id = ?1",
            params![e.job.id.as_str(), attempt, worker_name],
        )?;
        tx.execute("DELETE FROM epochs WHERE job_id = ?1", [e.job.id.as_str()])?;
        tx.execute(
            "INSERT INTO attempts (lease_id, job_id, attempt, worker_id, started_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![lease_id as i64, e.job.id.as_str(), attempt, worker_id, timestamp()],
        )?;
        tx.commit()?;
        self.next_lease += 1;
        e.status = JobStatus::Running;
        e.attempts = attempt;
        e.worker = worker_name;
        e.epochs.clear();
        e.lease = Some(ActiveLease {
            worker_id: worker_id.to_string(),
            expires: now + self.lease_ttl,
        });
        self.leases.insert(lease_id, i);
        self.requests.insert(request_id.to_string(), lease_id);
        Ok(Some(Grant {
            job: e.job.clone(),
            lease_id,
            attempt,
        }))
    }

    /// The job index of `lease_id` if it is the current lease of `job_id`.
    fn current(&self, job_id: &str, lease_id: u64) -> Option<usize> {
        let &i = self.leases.get(&lease_id)?;
        (self.jobs[i].job.id.as_str() == job_id).then_some(i)
    }

    /// Records one epoch; false (rejected) if the lease is not the job's current one.
    pub fn report_epoch(
        &mut self,
        worker_id: &str,
        job_id: &str,
        lease_id: u64,
        m: EpochMetrics,
        now: Instant,
    ) -> Result<bool> {
        self.touch(worker_id, now);
        let Some(i) = self.current(job_id, lease_id) else {
            return Ok(false);
        };
        self.db.execute(
            "INSERT OR REPLACE INTO epochs (job_id, epoch, lease_id, train_seconds, train_loss, test_loss, test_accuracy)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![job_id, m.epoch, lease_id as i64, m.train_seconds, m.train_loss, m.test_loss, m.test_accuracy],
        )?;
        let ttl = self.lease_ttl;
        let e = &mut self.jobs[i];
        if let Some(l) = &mut e.lease {
            l.expires = now + ttl;
        }
        let previous = e
            .epochs
            .iter()
            .find(|x| x.epoch + 1 == m.epoch)
            .map_or(0.0, |x| x.train_seconds);
        let epoch_seconds = m.train_seconds - previous;
        e.epochs.retain(|x| x.epoch != m.epoch);
        e.epochs.push(m);
        e.epochs.sort_by_key(|x| x.epoch);
        // Disjoint fields: the job is read while the estimates change.
        if self.estimates.observe(&self.jobs[i].job, epoch_seconds) {
            self.requeue_all();
        }
        Ok(true)
    }

    fn enqueue(&mut self, i: usize) {
        let cost = self.estimates.cost(&self.jobs[i].job).to_bits();
        self.jobs[i].queued = Some(cost);
        self.pending.insert((cost, std::cmp::Reverse(i)));
    }

    fn dequeue(&mut self, i: usize) {
        if let Some(cost) = self.jobs[i].queued.take() {
            self.pending.remove(&(cost, std::cmp::Reverse(i)));
        }
    }

    /// Re-sorts the queue after the estimates changed.
    fn requeue_all(&mut self) {
        let queued: Vec<usize> = self
            .pending
            .iter()
            .map(|&(_, std::cmp::Reverse(i))| i)
            .collect();
        for i in queued {
            self.dequeue(i);
            self.enqueue(i);
        }
    }

    /// Records a job's outcome; false (rejected) if the lease is stale. A retry of an accepted
    /// completion is accepted again and changes nothing.
    pub fn complete(
        &mut self,
        worker_id: &str,
        job_id: &str,
        lease_id: u64,
        c: TrainOutcome,
        now: Instant,
    ) -> Result<bool> {
        self.touch(worker_id, now);
        let Some(i) = self.current(job_id, lease_id) else {
            let already = self
                .index
                .get(&JobId::from_stored(job_id))
                .is_some_and(|&i| self.jobs[i].finished_lease == Some(lease_id));
            return Ok(already);
        };
        let outcome = match c.status {
            JobStatus::Succeeded | JobStatus::Diverged => c.status,
            _ => JobStatus::Failed,
        };
        // A failure in training is retried while the grid allows; divergence is deterministic.
        let retry = outcome == JobStatus::Failed && self.jobs[i].failures < self.grid.retries;
        let status = if retry { JobStatus::Pending } else { outcome };
        let failures = self.jobs[i].failures + u32::from(retry);
        let tx = self.db.transaction()?;
        tx.execute("DELETE FROM epochs WHERE job_id = ?1", [job_id])?;
        for m in &c.epochs {
            tx.execute(
                "INSERT INTO epochs (job_id, epoch, lease_id, train_seconds, train_loss, test_loss, test_accuracy)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![job_id, m.epoch, lease_id as i64, m.train_seconds, m.train_loss, m.test_loss, m.test_accuracy],
            )?;
        }
        tx.execute(
            "UPDATE jobs SET status = ?2, finished_lease = ?3, device = ?4, param_count = ?5, latency_ms = ?6, error = ?7,
             failures = ?8 WHERE id = ?1",
            params![job_id, status.as_str(), lease_id as i64, c.device, c.param_count as i64, c.latency_ms_per_sample, c.error, failures],
        )?;
        tx.execute(
            "UPDATE attempts SET ended_at = ?2, outcome = ?3, error = ?4 WHERE lease_id = ?1",
            params![lease_id as i64, timestamp(), outcome.as_str(), c.error],
        )?;
        tx.commit()?;
        self.leases.remove(&lease_id);
        let e = &mut self.jobs[i];
        e.status = status;
        e.failures = failures;
        e.lease = None;
        e.finished_lease = Some(lease_id);
        e.device = Some(c.device);
        e.param_count = Some(c.param_count);
        e.latency = c.latency_ms_per_sample;
        e.error = c.error;
        e.epochs = c.epochs;
        if status == JobStatus::Pending {
            self.enqueue(i);
        }
        self.note_if_finished()?;
        Ok(true)
    }

    /// Whether `lease_id` is the current lease of `job_id`.
    pub fn is_current(&self, job_id: &str, lease_id: u64) -> bool {
        self.current(job_id, lease_id).is_some()
    }

    /// A draining worker hands its lease back: the job is queued again at once, and the
    /// attempt does not count as lost. False if the lease was not current.
    pub fn release(
        &mut self,
        worker_id: &str,
        job_id: &str,
        lease_id: u64,
        now: Instant,
    ) -> Result<bool> {
        self.touch(worker_id, now);
        let Some(i) = self.current(job_id, lease_id) else {
            return Ok(false);
        };
        let tx = self.db.transaction()?;
        tx.execute("UPDATE jobs SET status = 'pending' WHERE id = ?1", [job_id])?;
        tx.execute(
            "UPDATE attempts SET ended_at = ?2, outcome = 'released' WHERE lease_id = ?1",
            params![lease_id as i64, timestamp()],
        )?;
        tx.commit()?;
        self.leases.remove(&lease_id);
        let e = &mut self.jobs[i];
        e.status = JobStatus::Pending;
        e.lease = None;
        self.enqueue(i);
        Ok(true)
    }

    /// Cancels the given jobs (all when `ids` is None) that have not finished: they end as
    /// failed with "cancelled by the operator"; their leases are revoked, so the workers stop
    /// them at their next heartbeat. Returns how many were cancelled.
    pub fn cancel(&mut self, ids: Option<&[String]>) -> Result<u32> {
        let mut n = 0;
        for i in 0..self.jobs.len() {
            let e = &self.jobs[i];
            let chosen = ids.is_none_or(|ids| ids.iter().any(|id| id == e.job.id.as_str()));
            if !chosen || e.status.is_terminal() {
                continue;
            }
            let error = "cancelled by the operator".to_string();
            let tx = self.db.transaction()?;
            tx.execute(
                "UPDATE jobs SET status = 'failed', error = ?2 WHERE id = ?1",
                params![e.job.id.as_str(), error],
            )?;
            tx.execute(
                "UPDATE attempts SET ended_at = ?2, outcome = 'cancelled' WHERE job_id = ?1 AND ended_at IS NULL",
                params![e.job.id.as_str(), timestamp()],
            )?;
            tx.commit()?;
            self.leases.retain(|_, &mut j| j != i);
            self.dequeue(i);
            let e = &mut self.jobs[i];
            e.status = JobStatus::Failed;
            e.error = Some(error);
            e.lease = None;
            n += 1;
        }
        if n > 0 {
            self.note_if_finished()?;
        }
        Ok(n)
    }

    /// Renews the given leases of `worker_id`; returns those that are no longer valid.
    pub fn heartbeat(&mut self, worker_id: &str, lease_ids: &[u64], now: Instant) -> Vec<u64> {
        self.touch(worker_id, now);
        let ttl = self.lease_ttl;
        let mut revoked = Vec::new();
        for &id in lease_ids {
            match self.leases.get(&id) {
                Some(&i) => match &mut self.jobs[i].lease {
                    Some(l) if l.worker_id == worker_id => l.expires = now + ttl,
                    _ => revoked.push(id),
                },
                None => revoked.push(id),
            }
        }
        revoked
    }

    /// Puts every job whose lease has expired back in the queue (or fails it after
    /// [`MAX_LOST_ATTEMPTS`]). Returns the ids of the jobs affected.
    pub fn expire(&mut self, now: Instant) -> Result<Vec<JobId>> {
        let expired: Vec<(u64, usize)> = self
            .leases
            .iter()
            .filter(|(_, &i)| {
                self.jobs[i]
                    .lease
                    .as_ref()
                    .is_some_and(|l| l.expires <= now)
            })
            .map(|(&id, &i)| (id, i))
            .collect();
        let mut ids = Vec::new();
        for (lease_id, i) in expired {
            let e = &mut self.jobs[i];
            e.lost += 1;
            let (status, error) = if e.lost >= MAX_LOST_ATTEMPTS {
                (
                    JobStatus::Failed,
                    Some(format!("lost its worker {} times (lease expired)", e.lost)),
                )
            } else {
                (JobStatus::Pending, None)
            };
            let tx = self.db.transaction()?;
            tx.execute(
                "UPDATE jobs SET status = ?2, lost = ?3, error = ?4 WHERE id = ?1",
                params![e.job.id.as_str(), status.as_str(), e.lost, error],
            )?;
            tx.execute(
                "UPDATE attempts SET ended_at = ?2, outcome = 'lost', error = 'lease expired' WHERE lease_id = ?1",
                params![lease_id as i64, timestamp()],
            )?;
            tx.commit()?;
            tracing::warn!(job_id = %e.job.id, lease_id, lost = e.lost, "lease expired; job re-queued");
            e.status = status;
            e.error = error;
            e.lease = None;
            ids.push(e.job.id.clone());
            if status == JobStatus::Pending {
                self.enqueue(i);
            }
            self.leases.remove(&lease_id);
        }
        Ok(ids)
    }

    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for e in &self.jobs {
            match e.status {
                JobStatus::Pending => c.pending += 1,
                JobStatus::Running => c.running += 1,
                JobStatus::Succeeded => c.succeeded += 1,
                JobStatus::Failed => c.failed += 1,
                JobStatus::Diverged => c.diverged += 1,
            }
        }
        c
    }

    pub fn is_finished(&self) -> bool {
        self.jobs.iter().all(|e| e.status.is_terminal())
    }

    /// Records when the grid finished, once every job has.
    fn note_if_finished(&mut self) -> Result<()> {
        if self.is_finished() {
            let at = timestamp();
            self.db
                .execute("UPDATE grid SET finished_at = ?1 WHERE id = 1", [&at])?;
            self.finished_at = Some(at);
        }
        Ok(())
    }

    /// Whether the grid is finished, remembering that `worker_id` now knows it.
    pub fn tell_finished(&mut self, worker_id: &str) -> bool {
        let finished = self.is_finished();
        if finished {
            self.told_finished.insert(worker_id.to_string());
        }
        finished
    }

    /// Pending jobs that no worker heard from within the lease time can run, counted by
    /// requirement. Empty while no worker is connected (any may still come).
    pub fn unplaceable(&self, now: Instant) -> Vec<(common::grid::Requirements, usize)> {
        let live: Vec<(&str, u64)> = self
            .workers
            .values()
            .filter(|w| w.live(now, self.lease_ttl))
            .map(|w| (w.env.device.as_str(), w.env.memory_mb))
            .collect();
        let mut out: Vec<(common::grid::Requirements, usize)> = Vec::new();
        if live.is_empty() {
            return out;
        }
        for (_, std::cmp::Reverse(i)) in &self.pending {
            let req = self.jobs[*i].job.requires;
            if live
                .iter()
                .any(|(device, memory)| req.admit(device, *memory))
            {
                continue;
            }
            match out.iter_mut().find(|(r, _)| *r == req) {
                Some((_, n)) => *n += 1,
                None => out.push((req, 1)),
            }
        }
        out
    }

    /// Whether every worker heard from within the lease time has been told the grid is
    /// finished, so the server can stop without leaving a worker retrying against nothing.
    pub fn live_workers_told(&self, now: Instant) -> bool {
        self.workers
            .values()
            .all(|w| self.told_finished.contains(&w.env.id) || !w.live(now, self.lease_ttl))
    }

    /// Per-job status for `GridStatus`: (record, epochs done).
    pub fn records(&self) -> Vec<JobRecord> {
        self.jobs
            .iter()
            .map(|e| {
                let mut r = JobRecord::new(
                    &e.job,
                    e.status,
                    e.attempts,
                    e.worker.clone(),
                    e.device.clone(),
                    e.param_count,
                    e.epochs.clone(),
                    e.latency,
                    e.error.clone(),
                );
                r.lost_attempts = e.lost;
                r.failed_attempts = e.failures;
                r
            })
            .collect()
    }

    /// Registered workers: description, time since last heard from (None: an earlier run's),
    /// jobs running now.
    pub fn workers(&self) -> Vec<(WorkerEnv, Option<Duration>, u32)> {
        let now = Instant::now();
        let mut out: Vec<_> = self
            .workers
            .values()
            .map(|w| {
                let running = self
                    .jobs
                    .iter()
                    .filter(|e| e.lease.as_ref().is_some_and(|l| l.worker_id == w.env.id))
                    .count() as u32;
                let since = w.last_seen.map(|seen| now.saturating_duration_since(seen));
                (w.env.clone(), since, running)
            })
            .collect();
        out.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        out
    }

    /// Everything the output files are made of.
    pub fn results(&self) -> Results {
        let used: std::collections::HashSet<&str> = self
            .jobs
            .iter()
            .filter_map(|e| e.worker.as_deref())
            .collect();
        let mut workers: Vec<WorkerEnv> = self
            .workers
            .values()
            .filter(|w| used.contains(w.env.name.as_str()))
            .map(|w| w.env.clone())
            .collect();
        workers.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        workers.dedup_by(|a, b| a.name == b.name && a.device == b.device);
        Results {
            grid: self.grid.clone(),
            environment: Environment {
                coordinator_version: env!("CARGO_PKG_VERSION").into(),
                coordinator_host: std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|s| s.trim().to_string())
                    .unwrap_or_default(),
                grid_file: self.grid_file.clone(),
                grid_sha256: self.grid.source_sha256.clone(),
                started_at: self.started_at.clone(),
                finished_at: self.finished_at.clone(),
                workers,
            },
            jobs: self.records(),
        }
    }
}

/// What determines how long an epoch takes: the data, the model and the batch size.
type Shape = (common::Dataset, common::Model, u64, u32);

fn shape(job: &Job) -> Shape {
    let s = &job.spec;
    (s.dataset, s.model, s.train_limit, s.batch_size)
}

/// Expected job durations for longest-first scheduling. Before any epoch is reported, a static
/// model (images × a per-model weight, per epoch); then the mean observed seconds per epoch of
/// each shape, and for shapes not seen yet the static model scaled by the observed seconds per
/// static unit, so that every cost is in seconds once any is.
#[derive(Default)]
struct Estimates {
    /// Observed (seconds, epochs) per shape.
    observed: HashMap<Shape, (f64, u64)>,
    /// Observed (seconds, static units) over all shapes.
    calibration: (f64, f64),
}

impl Estimates {
    /// Static cost of one epoch, in arbitrary units.
    fn static_epoch(job: &Job) -> f64 {
        let s = &job.spec;
        let images = match (s.dataset, s.train_limit) {
            (_, n) if n > 0 => n as f64,
            (common::Dataset::Mnist | common::Dataset::FashionMnist, _) => 60_000.0,
            _ => 50_000.0,
        };
        let per_image = match s.model {
            common::Model::PaperCnn => 1.0,
            common::Model::Vgg11Bn => 150.0,
        };
        images * per_image
    }

    fn epoch_seconds(&self, job: &Job) -> Option<f64> {
        if let Some(&(secs, n)) = self.observed.get(&shape(job)) {
            return Some(secs / n as f64);
        }
        let (secs, units) = self.calibration;
        (units > 0.0).then(|| Self::static_epoch(job) * secs / units)
    }

    /// Expected duration of the whole job (seconds once calibrated; positive either way).
    fn cost(&self, job: &Job) -> f64 {
        let per_epoch = self
            .epoch_seconds(job)
            .unwrap_or_else(|| Self::static_epoch(job));
        (per_epoch * job.spec.epochs as f64).max(f64::MIN_POSITIVE)
    }

    /// Records one epoch's duration; true when the estimate of its shape moved by more than a
    /// fifth (or appeared), so the queue is worth re-sorting.
    fn observe(&mut self, job: &Job, seconds: f64) -> bool {
        if !(seconds.is_finite() && seconds > 0.0) {
            return false;
        }
        let before = self.epoch_seconds(job);
        let entry = self.observed.entry(shape(job)).or_insert((0.0, 0));
        *entry = (entry.0 + seconds, entry.1 + 1);
        self.calibration.0 += seconds;
        self.calibration.1 += Self::static_epoch(job);
        match (before, self.epoch_seconds(job)) {
            (Some(b), Some(a)) => (a - b).abs() > 0.2 * b,
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(text: &str) -> Grid {
        Grid::parse(text, Path::new("g.yaml")).unwrap()
    }

    /// The state in `dir/s.db` for `g`, with a 10 s lease.
    fn fresh(dir: &Path, g: &Grid) -> State {
        State::open(
            &dir.join("s.db"),
            g,
            "g.yaml",
            Duration::from_secs(10),
            false,
        )
        .unwrap()
    }

    const G: &str = "name: g\nactivations: [relu, tanh]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 2, target_accuracy: 0.9}\n";

    fn worker(s: &mut State, now: Instant) -> String {
        s.register(
            WorkerEnv {
                id: String::new(),
                name: "w".into(),
                hostname: "h".into(),
                device: "cpu".into(),
                device_name: "cpu".into(),
                libtorch_version: "2.11.0".into(),
                slots: 1,
                memory_mb: 4096,
            },
            now,
        )
        .unwrap()
    }

    fn epoch(n: u32) -> EpochMetrics {
        EpochMetrics {
            epoch: n,
            train_seconds: n as f64,
            train_loss: 1.0,
            test_loss: 1.0,
            test_accuracy: 0.95,
        }
    }

    fn done(epochs: u32) -> TrainOutcome {
        TrainOutcome {
            status: JobStatus::Succeeded,
            device: "cpu".into(),
            param_count: 21840,
            epochs: (1..=epochs).map(epoch).collect(),
            latency_ms_per_sample: Some(0.1),
            error: None,
        }
    }

    #[test]
    fn lease_report_complete() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = Instant::now();
        let mut s = fresh(dir.path(), &grid(G));
        let w = worker(&mut s, t0);
        let g = s.lease(&w, "r1", t0).unwrap().unwrap();
        assert_eq!(g.job.spec.activation, common::Activation::Relu);
        // A retried request gets the same lease, not a second job.
        assert_eq!(s.lease(&w, "r1", t0).unwrap().unwrap(), g);
        assert!(s
            .report_epoch(&w, g.job.id.as_str(), g.lease_id, epoch(1), t0)
            .unwrap());
        assert!(s
            .complete(&w, g.job.id.as_str(), g.lease_id, done(2), t0)
            .unwrap());
        // A retried completion is acknowledged again.
        assert!(s
            .complete(&w, g.job.id.as_str(), g.lease_id, done(2), t0)
            .unwrap());
        assert_eq!(s.counts().succeeded, 1);
        assert!(!s.is_finished());
    }

    #[test]
    fn expired_lease_requeues_and_fences_the_stale_worker() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = Instant::now();
        let mut s = fresh(dir.path(), &grid(G));
        let a = worker(&mut s, t0);
        let b = worker(&mut s, t0);
        let first = s.lease(&a, "a1", t0).unwrap().unwrap();
        // Heartbeats keep it alive.
        assert!(s
            .heartbeat(&a, &[first.lease_id], t0 + Duration::from_secs(8))
            .is_empty());
        assert!(s.expire(t0 + Duration::from_secs(12)).unwrap().is_empty());
        // Silence past the lease: the job goes back to the queue.
        let lost = s.expire(t0 + Duration::from_secs(19)).unwrap();
        assert_eq!(lost, vec![first.job.id.clone()]);
        let t1 = t0 + Duration::from_secs(20);
        let second = s.lease(&b, "b1", t1).unwrap().unwrap();
        assert_eq!(second.job.id, first.job.id);
        assert!(second.lease_id > first.lease_id);
        assert_eq!(second.attempt, 2);
        // The stale worker's late messages are rejected and change nothing.
        let id = first.job.id.as_str();
        assert!(!s
            .report_epoch(&a, id, first.lease_id, epoch(1), t1)
            .unwrap());
        assert!(!s.complete(&a, id, first.lease_id, done(2), t1).unwrap());
        assert_eq!(s.heartbeat(&a, &[first.lease_id], t1), vec![first.lease_id]);
        assert!(s.complete(&b, id, second.lease_id, done(2), t1).unwrap());
        let rec = s
            .records()
            .into_iter()
            .find(|r| r.id == first.job.id)
            .unwrap();
        assert_eq!((rec.status, rec.attempts), (JobStatus::Succeeded, 2));
    }

    #[test]
    fn restart_keeps_finished_jobs_and_requeues_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = Instant::now();
        let first_id;
        {
            let mut s = fresh(dir.path(), &grid(G));
            let w = worker(&mut s, t0);
            let g = s.lease(&w, "1", t0).unwrap().unwrap();
            s.complete(&w, g.job.id.as_str(), g.lease_id, done(2), t0)
                .unwrap();
            first_id = g.job.id;
            let g2 = s.lease(&w, "2", t0).unwrap().unwrap();
            s.report_epoch(&w, g2.job.id.as_str(), g2.lease_id, epoch(1), t0)
                .unwrap();
            // Dropped here mid-job, as by kill -9.
        }
        let mut s = fresh(dir.path(), &grid(G));
        let c = s.counts();
        // The finished job is kept; the running one keeps its lease and its epoch.
        assert_eq!((c.succeeded, c.pending, c.running), (1, 0, 1));
        let rec = s.records().into_iter().find(|r| r.id == first_id).unwrap();
        assert_eq!(rec.epochs.len(), 2);
        let running = s.records().into_iter().find(|r| r.id != first_id).unwrap();
        assert_eq!(running.epochs.len(), 1);
        // Its worker reconnects and carries on: its lease (id 2) is still valid.
        let t1 = Instant::now();
        assert!(s.heartbeat("w1", &[2], t1).is_empty());
        assert!(s
            .report_epoch("w1", running.id.as_str(), 2, epoch(2), t1)
            .unwrap());
        // Had it not come back, the lease would expire and the job would be leased anew,
        // with a fencing token never used before.
        assert!(s.expire(t1 + Duration::from_secs(9)).unwrap().is_empty());
        assert_eq!(
            s.expire(t1 + Duration::from_secs(11)).unwrap(),
            vec![running.id.clone()]
        );
        let w = worker(&mut s, t1);
        let g = s.lease(&w, "3", t1).unwrap().unwrap();
        assert_eq!(g.job.id, running.id);
        assert!(
            g.lease_id >= 3,
            "fencing tokens never repeat across restarts"
        );
    }

    #[test]
    fn edited_grid_runs_only_new_cells() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = Instant::now();
        {
            let mut s = fresh(dir.path(), &grid(G));
            let w = worker(&mut s, t0);
            while let Some(g) = s.lease(&w, &format!("{t0:?}{}", s.next_lease), t0).unwrap() {
                s.complete(&w, g.job.id.as_str(), g.lease_id, done(2), t0)
                    .unwrap();
            }
            assert!(s.is_finished());
        }
        let more = G.replace("[relu, tanh]", "[relu, tanh, elu]");
        let s = fresh(dir.path(), &grid(&more));
        let c = s.counts();
        assert_eq!((c.succeeded, c.pending), (2, 1));
    }

    #[test]
    fn released_job_is_requeued_without_counting_as_lost() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = Instant::now();
        let mut s = fresh(dir.path(), &grid(G));
        let w = worker(&mut s, t0);
        let g = s.lease(&w, "1", t0).unwrap().unwrap();
        assert!(s.release(&w, g.job.id.as_str(), g.lease_id, t0).unwrap());
        assert!(
            !s.release(&w, g.job.id.as_str(), g.lease_id, t0).unwrap(),
            "only once"
        );
        assert!(!s.is_current(g.job.id.as_str(), g.lease_id));
        let again = s.lease(&w, "2", t0).unwrap().unwrap();
        assert_eq!(again.job.id, g.job.id);
        assert_eq!(s.jobs[0].lost, 0);
    }

    #[test]
    fn failed_jobs_are_retried_as_the_grid_allows() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = Instant::now();
        let g = grid(&format!("{G}retries: 1\n"));
        let mut s = fresh(dir.path(), &g);
        let w = worker(&mut s, t0);
        let fail = || TrainOutcome {
            status: JobStatus::Failed,
            error: Some("boom".into()),
            ..done(0)
        };
        let a = s.lease(&w, "1", t0).unwrap().unwrap();
        assert!(s
            .complete(&w, a.job.id.as_str(), a.lease_id, fail(), t0)
            .unwrap());
        assert_eq!(s.counts().pending, 2, "retried once");
        let b = s.lease(&w, "2", t0).unwrap().unwrap();
        assert_eq!((b.job.id.clone(), b.attempt), (a.job.id.clone(), 2));
        assert!(s
            .complete(&w, b.job.id.as_str(), b.lease_id, fail(), t0)
            .unwrap());
        let rec = s.records().into_iter().find(|r| r.id == a.job.id).unwrap();
        assert_eq!(
            (
                rec.status,
                rec.attempts,
                rec.failed_attempts,
                rec.lost_attempts
            ),
            (JobStatus::Failed, 2, 1, 0)
        );
    }

    #[test]
    fn cancel_fails_unfinished_jobs_and_revokes_leases() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = Instant::now();
        let mut s = fresh(dir.path(), &grid(G));
        let w = worker(&mut s, t0);
        let g = s.lease(&w, "1", t0).unwrap().unwrap();
        assert_eq!(s.cancel(None).unwrap(), 2);
        assert_eq!(s.heartbeat(&w, &[g.lease_id], t0), vec![g.lease_id]);
        assert!(s.is_finished());
        assert_eq!(s.counts().failed, 2);
        assert_eq!(s.cancel(None).unwrap(), 0);
    }

    #[test]
    fn jobs_go_only_to_workers_that_meet_their_requirements() {
        let dir = tempfile::tempdir().unwrap();
        let g = grid("name: g\nactivations: [relu]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 1, target_accuracy: 0.9}\n  - {dataset: cifar10, model: vgg11-bn, epochs: 1, target_accuracy: 0.9, requires: {gpu: true}}\n");
        let t0 = Instant::now();
        let mut s = fresh(dir.path(), &g);
        let cpu = worker(&mut s, t0);
        let first = s.lease(&cpu, "1", t0).unwrap().unwrap();
        assert_eq!(
            first.job.spec.model,
            common::Model::PaperCnn,
            "the VGG job needs a GPU"
        );
        assert!(s.lease(&cpu, "2", t0).unwrap().is_none());
        let stuck = s.unplaceable(t0);
        assert_eq!(stuck.len(), 1, "{stuck:?}");
        assert!(stuck[0].0.gpu && stuck[0].1 == 1, "{stuck:?}");
        assert_eq!(stuck[0].0.to_string(), "a CUDA device");
        let mut env = s.workers.get(&cpu).unwrap().env.clone();
        env.device = "cuda:0".into();
        let gpu = s.register(env, t0).unwrap();
        assert!(s.unplaceable(t0).is_empty(), "a GPU worker is connected");
        assert_eq!(
            s.lease(&gpu, "3", t0).unwrap().unwrap().job.spec.model,
            common::Model::Vgg11Bn
        );
    }

    #[test]
    fn observed_epoch_times_reorder_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        // Statically the 9,000-image jobs look 9x longer than the 1,000-image ones. (The GPU
        // requirement only lets the test lease one job of each shape first.)
        let g = grid("name: g\nactivations: [relu, tanh]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 1, target_accuracy: 0.9, train_limit: 9000, requires: {gpu: true}}\n  - {dataset: fashion-mnist, model: paper-cnn, epochs: 1, target_accuracy: 0.9, train_limit: 1000}\n");
        let t0 = Instant::now();
        let mut s = fresh(dir.path(), &g);
        let cpu = worker(&mut s, t0);
        let mut env = s.workers.get(&cpu).unwrap().env.clone();
        env.device = "cuda:0".into();
        let gpu = s.register(env, t0).unwrap();
        let big = s.lease(&gpu, "1", t0).unwrap().unwrap();
        assert_eq!(big.job.spec.train_limit, 9000);
        let small = s.lease(&cpu, "2", t0).unwrap().unwrap();
        assert_eq!(small.job.spec.train_limit, 1000);
        // ...but the small shape's epochs are observed to take far longer.
        let mut slow = epoch(1);
        slow.train_seconds = 100.0;
        let mut fast = epoch(1);
        fast.train_seconds = 1.0;
        assert!(s
            .report_epoch(&cpu, small.job.id.as_str(), small.lease_id, slow, t0)
            .unwrap());
        assert!(s
            .report_epoch(&gpu, big.job.id.as_str(), big.lease_id, fast, t0)
            .unwrap());
        let next = s.lease(&gpu, "3", t0).unwrap().unwrap();
        assert_eq!(
            next.job.spec.train_limit, 1000,
            "the observed-slow shape goes first now"
        );
    }

    #[test]
    fn longest_job_first() {
        let dir = tempfile::tempdir().unwrap();
        let g = grid("name: g\nactivations: [relu]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 1, target_accuracy: 0.9}\n  - {dataset: cifar10, model: vgg11-bn, epochs: 1, target_accuracy: 0.9}\n");
        let t0 = Instant::now();
        let mut s = fresh(dir.path(), &g);
        let w = worker(&mut s, t0);
        let first = s.lease(&w, "1", t0).unwrap().unwrap();
        assert_eq!(first.job.spec.model, common::Model::Vgg11Bn);
    }
}
