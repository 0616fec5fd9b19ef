//! Who may see the live page: anyone (no operators' token set), or whoever shows the token,
//! as `Authorization: Bearer` (scripts) or by signing in at `/` (browsers).
//!
//! Signing in opens a session: a random 128-bit id in a cookie (HttpOnly, SameSite=Strict,
//! `Secure` over TLS) that expires after 12 hours, ends at `POST /logout`, and ends for
//! everyone when the token file changes. Sign-ins are throttled per address (a burst of 5,
//! then one every 2 s: under a guess a second, where an unthrottled form took ~1,370), and
//! wrong ones are logged at most every 10 s with their count.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::{Extension, Form};
use governor::{DefaultKeyedRateLimiter, Quota};
use orchestrator_proto::TokenCell;

use crate::limits::Quiet;

const COOKIE: &str = "dlgrid_page";
/// A session's life from sign-in.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most (the oldest go first); sign-ins are throttled, so this is far.
const MAX_SESSIONS: usize = 4096;

/// The peer address of a page connection, put on each of its requests.
#[derive(Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// The page's credential and its sessions.
#[derive(Clone)]
pub struct PageAuth {
    token: TokenCell,
    /// Whether the page is served over TLS (the cookie is then `Secure`).
    tls: bool,
    /// Session id → when it was opened.
    sessions: Arc<Mutex<HashMap<String, Instant>>>,
    logins: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    wrong: Arc<Mutex<Quiet>>,
}

impl PageAuth {
    pub fn new(token: TokenCell, tls: bool) -> PageAuth {
        let quota = Quota::with_period(Duration::from_secs(2))
            .expect("non-zero")
            .allow_burst(NonZeroU32::new(5).expect("non-zero"));
        PageAuth {
            token,
            tls,
            sessions: Arc::default(),
            logins: Arc::new(DefaultKeyedRateLimiter::keyed(quota)),
            wrong: Arc::new(Mutex::new(Quiet::every(Duration::from_secs(10)))),
        }
    }

    /// Whether the page asks for a token.
    pub fn has_token(&self) -> bool {
        self.token.get().is_some()
    }

    /// Ends every session (the token changed).
    pub fn end_sessions(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn open_session(&self) -> String {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).expect("the OS random source");
        let id = hex::encode(bytes);
        let mut sessions = self.lock();
        let now = Instant::now();
        sessions.retain(|_, opened| now.duration_since(*opened) < SESSION_TTL);
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(k, _)| k.clone())
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(id.clone(), now);
        id
    }

    fn session_of(headers: &HeaderMap) -> impl Iterator<Item = &str> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .filter(|(k, _)| *k == COOKIE)
            .map(|(_, v)| v)
    }

    fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(token) = self.token.get() else {
            return true;
        };
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if bearer.is_some_and(|b| {
            orchestrator_proto::auth::constant_time_eq(b.as_bytes(), token.as_bytes())
        }) {
            return true;
        }
        let sessions = self.lock();
        Self::session_of(headers).any(|id| {
            sessions
                .get(id)
                .is_some_and(|opened| opened.elapsed() < SESSION_TTL)
        })
    }

    fn cookie(&self, value: &str, max_age: u64) -> String {
        let secure = if self.tls { "; Secure" } else { "" };
        format!("{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}")
    }
}

#[derive(serde::Deserialize)]
pub struct LoginForm {
    token: String,
}

/// `POST /login`: a session cookie for the right token; throttled per address.
pub async fn login(
    State(auth): State<PageAuth>,
    peer: Option<Extension<Peer>>,
    Form(form): Form<LoginForm>,
) -> Response {
    let Some(token) = auth.token.get() else {
        return (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    };
    let ip = peer.map_or(IpAddr::from([0, 0, 0, 0]), |Extension(p)| p.0.ip());
    if auth.logins.len() > 4096 {
        auth.logins.retain_recent();
    }
    if auth.logins.check_key(&ip).is_err() {
        let page = Html(login_page(Some(
            "Too many attempts from this address: wait a few seconds.",
        )));
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "2")],
            page,
        )
            .into_response();
    }
    if !orchestrator_proto::auth::constant_time_eq(form.token.as_bytes(), token.as_bytes()) {
        let due = auth.wrong.lock().unwrap_or_else(|p| p.into_inner()).due();
        if let Some(more) = due {
            tracing::warn!(peer = %ip, wrong_since_last_line = more, "live page: wrong token at sign-in");
        }
        return (
            StatusCode::UNAUTHORIZED,
            Html(login_page(Some("Wrong token."))),
        )
            .into_response();
    }
    let cookie = auth.cookie(&auth.open_session(), SESSION_TTL.as_secs());
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/".to_string()),
            (header::SET_COOKIE, cookie),
        ],
    )
        .into_response()
}

/// `POST /logout`: ends the session and clears its cookie.
pub async fn logout(State(auth): State<PageAuth>, headers: HeaderMap) -> Response {
    {
        let mut sessions = auth.lock();
        for id in PageAuth::session_of(&headers) {
            sessions.remove(id);
        }
    }
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/".to_string()),
            (header::SET_COOKIE, auth.cookie("", 0)),
        ],
    )
        .into_response()
}

fn login_page(note: Option<&str>) -> String {
    let note = note.map(|n| format!("<p>{n}</p>")).unwrap_or_default();
    format!(
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Live report: sign in</title></head><body><h1>Live report</h1>{note}<form method="post" action="/login"><label>Operators' token (the file the coordinator named at start, or --operator-token-file) <input type="password" name="token" autocomplete="current-password" autofocus></label> <button type="submit">Sign in</button></form></body></html>"#
    )
}

/// Lets through requests that carry the token or a live session; the sign-in form and the
/// liveness answer are open.
pub async fn require_token(State(auth): State<PageAuth>, req: Request, next: Next) -> Response {
    // The sign-in form and the liveness answer (for probes, e.g. Kubernetes' httpGet over
    // HTTPS, which cannot send a token) are open; they show nothing of the grid.
    let open = matches!(req.uri().path(), "/login" | "/logout" | "/healthz");
    if open || auth.allows(req.headers()) {
        return next.run(req).await;
    }
    if req.uri().path() == "/" {
        return (StatusCode::UNAUTHORIZED, Html(login_page(None))).into_response();
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "send `Authorization: Bearer <token>`, or sign in at /\n",
    )
        .into_response()
}
