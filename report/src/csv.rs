//! `results.csv`: one row per job with the summary fields.

use crate::format::csv_text;
use crate::results::Results;

const HEADER: [&str; 18] = [
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
];

impl Results {
    pub fn to_csv(&self) -> String {
        let mut w = ::csv::Writer::from_writer(Vec::new());
        // Writing to a Vec cannot fail.
        let _ = w.write_record(HEADER);
        let opt = |x: Option<f64>| x.map(|v| v.to_string()).unwrap_or_default();
        for j in &self.jobs {
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
                j.total_train_seconds.to_string(),
                j.first_epoch_at_target
                    .map(|e| e.to_string())
                    .unwrap_or_default(),
                opt(j.seconds_to_target),
                opt(j.final_test_accuracy),
                opt(j.error_rate),
                opt(j.latency_ms_per_sample),
                csv_text(j.error.as_deref().unwrap_or_default()),
            ]);
        }
        String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_row_per_job() {
        let csv = crate::fixtures::results().to_csv();
        assert_eq!(csv.lines().count(), 5);
        assert!(csv.starts_with("id,dataset,model,activation,seed,status"));
    }
}
