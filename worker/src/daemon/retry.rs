//! Retrying calls to the coordinator through restarts and network blips.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tonic::{Code, Status};

/// Whether an RPC error may go away by itself (coordinator restarting, network blip).
fn transient(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Unknown
            | Code::Aborted
            | Code::ResourceExhausted
    )
}

/// Calls `f` until it succeeds, retrying transient errors with capped exponential backoff.
/// Gives up on a permanent error, or when `stop` is set.
pub async fn retry<T, F, Fut>(
    what: &str,
    stop: &watch::Receiver<bool>,
    mut f: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, Status>>,
{
    let mut delay = Duration::from_millis(100);
    let mut stop = stop.clone();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match f().await {
            Ok(r) => return Ok(r.into_inner()),
            Err(s) if transient(&s) && !*stop.borrow() => {
                // Saying so when the coordinator is not there (yet): not silence.
                if s.code() == Code::Unavailable && (attempt == 1 || attempt.is_multiple_of(10)) {
                    tracing::warn!(what, attempt, next_in = ?delay, error = s.message(), "waiting for the coordinator");
                } else {
                    tracing::debug!(what, code = ?s.code(), message = s.message(), "retrying");
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.changed() => {}
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(s) => return Err(anyhow::anyhow!("{what}: {} ({:?})", s.message(), s.code())),
        }
    }
}
