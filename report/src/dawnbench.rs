//! DAWNBench entry files for one job: `dawnbench/<job id>/{train.json,train.tsv,inference.json}`.

use std::fmt::Write as _;

use domain::{Grid, JobRecord};

use crate::results::Environment;

/// `(file name, content)` pairs for `dawnbench/<job id>/`.
pub fn dawnbench_files(job: &JobRecord, grid: &Grid, env: &Environment) -> Vec<(String, String)> {
    let hardware = env
        .workers
        .iter()
        .find(|w| Some(&w.info.name) == job.worker.as_ref())
        .map(|w| w.info.device_name.clone())
        .unwrap_or_else(|| job.device.map(|d| d.to_string()).unwrap_or_default());
    let framework = env
        .workers
        .first()
        .map(|w| format!("libtorch {} via tch-rs", w.info.libtorch_version))
        .unwrap_or_else(|| "libtorch via tch-rs".into());
    let price = grid.cost_per_hour();
    let cost = |hours: f64| (price > 0.0).then_some(hours * price);
    let model = format!("{} ({})", job.model, job.activation);
    let train = serde_json::json!({
        "version": "v1.0",
        "author": "",
        "authorEmail": "",
        "framework": framework,
        "codeURL": "",
        "model": model,
        "hardware": hardware,
        "costPerHour": (price > 0.0).then_some(price),
        "timestamp": env.finished_at.clone().unwrap_or_else(|| env.started_at.clone()),
        "misc": {
            "job_id": job.id,
            "dataset": job.dataset,
            "seed": job.seed,
            "status": job.status,
            "target_accuracy": job.target_accuracy,
            "hours_to_target": job.seconds_to_target.map(|s| s / 3600.0),
            "cost_to_target": job.seconds_to_target.and_then(|s| cost(s / 3600.0)),
            "total_cost": cost(job.total_train_seconds / 3600.0),
        }
    });
    let inference = serde_json::json!({
        "version": "v1.0",
        "author": "",
        "framework": framework,
        "model": model,
        "hardware": hardware,
        "latency": job.latency_ms_per_sample,
        "top1Accuracy": job.final_test_accuracy.map(|a| 100.0 * a),
        "costPerHour": (price > 0.0).then_some(price),
        "cost": job.latency_ms_per_sample.and_then(|ms| cost(ms / 3_600_000.0 * 10_000.0)),
        "misc": { "job_id": job.id, "cost_unit": "USD per 10,000 images" }
    });
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    vec![
        ("train.json".into(), pretty(&train)),
        ("train.tsv".into(), train_tsv(job)),
        ("inference.json".into(), pretty(&inference)),
    ]
}

/// One row per epoch: `epoch`, cumulative training hours, top-1 test accuracy in percent.
fn train_tsv(job: &JobRecord) -> String {
    let mut tsv = String::from("epoch\thours\ttop1Accuracy\n");
    for e in &job.epochs {
        let _ = writeln!(
            tsv,
            "{}\t{:.6}\t{:.4}",
            e.epoch,
            e.train_seconds / 3600.0,
            100.0 * e.test_accuracy
        );
    }
    tsv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsv_rows_per_epoch() {
        let r = crate::fixtures::results();
        let files = dawnbench_files(&r.jobs[0], &r.grid, &r.environment);
        let tsv = &files.iter().find(|(n, _)| n == "train.tsv").unwrap().1;
        assert_eq!(tsv.lines().next(), Some("epoch\thours\ttop1Accuracy"));
        assert_eq!(tsv.lines().count(), 3);
        assert!(tsv.contains("2\t0.005556\t95.0000"), "{tsv}");
    }
}
