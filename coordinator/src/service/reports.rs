//! Epoch reports, one per call (`ReportEpoch`) or a worker's batch (`ReportEpochs`): both are
//! checked and recorded here, under one lock and one commit per call.

use std::time::Instant;

use common::{EpochMetrics, LeaseId, WorkerId};
use orchestrator_proto::v1 as pb;
use tonic::{Request, Status};

use super::worker::{invalid, job_id};
use super::Shared;
use crate::error::ServiceError;
use crate::state::State;

/// What became of one report: recorded (`accepted`), already held (its attempt has finished and
/// its outcome holds the epoch, or the same report was recorded before: acknowledged, not
/// recorded again), stale (the lease is no longer the job's attempt), or refused as invalid
/// (the reason).
enum Recorded {
    Accepted(pb::EpochMetrics, common::JobId),
    Late,
    Stale(common::JobId, LeaseId),
    Invalid(String),
}

impl Shared {
    /// Records `reports`, all of one worker, each as `ReportEpoch` would; answered once the
    /// batch holding them is durable. A report of another worker, or of a lease that another
    /// worker holds, refuses the whole call; an invalid report is refused alone.
    pub(super) async fn record_epochs(
        &self,
        req: &Request<()>,
        reports: Vec<pb::ReportEpochRequest>,
    ) -> Result<Vec<pb::ReportEpochResult>, Status> {
        let Some(first) = reports.first() else {
            return Ok(Vec::new());
        };
        let worker = WorkerId::from_stored(first.worker_id.clone());
        if let Some(other) = reports.iter().find(|r| r.worker_id != first.worker_id) {
            let why = format!(
                "reports of two workers ({:?} and {:?}) in one call",
                first.worker_id, other.worker_id
            );
            return Err(self.deny(req, &worker, why));
        }
        let leases: Vec<LeaseId> = reports.iter().map(|r| LeaseId::new(r.lease_id)).collect();
        self.verify(req, &worker, &leases, false)?;
        let now = Instant::now();
        let (recorded, seq) = self.with_state(|state| {
            reports
                .into_iter()
                .map(|r| record(state, &worker, r, now))
                .collect::<Result<Vec<_>, _>>()
        })?;
        self.settle(seq).await?;
        let mut any = false;
        let results = recorded
            .into_iter()
            .map(|r| match r {
                Recorded::Accepted(m, job) => {
                    any = true;
                    self.accepted(&job, &m);
                    pb::ReportEpochResult {
                        accepted: true,
                        invalid: String::new(),
                    }
                }
                Recorded::Late => pb::ReportEpochResult {
                    accepted: true,
                    invalid: String::new(),
                },
                Recorded::Stale(job, lease) => {
                    tracing::warn!(job_id = %job, lease_id = %lease, "stale epoch report rejected");
                    pb::ReportEpochResult::default()
                }
                Recorded::Invalid(why) => pb::ReportEpochResult {
                    accepted: false,
                    invalid: why,
                },
            })
            .collect();
        if any {
            self.changed.notify_waiters();
        }
        Ok(results)
    }

    /// Logs and counts an epoch that was recorded.
    fn accepted(&self, job: &common::JobId, m: &pb::EpochMetrics) {
        tracing::info!(
            job_id = %job,
            epoch = m.epoch,
            test_accuracy = format_args!("{:.4}", m.test_accuracy),
            train_seconds = format_args!("{:.1}", m.train_seconds),
            "epoch"
        );
        self.metrics.epochs.inc();
        if m.start_ms > 0 && m.eval_end_ms > m.start_ms {
            let seconds = (m.eval_end_ms - m.start_ms) as f64 / 1000.0;
            self.metrics.epoch_seconds.observe(seconds);
        }
    }
}

/// Checks and records one report in `state`. An error of the state itself (not of the report)
/// fails the call.
fn record(
    state: &mut State,
    worker: &WorkerId,
    r: pb::ReportEpochRequest,
    now: Instant,
) -> Result<Recorded, ServiceError> {
    let lease = LeaseId::new(r.lease_id);
    let Some(m) = r.metrics else {
        return Ok(Recorded::Invalid("metrics are required".into()));
    };
    let job = match job_id(r.job_id) {
        Ok(job) => job,
        Err(e) => return Ok(Recorded::Invalid(e.to_string())),
    };
    let metrics: EpochMetrics = (&m).into();
    if let Err(why) = state.check_epoch(&job, lease, &metrics) {
        return Ok(Recorded::Invalid(invalid(&job, why).to_string()));
    }
    // A repeat is answered as accepted but neither stored nor logged again.
    let repeat = state.repeats(&job, lease, &metrics);
    Ok(if state.report_epoch(worker, &job, lease, metrics, now)? {
        if repeat {
            Recorded::Late
        } else {
            Recorded::Accepted(m, job)
        }
    } else if state.finished_under(&job, lease) {
        Recorded::Late
    } else {
        Recorded::Stale(job, lease)
    })
}
