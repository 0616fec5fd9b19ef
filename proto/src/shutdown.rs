//! The signal both servers stop on.

/// Which signal asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM (Kubernetes, systemd).
    Terminate,
}

impl Signal {
    /// The exit code shells expect after it: 128 + the signal's number.
    pub fn exit_code(self) -> u8 {
        match self {
            Signal::Interrupt => 130,
            Signal::Terminate => 143,
        }
    }
}

/// Completes on SIGTERM or SIGINT, saying which.
pub async fn shutdown_which() -> Signal {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        // Without a SIGTERM handler, Ctrl-C still works.
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return Signal::Interrupt;
        }
    };
    tokio::select! {
        _ = term.recv() => Signal::Terminate,
        _ = tokio::signal::ctrl_c() => Signal::Interrupt,
    }
}

/// Completes on SIGTERM (Kubernetes, systemd) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    shutdown_which().await;
}
