//! The live report over HTTP(S): the HTML report of the grid so far, refreshing itself, plus
//! `results.json`, served from the same state the gRPC services change.
//!
//! With a token set, every page needs it: an `Authorization: Bearer` header (scripts), or the
//! session the login form opens (browsers; see [`crate::page_auth`]); only `/healthz` (for
//! probes) and the sign-in form are open. Every
//! answer forbids scripts, framing and type sniffing. Connections are capped and closed when
//! idle, and a request's headers must arrive within 10 s (see [`crate::limits`]).

use std::time::Duration;

use axum::extract::{FromRef, Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::limits::{self, Connections, Guarded};
pub use crate::page_auth::PageAuth;
use crate::page_auth::{self, Peer};
use crate::service::Shared;

/// Seconds between reloads of the live page.
const REFRESH_SECONDS: u32 = 3;
/// A request's headers must arrive within this.
const HEADER_READ: Duration = Duration::from_secs(10);
/// A TLS handshake must finish within this.
const HANDSHAKE: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct Live {
    shared: Shared,
    auth: PageAuth,
}

impl FromRef<Live> for PageAuth {
    fn from_ref(live: &Live) -> PageAuth {
        live.auth.clone()
    }
}

pub fn router(shared: Shared, auth: PageAuth) -> Router {
    let live = Live {
        shared,
        auth: auth.clone(),
    };
    Router::new()
        .route("/", get(page))
        .route("/results.json", get(results))
        .route("/metrics", get(metrics))
        .route("/login", post(page_auth::login))
        .route("/logout", post(page_auth::logout))
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(middleware::from_fn_with_state(
            auth,
            page_auth::require_token,
        ))
        .layer(middleware::from_fn(security_headers))
        .with_state(live)
}

async fn page(State(live): State<Live>) -> Html<String> {
    let results = live.shared.lock().results();
    let mut html = results.to_live_html(REFRESH_SECONDS);
    let slurm = live
        .shared
        .slurm_jobs
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if !slurm.is_empty() {
        let line = format!(
            "<body><p>SLURM worker jobs: {}</p>",
            report::format::html_escape(&crate::slurm::summary(&slurm))
        );
        html = html.replacen("<body>", &line, 1);
    }
    if !live.auth.has_token() {
        return Html(html);
    }
    // Behind a token: a way to end the session from the page.
    let sign_out = r#"<body><form method="post" action="/logout" style="float:right"><button type="submit">Sign out</button></form>"#;
    Html(html.replacen("<body>", sign_out, 1))
}

async fn results(State(live): State<Live>) -> impl IntoResponse {
    let json = live.shared.lock().results().to_json();
    ([(header::CONTENT_TYPE, "application/json")], json)
}

async fn metrics(State(live): State<Live>) -> impl IntoResponse {
    let (counts, devices) = {
        let state = live.shared.lock();
        (
            state.counts(),
            state.live_devices(std::time::Instant::now()),
        )
    };
    let text = live.shared.metrics.render(&counts, &devices);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

/// No scripts, no framing, no sniffing, nothing cached, no referrer.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let set = |h: &mut HeaderMap, name: &'static str, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(
        h,
        "content-security-policy",
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, "x-frame-options", "DENY");
    set(h, "x-content-type-options", "nosniff");
    set(h, "referrer-policy", "no-referrer");
    set(h, "cache-control", "no-store");
    res
}

/// Serves until `stop` turns true (open requests then get up to 5 s to finish).
pub async fn serve(
    shared: Shared,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    auth: PageAuth,
    idle: Duration,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let app = router(shared, auth);
    let conns = Connections::new(limits::http(idle));
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            r = listener.accept() => r,
        };
        let (tcp, peer) = match accepted {
            Ok(c) => c,
            Err(e) => {
                // Mostly no descriptors left: wait, rather than spin, for some to close.
                tracing::debug!(error = %e, "live page: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(slot) = conns.admit(peer.ip()) else {
            continue;
        };
        let io = Guarded::new(tcp, slot, conns.idle());
        let (svc, tls, watcher) = (
            TowerToHyperService::new(app.clone().layer(Extension(Peer(peer)))),
            tls.clone(),
            graceful.watcher(),
        );
        tokio::spawn(async move {
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ);
            let done = match tls {
                None => {
                    watcher
                        .watch(http.serve_connection(TokioIo::new(io), svc))
                        .await
                }
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE, acceptor.accept(io)).await {
                        Ok(Ok(s)) => {
                            watcher
                                .watch(http.serve_connection(TokioIo::new(s), svc))
                                .await
                        }
                        Ok(Err(e)) => {
                            return tracing::debug!(%peer, error = %e, "live page: TLS handshake failed")
                        }
                        Err(_) => {
                            return tracing::debug!(%peer, "live page: TLS handshake timed out")
                        }
                    }
                }
            };
            if let Err(e) = done {
                tracing::debug!(%peer, error = %e, "live page: connection ended");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(Duration::from_secs(5)) => {}
    }
    Ok(())
}
