//! Logging of both binaries: `tracing` to stderr, filtered by `RUST_LOG` (default `info`; e.g.
//! `RUST_LOG=warn,coordinator=debug`), as text (coloured only on a terminal) or as JSON lines
//! (`--log-format json`: one object per event with `timestamp`, `level`, `target`, `message`
//! and the event's fields), for log collectors.

use std::str::FromStr;

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("`{other}` is not a log format: text or json")),
        }
    }
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// Installs the subscriber; call once, first thing in `main`. `default` is the level without
/// `RUST_LOG` (`info`; `warn` under a live display, which shows the rest).
pub fn init_tracing(format: LogFormat, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt()
        .with_writer(|| Stderr)
        .with_env_filter(filter);
    match format {
        LogFormat::Text => fmt
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
    }
}

/// A line for the person at the terminal: `program: msg` as text; in JSON mode, a log event
/// like every other line.
pub fn announce(format: LogFormat, program: &str, msg: &str) {
    match format {
        LogFormat::Text => eprintln!("{program}: {msg}"),
        LogFormat::Json => tracing::info!("{msg}"),
    }
}

/// The error a binary exits with, as [`announce`] says things.
pub fn fail(format: LogFormat, program: &str, msg: &str) {
    match format {
        LogFormat::Text => eprintln!("{program}: error: {msg}"),
        LogFormat::Json => tracing::error!("{msg}"),
    }
}

type Hook = Box<dyn Fn(&[u8]) + Send + Sync>;

/// Where log lines go instead of straight to stderr, once a live display owns the terminal.
static STDERR_HOOK: std::sync::OnceLock<Hook> = std::sync::OnceLock::new();

/// Sends every later log line to `hook` (e.g. printed above a progress display) instead of
/// writing it to stderr directly. Set once.
pub fn route_stderr(hook: impl Fn(&[u8]) + Send + Sync + 'static) {
    let _ = STDERR_HOOK.set(Box::new(hook));
}

/// stderr, or the hook when one is set.
struct Stderr;

impl std::io::Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match STDERR_HOOK.get() {
            Some(hook) => {
                hook(buf);
                Ok(buf.len())
            }
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
