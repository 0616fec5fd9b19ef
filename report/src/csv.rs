//! `results.csv`: one row per job with the summary fields.

use crate::format::csv_text;
use crate::results::Results;

const HEADER: [&str; 31] = [
    "id",
    "dataset",
    "model",
    "activation",
    "seed",
    "status",
    "attempts",
    "worker",
    "device",
    "param_count",
    "epochs",
    "total_train_seconds",
    "first_epoch_at_target",
    "seconds_to_target",
    "final_test_accuracy",
    "error_rate",
    "latency_ms_per_sample",
    "error",
    // What the job was asked to do (its spec), after what it did.
    "target_accuracy",
    "spec_epochs",
    "train_limit",
    "test_limit",
    "augment",
    "latency_samples",
    "optimizer",
    "learning_rate",
    "batch_size",
    "momentum",
    "weight_decay",
    "precision",
    "tf32",
];

/// `x` rounded to `digits` decimals, without trailing zeros: `0.31599999999999995` with 6
/// digits is `0.316`. Enough for every column (times to the millisecond, accuracies to 1e-6),
/// and free of float noise.
fn rounded(x: f64, digits: usize) -> String {
    let s = format!("{x:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

impl Results {
    pub fn to_csv(&self) -> String {
        let mut w = ::csv::Writer::from_writer(Vec::new());
        // Writing to a Vec cannot fail.
        let _ = w.write_record(HEADER);
        let opt = |x: Option<f64>, digits| x.map(|v| rounded(v, digits)).unwrap_or_default();
        for j in &self.jobs {
            let s = &j.spec;
            let _ = w.write_record([
                j.id.to_string(),
                j.dataset.to_string(),
                j.model.to_string(),
                j.activation.to_string(),
                j.seed.to_string(),
                j.status.to_string(),
                j.attempts.to_string(),
                csv_text(j.worker.as_deref().unwrap_or_default()),
                j.device.map(|d| d.to_string()).unwrap_or_default(),
                j.param_count.map(|p| p.to_string()).unwrap_or_default(),
                j.epochs.len().to_string(),
                rounded(j.total_train_seconds, 3),
                j.first_epoch_at_target
                    .map(|e| e.to_string())
                    .unwrap_or_default(),
                opt(j.seconds_to_target, 3),
                opt(j.final_test_accuracy, 6),
                opt(j.error_rate, 6),
                opt(j.latency_ms_per_sample, 4),
                csv_text(j.error.as_deref().unwrap_or_default()),
                rounded(j.target_accuracy, 6),
                s.epochs.to_string(),
                s.train_limit.to_string(),
                s.test_limit.to_string(),
                s.augment.to_string(),
                s.latency_samples.to_string(),
                s.optimizer.to_string(),
                rounded(s.learning_rate, 9),
                s.batch_size.to_string(),
                rounded(s.momentum, 6),
                rounded(s.weight_decay, 9),
                s.precision.to_string(),
                s.tf32.to_string(),
            ]);
        }
        String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    /// The job summary is defined once (`common::Summary`): every one of its fields is a column
    /// of `results.csv` and a field of each job in `results.json`, by the same name.
    #[test]
    fn every_summary_field_is_a_column_and_a_job_field() {
        let summary = common::Summary {
            total_train_seconds: 1.0,
            first_epoch_at_target: Some(2),
            seconds_to_target: Some(0.5),
            final_test_accuracy: Some(0.9),
            error_rate: Some(0.1),
        };
        let fields = serde_json::to_value(summary).unwrap();
        let fields: Vec<&String> = fields.as_object().unwrap().keys().collect();
        assert_eq!(fields.len(), 5);
        let results = crate::fixtures::results();
        let job = serde_json::to_value(&results.jobs[0]).unwrap();
        for f in fields {
            assert!(super::HEADER.contains(&f.as_str()), "results.csv lacks {f}");
            assert!(job.get(f).is_some(), "results.json's jobs lack {f}: {job}");
        }
    }

    #[test]
    fn a_row_per_job() {
        let csv = crate::fixtures::results().to_csv();
        assert_eq!(csv.lines().count(), 5);
        assert!(csv.starts_with("id,dataset,model,activation,seed,status"));
        assert!(csv
            .lines()
            .next()
            .unwrap()
            .ends_with(",learning_rate,batch_size,momentum,weight_decay,precision,tf32"));
        let relu = csv.lines().nth(1).unwrap();
        // 0.95 accuracy, 0.05 error (float noise gone), the spec's Adam at 0.001, batch 128.
        assert!(
            relu.contains(",0.95,0.05,0.2,,0.9,2,0,0,false,0,adam,0.001,128,0.9,0,fp32,conv"),
            "{relu}"
        );
    }

    #[test]
    fn rounding_drops_float_noise() {
        assert_eq!(super::rounded(0.315_999_999_999_999_95, 6), "0.316");
        assert_eq!(super::rounded(20.5, 3), "20.5");
        assert_eq!(super::rounded(3.0, 3), "3");
        assert_eq!(super::rounded(0.0, 6), "0");
    }
}
