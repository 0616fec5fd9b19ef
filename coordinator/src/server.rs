//! The gRPC server: the health service (no token, for Kubernetes probes), the worker protocol
//! and the control API (both behind the bearer token).
//!
//! It serves on the `--listen` port (TLS when configured; connections capped and closed when
//! idle, see [`crate::limits`]) and on a Unix socket in a private folder for the workers the
//! coordinator starts itself, which so need no certificate.

use std::sync::Arc;

use anyhow::Context;
use orchestrator_proto::v1::control_service_server::ControlServiceServer;
use orchestrator_proto::v1::worker_service_server::WorkerServiceServer;
use orchestrator_proto::{RequireToken, TokenCell};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tonic::transport::server::Router;

use crate::accept;
use crate::limits::{self, Connections};
use crate::metrics::RpcTimer;
use crate::service::Shared;
use crate::tls::ServerTls;
use tower::layer::util::{Identity, Stack};

/// Concurrent calls on one connection: a worker with 64 slots makes about two per slot.
const STREAMS_PER_CONNECTION: u32 = 256;

/// The services behind the RPC timer.
type Timed = Router<Stack<RpcTimer, Identity>>;

/// Who may call what: workers (and reflection) with the workers' token, the control API with
/// the operators' (see `operator.rs`); empty: no token asked. Both follow their files.
#[derive(Clone)]
pub struct Tokens {
    pub worker: TokenCell,
    pub operator: TokenCell,
}

/// The services, on a server with the limits every listener shares.
async fn router(shared: &Shared, tokens: Tokens) -> anyhow::Result<Timed> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<WorkerServiceServer<Shared>>().await;
    let auth = RequireToken::new(tokens.worker);
    let operator = RequireToken::new(tokens.operator);
    let timer = RpcTimer(shared.metrics.rpc_seconds.clone());
    // No `.tcp_nodelay` nor `.tls_config`: they apply only to tonic's own listener;
    // `accept::incoming` sets the one and does the other's handshakes itself.
    let server = tonic::transport::Server::builder()
        .max_concurrent_streams(STREAMS_PER_CONNECTION)
        .concurrency_limit_per_connection(STREAMS_PER_CONNECTION as usize)
        .http2_max_header_list_size(64 * 1024)
        .http2_max_pending_accept_reset_streams(Some(64));
    // Reflection (grpcurl list / describe) is behind the token like the services it describes.
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(orchestrator_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("gRPC reflection")?;
    let reflection = tonic::service::interceptor::InterceptedService::new(reflection, auth.clone());
    Ok(server
        .layer(timer)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(WorkerServiceServer::with_interceptor(
            shared.clone(),
            auth.clone(),
        ))
        .add_service(ControlServiceServer::with_interceptor(
            shared.clone(),
            operator,
        )))
}

/// Serves on `listener` (and `local`, for local workers) until `stop` turns true.
pub async fn serve(
    shared: Shared,
    listener: TcpListener,
    local: Option<UnixListener>,
    tokens: Tokens,
    tls: Option<Arc<ServerTls>>,
    idle: std::time::Duration,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let stopped = |mut stop: watch::Receiver<bool>| async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let conns = Connections::new(limits::grpc(idle));
    let tcp = router(&shared, tokens.clone())
        .await?
        .serve_with_incoming_shutdown(
            accept::incoming(listener, conns, tls.map(|t| t.grpc())),
            stopped(stop.clone()),
        );
    let Some(local) = local else {
        return tcp.await.context("gRPC server");
    };
    let uds = router(&shared, tokens).await?.serve_with_incoming_shutdown(
        tokio_stream::wrappers::UnixListenerStream::new(local),
        stopped(stop),
    );
    let (a, b) = tokio::join!(tcp, uds);
    a.context("gRPC server")?;
    b.context("gRPC server (local socket)")?;
    Ok(())
}

/// A private folder (mode 700) holding the local workers' socket; removed when dropped.
pub struct LocalSocket {
    dir: tempfile::TempDir,
}

impl LocalSocket {
    pub fn bind() -> anyhow::Result<(LocalSocket, UnixListener)> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix("dlgrid-coordinator-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()
            .context("creating the local workers' socket folder")?;
        let path = dir.path().join("grpc.sock");
        let listener = UnixListener::bind(&path)
            .with_context(|| format!("listening on {}", path.display()))?;
        Ok((LocalSocket { dir }, listener))
    }

    /// The URL local workers connect to.
    pub fn url(&self) -> String {
        format!("unix:{}", self.dir.path().join("grpc.sock").display())
    }
}
