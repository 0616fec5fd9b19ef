//! The operators' credential, apart from the workers'. A worker holds the workers' token on
//! every machine it runs on, so that token must not also cancel the grid or read the report:
//! the control API (status, cancel) and the live page take the operators' token only.
//!
//! Given with `--operator-token-file`, or else (when workers need a token at all) a fresh one
//! kept in `<out>/operator-token` (mode 600) and reused by later runs on the same output. So
//! that `coordinator status` and `cancel` on the same machine need no flag, the coordinator
//! notes where that file is, per port, in a private folder of the user's cache
//! (`~/.cache/dlgrid/operators/<port>`), which the client reads for a loopback URL.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::config::Config;

/// The file a fresh operator token is kept in, inside `--out`.
pub const FILE: &str = "operator-token";

/// The operators' token for this run and the file that holds it: the one given; else, when
/// workers need a token, the one in `<out>/operator-token`, made if missing; else None
/// (without `--token-file` nothing asks for a token, on loopback).
pub fn resolve(cfg: &Config) -> anyhow::Result<Option<(String, PathBuf)>> {
    if let (Some(t), Some(p)) = (&cfg.operator_token, &cfg.operator_token_file) {
        return Ok(Some((t.clone(), p.clone())));
    }
    if cfg.token.is_none() {
        return Ok(None);
    }
    let path = std::path::absolute(cfg.out.join(FILE)).unwrap_or_else(|_| cfg.out.join(FILE));
    if path.exists() {
        let token = orchestrator_proto::read_token_file(&path).map_err(anyhow::Error::msg)?;
        return Ok(Some((token, path)));
    }
    std::fs::create_dir_all(&cfg.out).with_context(|| format!("creating {}", cfg.out.display()))?;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).context("the OS random source")?;
    let token = hex::encode(bytes);
    write_private(&path, &format!("{token}\n"))?;
    Ok(Some((token, path)))
}

/// The operators' token of this run (see [`resolve`]), noted for `status` on this machine and
/// announced with the file that holds it.
pub fn start(cfg: &Config, port: u16) -> anyhow::Result<Option<(String, PathBuf)>> {
    let Some((token, file)) = resolve(cfg)? else {
        return Ok(None);
    };
    publish(cache_dir(&|k| std::env::var(k).ok()), port, &file);
    orchestrator_proto::telemetry::announce(
        cfg.log_format,
        "coordinator",
        &format!(
            "the operators' token (status, cancel, the live page) is in {}",
            file.display()
        ),
    );
    Ok(Some((token, file)))
}

/// Writes `text` to a new file only its owner can read (mode 600 from its creation).
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// The user's private folder of notes: which token file serves which port.
fn index_dir(cache: Option<PathBuf>) -> Option<PathBuf> {
    Some(cache?.join("operators"))
}

/// The user's dlgrid cache folder, as scripts/env.sh finds it.
pub fn cache_dir(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(d) = env("DLGRID_CACHE").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = env("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("dlgrid"));
    }
    env("HOME").map(|h| PathBuf::from(h).join(".cache").join("dlgrid"))
}

/// Notes that the coordinator on `port` takes the operator token in `token_file`. A note
/// that cannot be written only means status needs `--token-file` (a warning says so).
pub fn publish(cache: Option<PathBuf>, port: u16, token_file: &Path) {
    let noted = (|| -> anyhow::Result<()> {
        let dir = index_dir(cache).context("no cache folder (HOME unset)")?;
        std::fs::create_dir_all(&dir)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        write_private(
            &dir.join(port.to_string()),
            &format!("{}\n", token_file.display()),
        )
    })();
    if let Err(e) = noted {
        tracing::warn!(error = %format!("{e:#}"), "could not note where the operator token is; status and cancel need --token-file {}", token_file.display());
    }
}

/// The operator token file the coordinator at `url` noted, for a loopback URL.
pub fn find(cache: Option<PathBuf>, url: &str) -> Option<PathBuf> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next()?;
    let (host, port) = authority.rsplit_once(':')?;
    let loopback = matches!(host, "localhost" | "[::1]") || host.starts_with("127.");
    let port: u16 = port.parse().ok()?;
    if !loopback {
        return None;
    }
    let note = std::fs::read_to_string(index_dir(cache)?.join(port.to_string())).ok()?;
    Some(PathBuf::from(note.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_finds_the_token_of_a_coordinator_on_this_machine() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Some(tmp.path().to_path_buf());
        let file = tmp.path().join("out").join(FILE);
        publish(cache.clone(), 50123, &file);
        assert_eq!(
            find(cache.clone(), "http://127.0.0.1:50123"),
            Some(file.clone())
        );
        assert_eq!(find(cache.clone(), "https://localhost:50123/"), Some(file));
        assert_eq!(
            find(cache.clone(), "http://10.0.0.5:50123"),
            None,
            "not this machine"
        );
        assert_eq!(find(cache.clone(), "http://127.0.0.1:50124"), None);
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&tmp.path().join("operators")), 0o700);
        assert_eq!(mode(&tmp.path().join("operators").join("50123")), 0o600);
        let env = |k: &str| (k == "HOME").then(|| "/home/ada".to_string());
        assert_eq!(
            cache_dir(&env),
            Some(PathBuf::from("/home/ada/.cache/dlgrid"))
        );
    }
}
