//! DAWNBench entry files for one job: `dawnbench/<job id>/{train.json,train.tsv,inference.json}`,
//! in the format the `stanford-futuredata/dawn-bench-entries` repository's
//! `tests/test_submissions.py` accepts: the required fields (`version` `v1.0`, `author`,
//! `authorEmail`, `framework`, `model`, `hardware`, `timestamp` as `YYYY-MM-DD`, and `latency`
//! for inference), and a TSV of exactly `epoch`, `hours`, `top1Accuracy`.

use std::fmt::Write as _;

use common::{Grid, JobRecord};

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
    let (author, email) = (grid.author(), grid.author_email());
    let date = job
        .clock
        .map(|c| date_of(c.run_stop_ms))
        .unwrap_or_else(|| {
            // An RFC 3339 instant starts with its date (a record from before job clocks).
            let at = env.finished_at.as_deref().unwrap_or(&env.started_at);
            at.get(..10).unwrap_or(at).to_string()
        });
    let train = serde_json::json!({
        "version": "v1.0",
        "author": author,
        "authorEmail": email,
        "framework": framework,
        "codeURL": "",
        "model": model,
        "hardware": hardware,
        "costPerHour": (price > 0.0).then_some(price),
        "timestamp": date,
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
        "author": author,
        "authorEmail": email,
        "framework": framework,
        "model": model,
        "hardware": hardware,
        "timestamp": date,
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

/// `YYYY-MM-DD` (UTC) of `ms` milliseconds since the Unix epoch (Howard Hinnant's
/// civil-from-days).
fn date_of(ms: u64) -> String {
    let z = (ms / 86_400_000) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
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
    fn dates() {
        assert_eq!(date_of(0), "1970-01-01");
        // 2026-11-28T15:25:22Z
        assert_eq!(date_of(1_795_879_522_000), "2026-11-28");
        assert_eq!(date_of(951_782_400_000), "2000-02-29");
    }

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
