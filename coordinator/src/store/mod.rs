//! The coordinator's SQLite database: the schema and every SQL statement, one place each.
//!
//! WAL journal: readers never block the writer, and a crash cannot corrupt committed data.
//! [`Store::commit`] writes a batch of [`Change`]s in one transaction; the caller answers the
//! RPC that caused them only after it returns, so a `kill -9` loses nothing acknowledged.

mod load;

use std::path::Path;
use std::time::Duration;

use common::{Grid, Job};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::change::Change;
pub use load::{Loaded, StoredJob, StoredWorker};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("state database holds invalid data: {0}")]
    Corrupt(String),
    #[error("unknown job id(s) {0}: nothing changed")]
    UnknownJobs(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, StoreError>;

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
    finished_lease INTEGER, worker TEXT, device TEXT, param_count INTEGER, latency_ms REAL, error TEXT,
    init_start_ms INTEGER, run_start_ms INTEGER, run_stop_ms INTEGER);
CREATE TABLE IF NOT EXISTS epochs (
    job_id TEXT NOT NULL, epoch INTEGER NOT NULL, lease_id INTEGER NOT NULL,
    train_seconds REAL NOT NULL, train_loss REAL NOT NULL, test_loss REAL NOT NULL,
    test_accuracy REAL NOT NULL, start_ms INTEGER, train_end_ms INTEGER, eval_end_ms INTEGER);
CREATE TABLE IF NOT EXISTS attempts (
    lease_id INTEGER PRIMARY KEY, job_id TEXT NOT NULL, attempt INTEGER NOT NULL,
    worker_id TEXT NOT NULL, started_at TEXT NOT NULL, ended_at TEXT, outcome TEXT, error TEXT);
CREATE TABLE IF NOT EXISTS workers (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, hostname TEXT NOT NULL, device TEXT NOT NULL,
    device_name TEXT NOT NULL, libtorch_version TEXT NOT NULL, slots INTEGER NOT NULL,
    registered_at TEXT NOT NULL, memory_mb INTEGER NOT NULL DEFAULT 0, session_sha256 BLOB,
    local INTEGER);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, started_at TEXT NOT NULL, finished_at TEXT, grid_file TEXT NOT NULL,
    grid_sha256 TEXT NOT NULL, coordinator_version TEXT NOT NULL, host TEXT NOT NULL);
";

/// The run now in progress: the latest.
const THIS_RUN: &str = "(SELECT MAX(id) FROM runs)";

/// How much a commit survives, as SQLite's `synchronous` setting under WAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous=FULL`: the WAL is synced at every commit, so a committed (and so an
    /// acknowledged) change survives an OS crash or power loss.
    Full,
    /// `synchronous=NORMAL`: synced only at checkpoints; a committed change survives the
    /// process being killed, but an OS crash or power loss may lose the last commits.
    Normal,
}

impl std::str::FromStr for Durability {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "full" => Ok(Durability::Full),
            "normal" => Ok(Durability::Normal),
            other => Err(format!("expected `full` or `normal`, got `{other}`")),
        }
    }
}

/// The open database.
pub struct Store {
    db: Connection,
    /// The private copy a foreign state file was opened through ([`Store::open_copy`]).
    _copy: Option<tempfile::TempDir>,
}

/// How long reading a foreign state file may take ([`Store::open_copy`]): a million jobs load in
/// seconds; a crafted file's endless query is stopped.
const FOREIGN_READ_LIMIT: Duration = Duration::from_secs(60);

impl Store {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path, durability: Durability) -> Result<Store> {
        let db = Connection::open(path)?;
        Store::prepare(db, durability, None)
    }

    /// Opens a state file that may come from anyone (`coordinator report`, `compare`, `plan`)
    /// without changing it: a private copy (with its WAL) is opened instead, once its schema is
    /// known to hold no view or trigger (which would run whatever queries they hold when this
    /// tool reads its tables), in SQLite's defensive mode with `trusted_schema` off, and reading
    /// it is stopped after a minute.
    pub fn open_copy(path: &Path) -> Result<Store> {
        let copy = tempfile::tempdir().map_err(|e| io_at("a private copy of the state", e))?;
        let db_path = copy.path().join("state.db");
        std::fs::copy(path, &db_path).map_err(|e| io_at(&path.display().to_string(), e))?;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        if Path::new(&wal).is_file() {
            std::fs::copy(&wal, copy.path().join("state.db-wal"))
                .map_err(|e| io_at(&wal.to_string_lossy(), e))?;
        }
        let mut db = Connection::open(&db_path)?;
        db.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
        db.pragma_update(None, "trusted_schema", "OFF")?;
        let deadline = std::time::Instant::now() + FOREIGN_READ_LIMIT;
        db.progress_handler(100_000, Some(move || std::time::Instant::now() > deadline))?;
        let foreign: Option<(String, String)> = db
            .query_row(
                "SELECT type, name FROM sqlite_master WHERE type IN ('view', 'trigger') LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Some((kind, name)) = foreign {
            return Err(StoreError::Corrupt(format!(
                "{}: not a state file of this tool: it holds a {kind} `{}`",
                path.display(),
                name.chars().take(80).collect::<String>().escape_debug()
            )));
        }
        Store::prepare(db, Durability::Normal, Some(copy))
    }

    fn prepare(
        db: Connection,
        durability: Durability,
        copy: Option<tempfile::TempDir>,
    ) -> Result<Store> {
        db.pragma_update(None, "journal_mode", "WAL")?;
        let synchronous = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        db.pragma_update(None, "synchronous", synchronous)?;
        db.busy_timeout(Duration::from_secs(5))?;
        db.execute_batch(SCHEMA)?;
        migrate(&db)?;
        Ok(Store { db, _copy: copy })
    }

    /// Records a run of `grid` starting `at`: its jobs are added (those already there keep
    /// their results; the target may change), every job is reset to run again with `rerun`,
    /// failed ones are reset to run again, and attempts of jobs no longer running are closed
    /// as interrupted.
    pub fn begin_run(
        &mut self,
        grid: &Grid,
        jobs: &[Job],
        grid_file: &str,
        at: &str,
        rerun: bool,
    ) -> Result<()> {
        // A grid always serializes: strings, numbers and lists only.
        let spec_json = serde_json::to_string(grid).expect("a grid always serializes");
        let tx = self.db.transaction()?;
        tx.execute(
            "INSERT INTO grid (id, name, spec_json, grid_file, started_at) VALUES (1, ?1, ?2, ?3, ?4)
             ON CONFLICT(id) DO UPDATE SET name = ?1, spec_json = ?2, grid_file = ?3, started_at = ?4,
             finished_at = NULL",
            params![grid.name(), spec_json, grid_file, at],
        )?;
        tx.execute(
            "INSERT INTO runs (started_at, grid_file, grid_sha256, coordinator_version, host, slurm_job)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                at,
                grid_file,
                grid.source_sha256(),
                env!("CARGO_PKG_VERSION"),
                orchestrator_proto::host::hostname(),
                common::worker::slurm_job_from_env()
            ],
        )?;
        {
            let mut insert = tx.prepare(
                "INSERT INTO jobs (id, spec_json, target_accuracy, status) VALUES (?1, ?2, ?3, 'pending')
                 ON CONFLICT(id) DO UPDATE SET target_accuracy = ?3",
            )?;
            let mut reset = tx.prepare(
                "UPDATE jobs SET status = 'failed' WHERE id = ?1 AND status != 'running'",
            )?;
            for job in jobs {
                let spec = serde_json::to_string(&job.spec).expect("a spec always serializes");
                insert.execute(params![job.id.as_str(), spec, job.target_accuracy])?;
                if rerun {
                    reset.execute([job.id.as_str()])?;
                }
            }
        }
        // Failed jobs run again: a fresh start, so no stale epochs remain; and the log keeps
        // only the rows that still count.
        tx.execute(
            &format!("UPDATE jobs SET {REPLACE_EPOCHS} WHERE status IN ('failed', 'pending')"),
            [],
        )?;
        // Only the log's rows up to the last marker are visited (a rowid range), not all.
        tx.execute(
            "DELETE FROM epochs WHERE rowid <= (SELECT IFNULL(MAX(epochs_after), 0) FROM jobs)
             AND rowid <= (SELECT IFNULL(epochs_after, 0) FROM jobs WHERE jobs.id = epochs.job_id)",
            [],
        )?;
        // Nothing left to pass over; and with the log's last rows gone, SQLite may hand out
        // their rowids again, which a marker must not cover.
        tx.execute(
            "UPDATE jobs SET epochs_after = NULL WHERE epochs_after IS NOT NULL",
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
            params![at],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Writes `changes` in one transaction.
    pub fn commit(&mut self, changes: &[Change]) -> Result<()> {
        let tx = self.db.transaction()?;
        for change in changes {
            write(&tx, change)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Makes cancelled jobs pending again (those of `ids`, or all with None), so the next run
    /// runs them. Returns how many were cancelled; ids the state does not hold are an error
    /// and change nothing.
    pub fn uncancel(&mut self, ids: Option<&[String]>) -> Result<u32> {
        let tx = self.db.transaction()?;
        let reset = "UPDATE jobs SET status = 'pending', error = NULL, failures = 0, lost = 0,
                     finished_lease = NULL WHERE status = 'cancelled'";
        let n = match ids {
            None => tx.execute(reset, [])?,
            Some(ids) => {
                let mut unknown = Vec::new();
                let mut n = 0;
                for id in ids {
                    let known: bool =
                        tx.query_row("SELECT COUNT(*) > 0 FROM jobs WHERE id = ?1", [id], |r| {
                            r.get(0)
                        })?;
                    if !known {
                        unknown.push(format!("{id:?}"));
                        continue;
                    }
                    n += tx.execute(&format!("{reset} AND id = ?1"), [id])?;
                }
                if !unknown.is_empty() {
                    return Err(StoreError::UnknownJobs(unknown.join(", ")));
                }
                n
            }
        };
        tx.commit()?;
        Ok(n as u32)
    }

    /// Everything stored, for the state to be rebuilt in memory.
    pub fn load(&self) -> Result<Loaded> {
        load::load(&self.db)
    }
}

/// Columns added since the first schema, added to databases made before them.
const ADDED_COLUMNS: [(&str, &str, &str); 16] = [
    ("jobs", "init_start_ms", "INTEGER"),
    ("jobs", "run_start_ms", "INTEGER"),
    ("jobs", "run_stop_ms", "INTEGER"),
    ("epochs", "start_ms", "INTEGER"),
    ("epochs", "train_end_ms", "INTEGER"),
    ("epochs", "eval_end_ms", "INTEGER"),
    ("workers", "session_sha256", "BLOB"),
    ("workers", "local", "INTEGER"),
    ("jobs", "device_uuid", "TEXT"),
    ("jobs", "run_id", "INTEGER"),
    ("epochs", "cpu_seconds", "REAL"),
    ("epochs", "contention", "REAL"),
    ("jobs", "engine", "TEXT"),
    ("jobs", "epochs_after", "INTEGER"),
    ("workers", "slurm_job", "TEXT"),
    ("runs", "slurm_job", "TEXT"),
];

fn migrate(db: &Connection) -> Result<()> {
    for (table, column, kind) in ADDED_COLUMNS {
        let exists: bool = db.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
            [table, column],
            |r| r.get(0),
        )?;
        if !exists {
            db.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {kind}"))?;
        }
    }
    unindex_epochs(db)
}

/// Databases made before the epochs became an append-only log kept an index on
/// `(job_id, epoch)`, which every report updated at a random place (a page written per report
/// under load): the table is rebuilt without it, in the index's order.
fn unindex_epochs(db: &Connection) -> Result<()> {
    let indexed: bool = db.query_row(
        "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'index' AND tbl_name = 'epochs'",
        [],
        |r| r.get(0),
    )?;
    if indexed {
        db.execute_batch(&format!(
            "BEGIN;
             CREATE TABLE epochs_log (
                 job_id TEXT NOT NULL, epoch INTEGER NOT NULL, lease_id INTEGER NOT NULL,
                 train_seconds REAL NOT NULL, train_loss REAL NOT NULL, test_loss REAL NOT NULL,
                 test_accuracy REAL NOT NULL, start_ms INTEGER, train_end_ms INTEGER,
                 eval_end_ms INTEGER, cpu_seconds REAL, contention REAL);
             INSERT INTO epochs_log SELECT {EPOCH_COLUMNS} FROM epochs ORDER BY job_id, epoch;
             DROP TABLE epochs;
             ALTER TABLE epochs_log RENAME TO epochs;
             COMMIT;"
        ))?;
    }
    Ok(())
}

/// The columns of `epochs`, in order.
pub(crate) const EPOCH_COLUMNS: &str =
    "job_id, epoch, lease_id, train_seconds, train_loss, test_loss, \
    test_accuracy, start_ms, train_end_ms, eval_end_ms, cpu_seconds, contention";

/// The SQL of one change.
fn write(tx: &Transaction<'_>, change: &Change) -> Result<()> {
    match change {
        Change::WorkerRegistered {
            id,
            info,
            session,
            local,
            at,
        } => {
            tx.execute(
                "INSERT OR REPLACE INTO workers (id, name, hostname, device, device_name, libtorch_version, slots, registered_at, memory_mb, session_sha256, local, slurm_job)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![id.as_str(), info.name, info.hostname, info.device.to_string(), info.device_name,
                        info.libtorch_version, info.slots, at, info.memory_mb as i64, &session[..], local,
                        info.slurm_job],
            )?;
        }
        Change::Started { .. } => write_started(tx, change)?,
        Change::Epoch {
            job,
            lease,
            metrics,
        } => insert_epoch(tx, job.as_str(), lease.get(), metrics)?,
        Change::Finished { .. } => write_finished(tx, change)?,
        Change::Released { job, lease, at } => {
            tx.execute(
                "UPDATE jobs SET status = 'pending' WHERE id = ?1",
                [job.as_str()],
            )?;
            end_attempt(tx, lease.get(), at, "released", None)?;
        }
        Change::Lost {
            job,
            lease,
            lost,
            status,
            error,
            at,
        } => {
            tx.execute(
                "UPDATE jobs SET status = ?2, lost = ?3, error = ?4 WHERE id = ?1",
                params![job.as_str(), status.as_str(), lost, error],
            )?;
            end_attempt(tx, lease.get(), at, "lost", Some("lease expired"))?;
        }
        Change::Stopped {
            job,
            status,
            error,
            at,
        } => {
            tx.execute(
                &format!(
                    "UPDATE jobs SET status = ?2, error = ?3, run_id = {THIS_RUN} WHERE id = ?1"
                ),
                params![job.as_str(), status.as_str(), error],
            )?;
            tx.execute(
                "UPDATE attempts SET ended_at = ?2, outcome = 'cancelled' WHERE job_id = ?1 AND ended_at IS NULL",
                params![job.as_str(), at],
            )?;
        }
        Change::GridFinished { at } => {
            tx.execute("UPDATE grid SET finished_at = ?1 WHERE id = 1", [at])?;
            tx.execute(
                &format!("UPDATE runs SET finished_at = ?1 WHERE id = {THIS_RUN}"),
                [at],
            )?;
        }
    }
    Ok(())
}

/// A new attempt: the job runs, its old epochs are superseded, the attempt is recorded under
/// its lease.
fn write_started(tx: &Transaction<'_>, change: &Change) -> Result<()> {
    let Change::Started {
        job,
        lease,
        attempt,
        worker,
        worker_name,
        at,
    } = change
    else {
        return Ok(());
    };
    tx.execute(
        &format!("UPDATE jobs SET status = 'running', attempts = ?2, worker = ?3, {REPLACE_EPOCHS} WHERE id = ?1"),
        params![job.as_str(), attempt, worker_name],
    )?;
    tx.execute(
        "INSERT INTO attempts (lease_id, job_id, attempt, worker_id, started_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![lease.get() as i64, job.as_str(), attempt, worker.as_str(), at],
    )?;
    Ok(())
}

/// An outcome: the attempt's whole epoch series is stored (only the epochs not reported yet,
/// where it extends what was reported; else it supersedes it), and the job and the attempt
/// record how it ended.
fn write_finished(tx: &Transaction<'_>, change: &Change) -> Result<()> {
    let Change::Finished {
        job,
        lease,
        outcome: o,
        status,
        failures,
        stored,
        at,
    } = change
    else {
        return Ok(());
    };
    let unstored = match *stored {
        Some(n) => &o.epochs[n.min(o.epochs.len())..],
        None => {
            tx.execute(
                &format!("UPDATE jobs SET {REPLACE_EPOCHS} WHERE id = ?1"),
                [job.as_str()],
            )?;
            &o.epochs[..]
        }
    };
    for m in unstored {
        insert_epoch(tx, job.as_str(), lease.get(), m)?;
    }
    tx.execute(
        "UPDATE jobs SET status = ?2, finished_lease = ?3, device = ?4, param_count = ?5, latency_ms = ?6,
         error = ?7, failures = ?8, init_start_ms = ?9, run_start_ms = ?10, run_stop_ms = ?11, device_uuid = ?12,
         engine = ?13, run_id = (SELECT MAX(id) FROM runs) WHERE id = ?1",
        params![job.as_str(), status.as_str(), lease.get() as i64, o.device.to_string(),
                o.param_count as i64, o.latency_ms_per_sample, o.error, failures,
                o.clock.map(|c| c.init_start_ms as i64), o.clock.and_then(|c| c.run_start_ms).map(|t| t as i64),
                o.clock.map(|c| c.run_stop_ms as i64), o.device_uuid,
                o.engine.map(|e| e.to_string())],
    )?;
    end_attempt(tx, lease.get(), at, o.status.as_str(), o.error.as_deref())
}

/// Sets a job's epochs to none, without touching the log: the job's rows written so far (up to
/// the log's last row) no longer count. `epochs` is an append-only log without an index, so that
/// a report writes only to its end; what counts is read back in [`load`].
const REPLACE_EPOCHS: &str = "epochs_after = (SELECT IFNULL(MAX(rowid), 0) FROM epochs)";

fn insert_epoch(
    tx: &Transaction<'_>,
    job: &str,
    lease: u64,
    m: &common::EpochMetrics,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO epochs (job_id, epoch, lease_id, train_seconds, train_loss, test_loss, test_accuracy,
         start_ms, train_end_ms, eval_end_ms, cpu_seconds, contention) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![job, m.epoch, lease as i64, m.train_seconds, m.train_loss, m.test_loss, m.test_accuracy,
                     m.clock.map(|c| c.start_ms as i64), m.clock.map(|c| c.train_end_ms as i64),
                     m.clock.map(|c| c.eval_end_ms as i64), m.host.map(|h| h.cpu_seconds),
                     m.host.map(|h| h.contention)])?;
    Ok(())
}

fn end_attempt(
    tx: &Transaction<'_>,
    lease: u64,
    at: &str,
    outcome: &str,
    error: Option<&str>,
) -> Result<()> {
    tx.execute(
        "UPDATE attempts SET ended_at = ?2, outcome = ?3, error = ?4 WHERE lease_id = ?1",
        params![lease as i64, at, outcome, error],
    )?;
    Ok(())
}

#[cfg(test)]
mod record_shapes;

/// An I/O error, with what it was about.
fn io_at(what: &str, e: std::io::Error) -> StoreError {
    StoreError::Io(std::io::Error::new(e.kind(), format!("{what}: {e}")))
}
