//! Group commit. RPCs change the state in memory under the state lock and queue their
//! [`Change`](crate::change::Change)s; this task takes everything queued, commits it to SQLite in
//! one transaction (off the async threads), and announces how far the state is durable. An RPC
//! is answered only once the batch holding what it saw is durable ([`Shared::settle`]), so
//! "committed before answered" holds while concurrent RPCs share one transaction and one fsync.
//!
//! The queue is bounded by the RPCs waiting on it: each caller waits for its batch before it
//! can send another request, so at most one batch per in-flight request (plus the lease-expiry
//! task's) is ever queued.

use anyhow::Context;
use tokio::sync::watch;

use crate::service::{Durable, Shared};
use crate::store::Store;

/// Commits queued changes until `stop` is set and the queue is empty.
pub async fn run(
    shared: Shared,
    mut store: Store,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    loop {
        // Registered before the queue is read, so a change queued right after wakes us.
        let queued = shared.queued.notified();
        tokio::pin!(queued);
        queued.as_mut().enable();
        let (batch, seq) = shared.lock().take_pending();
        if batch.is_empty() {
            if *stop.borrow() {
                return Ok(());
            }
            tokio::select! {
                _ = &mut queued => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        let committed =
            tokio::task::spawn_blocking(move || store.commit(&batch).map(|()| store)).await;
        match committed {
            Ok(Ok(s)) => {
                store = s;
                shared.durable.send_replace(Durable::UpTo(seq));
            }
            Ok(Err(e)) => {
                shared.durable.send_replace(Durable::Failed);
                shared.changed.notify_waiters();
                return Err(e).context("committing to the state database");
            }
            Err(e) => {
                shared.durable.send_replace(Durable::Failed);
                shared.changed.notify_waiters();
                return Err(e).context("the state database writer");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::{Duration, Instant};

    use common::{DeviceSpec, Grid, JobStatus, WorkerInfo};

    use super::*;
    use crate::checkpoints::CheckpointStore;
    use crate::state::State;
    use crate::store::Durability;

    fn shared(dir: &Path) -> (Shared, Store) {
        let grid = Grid::parse(
            "name: g\nactivations: [relu, tanh, elu]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 1, target_accuracy: 0.9}\n",
            Path::new("g.yaml"),
        )
        .unwrap();
        let path = dir.join("s.db");
        let ttl = Duration::from_secs(10);
        let mut state = State::open(&path, &grid, "g.yaml", ttl, false, Durability::Full).unwrap();
        let store = state.detach_store().unwrap();
        let checkpoints = CheckpointStore {
            dir: dir.join("ckpt"),
            max_bytes: 1,
        };
        (Shared::new(state, 1, checkpoints), store)
    }

    fn info() -> WorkerInfo {
        WorkerInfo {
            name: "w".into(),
            hostname: "h".into(),
            device: DeviceSpec::Cpu,
            device_name: "cpu".into(),
            libtorch_version: "2".into(),
            slots: 3,
            memory_mb: 1,
            slurm_job: None,
        }
    }

    /// Changes queued by several requests commit in one transaction, and each is on disk
    /// before it may be answered.
    #[tokio::test]
    async fn queued_changes_commit_together_before_answers() {
        let dir = tempfile::tempdir().unwrap();
        let (shared, store) = shared(dir.path());
        let (stop_tx, stop) = watch::channel(false);
        let writer = tokio::spawn(run(shared.clone(), store, stop));
        let now = Instant::now();
        let ((worker, _), _) = shared
            .with_state(|s| Ok(s.register(info(), false, now)?))
            .unwrap();
        // Three leases queued before anyone waits: one batch each, none written yet.
        let mut seqs = Vec::new();
        for r in 0..3 {
            let (grant, seq) = shared
                .with_state(|s| Ok(s.lease(&worker, &format!("r{r}"), now)?))
                .unwrap();
            assert!(grant.is_some());
            seqs.push(seq);
        }
        assert_eq!(seqs, [2, 3, 4]);
        let running = || {
            let on_disk = State::open_existing(&dir.path().join("s.db")).unwrap();
            let records = on_disk.records();
            records
                .iter()
                .filter(|r| r.status == JobStatus::Running)
                .count()
        };
        // Queued, applied in memory, not yet on disk (the test's runtime has one thread, so the
        // writer has not run yet).
        assert_eq!(running(), 0);
        assert_eq!(*shared.durable.borrow(), Durable::UpTo(0));
        shared.settle(4).await.unwrap();
        // All four batches went in the writer's first transaction, and are on disk before the
        // answer: a fresh reader sees every lease.
        assert_eq!(*shared.durable.borrow(), Durable::UpTo(4));
        assert_eq!(running(), 3);
        let _ = stop_tx.send(true);
        writer.await.unwrap().unwrap();
    }
}
