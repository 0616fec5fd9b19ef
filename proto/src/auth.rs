//! The bearer token: `authorization: Bearer <token>` on every call but the health service's;
//! and a registered worker's session secret, `x-worker-session`, on its every later call.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::{Request, Status};

/// Reads a token file: the first line, trimmed. An empty token is an error, and so is a file
/// that group or others may read (as SLURM refuses a MUNGE key with loose permissions): a
/// token others can read authenticates them too.
pub fn read_token_file(path: &std::path::Path) -> Result<String, String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path)
            .map_err(|e| format!("{}: cannot read token file: {e}", path.display()))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "{}: token file is readable by group or others (mode {mode:03o}); make it private with `chmod 600 {}`",
                path.display(),
                path.display()
            ));
        }
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read token file: {e}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.is_empty() {
        return Err(format!("{}: token file is empty", path.display()));
    }
    let chars = token.chars().count();
    if chars < MIN_TOKEN_CHARS {
        return Err(format!(
            "{}: the token is {chars} characters; at least {MIN_TOKEN_CHARS} are needed, so it \
             cannot be guessed (make one with `head -c 32 /dev/urandom | base64`)",
            path.display()
        ));
    }
    if !token.chars().all(|c| c.is_ascii_graphic()) {
        return Err(format!(
            "{}: the token holds characters other than visible ASCII, which a header cannot carry",
            path.display()
        ));
    }
    Ok(token)
}

/// The shortest token taken: 16 characters (96 bits and more from a random source).
pub const MIN_TOKEN_CHARS: usize = 16;

/// A token that may change while the process runs (its file rewritten: see [`follow`]), shared
/// by the interceptors that send or check it.
#[derive(Clone, Default)]
pub struct TokenCell(Arc<RwLock<Option<Arc<str>>>>);

impl TokenCell {
    pub fn new(token: Option<String>) -> TokenCell {
        TokenCell(Arc::new(RwLock::new(token.map(Arc::from))))
    }

    pub fn get(&self) -> Option<Arc<str>> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set(&self, token: &str) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::from(token));
    }
}

/// How often [`follow`] looks at a token file.
pub const FOLLOW_EVERY: Duration = Duration::from_secs(2);

/// Re-reads the token file `path` whenever it changes (checked `every`, [`FOLLOW_EVERY`] in
/// the binaries) and puts
/// the new token in `cell`, so a rotated token takes effect without a restart. The new one is
/// checked as at start, and by `accept`; a file that fails leaves the old token in use, with a
/// warning. `changed` runs after each change (to end sessions the old token opened).
pub fn follow(
    path: PathBuf,
    cell: TokenCell,
    every: Duration,
    accept: impl Fn(&str) -> Result<(), String> + Send + 'static,
    changed: impl Fn() + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut seen = stamp(&path);
        loop {
            tokio::time::sleep(every).await;
            let now = stamp(&path);
            if now == seen {
                continue;
            }
            seen = now;
            let read = read_token_file(&path).and_then(|t| accept(&t).map(|()| t));
            match read {
                Ok(t) if cell.get().as_deref() == Some(t.as_str()) => {}
                Ok(t) => {
                    cell.set(&t);
                    changed();
                    tracing::info!(file = %path.display(), "token file changed: the new token is in use");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "token file changed but cannot be used: the previous token stays in use")
                }
            }
        }
    })
}

/// What tells a changed file: its modification time, length and inode.
fn stamp(path: &Path) -> Option<(std::time::SystemTime, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// The metadata header a registered worker sends its session secret in.
pub const SESSION_HEADER: &str = "x-worker-session";

/// Client side: adds `authorization: Bearer <token>` to every request when a token is set,
/// and the worker's session once it has one.
#[derive(Clone, Default)]
pub struct BearerAuth {
    token: TokenCell,
    session: Option<MetadataValue<Ascii>>,
}

fn bearer(token: &str) -> Result<MetadataValue<Ascii>, String> {
    format!("Bearer {token}")
        .parse()
        .map_err(|_| "the token contains characters not allowed in a header".to_string())
}

impl BearerAuth {
    pub fn new(token: Option<&str>) -> Result<BearerAuth, String> {
        if let Some(t) = token {
            bearer(t)?;
        }
        Ok(BearerAuth {
            token: TokenCell::new(token.map(str::to_string)),
            session: None,
        })
    }

    /// The token it sends, which [`follow`] may change.
    pub fn token(&self) -> &TokenCell {
        &self.token
    }

    /// The same, also sending `session` (from RegisterResponse) with every call.
    pub fn with_session(&self, session: &str) -> Result<BearerAuth, String> {
        let session = session
            .parse()
            .map_err(|_| "the coordinator sent a session that is not a valid header".to_string())?;
        Ok(BearerAuth {
            token: self.token.clone(),
            session: Some(session),
        })
    }
}

impl tonic::service::Interceptor for BearerAuth {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(h) = self.token.get().and_then(|t| bearer(&t).ok()) {
            req.metadata_mut().insert("authorization", h);
        }
        if let Some(s) = &self.session {
            req.metadata_mut().insert(SESSION_HEADER, s.clone());
        }
        Ok(req)
    }
}

/// The session a request carries, if any.
pub fn session_of<T>(req: &Request<T>) -> Option<&str> {
    req.metadata().get(SESSION_HEADER)?.to_str().ok()
}

/// Server side: refuses calls without the token (none required when no token is set). The
/// health service is mounted without it, for Kubernetes probes.
#[derive(Clone)]
pub struct RequireToken(TokenCell);

impl RequireToken {
    pub fn new(token: TokenCell) -> RequireToken {
        RequireToken(token)
    }
}

impl tonic::service::Interceptor for RequireToken {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let Some(token) = self.0.get() else {
            return Ok(req);
        };
        let given = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match given {
            Some(t) if constant_time_eq(t.as_bytes(), token.as_bytes()) => Ok(req),
            Some(_) => Err(Status::unauthenticated("invalid bearer token")),
            None => Err(Status::unauthenticated(
                "missing `authorization: Bearer <token>`",
            )),
        }
    }
}

/// Compares in time independent of where the first difference is, so the token cannot be
/// guessed byte by byte from response times.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::service::Interceptor;

    fn with_header(value: Option<&str>) -> Request<()> {
        let mut req = Request::new(());
        if let Some(v) = value {
            req.metadata_mut()
                .insert("authorization", v.parse().unwrap());
        }
        req
    }

    #[test]
    fn token_is_required_and_compared() {
        let cell = TokenCell::new(Some("s3cret-s3cret-s3cret".into()));
        let mut check = RequireToken::new(cell.clone());
        assert!(check
            .call(with_header(Some("Bearer s3cret-s3cret-s3cret")))
            .is_ok());
        let wrong = check.call(with_header(Some("Bearer s3cret"))).unwrap_err();
        assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
        let none = check.call(with_header(None)).unwrap_err();
        assert!(none.message().contains("missing"), "{none:?}");
        assert!(RequireToken::new(TokenCell::new(None))
            .call(with_header(None))
            .is_ok());
        let mut send = BearerAuth::new(Some("s3cret-s3cret-s3cret")).unwrap();
        assert!(check.call(send.call(Request::new(())).unwrap()).is_ok());
        // Rotated on both sides: the old one is refused, the new one taken.
        cell.set("r0tated-r0tated-r0tated");
        assert!(check.call(send.call(Request::new(())).unwrap()).is_err());
        send.token().set("r0tated-r0tated-r0tated");
        assert!(check.call(send.call(Request::new(())).unwrap()).is_ok());
    }

    #[test]
    fn token_files() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        std::fs::write(&p, "  abcdefghijklmnop \nignored\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_token_file(&p).unwrap_err();
        assert!(e.contains("mode 644") && e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(read_token_file(&p).is_err(), "group-readable");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_token_file(&p).unwrap(), "abcdefghijklmnop");
        std::fs::write(&p, "abcdefghijklmno\n").unwrap();
        let e = read_token_file(&p).unwrap_err();
        assert!(e.contains("the token is 15 characters; at least 16"), "{e}");
        std::fs::write(&p, "abcdefghijklmnop\u{e9}\n").unwrap();
        assert!(read_token_file(&p).unwrap_err().contains("visible ASCII"));
        std::fs::write(&p, "\n").unwrap();
        assert!(read_token_file(&p).unwrap_err().contains("empty"));
        assert!(read_token_file(&dir.path().join("none"))
            .unwrap_err()
            .contains("cannot read"));
    }

    #[tokio::test]
    async fn a_rewritten_token_file_is_followed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        let write = |text: &str| {
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        };
        write("first-token-0123456\n");
        let cell = TokenCell::new(Some(read_token_file(&p).unwrap()));
        let changes = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let seen = changes.clone();
        let every = Duration::from_millis(50);
        let task = follow(
            p.clone(),
            cell.clone(),
            every,
            |t| {
                (t != "refused-token-012345")
                    .then_some(())
                    .ok_or("no".into())
            },
            move || {
                seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            },
        );
        let settle = || tokio::time::sleep(every * 4);
        write("short\n");
        settle().await;
        assert_eq!(cell.get().as_deref(), Some("first-token-0123456"));
        write("refused-token-012345\n");
        settle().await;
        assert_eq!(cell.get().as_deref(), Some("first-token-0123456"));
        write("second-token-0123456\n");
        settle().await;
        assert_eq!(cell.get().as_deref(), Some("second-token-0123456"));
        assert_eq!(changes.load(std::sync::atomic::Ordering::Relaxed), 1);
        task.abort();
    }
}
