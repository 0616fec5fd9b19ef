//! The gRPC server: the health service (no token, for Kubernetes probes), the worker protocol
//! and the control API (both behind the bearer token).

use anyhow::Context;
use orchestrator_proto::v1::control_service_server::ControlServiceServer;
use orchestrator_proto::v1::worker_service_server::WorkerServiceServer;
use orchestrator_proto::RequireToken;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::service::Shared;

/// Serves on `listener` until `stop` turns true.
pub async fn serve(
    shared: Shared,
    listener: TcpListener,
    token: Option<String>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<WorkerServiceServer<Shared>>().await;
    let auth = RequireToken::new(token);
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(health_service)
        .add_service(WorkerServiceServer::with_interceptor(
            shared.clone(),
            auth.clone(),
        ))
        .add_service(ControlServiceServer::with_interceptor(shared, auth))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            async move {
                let _ = stop.wait_for(|s| *s).await;
            },
        )
        .await
        .context("gRPC server")
}
