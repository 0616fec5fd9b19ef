//! Contention: how the machine treats an epoch: the process's CPU time, and how many other
//! processes' threads wanted the CPU beyond the cores the job left free, sampled five times a
//! second while the epoch trains (Linux `/proc`; elsewhere nothing is measured).
//!
//! Training processes sharing cores slow each other far more than fairly: an epoch timed on
//! such a machine says more about the machine than about the activation, and the report
//! leaves it out of its time columns.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use common::EpochHost;

const EVERY: Duration = Duration::from_millis(200);

/// A running measurement; [`Probe::finish`] ends it.
pub struct Probe {
    cpu_at_start: Option<f64>,
    free_cores: f64,
    stop: Arc<AtomicBool>,
    sampler: Option<JoinHandle<(f64, u32)>>,
}

impl Probe {
    /// Starts measuring; `threads` is how many threads this job computes with.
    pub fn start(threads: usize) -> Probe {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let sampler = procs_running().is_some().then(|| {
            std::thread::spawn(move || {
                let (mut sum, mut n) = (0.0, 0u32);
                loop {
                    if let (Some(all), Some(own)) = (procs_running(), own_running_threads()) {
                        // The sampler itself runs now, and is counted in both.
                        sum += all.saturating_sub(own) as f64;
                        n += 1;
                    }
                    // Sleep in short steps, so finishing never waits long.
                    for _ in 0..4 {
                        if flag.load(Ordering::Relaxed) {
                            return (sum, n);
                        }
                        std::thread::sleep(EVERY / 4);
                    }
                }
            })
        });
        Probe {
            cpu_at_start: process_cpu_seconds(),
            free_cores: cores.saturating_sub(threads) as f64,
            stop,
            sampler,
        }
    }

    /// The epoch's figures; None where they cannot be measured.
    pub fn finish(mut self) -> Option<EpochHost> {
        self.stop.store(true, Ordering::Relaxed);
        let (sum, n) = self.sampler.take()?.join().ok()?;
        let cpu = process_cpu_seconds()? - self.cpu_at_start?;
        let others = if n > 0 { sum / n as f64 } else { 0.0 };
        Some(EpochHost {
            cpu_seconds: cpu.max(0.0),
            contention: (others - self.free_cores).max(0.0),
        })
    }
}

/// User + system CPU time of this process (all its threads), seconds.
fn process_cpu_seconds() -> Option<f64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a rusage struct into the pointer it is given.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: initialised by the successful call above.
    let u = unsafe { usage.assume_init() };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(secs(u.ru_utime) + secs(u.ru_stime))
}

/// Runnable threads on the whole machine (`procs_running` of /proc/stat).
fn procs_running() -> Option<u32> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("procs_running "))
        .and_then(|n| n.trim().parse().ok())
}

/// This process's threads that are running or runnable now (state `R`).
fn own_running_threads() -> Option<u32> {
    let mut n = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // "pid (comm) S ...": the state follows the last ')' (comm may hold spaces or ')').
        let state = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next());
        n += u32::from(state == Some("R"));
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A probe around busy work measures CPU time; another busy process beyond the free cores
    /// shows as contention (only where there are no spare cores: this is a 2-core machine's
    /// test, and on a larger one the busy thread fits in a free core).
    #[test]
    fn measures_cpu_time_and_others_wanting_the_cpu() {
        if procs_running().is_none() {
            return;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let probe = Probe::start(cores);
        let until = std::time::Instant::now() + Duration::from_millis(500);
        let mut x = 0u64;
        while std::time::Instant::now() < until {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let h = probe.finish().unwrap();
        assert!(h.cpu_seconds > 0.3, "{h:?}");
        assert!(h.contention >= 0.0 && h.contention.is_finite(), "{h:?}");
        assert!(own_running_threads().unwrap() >= 1);
    }
}
