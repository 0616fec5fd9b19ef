//! Watching a grid run: progress lines as jobs change, a warning when pending jobs need what
//! no connected worker has, and the end: finished, interrupted, or every local worker gone.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::{Duration, Instant};

use common::Requirements;

use crate::local::Processes;
use crate::service::Shared;
use crate::state::Counts;
use crate::terminal::Display;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Every job reached a terminal status (`counts.cancelled` of them cancelled by the
    /// operator).
    Finished { counts: Counts },
    /// Stopped by the shutdown signal before the end; state is saved and the same command
    /// resumes.
    Interrupted(Counts),
}

/// The loop wakes on every epoch report; the scan of the pending queue for jobs no worker can
/// run (under the state lock) is done at most this often.
const STUCK_CHECK: Duration = Duration::from_secs(2);

/// Waits until the grid finishes or `shutdown` completes; fails when every local worker has
/// exited before the end (their logs are in `logs`).
pub async fn watch(
    shared: &Shared,
    children: &mut Processes,
    logs: &Path,
    display: Option<Display>,
    shutdown: Pin<&mut impl Future<Output = ()>>,
) -> anyhow::Result<Ending> {
    let mut display = display;
    let ending = watch_until(shared, children, logs, &mut display, shutdown).await;
    if let Some(d) = display {
        d.finish();
    }
    ending
}

async fn watch_until(
    shared: &Shared,
    children: &mut Processes,
    logs: &Path,
    display: &mut Option<Display>,
    mut shutdown: Pin<&mut impl Future<Output = ()>>,
) -> anyhow::Result<Ending> {
    let mut last = None;
    let mut stuck = Stuck::default();
    loop {
        // Registered before the state is read, so a change right after the read wakes us
        // at once instead of after the timeout.
        let changed = shared.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let (counts, finished) = {
            let state = shared.lock();
            (state.counts(), state.is_finished())
        };
        match display {
            Some(d) => d.update(&shared.lock().progress(Instant::now())),
            None if last != Some(counts) => log_progress(&counts),
            None => {}
        }
        last = Some(counts);
        if finished {
            return Ok(Ending::Finished { counts });
        }
        if shared.write_failed() {
            anyhow::bail!("the state database could not be written; see the error above");
        }
        stuck.check(shared, Instant::now());
        if !children.is_empty() && children.all_exited() {
            anyhow::bail!(
                "every local worker exited before the grid finished; see {}",
                logs.display()
            );
        }
        tokio::select! {
            _ = &mut changed => {}
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = &mut shutdown => {
                tracing::info!("shutdown requested: state saved; run the same command to resume");
                return Ok(Ending::Interrupted(counts));
            }
        }
    }
}

fn log_progress(c: &Counts) {
    let held = match c.held {
        0 => String::new(),
        n => format!(", {n} held by the seed race"),
    };
    tracing::info!(
        "progress: {}/{} done ({} succeeded, {} failed, {} diverged, {} cancelled), {} running, {} pending{held}",
        c.finished(),
        c.total(),
        c.succeeded,
        c.failed,
        c.diverged,
        c.cancelled,
        c.running,
        c.pending
    );
}

/// Pending jobs that no connected worker can run, warned about once per change.
#[derive(Default)]
struct Stuck {
    checked: Option<Instant>,
    last: Vec<(Requirements, usize)>,
}

impl Stuck {
    fn check(&mut self, shared: &Shared, now: Instant) {
        if self
            .checked
            .is_some_and(|t| now.saturating_duration_since(t) < STUCK_CHECK)
        {
            return;
        }
        self.checked = Some(now);
        let stuck = shared.lock().unplaceable(now);
        if stuck != self.last {
            for (requires, n) in &stuck {
                tracing::warn!(
                    "{n} pending job(s) require {requires} (grid.yaml `requires`), which no connected worker has; they wait until such a worker registers"
                );
            }
            self.last = stuck;
        }
    }
}

/// After the grid has finished: keeps serving until every live worker (local or external)
/// has been told so and the local workers have exited, for at most `within`, or until
/// `shutdown`.
pub async fn drain(
    shared: &Shared,
    children: &mut Processes,
    within: Duration,
    mut shutdown: Pin<&mut impl Future<Output = ()>>,
) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline
        && !(children.all_exited() && shared.lock().live_workers_told(Instant::now()))
    {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = &mut shutdown => return,
        }
    }
}
