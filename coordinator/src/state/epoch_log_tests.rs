//! The epochs as an append-only log: what was reported, sent again, superseded by a new
//! attempt or by an outcome, is what a restart reads back; superseded rows are dropped at the
//! next start; a database with the old indexed table is rebuilt.

use std::path::Path;
use std::time::{Duration, Instant};

use common::{EpochMetrics, JobId};
use rusqlite::Connection;

use super::tests::{done, epoch, fresh, grid, worker, G};
use super::State;

fn with_loss(n: u32, loss: f64) -> EpochMetrics {
    EpochMetrics {
        train_loss: loss,
        ..epoch(n)
    }
}

fn epochs_of(s: &State, job: &JobId) -> Vec<EpochMetrics> {
    let records = s.records();
    records.into_iter().find(|r| &r.id == job).unwrap().epochs
}

fn rows(dir: &Path) -> i64 {
    let db = Connection::open(dir.join("s.db")).unwrap();
    db.query_row("SELECT COUNT(*) FROM epochs", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn reports_resends_new_attempts_and_outcomes_read_back_after_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let (a, b);
    {
        let mut s = fresh(dir.path(), &grid(G));
        let w = worker(&mut s, t0);
        let ga = s.lease(&w, "a", t0).unwrap().unwrap();
        a = ga.job.id.clone();
        s.report_epoch(&w, &a, ga.lease, epoch(1), t0).unwrap();
        s.report_epoch(&w, &a, ga.lease, with_loss(2, 0.7), t0)
            .unwrap();
        // Sent again (its answer was lost): the second report counts.
        s.report_epoch(&w, &a, ga.lease, with_loss(2, 0.5), t0)
            .unwrap();
        let gb = s.lease(&w, "b", t0).unwrap().unwrap();
        b = gb.job.id.clone();
        s.report_epoch(&w, &b, gb.lease, with_loss(1, 9.0), t0)
            .unwrap();
        s.report_epoch(&w, &b, gb.lease, with_loss(2, 9.0), t0)
            .unwrap();
        // B's outcome disagrees with its reports: the outcome's series replaces them.
        s.complete(&w, &b, gb.lease, done(2), t0).unwrap();
    }
    let t1 = t0 + Duration::from_secs(60);
    {
        let mut s = fresh(dir.path(), &grid(G));
        assert_eq!(epochs_of(&s, &a), vec![epoch(1), with_loss(2, 0.5)]);
        assert_eq!(epochs_of(&s, &b), done(2).epochs);
        // A's worker never comes back: a new attempt starts from nothing, and reports one
        // epoch before the coordinator stops again.
        assert_eq!(s.expire(t1).unwrap(), vec![a.clone()]);
        let w = worker(&mut s, t1);
        let g = s.lease(&w, "a2", t1).unwrap().unwrap();
        assert_eq!(g.job.id, a);
        assert!(epochs_of(&s, &a).is_empty());
        s.report_epoch(&w, &a, g.lease, epoch(1), t1).unwrap();
        // Its outcome extends what was reported: only epoch 2 is written.
        s.complete(&w, &a, g.lease, done(2), t1).unwrap();
    }
    // A's first attempt (3 rows, superseded), its second (2) and B's outcome (2); B's
    // superseded reports were dropped at the last start.
    assert_eq!(rows(dir.path()), 7);
    let s = fresh(dir.path(), &grid(G));
    assert_eq!(epochs_of(&s, &a), done(2).epochs);
    assert_eq!(epochs_of(&s, &b), done(2).epochs);
    // The start dropped what no longer counts: each job's two epochs are left.
    assert_eq!(rows(dir.path()), 4);
    drop(s);
    let s = fresh(dir.path(), &grid(G));
    assert_eq!(epochs_of(&s, &a), done(2).epochs);
    assert_eq!(rows(dir.path()), 4);
}

#[test]
fn the_old_indexed_epochs_table_is_rebuilt_as_a_log() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let job = {
        let mut s = fresh(dir.path(), &grid(G));
        let w = worker(&mut s, t0);
        let g = s.lease(&w, "a", t0).unwrap().unwrap();
        s.complete(&w, &g.job.id, g.lease, done(2), t0).unwrap();
        g.job.id
    };
    // The table as databases made before the log had it, keyed by (job, epoch).
    let db = Connection::open(dir.path().join("s.db")).unwrap();
    db.execute_batch(
        "CREATE TABLE old (job_id TEXT NOT NULL, epoch INTEGER NOT NULL, lease_id INTEGER NOT NULL,
            train_seconds REAL NOT NULL, train_loss REAL NOT NULL, test_loss REAL NOT NULL,
            test_accuracy REAL NOT NULL, start_ms INTEGER, train_end_ms INTEGER, eval_end_ms INTEGER,
            cpu_seconds REAL, contention REAL, PRIMARY KEY (job_id, epoch));
         INSERT INTO old SELECT * FROM epochs ORDER BY epoch DESC;
         DROP TABLE epochs;
         ALTER TABLE old RENAME TO epochs;",
    )
    .unwrap();
    drop(db);
    let s = fresh(dir.path(), &grid(G));
    assert_eq!(epochs_of(&s, &job), done(2).epochs);
    let db = Connection::open(dir.path().join("s.db")).unwrap();
    let indexes: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'epochs'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(indexes, 0);
    assert_eq!(rows(dir.path()), 2);
}

/// The same epoch reported again, byte for byte (a retry whose answer was lost, or a peer
/// replaying it thousands of times), is answered but stored once.
#[test]
fn an_identical_report_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let mut s = fresh(dir.path(), &grid(G));
    let w = worker(&mut s, t0);
    let g = s.lease(&w, "a", t0).unwrap().unwrap();
    for _ in 0..100 {
        assert!(s
            .report_epoch(&w, &g.job.id, g.lease, epoch(1), t0)
            .unwrap());
    }
    assert_eq!(rows(dir.path()), 1);
    assert_eq!(epochs_of(&s, &g.job.id), vec![epoch(1)]);
}
