//! A worker's epoch reports, batched.
//!
//! Each slot of a worker reports its epochs one after another and waits for each answer. A
//! [`Reporter`] sends everything its slots queued while its previous call was in flight as one
//! `ReportEpochs` call: one HTTP/2 request, one lock and one commit on the coordinator for many
//! reports, the way the coordinator batches its own writes. Each report is still answered on
//! its own, only once the coordinator has committed it. A coordinator without `ReportEpochs`
//! (UNIMPLEMENTED) gets one `ReportEpoch` call per report instead.

use tokio::sync::{mpsc, oneshot};
use tonic::{Code, Response, Status};

use crate::client::WorkerClient;
use crate::v1 as pb;
use crate::REPORT_BATCH;

type Answer = Result<pb::ReportEpochResponse, Status>;

/// Sends epoch reports for one worker session; cheap to clone. Its task ends when the last
/// clone is dropped.
#[derive(Clone)]
pub struct Reporter {
    queue: mpsc::Sender<(pb::ReportEpochRequest, oneshot::Sender<Answer>)>,
}

impl Reporter {
    /// A reporter sending through `client` (which carries the worker's session).
    pub fn spawn(client: WorkerClient) -> Reporter {
        let (queue, queued) = mpsc::channel(REPORT_BATCH);
        tokio::spawn(run(client, queued));
        Reporter { queue }
    }

    /// Reports one epoch; answers as `ReportEpoch` would (INVALID_ARGUMENT for a report the
    /// coordinator refused as invalid). Safe to retry, as every worker call is.
    pub async fn report(
        &self,
        req: pb::ReportEpochRequest,
    ) -> Result<Response<pb::ReportEpochResponse>, Status> {
        let stopped = || Status::unavailable("the epoch reporter has stopped");
        let (answer, answered) = oneshot::channel();
        self.queue
            .send((req, answer))
            .await
            .map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?.map(Response::new)
    }
}

async fn run(
    client: WorkerClient,
    mut queued: mpsc::Receiver<(pb::ReportEpochRequest, oneshot::Sender<Answer>)>,
) {
    let mut batched = true;
    let mut batch = Vec::with_capacity(REPORT_BATCH);
    while queued.recv_many(&mut batch, REPORT_BATCH).await > 0 {
        let (reports, answers): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
        let results = if batched {
            match send_batch(&client, reports.clone()).await {
                Err(s) if s.code() == Code::Unimplemented => {
                    tracing::debug!("the coordinator has no ReportEpochs; reporting one by one");
                    batched = false;
                    None
                }
                r => Some(r),
            }
        } else {
            None
        };
        match results {
            Some(Ok(results)) => {
                for (answer, result) in answers.into_iter().zip(results) {
                    let _ = answer.send(result);
                }
            }
            Some(Err(s)) => {
                for answer in answers {
                    let _ = answer.send(Err(s.clone()));
                }
            }
            None => {
                for (answer, report) in answers.into_iter().zip(reports) {
                    let mut c = client.clone();
                    let _ = answer.send(c.report_epoch(report).await.map(Response::into_inner));
                }
            }
        }
    }
}

/// One `ReportEpochs` call: each report's answer, in order.
async fn send_batch(
    client: &WorkerClient,
    reports: Vec<pb::ReportEpochRequest>,
) -> Result<Vec<Answer>, Status> {
    let sent = reports.len();
    let mut c = client.clone();
    let results = c
        .report_epochs(pb::ReportEpochsRequest { reports })
        .await?
        .into_inner()
        .results;
    if results.len() != sent {
        return Err(Status::internal(format!(
            "the coordinator answered {} of {sent} epoch reports",
            results.len()
        )));
    }
    Ok(results
        .into_iter()
        .map(|r| {
            if r.invalid.is_empty() {
                Ok(pb::ReportEpochResponse {
                    accepted: r.accepted,
                })
            } else {
                Err(Status::invalid_argument(r.invalid))
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use tonic::{Request, Status, Streaming};

    use super::*;
    use crate::auth::BearerAuth;
    use crate::client::worker_client;
    use crate::v1::worker_service_server::{WorkerService, WorkerServiceServer};

    /// A coordinator that predates `ReportEpochs`: it answers `ReportEpoch` only, accepting
    /// even epochs.
    #[derive(Clone, Default)]
    struct Old {
        calls: Arc<AtomicUsize>,
    }

    fn no<T>() -> Result<tonic::Response<T>, Status> {
        Err(Status::unimplemented("not in this version"))
    }

    #[tonic::async_trait]
    impl WorkerService for Old {
        type DownloadCheckpointStream = tokio_stream::Empty<Result<pb::CheckpointChunk, Status>>;
        async fn register(
            &self,
            _: Request<pb::RegisterRequest>,
        ) -> Result<tonic::Response<pb::RegisterResponse>, Status> {
            no()
        }
        async fn lease_job(
            &self,
            _: Request<pb::LeaseJobRequest>,
        ) -> Result<tonic::Response<pb::LeaseJobResponse>, Status> {
            no()
        }
        async fn report_epoch(
            &self,
            r: Request<pb::ReportEpochRequest>,
        ) -> Result<tonic::Response<pb::ReportEpochResponse>, Status> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let epoch = r.into_inner().metrics.unwrap_or_default().epoch;
            if epoch > 100 {
                return Err(Status::invalid_argument(format!(
                    "epoch {epoch} is not in 1..=100"
                )));
            }
            Ok(tonic::Response::new(pb::ReportEpochResponse {
                accepted: epoch.is_multiple_of(2),
            }))
        }
        async fn report_epochs(
            &self,
            _: Request<pb::ReportEpochsRequest>,
        ) -> Result<tonic::Response<pb::ReportEpochsResponse>, Status> {
            no()
        }
        async fn complete_job(
            &self,
            _: Request<pb::CompleteJobRequest>,
        ) -> Result<tonic::Response<pb::CompleteJobResponse>, Status> {
            no()
        }
        async fn heartbeat(
            &self,
            _: Request<pb::HeartbeatRequest>,
        ) -> Result<tonic::Response<pb::HeartbeatResponse>, Status> {
            no()
        }
        async fn release_job(
            &self,
            _: Request<pb::ReleaseJobRequest>,
        ) -> Result<tonic::Response<pb::ReleaseJobResponse>, Status> {
            no()
        }
        async fn upload_checkpoint(
            &self,
            _: Request<Streaming<pb::CheckpointChunk>>,
        ) -> Result<tonic::Response<pb::UploadCheckpointResponse>, Status> {
            no()
        }
        async fn download_checkpoint(
            &self,
            _: Request<pb::DownloadCheckpointRequest>,
        ) -> Result<tonic::Response<Self::DownloadCheckpointStream>, Status> {
            no()
        }
    }

    fn report(epoch: u32) -> pb::ReportEpochRequest {
        pb::ReportEpochRequest {
            worker_id: "w1".into(),
            job_id: "j".into(),
            lease_id: 1,
            metrics: Some(pb::EpochMetrics {
                epoch,
                ..Default::default()
            }),
        }
    }

    /// Against a coordinator without `ReportEpochs`, every report still gets its own answer,
    /// sent one by one, concurrent reports included.
    #[tokio::test]
    async fn falls_back_to_one_call_per_report() {
        let old = Old::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let server = tonic::transport::Server::builder()
            .add_service(WorkerServiceServer::new(old.clone()))
            .serve_with_incoming(incoming);
        tokio::spawn(server);
        let channel = tonic::transport::Endpoint::from_shared(url)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let reporter = Reporter::spawn(worker_client(channel, BearerAuth::default()));
        let sent = (1..=8).chain([101]).map(|e| {
            let r = reporter.clone();
            tokio::spawn(async move { (e, r.report(report(e)).await) })
        });
        for task in sent.collect::<Vec<_>>() {
            let (e, answer) = task.await.unwrap();
            match answer {
                Ok(a) => assert_eq!(a.into_inner().accepted, e.is_multiple_of(2), "epoch {e}"),
                Err(s) => {
                    assert_eq!((e, s.code()), (101, Code::InvalidArgument), "{s:?}");
                    assert!(s.message().contains("101"), "{s:?}");
                }
            }
        }
        assert_eq!(old.calls.load(Ordering::Relaxed), 9);
    }
}
