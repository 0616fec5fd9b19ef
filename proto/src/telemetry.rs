//! Logging of both binaries: `tracing` to stderr, filtered by `RUST_LOG` (default `info`),
//! coloured only on a terminal.

/// Installs the subscriber; call once, first thing in `main`.
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
}
