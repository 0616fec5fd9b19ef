//! A small grid's results, for the renderers' tests.

use std::path::Path;

use common::{Activation, EpochMetrics, Grid, JobRecord, JobStatus, RunFacts};

use crate::results::{Environment, Results};

pub const GRID: &str = "name: t\nactivations: [relu, tanh]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 2, target_accuracy: 0.9}\nseeds: [0, 1]\n";

/// relu reaches 95% (the 90% target), tanh 85%; two seeds each, times 10 s + i per epoch.
pub fn results() -> Results {
    results_of(GRID)
}

/// [`results`] for another grid text with the same jobs (e.g. a price added).
pub fn results_of(grid_yaml: &str) -> Results {
    let grid = Grid::parse(grid_yaml, Path::new("g.yaml")).unwrap();
    let jobs = grid
        .jobs()
        .iter()
        .enumerate()
        .map(|(i, job)| {
            let acc = if job.spec.activation == Activation::Relu {
                0.95
            } else {
                0.85
            };
            let epoch = |n: u32, secs: f64, loss: f64, acc: f64| EpochMetrics {
                epoch: n,
                train_seconds: secs,
                train_loss: loss,
                test_loss: loss / 2.0,
                test_accuracy: acc,
                clock: None,
                host: None,
            };
            let facts = RunFacts {
                attempts: 1,
                worker: Some("w".into()),
                device: Some(common::DeviceSpec::Cpu),
                param_count: Some(21840),
                epochs: vec![
                    epoch(1, 10.0 + i as f64, 1.0, acc - 0.1),
                    epoch(2, 20.0 + i as f64, 0.6, acc),
                ],
                latency_ms_per_sample: Some(0.2),
                ..RunFacts::default()
            };
            JobRecord::new(job, JobStatus::Succeeded, facts)
        })
        .collect();
    Results {
        grid,
        environment: Environment {
            coordinator_version: "0".into(),
            coordinator_host: "h".into(),
            grid_file: "g.yaml".into(),
            grid_sha256: "x".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            finished_at: None,
            workers: vec![],
            runs: vec![],
        },
        jobs,
    }
}

/// [`results`] where relu reaches the target fast with seed 0 and never with seed 1, and tanh
/// reaches it with both seeds, later: a target reached by some seeds only must not win.
pub fn relu_reaches_the_target_once() -> Results {
    let mut r = results();
    for j in r.jobs.iter_mut() {
        let relu = j.activation == common::Activation::Relu;
        (j.first_epoch_at_target, j.seconds_to_target) = match (relu, j.seed) {
            (true, 0) => (Some(1), Some(5.0)),
            (true, _) => (None, None),
            (false, _) => (Some(2), Some(30.0)),
        };
    }
    r
}
