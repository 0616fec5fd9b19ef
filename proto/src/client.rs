//! Channels and authenticated clients for a coordinator URL; the worker and the `status` /
//! `cancel` commands build theirs here.
//!
//! An `https://` URL always means TLS (never a fall-back to plaintext): the server is checked
//! against `--tls-ca` (else the system's roots), and `--tls-cert`/`--tls-key` present a client
//! certificate for mutual TLS. `unix:PATH` reaches a coordinator's local socket (its own
//! workers). `http://` to another machine with a token works, with a warning: the token
//! travels in clear.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

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
    #[error("{0}")]
    Tls(String),
    #[error("cannot reach the coordinator at {url}: {why}")]
    Connect { url: String, why: String },
}

/// The files a client proves the server, and itself, with (`--tls-ca`, `--tls-cert`,
/// `--tls-key`). All empty: plaintext for `http://`, the system's roots for `https://`.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    /// CA certificate(s), PEM, that the coordinator's certificate must chain to.
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM), for a coordinator that requires one (mutual TLS).
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub key: Option<PathBuf>,
}

impl ClientTls {
    fn any(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some()
    }

    fn config(&self) -> Result<ClientTlsConfig, ClientError> {
        let mut c = ClientTlsConfig::new();
        c = match &self.ca {
            Some(ca) => c.ca_certificate(Certificate::from_pem(read_pem(
                ca,
                "--tls-ca",
                "CERTIFICATE",
            )?)),
            None => c.with_native_roots(),
        };
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let cert = read_pem(cert, "--tls-cert", "CERTIFICATE")?;
                let key = read_pem(key, "--tls-key", "PRIVATE KEY")?;
                Ok(c.identity(Identity::from_pem(cert, key)))
            }
            (None, None) => Ok(c),
            _ => Err(ClientError::Tls(
                "--tls-cert and --tls-key go together (a client certificate and its key)".into(),
            )),
        }
    }
}

/// Reads a PEM file given as `flag`, checking that it holds a `kind` block.
pub fn read_pem(path: &Path, flag: &str, kind: &str) -> Result<Vec<u8>, ClientError> {
    let bytes = std::fs::read(path)
        .map_err(|e| ClientError::Tls(format!("{flag} {}: cannot read: {e}", path.display())))?;
    let text = String::from_utf8_lossy(&bytes);
    if !text.contains("-----BEGIN ") || !text.contains(&format!("{kind}-----")) {
        return Err(ClientError::Tls(format!(
            "{flag} {}: no PEM {kind} in it",
            path.display()
        )));
    }
    Ok(bytes)
}

/// The endpoint of `url`, with the timeouts every client uses and TLS as the URL says.
fn endpoint(url: &str, tls: &ClientTls, token: bool) -> Result<Endpoint, ClientError> {
    let bad = |why: String| ClientError::Url {
        url: url.into(),
        why,
    };
    let e = Endpoint::from_shared(url.to_string())
        .map_err(|e| bad(e.to_string()))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(60))
        .tcp_nodelay(true);
    let scheme = url.split(':').next().unwrap_or("");
    match scheme {
        "https" => e
            .tls_config(tls.config()?)
            .map_err(|e| ClientError::Tls(format!("TLS set-up: {}", chain(&e)))),
        "http" | "unix" if tls.any() => Err(bad(
            "TLS files are given but the URL is not https://; use https:// (TLS is never \
             dropped silently)"
                .into(),
        )),
        "http" => {
            let host = e.uri().host().unwrap_or("");
            if token && !is_loopback(host) {
                tracing::warn!(
                    url,
                    "the token travels in clear over http://; use https:// (see the manual: Security)"
                );
            }
            Ok(e)
        }
        "unix" => Ok(e),
        _ => Err(bad("expected http://, https:// or unix:PATH".into())),
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// An error with its causes, `a: b: c` (tonic's transport errors say little at the top).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

fn auth(token: Option<&str>) -> Result<BearerAuth, ClientError> {
    BearerAuth::new(token).map_err(ClientError::Token)
}

/// A worker's channel: connects lazily (and reconnects) on each call, so a worker may start
/// before its coordinator and outlive a coordinator restart.
pub fn worker_channel(url: &str, tls: &ClientTls, token: bool) -> Result<Channel, ClientError> {
    Ok(endpoint(url, tls, token)?.connect_lazy())
}

/// A worker's client over `channel`: with the token, and the session once registered.
pub fn worker_client(channel: Channel, auth: BearerAuth) -> WorkerClient {
    WorkerServiceClient::with_interceptor(channel, auth)
}

/// A worker's first client, for registering: the token only.
pub fn unregistered_worker(
    url: &str,
    tls: &ClientTls,
    token: Option<&str>,
) -> Result<(Channel, BearerAuth, WorkerClient), ClientError> {
    let channel = worker_channel(url, tls, token.is_some())?;
    let auth = auth(token)?;
    let client = worker_client(channel.clone(), auth.clone());
    Ok((channel, auth, client))
}

/// An operator's client: connects now, so a wrong URL or certificate is reported at once.
pub async fn control_client(
    url: &str,
    tls: &ClientTls,
    token: Option<&str>,
) -> Result<ControlClient, ClientError> {
    let channel = endpoint(url, tls, token.is_some())?
        .connect()
        .await
        .map_err(|e| ClientError::Connect {
            url: url.into(),
            why: chain(&e),
        })?;
    Ok(ControlServiceClient::with_interceptor(
        channel,
        auth(token)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_is_never_dropped_silently() {
        let files = ClientTls {
            ca: Some("/nonexistent/ca.pem".into()),
            ..ClientTls::default()
        };
        let e = endpoint("http://10.0.0.5:50051", &files, true).unwrap_err();
        assert!(e.to_string().contains("https://"), "{e}");
        let e = endpoint("https://10.0.0.5:50051", &files, true).unwrap_err();
        assert!(
            e.to_string().contains("--tls-ca /nonexistent/ca.pem"),
            "{e}"
        );
        let half = ClientTls {
            cert: Some("/x".into()),
            ..ClientTls::default()
        };
        assert!(endpoint("https://h:1", &half, false).is_err());
        assert!(endpoint("ftp://h:1", &ClientTls::default(), false).is_err());
        assert!(endpoint("http://127.0.0.1:1", &ClientTls::default(), true).is_ok());
        assert!(is_loopback("[::1]") && is_loopback("localhost") && !is_loopback("10.0.0.1"));
    }

    #[test]
    fn pem_files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.pem");
        std::fs::write(&p, "not a certificate").unwrap();
        let e = read_pem(&p, "--tls-ca", "CERTIFICATE").unwrap_err();
        assert!(e.to_string().contains("no PEM CERTIFICATE"), "{e}");
        std::fs::write(
            &p,
            "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(read_pem(&p, "--tls-ca", "CERTIFICATE").is_ok());
    }
}
