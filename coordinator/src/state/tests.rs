//! The state's transitions, without sleeping: `now` is passed in.

use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    DeviceSpec, EpochMetrics, Grid, JobId, JobStatus, Outcome, TrainOutcome, WorkerId, WorkerInfo,
};

use super::*;

pub(super) fn grid(text: &str) -> Grid {
    Grid::parse(text, Path::new("g.yaml")).unwrap()
}

/// The state in `dir/s.db` for `g`, with a 10 s lease.
pub(super) fn fresh(dir: &Path, g: &Grid) -> State {
    State::open(
        &dir.join("s.db"),
        g,
        "g.yaml",
        Duration::from_secs(10),
        false,
        crate::store::Durability::Normal,
    )
    .unwrap()
}

pub(super) const G: &str = "name: g\nactivations: [relu, tanh]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 2, target_accuracy: 0.9}\n";

fn info(device: DeviceSpec) -> WorkerInfo {
    WorkerInfo {
        name: "w".into(),
        hostname: "h".into(),
        device,
        device_name: "cpu".into(),
        libtorch_version: "2.11.0".into(),
        slots: 8,
        memory_mb: 4096,
        slurm_job: None,
    }
}

pub(super) fn worker(s: &mut State, now: Instant) -> WorkerId {
    s.register(info(DeviceSpec::Cpu), false, now).unwrap().0
}

pub(super) fn epoch(n: u32) -> EpochMetrics {
    EpochMetrics {
        epoch: n,
        train_seconds: n as f64,
        train_loss: 1.0,
        test_loss: 1.0,
        test_accuracy: 0.95,
        clock: None,
        host: None,
    }
}

pub(super) fn done(epochs: u32) -> TrainOutcome {
    TrainOutcome {
        status: Outcome::Succeeded,
        device: DeviceSpec::Cpu,
        param_count: 21840,
        epochs: (1..=epochs).map(epoch).collect(),
        latency_ms_per_sample: Some(0.1),
        error: None,
        clock: None,
        device_uuid: None,
        engine: Some("channels-last/avx2/measured".parse().unwrap()),
    }
}

#[test]
fn a_worker_holds_no_more_leases_than_its_slots() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let mut s = fresh(dir.path(), &grid(G));
    let one_slot = WorkerInfo {
        slots: 1,
        ..info(DeviceSpec::Cpu)
    };
    let w = s.register(one_slot, false, t0).unwrap().0;
    let g = s.lease(&w, "r1", t0).unwrap().unwrap();
    assert!(
        s.lease(&w, "r2", t0).unwrap().is_none(),
        "a second lease on one slot"
    );
    assert_eq!(
        s.lease(&w, "r1", t0).unwrap(),
        Some(g.clone()),
        "a retried request still gets its lease back"
    );
    let other = worker(&mut s, t0);
    assert_ne!(
        s.lease(&other, "r1", t0).unwrap().unwrap().lease,
        g.lease,
        "another worker's request with the same id is its own"
    );
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
        .report_epoch(&w, &g.job.id, g.lease, epoch(1), t0)
        .unwrap());
    assert!(s.complete(&w, &g.job.id, g.lease, done(2), t0).unwrap());
    // A retried completion is acknowledged again.
    assert!(s.complete(&w, &g.job.id, g.lease, done(2), t0).unwrap());
    assert_eq!(s.counts().succeeded, 1);
    // A report arriving after its completion records nothing, and is known as late (it is
    // acknowledged), not stale.
    assert!(!s
        .report_epoch(&w, &g.job.id, g.lease, epoch(2), t0)
        .unwrap());
    assert!(s.finished_under(&g.job.id, g.lease));
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
        .heartbeat(&a, &[first.lease], t0 + Duration::from_secs(8))
        .is_empty());
    assert!(s.expire(t0 + Duration::from_secs(12)).unwrap().is_empty());
    // Silence past the lease: the job goes back to the queue.
    let lost = s.expire(t0 + Duration::from_secs(19)).unwrap();
    assert_eq!(lost, vec![first.job.id.clone()]);
    let t1 = t0 + Duration::from_secs(20);
    let second = s.lease(&b, "b1", t1).unwrap().unwrap();
    assert_eq!(second.job.id, first.job.id);
    assert!(second.lease > first.lease);
    assert_eq!(second.attempt, 2);
    // The stale worker's late messages are rejected and change nothing.
    let id = &first.job.id;
    assert!(!s.report_epoch(&a, id, first.lease, epoch(1), t1).unwrap());
    assert!(!s.finished_under(id, first.lease));
    assert!(!s.complete(&a, id, first.lease, done(2), t1).unwrap());
    assert_eq!(s.heartbeat(&a, &[first.lease], t1), vec![first.lease]);
    assert!(s.complete(&b, id, second.lease, done(2), t1).unwrap());
    assert!(
        !s.finished_under(id, first.lease),
        "the lost attempt's reports stay stale"
    );
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
    let l2;
    {
        let mut s = fresh(dir.path(), &grid(G));
        let w = worker(&mut s, t0);
        let g = s.lease(&w, "1", t0).unwrap().unwrap();
        s.complete(&w, &g.job.id, g.lease, done(2), t0).unwrap();
        first_id = g.job.id;
        let g2 = s.lease(&w, "2", t0).unwrap().unwrap();
        l2 = g2.lease;
        s.report_epoch(&w, &g2.job.id, g2.lease, epoch(1), t0)
            .unwrap();
        // Dropped here mid-job, as by kill -9.
    }
    let mut s = fresh(dir.path(), &grid(G));
    let c = s.counts();
    // The finished job is kept; the running one keeps its lease and its epoch.
    assert_eq!((c.succeeded, c.pending, c.running), (1, 0, 1));
    let rec = s.records().into_iter().find(|r| r.id == first_id).unwrap();
    assert_eq!(rec.epochs.len(), 2);
    assert_eq!(
        rec.engine,
        done(2).engine,
        "the engine is stored and loaded"
    );
    let running = s.records().into_iter().find(|r| r.id != first_id).unwrap();
    assert_eq!(running.epochs.len(), 1);
    // Its worker reconnects and carries on: its lease is still valid.
    let t1 = Instant::now();
    let w1 = WorkerId::nth(1);
    assert!(s.heartbeat(&w1, &[l2], t1).is_empty());
    assert!(s.report_epoch(&w1, &running.id, l2, epoch(2), t1).unwrap());
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
        g.lease.seq() > l2.seq(),
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
        while let Some(g) = s
            .lease(&w, &format!("{t0:?}{}", s.counts().finished()), t0)
            .unwrap()
        {
            s.complete(&w, &g.job.id, g.lease, done(2), t0).unwrap();
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
    assert!(s.release(&w, &g.job.id, g.lease, t0).unwrap());
    assert!(!s.release(&w, &g.job.id, g.lease, t0).unwrap(), "only once");
    assert!(!s.is_current(&g.job.id, g.lease));
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
        status: Outcome::Failed,
        error: Some("boom".into()),
        ..done(0)
    };
    let a = s.lease(&w, "1", t0).unwrap().unwrap();
    assert!(s.complete(&w, &a.job.id, a.lease, fail(), t0).unwrap());
    assert_eq!(s.counts().pending, 2, "retried once");
    let b = s.lease(&w, "2", t0).unwrap().unwrap();
    assert_eq!((b.job.id.clone(), b.attempt), (a.job.id.clone(), 2));
    assert!(s.complete(&w, &b.job.id, b.lease, fail(), t0).unwrap());
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
fn cancel_ends_unfinished_jobs_and_revokes_leases() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let mut s = fresh(dir.path(), &grid(G));
    let w = worker(&mut s, t0);
    let g = s.lease(&w, "1", t0).unwrap().unwrap();
    assert_eq!(s.cancel(None, t0).unwrap(), 2);
    assert_eq!(s.heartbeat(&w, &[g.lease], t0), vec![g.lease]);
    assert!(s.is_finished());
    assert_eq!((s.counts().cancelled, s.counts().failed), (2, 0));
    assert_eq!(s.cancel(None, t0).unwrap(), 0);
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
    let gpu = s
        .register(info(DeviceSpec::Cuda(Some(0))), false, t0)
        .unwrap()
        .0;
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
    let gpu = s
        .register(info(DeviceSpec::Cuda(Some(0))), false, t0)
        .unwrap()
        .0;
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
        .report_epoch(&cpu, &small.job.id, small.lease, slow, t0)
        .unwrap());
    assert!(s
        .report_epoch(&gpu, &big.job.id, big.lease, fast, t0)
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

/// The counts kept as statuses change agree with a count of every job, through every kind of
/// transition.
#[test]
fn counts_follow_every_transition() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let mut s = fresh(dir.path(), &grid(&format!("{G}retries: 1\n")));
    let scan = |s: &State| {
        let mut c = Counts::default();
        for r in s.records() {
            c.add(r.status, false, 1);
        }
        c
    };
    let w = worker(&mut s, t0);
    let a = s.lease(&w, "1", t0).unwrap().unwrap();
    assert_eq!(s.counts(), scan(&s));
    let fail = TrainOutcome {
        status: Outcome::Failed,
        ..done(0)
    };
    s.complete(&w, &a.job.id, a.lease, fail, t0).unwrap();
    assert_eq!(s.counts(), scan(&s));
    let b = s.lease(&w, "2", t0).unwrap().unwrap();
    s.release(&w, &b.job.id, b.lease, t0).unwrap();
    assert_eq!(s.counts(), scan(&s));
    let c = s.lease(&w, "3", t0).unwrap().unwrap();
    s.expire(t0 + Duration::from_secs(11)).unwrap();
    assert_eq!(s.counts(), scan(&s));
    s.lease(&w, "4", t0).unwrap().unwrap();
    s.complete(&w, &c.job.id, c.lease, done(2), t0).unwrap();
    s.cancel(None, t0).unwrap();
    assert_eq!(s.counts(), scan(&s));
    assert!(s.is_finished());
    // And after loading again.
    drop(s);
    let s = fresh(dir.path(), &grid(&format!("{G}retries: 1\n")));
    assert_eq!(s.counts(), scan(&s));
}

#[test]
fn sessions_bind_workers_and_their_leases_across_restarts() {
    use crate::scheduler::Identity;
    let dir = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let (a, secret, lease);
    {
        let mut s = fresh(dir.path(), &grid(G));
        (a, secret) = s.register(info(DeviceSpec::Cpu), false, t0).unwrap();
        let (b, other) = s.register(info(DeviceSpec::Cpu), false, t0).unwrap();
        assert_eq!(secret.len(), 32, "128 bits, hex");
        assert_ne!(secret, other);
        assert_eq!(s.identify(&a, Some(&secret)), Identity::Verified);
        assert_eq!(s.identify(&a, Some(&other)), Identity::Denied);
        assert_eq!(s.identify(&a, None), Identity::Denied);
        assert_eq!(
            s.identify(&WorkerId::nth(9), Some(&secret)),
            Identity::Unknown
        );
        lease = s.lease(&a, "1", t0).unwrap().unwrap().lease;
        assert!(s.may_act_on(&a, lease) && !s.may_act_on(&b, lease));
    }
    // Only the digest is stored, and it survives a restart: the worker carries on.
    for file in ["s.db", "s.db-wal"] {
        let bytes = std::fs::read(dir.path().join(file)).unwrap_or_default();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{file}"
        );
    }
    let s = fresh(dir.path(), &grid(G));
    assert_eq!(s.identify(&a, Some(&secret)), Identity::Verified);
    assert!(!s.may_act_on(&WorkerId::nth(2), lease));
}

#[test]
fn a_restart_requeues_local_workers_jobs_at_once_and_keeps_external_ones() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let (local_job, external_job);
    {
        let mut s = fresh(dir.path(), &grid(G));
        let (local, _) = s.register(info(DeviceSpec::Cpu), true, t0).unwrap();
        let (external, _) = s.register(info(DeviceSpec::Cpu), false, t0).unwrap();
        local_job = s.lease(&local, "l", t0).unwrap().unwrap().job.id;
        external_job = s.lease(&external, "e", t0).unwrap().unwrap().job.id;
        // The coordinator dies here; its local worker with it.
    }
    let s = fresh(dir.path(), &grid(G));
    let status = |id: &JobId| {
        s.records()
            .into_iter()
            .find(|r| &r.id == id)
            .unwrap()
            .status
    };
    assert_eq!(
        status(&local_job),
        JobStatus::Pending,
        "queued again at once"
    );
    assert_eq!(
        status(&external_job),
        JobStatus::Running,
        "kept for its worker to reconnect"
    );
    let c = s.counts();
    assert_eq!((c.running, c.pending), (1, 1));
}
