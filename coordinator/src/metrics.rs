//! Prometheus metrics, served at `/metrics` on the live page's port (text format 0.0.4, behind
//! the token like every page). Counters and histograms are updated where things happen; job
//! and worker gauges are read from the state at each scrape.
//!
//! | metric | type | labels |
//! | --- | --- | --- |
//! | `dlgrid_jobs` | gauge | `state`: pending, running, succeeded, failed, diverged, cancelled |
//! | `dlgrid_workers_connected` | gauge | `device`: cpu, cuda:0, ... (heard from within a lease) |
//! | `dlgrid_slurm_worker_jobs` | gauge | `state`: SLURM's (PENDING, RUNNING, ...) of the worker jobs submitted (`--launcher slurm`) |
//! | `dlgrid_leases_expired_total` | counter | |
//! | `dlgrid_leases_released_total` | counter | (handed back by draining workers, re-queued) |
//! | `dlgrid_epochs_reported_total` | counter | |
//! | `dlgrid_epoch_duration_seconds` | histogram | (train + evaluation, as the worker timed it) |
//! | `dlgrid_rpc_duration_seconds` | histogram | `method`: the gRPC method (a fixed set) |
//! | `dlgrid_checkpoint_bytes_stored_total` | counter | |
//! | `dlgrid_worker_calls_denied_total` | counter | |
//! | `dlgrid_build_info` | gauge (1) | `version` |

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::state::Counts;

pub struct Metrics {
    registry: Registry,
    jobs: IntGaugeVec,
    workers: IntGaugeVec,
    /// `--launcher slurm`'s worker jobs by SLURM state (set by [`crate::slurm`]).
    pub slurm_jobs: IntGaugeVec,
    pub leases_expired: IntCounter,
    pub leases_released: IntCounter,
    pub epochs: IntCounter,
    pub epoch_seconds: Histogram,
    pub rpc_seconds: HistogramVec,
    pub checkpoint_bytes: IntCounter,
    pub denied: IntCounter,
}

/// The gRPC methods timed by name; anything else (a client may send any path) is `other`, so
/// the label's values stay few.
const METHODS: [&str; 13] = [
    "Register",
    "LeaseJob",
    "ReportEpoch",
    "ReportEpochs",
    "CompleteJob",
    "Heartbeat",
    "ReleaseJob",
    "UploadCheckpoint",
    "DownloadCheckpoint",
    "GridStatus",
    "CancelJobs",
    "Check",
    "Watch",
];

fn method_of(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or("");
    METHODS
        .iter()
        .find(|m| **m == name)
        .copied()
        .unwrap_or("other")
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let gauges = |name: &str, help: &str, label: &str| {
            let g = IntGaugeVec::new(Opts::new(name, help), &[label]).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let jobs = gauges("dlgrid_jobs", "Jobs of the grid by state.", "state");
        let workers = gauges(
            "dlgrid_workers_connected",
            "Workers heard from within a lease time, by device.",
            "device",
        );
        let slurm_jobs = gauges(
            "dlgrid_slurm_worker_jobs",
            "Worker jobs this coordinator submitted to SLURM and SLURM still holds, by SLURM state.",
            "state",
        );
        let build = gauges("dlgrid_build_info", "The coordinator's version.", "version");
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        // Epochs: seconds (tiny test jobs) to an hour (VGG on a slow CPU).
        let epoch_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "dlgrid_epoch_duration_seconds",
                "One epoch's training and evaluation, as timed by the worker.",
            )
            .buckets(prometheus::exponential_buckets(0.25, 2.0, 15).expect("valid buckets")),
        )
        .expect("valid metric");
        registry
            .register(Box::new(epoch_seconds.clone()))
            .expect("unique metric");
        let rpc_seconds = HistogramVec::new(
            HistogramOpts::new(
                "dlgrid_rpc_duration_seconds",
                "Time the coordinator took to answer a gRPC call, by method.",
            )
            .buckets(prometheus::exponential_buckets(0.0001, 4.0, 10).expect("valid buckets")),
            &["method"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(rpc_seconds.clone()))
            .expect("unique metric");
        Metrics {
            leases_expired: counter(
                "dlgrid_leases_expired_total",
                "Leases that expired (worker silent); their jobs were re-queued or failed.",
            ),
            leases_released: counter(
                "dlgrid_leases_released_total",
                "Leases handed back by draining workers; their jobs were re-queued.",
            ),
            epochs: counter("dlgrid_epochs_reported_total", "Epoch reports accepted."),
            checkpoint_bytes: counter(
                "dlgrid_checkpoint_bytes_stored_total",
                "Bytes of job checkpoints stored with the coordinator.",
            ),
            denied: counter(
                "dlgrid_worker_calls_denied_total",
                "Worker calls refused: wrong or missing session, or another worker's lease.",
            ),
            jobs,
            workers,
            slurm_jobs,
            epoch_seconds,
            rpc_seconds,
            registry,
        }
    }

    /// The text exposition, with the gauges set from `counts` and `workers` (live workers by
    /// device).
    pub fn render(&self, counts: &Counts, workers: &BTreeMap<String, i64>) -> String {
        for (state, n) in [
            ("pending", counts.pending),
            ("running", counts.running),
            ("succeeded", counts.succeeded),
            ("failed", counts.failed),
            ("diverged", counts.diverged),
            ("cancelled", counts.cancelled),
            ("held", counts.held),
        ] {
            self.jobs.with_label_values(&[state]).set(n as i64);
        }
        self.workers.reset();
        for (device, n) in workers {
            self.workers.with_label_values(&[device.as_str()]).set(*n);
        }
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into memory");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

/// Times every gRPC call into `dlgrid_rpc_duration_seconds` (to the response's start: a
/// download's stream is not waited for).
#[derive(Clone)]
pub struct RpcTimer(pub HistogramVec);

impl<S> tower::Layer<S> for RpcTimer {
    type Service = Timed<S>;
    fn layer(&self, inner: S) -> Timed<S> {
        Timed {
            inner,
            hist: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Timed<S> {
    inner: S,
    hist: HistogramVec,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Timed<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = method_of(req.uri().path());
        let (start, hist) = (Instant::now(), self.hist.clone());
        let fut = self.inner.call(req);
        Box::pin(async move {
            let r = fut.await;
            hist.with_label_values(&[method])
                .observe(start.elapsed().as_secs_f64());
            r
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_every_metric_and_bounded_labels() {
        let m = Metrics::new();
        m.epochs.inc();
        m.epoch_seconds.observe(3.0);
        m.rpc_seconds
            .with_label_values(&[method_of("/orchestrator.v1.WorkerService/LeaseJob")])
            .observe(0.001);
        m.rpc_seconds
            .with_label_values(&[method_of("/x.Y/EvilMethodName")])
            .observe(0.001);
        let counts = Counts {
            pending: 3,
            running: 1,
            succeeded: 2,
            failed: 0,
            diverged: 1,
            cancelled: 0,
            held: 4,
        };
        let workers = BTreeMap::from([("cuda:0".to_string(), 2)]);
        let text = m.render(&counts, &workers);
        for line in [
            "dlgrid_jobs{state=\"pending\"} 3",
            "dlgrid_jobs{state=\"held\"} 4",
            "dlgrid_workers_connected{device=\"cuda:0\"} 2",
            "dlgrid_epochs_reported_total 1",
            "dlgrid_epoch_duration_seconds_count 1",
            "dlgrid_rpc_duration_seconds_count{method=\"LeaseJob\"} 1",
            "dlgrid_rpc_duration_seconds_count{method=\"other\"} 1",
            "dlgrid_build_info{version=",
            "# TYPE dlgrid_leases_expired_total counter",
        ] {
            assert!(text.contains(line), "{line} missing in:\n{text}");
        }
        assert!(!text.contains("EvilMethodName"));
        // A worker gone since the last scrape is no longer listed.
        let text = m.render(&counts, &BTreeMap::new());
        assert!(!text.contains("cuda:0"));
    }
}
