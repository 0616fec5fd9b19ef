//! Channels and authenticated clients for a coordinator URL; the worker and the `status` /
//! `cancel` commands build theirs here.

use std::time::Duration;

use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::auth::BearerAuth;
use crate::v1::control_service_client::ControlServiceClient;
use crate::v1::worker_service_client::WorkerServiceClient;

pub type Authed = InterceptedService<Channel, BearerAuth>;
pub type WorkerClient = WorkerServiceClient<Authed>;
pub type ControlClient = ControlServiceClient<Authed>;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid coordinator URL `{url}`: {why}")]
    Url { url: String, why: String },
    #[error("{0}")]
    Token(String),
    #[error("cannot reach the coordinator at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
}

/// The endpoint of `url`, with the timeouts every client uses.
fn endpoint(url: &str) -> Result<Endpoint, ClientError> {
    Ok(Endpoint::from_shared(url.to_string())
        .map_err(|e| ClientError::Url {
            url: url.into(),
            why: e.to_string(),
        })?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(60))
        .tcp_nodelay(true))
}

fn auth(token: Option<&str>) -> Result<BearerAuth, ClientError> {
    BearerAuth::new(token).map_err(ClientError::Token)
}

/// A worker's client: connects lazily (and reconnects) on each call, so a worker may start
/// before its coordinator and outlive a coordinator restart.
pub fn worker_client(url: &str, token: Option<&str>) -> Result<WorkerClient, ClientError> {
    let channel = endpoint(url)?.connect_lazy();
    Ok(WorkerServiceClient::with_interceptor(channel, auth(token)?))
}

/// An operator's client: connects now, so a wrong URL is reported at once.
pub async fn control_client(url: &str, token: Option<&str>) -> Result<ControlClient, ClientError> {
    let channel = endpoint(url)?
        .connect()
        .await
        .map_err(|source| ClientError::Connect {
            url: url.into(),
            source,
        })?;
    Ok(ControlServiceClient::with_interceptor(
        channel,
        auth(token)?,
    ))
}
