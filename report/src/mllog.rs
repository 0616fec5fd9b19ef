//! MLPerf Training logs, `mllog/<job id>.log`: one `:::MLLOG {json}` line per event, in the
//! format of `mlperf_logging.mllog` (`namespace`, `time_ms`, `event_type`, `key`, `value`,
//! `metadata`). Times are the job process's wall clock, so the MLPerf result summarizer's time
//! to train (`run_stop` − `run_start`) is the job's. `report/mlperf/training_4.1.0_custom.yaml`
//! is the compliance config these logs pass.

use common::{Grid, JobRecord, JobStatus, Optimizer};
use serde_json::{json, Value};

use crate::results::Environment;

/// One log line.
struct Event {
    time_ms: u64,
    kind: &'static str,
    key: &'static str,
    value: Value,
    metadata: Value,
}

impl Event {
    fn point(time_ms: u64, key: &'static str, value: Value) -> Event {
        Event {
            time_ms,
            kind: "POINT_IN_TIME",
            key,
            value,
            metadata: json!({}),
        }
    }

    fn with(mut self, metadata: Value) -> Event {
        self.metadata = metadata;
        self
    }

    fn start(time_ms: u64, key: &'static str) -> Event {
        Event {
            kind: "INTERVAL_START",
            ..Event::point(time_ms, key, Value::Null)
        }
    }

    fn end(time_ms: u64, key: &'static str) -> Event {
        Event {
            kind: "INTERVAL_END",
            ..Event::point(time_ms, key, Value::Null)
        }
    }

    fn line(&self) -> String {
        // serde_json keeps the insertion order of `json!` objects only with its
        // preserve_order feature; written by hand, the order is mllog's.
        format!(
            ":::MLLOG {{\"namespace\": \"\", \"time_ms\": {}, \"event_type\": \"{}\", \"key\": \"{}\", \"value\": {}, \"metadata\": {}}}",
            self.time_ms, self.kind, self.key, self.value, self.metadata
        )
    }
}

/// The log of `job`, or None for a job without the job process's clock (not finished, or
/// recorded before clocks were kept).
pub fn mllog(job: &JobRecord, grid: &Grid, env: &Environment) -> Option<String> {
    let clock = job.clock.filter(|_| job.status.is_terminal())?;
    let init = clock.init_start_ms;
    let run = clock.run_start_ms.unwrap_or(clock.run_stop_ms);
    let mut events = vec![
        Event::point(init, "cache_clear", json!(true)),
        Event::start(init, "init_start"),
    ];
    events.extend(submission(job, grid, env, init));
    events.extend(hyperparameters(job, init));
    events.push(Event::end(run, "init_stop"));
    events.push(Event::start(run, "run_start"));
    for e in &job.epochs {
        let Some(c) = e.clock else { continue };
        let epoch = json!({ "epoch_num": e.epoch });
        events.extend([
            Event::start(c.start_ms, "epoch_start").with(epoch.clone()),
            Event::end(c.train_end_ms, "epoch_stop").with(epoch.clone()),
            Event::start(c.train_end_ms, "eval_start").with(epoch.clone()),
            Event::point(c.eval_end_ms, "eval_accuracy", json!(e.test_accuracy))
                .with(epoch.clone()),
            Event::end(c.eval_end_ms, "eval_stop").with(epoch),
        ]);
    }
    if let Some(latency) = job.latency_ms_per_sample {
        events.push(Event::point(
            clock.run_stop_ms,
            "latency_ms_per_sample",
            json!(latency),
        ));
    }
    let status = if job.status == JobStatus::Succeeded {
        "success"
    } else {
        "aborted"
    };
    events.push(Event::end(clock.run_stop_ms, "run_stop").with(json!({ "status": status })));
    Some(events.iter().map(|e| e.line() + "\n").collect())
}

/// Who ran what on what.
fn submission(job: &JobRecord, grid: &Grid, env: &Environment, at: u64) -> Vec<Event> {
    let platform = env
        .workers
        .iter()
        .find(|w| Some(&w.info.name) == job.worker.as_ref())
        .map(|w| format!("{} ({})", w.info.device_name, w.info.device))
        .or_else(|| job.device.map(|d| d.to_string()))
        .unwrap_or_else(|| "unknown".into());
    let org = match grid.author() {
        "" => "dlgrid",
        author => author,
    };
    vec![
        Event::point(
            at,
            "submission_benchmark",
            json!(format!("{}_{}", job.dataset, job.model)),
        ),
        Event::point(at, "submission_org", json!(org)),
        Event::point(at, "submission_division", json!("open")),
        Event::point(at, "submission_platform", json!(platform)),
    ]
}

/// The job's settings, under MLPerf's keys where it has them.
fn hyperparameters(job: &JobRecord, at: u64) -> Vec<Event> {
    let s = &job.spec;
    let info = s.dataset.info();
    let limit = |n: u64, all: u64| if n == 0 { all } else { n.min(all) };
    let opt = match s.optimizer {
        Optimizer::Adam => "adam",
        Optimizer::Sgd => "sgd",
    };
    vec![
        Event::point(at, "seed", json!(s.seed)),
        Event::point(at, "global_batch_size", json!(s.batch_size)),
        Event::point(at, "opt_name", json!(opt)),
        Event::point(at, "opt_base_learning_rate", json!(s.learning_rate)),
        Event::point(
            at,
            "train_samples",
            json!(limit(s.train_limit, info.train_images)),
        ),
        Event::point(
            at,
            "eval_samples",
            json!(limit(s.test_limit, info.test_images)),
        ),
        Event::point(at, "activation", json!(s.activation)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::{EpochClock, RunClock};

    #[test]
    fn one_mllog_line_per_event_in_order() {
        let mut r = crate::fixtures::results();
        let job = &mut r.jobs[0];
        assert!(
            mllog(job, &r.grid, &r.environment).is_none(),
            "no clock, no log"
        );
        job.clock = Some(RunClock {
            init_start_ms: 1000,
            run_start_ms: Some(1500),
            run_stop_ms: 9000,
        });
        for (i, e) in job.epochs.iter_mut().enumerate() {
            let t = 2000 + 3000 * i as u64;
            e.clock = Some(EpochClock {
                start_ms: t,
                train_end_ms: t + 2000,
                eval_end_ms: t + 2500,
            });
        }
        let log = mllog(job, &r.grid, &r.environment).unwrap();
        let lines: Vec<&str> = log.lines().collect();
        assert!(lines
            .iter()
            .all(|l| l.starts_with(":::MLLOG {\"namespace\": \"\", \"time_ms\": ")));
        let keys: Vec<String> = lines
            .iter()
            .map(|l| {
                let v: Value = serde_json::from_str(&l[":::MLLOG ".len()..]).unwrap();
                v["key"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(keys[..2], ["cache_clear", "init_start"]);
        assert_eq!(keys.iter().filter(|k| *k == "eval_accuracy").count(), 2);
        assert_eq!(keys.last().unwrap(), "run_stop");
        assert!(
            log.contains(r#""key": "submission_benchmark", "value": "mnist_paper-cnn""#),
            "{log}"
        );
        assert!(
            log.contains(r#""key": "eval_accuracy", "value": 0.95, "metadata": {"epoch_num":2}"#),
            "{log}"
        );
        assert!(
            log.contains(r#""key": "run_stop", "value": null, "metadata": {"status":"success"}"#),
            "{log}"
        );
        assert!(
            log.contains(r#""time_ms": 1500, "event_type": "INTERVAL_START", "key": "run_start""#),
            "{log}"
        );
    }
}
