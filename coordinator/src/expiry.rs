//! Lease expiry: sleeps until the earliest lease deadline (the lease table keeps them ordered),
//! then re-queues the jobs whose workers went silent. Woken early when a lease is granted.

use std::time::Instant;

use crate::service::Shared;

/// Runs until aborted.
pub async fn run(shared: Shared) {
    loop {
        // Registered before reading the deadline, so a lease granted in between wakes us.
        let granted = shared.leases_changed.notified();
        tokio::pin!(granted);
        granted.as_mut().enable();
        let next = shared.lock().next_expiry();
        match next {
            Some(at) => tokio::select! {
                _ = tokio::time::sleep_until(at.into()) => {}
                _ = &mut granted => continue,
            },
            None => {
                granted.await;
                continue;
            }
        }
        let expired = shared.lock().expire(Instant::now());
        match expired {
            Ok(ids) if !ids.is_empty() => {
                shared.metrics.leases_expired.inc_by(ids.len() as u64);
                shared.queued.notify_one();
                shared.changed.notify_waiters();
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "lease expiry failed; retrying in a second");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
}
