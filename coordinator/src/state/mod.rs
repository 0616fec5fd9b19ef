//! The coordinator's state: the grid's jobs, the scheduler's indexes and the workers, written
//! through to the [`Store`].
//!
//! Every method takes `now`, so lease expiry is unit-testable without sleeping. Every change is
//! committed to SQLite before the method returns, so the RPC that caused it can safely be
//! answered (and a `kill -9` right after loses nothing that was acknowledged). Transitions are
//! decided by [`JobEntry`] as [`Change`]s; [`State::commit`] stores them, then applies them to
//! the jobs and keeps the queue and the lease table in step with each job's status and lease.

mod checks;
#[cfg(test)]
mod epoch_log_tests;
mod groups;
mod load;
mod projection;
mod race;
#[cfg(test)]
mod race_tests;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    EpochMetrics, Grid, Job, JobId, JobStatus, LeaseId, Requirements, TrainOutcome, WorkerId,
    WorkerInfo,
};

use crate::change::Change;
use crate::clock::timestamp;
use crate::jobs::JobEntry;
use crate::scheduler::{new_session, Estimates, Identity, Lease, LeaseTable, Queue, Registry};
use crate::store::{Durability, Store, StoreError};
pub use projection::{Progress, RunningJob, WorkerStatus};

pub type Result<T> = std::result::Result<T, StoreError>;

/// A lease granted to a worker.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub job: Job,
    pub lease: LeaseId,
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
    pub cancelled: u32,
    /// Pending seeds a seed race holds back: run only if its comparisons stay open.
    pub held: u32,
}

impl Counts {
    /// Counts one more job in `status` (`n` = 1) or one fewer (`n` = -1); a pending one
    /// `held` by a seed race counts as held.
    fn add(&mut self, status: JobStatus, held: bool, n: i32) {
        let c = match status {
            JobStatus::Pending if held => &mut self.held,
            JobStatus::Pending => &mut self.pending,
            JobStatus::Running => &mut self.running,
            JobStatus::Succeeded => &mut self.succeeded,
            JobStatus::Failed => &mut self.failed,
            JobStatus::Diverged => &mut self.diverged,
            JobStatus::Cancelled => &mut self.cancelled,
        };
        *c = c.saturating_add_signed(n);
    }

    pub fn finished(&self) -> u32 {
        self.succeeded + self.failed + self.diverged + self.cancelled
    }
    pub fn total(&self) -> u32 {
        self.finished() + self.pending + self.running + self.held
    }
}

/// Where committed changes go.
enum Sink {
    /// Written before [`State::commit`] returns (tests, `coordinator report`).
    Direct(Store),
    /// Queued for the writer task ([`crate::writer`]), which commits them in batches: the
    /// caller answers its RPC only once [`State::enqueued`] at its answer is durable.
    Queued { pending: Vec<Change>, seq: u64 },
}

pub struct State {
    sink: Sink,
    grid: Grid,
    grid_file: String,
    started_at: String,
    finished_at: Option<String>,
    /// Every run on this state; the last is this one.
    runs: Vec<report::RunInfo>,
    jobs: Vec<JobEntry>,
    /// Job indexes sorted by job id, for finding a job by id (4 bytes a job, where a map of
    /// ids would hold a second copy of every id).
    by_id: Vec<u32>,
    queue: Queue,
    estimates: Estimates,
    leases: LeaseTable,
    workers: Registry,
    lease_ttl: Duration,
    /// Jobs by status, kept as statuses change: asked after every change, and a scan of a
    /// million jobs each time would be what the coordinator spends its time on.
    counts: Counts,
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
        durability: Durability,
    ) -> Result<State> {
        let mut store = Store::open(path, durability)?;
        let jobs = grid.jobs();
        store.begin_run(grid, &jobs, grid_file, &timestamp(), rerun)?;
        let now = Instant::now();
        let mut state = State::load(store, Some(jobs), lease_ttl, now)?;
        state.release_local_leases(now)?;
        // Nothing left to run (a rerun after only the target changed): finished now.
        state.note_if_finished(now)?;
        Ok(state)
    }

    /// Queues again, at once, the jobs the previous run's own local workers held: those died
    /// with it (parent-death signal), so waiting out their leases would only idle. External
    /// workers keep their leases for one lease time, to reconnect.
    fn release_local_leases(&mut self, now: Instant) -> Result<()> {
        let at = timestamp();
        let changes: Vec<Change> = self
            .leases
            .iter()
            .filter(|(_, l)| self.workers.get(&l.worker).is_some_and(|w| w.local))
            .map(|(id, l)| self.jobs[l.job].release(id, at.clone()))
            .collect();
        if !changes.is_empty() {
            tracing::info!(
                jobs = changes.len(),
                "jobs of the previous run's local workers queued again at once"
            );
            self.commit(changes, now)?;
        }
        Ok(())
    }

    /// Opens existing state without changing it (for `coordinator report`).
    pub fn open_existing(path: &Path) -> Result<State> {
        if !path.is_file() {
            let why = format!("{} does not exist", path.display());
            return Err(StoreError::Corrupt(why));
        }
        let store = Store::open_copy(path)?;
        State::load(store, None, Duration::from_secs(30), Instant::now())
    }

    pub fn grid(&self) -> &Grid {
        &self.grid
    }

    pub fn lease_ttl(&self) -> Duration {
        self.lease_ttl
    }

    /// Stores `changes` in one transaction (or queues them for the writer), and applies them
    /// in memory; a seed race then gives the seeds its new results call for.
    fn commit(&mut self, changes: Vec<Change>, now: Instant) -> Result<()> {
        match &mut self.sink {
            Sink::Direct(store) => store.commit(&changes)?,
            Sink::Queued { pending, seq } => {
                pending.extend(changes.iter().cloned());
                *seq += 1;
            }
        }
        let mut raced = Vec::new();
        for c in &changes {
            if let Some(i) = self.apply(c, now) {
                raced.push(i);
            }
        }
        self.race_tables_of(&raced);
        Ok(())
    }

    /// Hands the store to a writer task: from now on changes are queued, in memory at once and
    /// on disk when the writer commits them. None if it was handed over already.
    pub fn detach_store(&mut self) -> Option<Store> {
        let queued = Sink::Queued {
            pending: Vec::new(),
            seq: 0,
        };
        match std::mem::replace(&mut self.sink, queued) {
            Sink::Direct(store) => Some(store),
            q @ Sink::Queued { .. } => {
                self.sink = q;
                None
            }
        }
    }

    /// The number of the latest queued batch of changes: what an answer given now depends on,
    /// at most (0 when nothing was ever queued or the store is written directly).
    pub fn enqueued(&self) -> u64 {
        match &self.sink {
            Sink::Direct(_) => 0,
            Sink::Queued { seq, .. } => *seq,
        }
    }

    /// The changes queued since the last call, and the number of the latest batch among them.
    pub fn take_pending(&mut self) -> (Vec<Change>, u64) {
        match &mut self.sink {
            Sink::Direct(_) => (Vec::new(), 0),
            Sink::Queued { pending, seq } => (std::mem::take(pending), *seq),
        }
    }

    /// Applies one change in memory; returns the job it changed the status of, if any.
    fn apply(&mut self, change: &Change, now: Instant) -> Option<usize> {
        match change {
            Change::WorkerRegistered {
                id,
                info,
                session,
                local,
                ..
            } => self
                .workers
                .insert(id.clone(), info.clone(), *session, *local, Some(now)),
            Change::GridFinished { at } => {
                self.finished_at = Some(at.clone());
                if let Some(run) = self.runs.last_mut() {
                    run.finished_at = Some(at.clone());
                }
            }
            _ => {
                let i = change.job().and_then(|id| self.find(id))?;
                let (lease, before) = (self.jobs[i].lease, self.jobs[i].status);
                self.jobs[i].apply(change);
                if matches!(change, Change::Finished { .. } | Change::Stopped { .. }) {
                    self.jobs[i].result_mut().run = self.runs.last().map(|r| r.id);
                }
                let (after, held) = (self.jobs[i].status, self.jobs[i].held);
                self.counts.add(before, held, -1);
                self.counts.add(after, held, 1);
                self.reindex(i, lease, change, now);
                return (before != after).then_some(i);
            }
        }
        None
    }

    /// Brings the lease table and the queue in line with job `i` after `change`; `held` is
    /// the lease it had before.
    fn reindex(&mut self, i: usize, held: Option<LeaseId>, change: &Change, now: Instant) {
        let lease = self.jobs[i].lease;
        if lease != held {
            if let Some(old) = held {
                self.leases.remove(old);
            }
            if let (Some(new), Change::Started { worker, .. }) = (lease, change) {
                let l = Lease {
                    job: i,
                    worker: worker.clone(),
                    expires: now + self.lease_ttl,
                };
                self.leases.insert(new, l);
            }
        }
        self.requeue(i);
    }

    /// Queues job `i` if it is pending and no seed race holds it back; unqueues it otherwise.
    fn requeue(&mut self, i: usize) {
        if self.jobs[i].status == JobStatus::Pending && !self.jobs[i].held {
            self.queue.push(i, self.estimates.cost(&self.jobs[i].job));
        } else {
            self.queue.remove(i);
        }
    }

    /// Registers a worker under a new id (`local`: one this coordinator started); returns the
    /// id and its session secret.
    pub fn register(
        &mut self,
        info: WorkerInfo,
        local: bool,
        now: Instant,
    ) -> Result<(WorkerId, String)> {
        let id = self.workers.next_id();
        let (secret, session) = new_session();
        let change = Change::WorkerRegistered {
            id: id.clone(),
            info,
            session,
            local,
            at: timestamp(),
        };
        self.commit(vec![change], now)?;
        Ok((id, secret))
    }

    pub fn knows_worker(&self, worker: &WorkerId) -> bool {
        self.workers.knows(worker)
    }

    /// Whether a call carrying `session` may act as `worker`.
    pub fn identify(&self, worker: &WorkerId, session: Option<&str>) -> Identity {
        self.workers.identify(worker, session)
    }

    /// False when `lease` is live and held by a worker other than `worker`: acting on it is
    /// refused. (A lease that is not live is stale, and answered as such.)
    pub fn may_act_on(&self, worker: &WorkerId, lease: LeaseId) -> bool {
        self.leases.get(lease).is_none_or(|l| &l.worker == worker)
    }

    /// Grants the pending job expected to run longest that `worker` can run (so the grid's
    /// makespan is short), or `None`. A retried request (same `request_id`) gets the same lease.
    pub fn lease(
        &mut self,
        worker: &WorkerId,
        request_id: &str,
        now: Instant,
    ) -> Result<Option<Grant>> {
        self.workers.touch(worker, now);
        if let Some((lease, l)) = self.leases.for_request(worker, request_id) {
            let e = &self.jobs[l.job];
            let attempt = e.attempts;
            return Ok(Some(Grant {
                job: e.job.clone(),
                lease,
                attempt,
            }));
        }
        let registered = self.workers.get(worker);
        // A worker holds at most the slots it declared: more leases would only expire. (The
        // service refuses workers that did not register before they get here.)
        let slots = registered.map_or(usize::MAX, |w| w.info.slots.max(1) as usize);
        if self.leases.held_by(worker) >= slots {
            return Ok(None);
        }
        let can = registered.map(|w| (w.info.device, w.info.memory_mb));
        let Some(i) = self.queue.longest_first().find(|&i| {
            can.is_none_or(|(device, memory)| self.jobs[i].job.requires.admit(device, memory))
        }) else {
            return Ok(None);
        };
        let lease = self.leases.fresh_id();
        let name = self.workers.get(worker).map(|w| w.info.name.clone());
        let change = self.jobs[i].start(lease, worker, name, timestamp());
        self.commit(vec![change], now)?;
        self.leases.remember_request(worker, request_id, lease);
        let e = &self.jobs[i];
        Ok(Some(Grant {
            job: e.job.clone(),
            lease,
            attempt: e.attempts,
        }))
    }

    /// Whether the grid has a job with id `id`.
    pub fn knows_job(&self, id: &JobId) -> bool {
        self.find(id).is_some()
    }

    /// The index of the job with id `id`.
    fn find(&self, id: &JobId) -> Option<usize> {
        let k = self
            .by_id
            .binary_search_by(|&i| self.jobs[i as usize].job.id.cmp(id))
            .ok()?;
        Some(self.by_id[k] as usize)
    }

    /// The index of `job` if `lease` is its current lease.
    fn current(&self, job: &JobId, lease: LeaseId) -> Option<usize> {
        let l = self.leases.get(lease)?;
        (self.jobs[l.job].job.id == *job).then_some(l.job)
    }

    /// Whether `lease` is the current lease of `job`.
    pub fn is_current(&self, job: &JobId, lease: LeaseId) -> bool {
        self.current(job, lease).is_some()
    }

    /// Whether `job` finished under `lease`: a report of it arriving after the completion (a
    /// worker completes without waiting for its last report's answer) is acknowledged, as the
    /// outcome holds every epoch.
    pub fn finished_under(&self, job: &JobId, lease: LeaseId) -> bool {
        self.find(job)
            .is_some_and(|i| self.jobs[i].finished_lease() == Some(lease))
    }

    /// Records one epoch and renews the lease; false (rejected) if the lease is not the job's
    /// current one.
    pub fn report_epoch(
        &mut self,
        worker: &WorkerId,
        job: &JobId,
        lease: LeaseId,
        m: EpochMetrics,
        now: Instant,
    ) -> Result<bool> {
        self.workers.touch(worker, now);
        let Some(i) = self.current(job, lease) else {
            return Ok(false);
        };
        // The same report again (a retry, or a peer replaying it): answered, not stored again.
        if self.repeats(job, lease, &m) {
            self.leases.renew(lease, now + self.lease_ttl);
            return Ok(true);
        }
        let previous =
            previous_epoch(self.jobs[i].epochs(), m.epoch).map_or(0.0, |x| x.train_seconds);
        let epoch_seconds = m.train_seconds - previous;
        let change = self.jobs[i].epoch(lease, m);
        self.commit(vec![change], now)?;
        self.leases.renew(lease, now + self.lease_ttl);
        if self.estimates.observe(&self.jobs[i].job, epoch_seconds) {
            self.requeue_all();
        }
        Ok(true)
    }

    /// Re-sorts the queue after the estimates changed.
    fn requeue_all(&mut self) {
        let queued: Vec<usize> = self.queue.longest_first().collect();
        for i in queued {
            self.queue.push(i, self.estimates.cost(&self.jobs[i].job));
        }
    }

    /// Records a job's outcome; false (rejected) if the lease is stale. A retry of an accepted
    /// completion is accepted again and changes nothing.
    pub fn complete(
        &mut self,
        worker: &WorkerId,
        job: &JobId,
        lease: LeaseId,
        outcome: TrainOutcome,
        now: Instant,
    ) -> Result<bool> {
        self.workers.touch(worker, now);
        let Some(i) = self.current(job, lease) else {
            let already = self.find(job);
            return Ok(already.is_some_and(|i| self.jobs[i].finished_lease() == Some(lease)));
        };
        let change = self.jobs[i].finish(lease, outcome, self.grid.retries(), timestamp());
        self.commit(vec![change], now)?;
        if self.jobs[i].status == JobStatus::Failed {
            self.stop_failing_group(i, now)?;
        }
        self.note_if_finished(now)?;
        Ok(true)
    }

    /// A draining worker hands its lease back: the job is queued again at once, and the
    /// attempt does not count as lost. False if the lease was not current.
    pub fn release(
        &mut self,
        worker: &WorkerId,
        job: &JobId,
        lease: LeaseId,
        now: Instant,
    ) -> Result<bool> {
        self.workers.touch(worker, now);
        let Some(i) = self.current(job, lease) else {
            return Ok(false);
        };
        let change = self.jobs[i].release(lease, timestamp());
        self.commit(vec![change], now)?;
        Ok(true)
    }

    /// Cancels the given jobs (all when `ids` is None) that have not finished: they end as
    /// `cancelled` ("cancelled by the operator"); their leases are revoked, so the workers stop
    /// them at their next heartbeat. Returns how many were cancelled.
    pub fn cancel(&mut self, ids: Option<&[JobId]>, now: Instant) -> Result<u32> {
        let at = timestamp();
        let changes: Vec<Change> = self
            .jobs
            .iter()
            .filter(|e| !e.status.is_terminal() && ids.is_none_or(|ids| ids.contains(&e.job.id)))
            .map(|e| e.cancel(at.clone()))
            .collect();
        let n = changes.len() as u32;
        if n > 0 {
            self.commit(changes, now)?;
            self.note_if_finished(now)?;
        }
        Ok(n)
    }

    /// Renews the given leases of `worker`; returns those that are no longer valid.
    pub fn heartbeat(
        &mut self,
        worker: &WorkerId,
        leases: &[LeaseId],
        now: Instant,
    ) -> Vec<LeaseId> {
        self.workers.touch(worker, now);
        let until = now + self.lease_ttl;
        let mut revoked = Vec::new();
        for &id in leases {
            if self.leases.get(id).is_some_and(|l| &l.worker == worker) {
                self.leases.renew(id, until);
            } else {
                revoked.push(id);
            }
        }
        revoked
    }

    /// Puts every job whose lease has expired back in the queue (or fails it after
    /// [`crate::jobs::MAX_LOST_ATTEMPTS`]). Returns the ids of the jobs affected.
    pub fn expire(&mut self, now: Instant) -> Result<Vec<JobId>> {
        let at = timestamp();
        let mut changes = Vec::new();
        for lease in self.leases.expired(now) {
            let Some(l) = self.leases.get(lease) else {
                continue;
            };
            let e = &self.jobs[l.job];
            tracing::warn!(job_id = %e.job.id, lease_id = %lease, lost = e.lost + 1, "lease expired; job re-queued");
            changes.push(e.lose(lease, at.clone()));
        }
        let ids: Vec<JobId> = changes.iter().filter_map(|c| c.job().cloned()).collect();
        if !changes.is_empty() {
            self.commit(changes, now)?;
            self.note_if_finished(now)?;
        }
        Ok(ids)
    }

    /// When the next lease expires, if any is held.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.leases.next_expiry()
    }

    pub fn counts(&self) -> Counts {
        self.counts
    }

    pub fn is_finished(&self) -> bool {
        self.counts.pending == 0 && self.counts.running == 0
    }

    /// Records when the grid finished, once every job has.
    fn note_if_finished(&mut self, now: Instant) -> Result<()> {
        if self.is_finished() {
            self.commit(vec![Change::GridFinished { at: timestamp() }], now)?;
        }
        Ok(())
    }

    /// Whether the grid is finished, remembering that `worker` now knows it.
    pub fn tell_finished(&mut self, worker: &WorkerId) -> bool {
        let finished = self.is_finished();
        if finished {
            self.workers.tell_finished(worker);
        }
        finished
    }

    /// Pending jobs that no worker heard from within the lease time can run, counted by
    /// requirement. Empty while no worker is connected (any may still come).
    pub fn unplaceable(&self, now: Instant) -> Vec<(Requirements, usize)> {
        let live: Vec<_> = self
            .workers
            .live(now, self.lease_ttl)
            .map(|w| (w.info.device, w.info.memory_mb))
            .collect();
        let mut out: Vec<(Requirements, usize)> = Vec::new();
        if live.is_empty() {
            return out;
        }
        for i in self.queue.longest_first() {
            let req = self.jobs[i].job.requires;
            if live
                .iter()
                .any(|&(device, memory)| req.admit(device, memory))
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
        self.workers.live_told(now, self.lease_ttl)
    }
}

/// The epoch before `epoch` in a job's series (sorted by epoch number, usually 1, 2, …).
fn previous_epoch(epochs: &[EpochMetrics], epoch: u32) -> Option<&EpochMetrics> {
    let i = epochs.partition_point(|x| x.epoch + 1 < epoch);
    epochs.get(i).filter(|x| x.epoch + 1 == epoch)
}
