//! The live report over HTTP(S): the HTML report of the grid so far, refreshing itself, plus
//! `results.json`, served from the same state the gRPC services change.
//!
//! With a token set, every page needs it: an `Authorization: Bearer` header (scripts), or the
//! cookie the login form sets (browsers; HttpOnly, SameSite=Strict, Secure over TLS); only
//! `/healthz` (for probes) and the login form are open. Every
//! answer forbids scripts, framing and type sniffing. Connections are capped and closed when
//! idle, and a request's headers must arrive within 10 s (see [`crate::limits`]).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::limits::{self, Connections, Guarded};
use crate::service::Shared;

/// Seconds between reloads of the live page.
const REFRESH_SECONDS: u32 = 3;
/// A request's headers must arrive within this.
const HEADER_READ: Duration = Duration::from_secs(10);
/// A TLS handshake must finish within this.
const HANDSHAKE: Duration = Duration::from_secs(10);
const COOKIE: &str = "dlgrid_page";

/// Who may see the page: anyone (no token set), or whoever shows the token.
#[derive(Clone, Default)]
pub struct PageAuth {
    token: Option<Arc<str>>,
    /// Whether the page is served over TLS (the cookie is then `Secure`).
    tls: bool,
}

impl PageAuth {
    pub fn new(token: Option<&str>, tls: bool) -> PageAuth {
        PageAuth {
            token: token.map(Arc::from),
            tls,
        }
    }

    /// The login cookie's value: derived from the token (so it outlives a restart and dies
    /// with a new token), never the token itself.
    fn cookie(token: &str) -> String {
        hex::encode(Sha256::digest(
            format!("dlgrid live page\n{token}").as_bytes(),
        ))
    }

    fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let eq = |a: &str, b: &str| {
            orchestrator_proto::auth::constant_time_eq(a.as_bytes(), b.as_bytes())
        };
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if bearer.is_some_and(|b| eq(b, token)) {
            return true;
        }
        let want = Self::cookie(token);
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .any(|(k, v)| k == COOKIE && eq(v, &want))
    }
}

#[derive(Clone)]
struct Live {
    shared: Shared,
    auth: PageAuth,
}

pub fn router(shared: Shared, auth: PageAuth) -> Router {
    let live = Live { shared, auth };
    Router::new()
        .route("/", get(page))
        .route("/results.json", get(results))
        .route("/metrics", get(metrics))
        .route("/login", post(login))
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(middleware::from_fn_with_state(live.clone(), require_token))
        .layer(middleware::from_fn(security_headers))
        .with_state(live)
}

async fn page(State(live): State<Live>) -> Html<String> {
    let results = live.shared.lock().results();
    Html(results.to_live_html(REFRESH_SECONDS))
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

#[derive(serde::Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(live): State<Live>, Form(form): Form<LoginForm>) -> Response {
    let Some(token) = &live.auth.token else {
        return (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    };
    if !orchestrator_proto::auth::constant_time_eq(form.token.as_bytes(), token.as_bytes()) {
        tracing::warn!("live page: wrong token at login");
        return (StatusCode::UNAUTHORIZED, Html(login_page(true))).into_response();
    }
    let secure = if live.auth.tls { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/{secure}",
        PageAuth::cookie(token)
    );
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/".to_string()),
            (header::SET_COOKIE, cookie),
        ],
    )
        .into_response()
}

fn login_page(wrong: bool) -> String {
    let note = if wrong { "<p>Wrong token.</p>" } else { "" };
    format!(
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Live report: sign in</title></head><body><h1>Live report</h1>{note}<form method="post" action="/login"><label>Token (the first line of the coordinator's --token-file) <input type="password" name="token" autocomplete="current-password" autofocus></label> <button type="submit">Sign in</button></form></body></html>"#
    )
}

async fn require_token(State(live): State<Live>, req: Request, next: Next) -> Response {
    // The login form and the liveness answer (for probes, e.g. Kubernetes' httpGet over
    // HTTPS, which cannot send a token) are open; they show nothing of the grid.
    let open = matches!(req.uri().path(), "/login" | "/healthz");
    if open || live.auth.allows(req.headers()) {
        return next.run(req).await;
    }
    if req.uri().path() == "/" {
        return (StatusCode::UNAUTHORIZED, Html(login_page(false))).into_response();
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "send `Authorization: Bearer <token>`, or sign in at /\n",
    )
        .into_response()
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
            TowerToHyperService::new(app.clone()),
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
