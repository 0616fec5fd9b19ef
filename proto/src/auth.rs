//! The bearer token: `authorization: Bearer <token>` on every call but the health service's;
//! and a registered worker's session secret, `x-worker-session`, on its every later call.

use std::sync::Arc;

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
    Ok(token)
}

/// The metadata header a registered worker sends its session secret in.
pub const SESSION_HEADER: &str = "x-worker-session";

/// Client side: adds `authorization: Bearer <token>` to every request when a token is set,
/// and the worker's session once it has one.
#[derive(Clone, Default)]
pub struct BearerAuth {
    header: Option<MetadataValue<Ascii>>,
    session: Option<MetadataValue<Ascii>>,
}

impl BearerAuth {
    pub fn new(token: Option<&str>) -> Result<BearerAuth, String> {
        let header = match token {
            None => None,
            Some(t) => Some(format!("Bearer {t}").parse().map_err(|_| {
                "the token contains characters not allowed in a header".to_string()
            })?),
        };
        Ok(BearerAuth {
            header,
            session: None,
        })
    }

    /// The same, also sending `session` (from RegisterResponse) with every call.
    pub fn with_session(&self, session: &str) -> Result<BearerAuth, String> {
        let session = session
            .parse()
            .map_err(|_| "the coordinator sent a session that is not a valid header".to_string())?;
        Ok(BearerAuth {
            header: self.header.clone(),
            session: Some(session),
        })
    }
}

impl tonic::service::Interceptor for BearerAuth {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(h) = &self.header {
            req.metadata_mut().insert("authorization", h.clone());
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
pub struct RequireToken(Option<Arc<str>>);

impl RequireToken {
    pub fn new(token: Option<String>) -> RequireToken {
        RequireToken(token.map(Arc::from))
    }
}

impl tonic::service::Interceptor for RequireToken {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let Some(token) = &self.0 else {
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
        let mut check = RequireToken::new(Some("s3cret".into()));
        assert!(check.call(with_header(Some("Bearer s3cret"))).is_ok());
        let wrong = check.call(with_header(Some("Bearer s3cre"))).unwrap_err();
        assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
        let none = check.call(with_header(None)).unwrap_err();
        assert!(none.message().contains("missing"), "{none:?}");
        assert!(RequireToken::new(None).call(with_header(None)).is_ok());
        let mut send = BearerAuth::new(Some("s3cret")).unwrap();
        assert!(check.call(send.call(Request::new(())).unwrap()).is_ok());
    }

    #[test]
    fn token_files() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        std::fs::write(&p, "  abc \nignored\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_token_file(&p).unwrap_err();
        assert!(e.contains("mode 644") && e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(read_token_file(&p).is_err(), "group-readable");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_token_file(&p).unwrap(), "abc");
        std::fs::write(&p, "\n").unwrap();
        assert!(read_token_file(&p).unwrap_err().contains("empty"));
        assert!(read_token_file(&dir.path().join("none"))
            .unwrap_err()
            .contains("cannot read"));
    }
}
