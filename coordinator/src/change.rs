//! A change of the coordinator's state, as data.
//!
//! Every transition is decided once, as a [`Change`] (by [`crate::jobs::JobEntry`] for a job),
//! and that one value is then both written to SQLite ([`crate::store::Store::commit`]) and
//! applied in memory ([`crate::jobs::JobEntry::apply`] and the scheduler's indexes), so the
//! two cannot drift apart. Several changes commit in one transaction.

use common::{EpochMetrics, JobId, JobStatus, LeaseId, TrainOutcome, WorkerId, WorkerInfo};

#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A worker registered under a new id.
    WorkerRegistered {
        id: WorkerId,
        info: WorkerInfo,
        /// SHA-256 of the worker's session secret (the secret itself is never stored).
        session: [u8; 32],
        /// Started by this coordinator (it registered over the local socket): it dies with
        /// the coordinator, so its leases need not be waited out after a restart.
        local: bool,
        at: String,
    },
    /// A job was leased: a new attempt under a new fencing token; its old epochs are dropped.
    Started {
        job: JobId,
        lease: LeaseId,
        attempt: u32,
        worker: WorkerId,
        worker_name: Option<String>,
        at: String,
    },
    /// One epoch of the current attempt.
    Epoch {
        job: JobId,
        lease: LeaseId,
        metrics: EpochMetrics,
    },
    /// The current attempt ended with an outcome; `status` is that outcome, or pending when a
    /// failure is retried (`failures` counts those).
    Finished {
        job: JobId,
        lease: LeaseId,
        outcome: TrainOutcome,
        status: JobStatus,
        failures: u32,
        /// Some(n): the outcome's first n epochs are those already recorded under this
        /// attempt, so only the rest need writing; None: the outcome's series replaces them.
        stored: Option<usize>,
        at: String,
    },
    /// A draining worker handed its lease back; the job is pending again.
    Released {
        job: JobId,
        lease: LeaseId,
        at: String,
    },
    /// The lease expired: the worker is lost. The job is pending again, or failed after too
    /// many losses.
    Lost {
        job: JobId,
        lease: LeaseId,
        lost: u32,
        status: JobStatus,
        error: Option<String>,
        at: String,
    },
    /// An unfinished job ended without an outcome of its own: `cancelled` by the operator, or
    /// `failed` unrun because its cell group kept failing with one error.
    Stopped {
        job: JobId,
        status: JobStatus,
        error: String,
        at: String,
    },
    /// Every job has finished.
    GridFinished { at: String },
}

impl Change {
    /// The job this change is about, if any.
    pub fn job(&self) -> Option<&JobId> {
        match self {
            Change::Started { job, .. }
            | Change::Epoch { job, .. }
            | Change::Finished { job, .. }
            | Change::Released { job, .. }
            | Change::Lost { job, .. }
            | Change::Stopped { job, .. } => Some(job),
            Change::WorkerRegistered { .. } | Change::GridFinished { .. } => None,
        }
    }
}
