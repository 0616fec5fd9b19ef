//! Retrying calls to the coordinator through restarts and network blips.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tonic::{Code, Status};

/// Whether an RPC error may go away by itself (coordinator restarting, network blip).
fn transient(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Unknown
            | Code::Aborted
            | Code::ResourceExhausted
    )
}

/// Whether `s` is the coordinator refusing a token it took before (any call but the first
/// registration).
fn rotated(s: &Status, what: &str) -> bool {
    s.code() == Code::Unauthenticated
        && s.message() == "invalid bearer token"
        && !what.starts_with("register")
}

/// What to do about a failed call whose cause is a common mistake, as a sentence to append;
/// empty where none is known. `s`'s whole chain is searched: tonic nests the transport's words.
pub fn hint(s: &Status) -> &'static str {
    const NOT_GRPC: &str = " (this port does not speak gRPC: is it the live page's, --http, \
        default 50052? Workers connect to the coordinator's --listen port, default 50051)";
    let all = format!("{} {:?}", s.message(), std::error::Error::source(s));
    // An HTTP/1 server (the live page without TLS) fails the HTTP/2 handshake: "transport
    // error" with code Unknown; with TLS, the page's ALPN refuses h2.
    let not_grpc = s.code() == Code::Unknown && s.message() == "transport error";
    if s.code() == Code::Unauthenticated && s.message() == "invalid bearer token" {
        " (the coordinator no longer takes this worker's token: if it was rotated, put the new \
         one in --token-file; the worker reads it again when it changes)"
    } else if all.contains("CertificateRequired") {
        " (the coordinator asked for a client certificate: pass --tls-cert/--tls-key, signed by \
         the CA of its --tls-client-ca)"
    } else if all.contains("NoApplicationProtocol") || all.contains("InvalidContentType") {
        NOT_GRPC
    } else if all.contains("received fatal alert") {
        // rustls answers a client certificate it cannot verify with an alert (BadCertificate,
        // UnknownCA, DecryptError for a signature from another key, CertificateExpired).
        " (the coordinator refused this worker's client certificate: is --tls-cert signed by \
         the CA of its --tls-client-ca, and still valid?)"
    } else if all.contains("NotValidForName") {
        " (the coordinator's certificate does not name this host: connect with a name or \
         address it was made for)"
    } else if all.contains("invalid peer certificate: Expired") {
        " (the coordinator's certificate has expired)"
    } else if all.contains("InvalidCertificate") || all.contains("invalid peer certificate") {
        " (the coordinator's certificate is not signed by --tls-ca)"
    } else if s.code() == Code::Cancelled && s.message() == "operation was canceled" {
        // The connection closed under the call: over TLS 1.3 a server refusing the client's
        // certificate (or its absence) does so after the client thinks the handshake is done,
        // and the alert saying why can be lost with the connection.
        " (the coordinator closed the connection before answering: if it requires client \
         certificates, pass --tls-cert/--tls-key signed by the CA of its --tls-client-ca; its \
         log says why it closed it)"
    } else if not_grpc {
        NOT_GRPC
    } else if all.contains("tcp connect error") || all.contains("Connection refused") {
        " (nothing accepts connections there: is the coordinator running, and is this its \
         --listen address?)"
    } else {
        ""
    }
}

/// Whether to say so at this attempt: the first ones, then about every 30 s (at the 5 s cap).
fn worth_a_line(attempt: u32) -> bool {
    attempt <= 2 || attempt == 4 || attempt == 8 || (attempt > 8 && attempt % 6 == 2)
}

/// Calls `f` until it succeeds, retrying transient errors with capped exponential backoff.
/// Gives up on a permanent error, or when `stop` is set.
pub async fn retry<T, F, Fut>(
    what: &str,
    stop: &watch::Receiver<bool>,
    mut f: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, Status>>,
{
    let mut delay = Duration::from_millis(100);
    let mut stop = stop.clone();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match f().await {
            Ok(r) => return Ok(r.into_inner()),
            // After registering, a refused token is one rotated on the coordinator before this
            // worker's file: the worker follows its --token-file, so waiting mends it.
            Err(s) if (transient(&s) || rotated(&s, what)) && !*stop.borrow() => {
                // Saying so when the coordinator is not there (yet): not silence. Registering
                // is the first contact, so any failure then is said, as is any whose cause is
                // known (a TLS refusal may end the connection as Cancelled, under load).
                let unreachable = matches!(
                    s.code(),
                    Code::Unavailable | Code::Unknown | Code::Unauthenticated
                ) || what.starts_with("register")
                    || !hint(&s).is_empty();
                if unreachable && worth_a_line(attempt) {
                    let error = format!("{}{}", s.message(), hint(&s));
                    tracing::warn!(what, attempt, next_in = ?delay, error = ?error, "waiting for the coordinator");
                } else {
                    tracing::debug!(what, code = ?s.code(), message = ?s.message(), "retrying");
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.changed() => {}
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(s) => {
                return Err(anyhow::anyhow!(
                    "{what}: {} ({:?}){}",
                    s.message(),
                    s.code(),
                    hint(&s)
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection closed under the call (a TLS refusal whose alert was lost) still gets a
    /// hint that names the likely fix.
    #[test]
    fn a_connection_closed_under_a_call_points_at_client_certificates() {
        let s = Status::cancelled("operation was canceled");
        assert!(
            hint(&s).contains("pass --tls-cert/--tls-key"),
            "{}",
            hint(&s)
        );
        assert_eq!(hint(&Status::cancelled("stopping")), "");
    }
}
