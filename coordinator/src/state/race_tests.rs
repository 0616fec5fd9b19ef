//! Seed races in the state: held seeds, rounds released as results come in, a finished race.

use std::time::Instant;

use common::{JobStatus, TrainOutcome};

use super::tests::{done, fresh, grid, worker};
use super::*;

const RACED: &str = "name: g\nactivations: [relu, tanh]\nseeds: {min: 2, max: 4}\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 1, target_accuracy: 0.9}\n";

fn at(accuracy: f64) -> TrainOutcome {
    let mut o = done(1);
    o.epochs[0].test_accuracy = accuracy;
    o
}

/// Leases every queued job (one round of the race), then completes each with the accuracy
/// `acc` gives its (activation, seed).
fn run_queued(s: &mut State, acc: impl Fn(&str, u64) -> f64, now: Instant) -> usize {
    let w = worker(s, now);
    let mut grants = Vec::new();
    while let Some(g) = s.lease(&w, &format!("r{}", grants.len()), now).unwrap() {
        grants.push(g);
    }
    for g in &grants {
        let a = at(acc(g.job.spec.activation.as_str(), g.job.spec.seed));
        assert!(s.complete(&w, &g.job.id, g.lease, a, now).unwrap());
    }
    grants.len()
}

#[test]
fn a_race_runs_min_seeds_first_and_holds_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let s = fresh(dir.path(), &grid(RACED));
    let c = s.counts();
    assert_eq!((c.pending, c.held, c.total()), (4, 4, 8));
    assert!(!s.is_finished());
}

#[test]
fn an_activation_shown_worse_ends_the_race_and_the_grid() {
    let dir = tempfile::tempdir().unwrap();
    let now = Instant::now();
    let mut s = fresh(dir.path(), &grid(RACED));
    let acc = |a: &str, seed: u64| {
        let base = if a == "tanh" { 0.50 } else { 0.95 };
        base + 0.001 * seed as f64
    };
    assert_eq!(run_queued(&mut s, acc, now), 4);
    let c = s.counts();
    assert_eq!((c.succeeded, c.pending, c.held), (4, 0, 4));
    assert!(s.is_finished(), "{c:?}");
    let race = s.race_of(0).unwrap();
    assert!(race.finished);
    // Opened again, the state holds the same seeds back and is still finished.
    drop(s);
    let s = fresh(dir.path(), &grid(RACED));
    assert_eq!((s.counts().held, s.is_finished()), (4, true));
}

#[test]
fn open_comparisons_get_one_more_seed_a_round_up_to_max() {
    let dir = tempfile::tempdir().unwrap();
    let now = Instant::now();
    let mut s = fresh(dir.path(), &grid(RACED));
    // Alike: never decided, and no margin to call them equivalent.
    let acc = |_: &str, seed: u64| 0.95 + 0.001 * (seed % 2) as f64;
    assert_eq!(run_queued(&mut s, acc, now), 4);
    assert_eq!((s.counts().pending, s.counts().held), (2, 2));
    assert_eq!(run_queued(&mut s, acc, now), 2);
    assert_eq!(run_queued(&mut s, acc, now), 2);
    let c = s.counts();
    assert_eq!((c.succeeded, c.pending, c.held), (8, 0, 0));
    assert!(s.is_finished());
    let seeds: Vec<u64> = s
        .jobs
        .iter()
        .filter(|e| e.status == JobStatus::Succeeded)
        .map(|e| e.job.spec.seed)
        .collect();
    assert_eq!(seeds, [0, 1, 2, 3, 0, 1, 2, 3]);
}
