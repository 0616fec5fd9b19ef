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

/// Installs the subscriber; call once, first thing in `main`.
pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
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
