//! One leased job, start to end: fetch its checkpoint, train it in a child process while its
//! epochs (and checkpoints) stream to the coordinator, then report the outcome, which also
//! asks for the next job.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{CheckpointEvery, JobId, LeaseId, Outcome, TrainOutcome, TrainSpec};
use orchestrator_proto::convert::complete_request;
use orchestrator_proto::v1 as pb;
use tokio::sync::{mpsc, watch};

use super::checkpoint_sync;
use super::retry::retry;
use super::session::Session;
use crate::job_process::{Launcher, Progress};

/// What became of a lease.
pub struct Ended {
    /// The coordinator says every job of the grid is finished.
    pub grid_finished: bool,
    /// The next job, when the coordinator handed one over with the completion.
    pub next: Option<pb::Lease>,
}

/// Runs one leased job to its end and reports it.
pub async fn run(
    session: &Session,
    launcher: &Launcher,
    lease: pb::Lease,
) -> anyhow::Result<Ended> {
    let wire = lease.job.unwrap_or_default();
    // The id names the job's checkpoint and log files: one that is not an id is refused.
    let job =
        JobId::parse(&wire.job_id).map_err(|e| anyhow::anyhow!("the coordinator leased {e}"))?;
    let lease_id = LeaseId::new(lease.lease_id);
    let (cancel_tx, cancel_rx) = watch::channel(false);
    session.started(lease_id, cancel_tx.clone());
    tracing::info!(job_id = %job, lease_id = %lease_id, attempt = lease.attempt, "job leased");
    let outcome = match TrainSpec::try_from(&wire) {
        Err(e) => TrainOutcome::failed(
            launcher.device,
            format!("this worker cannot run the job: {e}"),
            vec![],
        ),
        Ok(spec) => {
            // Unreadable (a newer coordinator's syntax): this worker's default.
            let every = wire.checkpoint_every.parse().unwrap_or_default();
            let leased = Leased {
                spec: &spec,
                every,
                job: &job,
                lease: lease_id,
            };
            train(session, launcher, leased, cancel_tx.clone(), cancel_rx).await
        }
    };
    session.ended(lease_id);
    if *cancel_tx.borrow() {
        if session.stopping() {
            // Draining: hand the lease back so the job resumes elsewhere from its last
            // checkpoint right away.
            session.release(&job, lease_id).await;
        } else {
            // Revoked: the coordinator has already moved on; nothing to report. This worker's
            // own copy of the checkpoint is of no use any more (the coordinator keeps one where
            // the job may resume), unless the folder is the coordinator's itself.
            tracing::info!(job_id = %job, lease_id = %lease_id, "job stopped");
            if let (false, Ok(spec)) = (launcher.checkpoints_shared, TrainSpec::try_from(&wire)) {
                let _ = std::fs::remove_file(launcher.checkpoint_path(&spec));
            }
        }
        return Ok(Ended {
            grid_finished: false,
            next: None,
        });
    }
    complete(session, &job, lease_id, &outcome).await
}

/// A leased job, as the worker runs it.
struct Leased<'a> {
    spec: &'a TrainSpec,
    every: CheckpointEvery,
    job: &'a JobId,
    lease: LeaseId,
}

/// Trains the job in a child process; stops it when `cancel` is set (revoked lease) or the
/// daemon stops.
async fn train(
    session: &Session,
    launcher: &Launcher,
    l: Leased<'_>,
    cancel: watch::Sender<bool>,
    cancelled: watch::Receiver<bool>,
) -> TrainOutcome {
    let (spec, job, lease) = (l.spec, l.job, l.lease);
    let checkpoint = launcher.checkpoint_path(spec);
    if !launcher.checkpoints_shared {
        // Builds the model on the CPU (about 0.1 s for VGG-11): off the async threads.
        let owned = spec.clone();
        let largest =
            tokio::task::spawn_blocking(move || crate::train::checkpoint::largest(&owned))
                .await
                .unwrap_or(4 << 30);
        match checkpoint_sync::download(session, job, lease, &checkpoint, largest).await {
            Ok(true) => {
                tracing::info!(job_id = %job, "resuming from the checkpoint stored with the coordinator")
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(job_id = %job, error = ?format!("{e:#}"), "could not fetch the stored checkpoint")
            }
        }
    }
    let (progress_tx, progress_rx) = mpsc::channel::<Progress>(64);
    let upload = (!launcher.checkpoints_shared).then_some(checkpoint);
    let finished = Arc::new(AtomicBool::new(false));
    let forwarder = tokio::spawn(forward_progress(
        session.clone(),
        Forwarded {
            job: job.clone(),
            lease,
            upload,
            finished: finished.clone(),
        },
        cancel.clone(),
        progress_rx,
    ));
    let stopped = cancel.subscribe();
    let cancel_on_stop = {
        let mut stop = session.stop.clone();
        tokio::spawn(async move {
            if stop.wait_for(|s| *s).await.is_ok() {
                let _ = cancel.send(true);
            }
        })
    };
    let outcome = launcher.run(spec, l.every, progress_tx, cancelled).await;
    cancel_on_stop.abort();
    if outcome.status == Outcome::Failed || *stopped.borrow() {
        // The job may resume, here or elsewhere, from the last checkpoint uploaded: wait for
        // it, and for every report, before handing the lease back or reporting the failure.
        let _ = forwarder.await;
    } else {
        // Finished: the outcome holds every epoch, and the coordinator acknowledges a report
        // that arrives after it, so the completion (and the next job) need not wait for the
        // last report's answer; a checkpoint not yet uploaded is of no use any more.
        finished.store(true, Ordering::Relaxed);
    }
    outcome
}

/// What [`forward_progress`] forwards: the job's progress under `lease`, its checkpoints to
/// `upload` (None where the coordinator shares the folder), until the job has `finished`.
struct Forwarded {
    job: JobId,
    lease: LeaseId,
    upload: Option<PathBuf>,
    /// Set once the job has finished: checkpoints are no longer uploaded.
    finished: Arc<AtomicBool>,
}

/// Reports each epoch as the child finishes it, and uploads each checkpoint once the child has
/// written it. A rejected report means the lease is gone: the job is stopped.
async fn forward_progress(
    session: Session,
    f: Forwarded,
    cancel: watch::Sender<bool>,
    mut progress: mpsc::Receiver<Progress>,
) {
    let Forwarded {
        job,
        lease,
        upload,
        finished,
    } = f;
    while let Some(p) = progress.recv().await {
        let m = match p {
            Progress::Epoch(m) => m,
            Progress::Checkpoint(_) if finished.load(Ordering::Relaxed) => continue,
            Progress::Checkpoint(epoch) => {
                if let Some(path) = &upload {
                    let sent = checkpoint_sync::upload(&session, &job, lease, epoch, path);
                    if let Err(e) = sent.await {
                        tracing::warn!(job_id = %job, error = ?format!("{e:#}"), "checkpoint upload failed");
                    }
                }
                continue;
            }
        };
        let req = pb::ReportEpochRequest {
            worker_id: session.worker.to_string(),
            job_id: job.to_string(),
            lease_id: lease.get(),
            metrics: Some((&m).into()),
        };
        let r = retry("report epoch", &session.stop, || {
            let (r, req) = (session.reporter.clone(), req.clone());
            async move { r.report(req).await }
        })
        .await;
        match r {
            Ok(r) if !r.accepted => {
                tracing::warn!(job_id = %job, lease_id = %lease, "lease no longer valid; stopping job");
                let _ = cancel.send(true);
            }
            Ok(_) => tracing::debug!(job_id = %job, epoch = m.epoch, "epoch reported"),
            Err(e) => {
                tracing::warn!(job_id = %job, error = ?format!("{e:#}"), "epoch report failed")
            }
        }
    }
}

/// Reports the outcome; unless draining, asks for the next job in the same call (one
/// idempotency key for every retry).
async fn complete(
    session: &Session,
    job: &JobId,
    lease: LeaseId,
    outcome: &TrainOutcome,
) -> anyhow::Result<Ended> {
    tracing::info!(job_id = %job, status = %outcome.status, error = outcome.error.as_deref().unwrap_or(""), "job finished");
    let req = pb::CompleteJobRequest {
        worker_id: session.worker.to_string(),
        job_id: job.to_string(),
        lease_id: lease.get(),
        next_request_id: if session.stopping() {
            String::new()
        } else {
            session.next_request_id()
        },
        ..complete_request(outcome)
    };
    let r = retry("complete job", &session.stop, || {
        let (mut c, req) = (session.client.clone(), req.clone());
        async move { c.complete_job(req).await }
    })
    .await?;
    if !r.accepted {
        tracing::warn!(job_id = %job, lease_id = %lease, "result rejected: the lease had expired");
    }
    Ok(Ended {
        grid_finished: r.grid_finished,
        next: r.next,
    })
}
