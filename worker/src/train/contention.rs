//! Contention: how the machine treats an epoch: the process's CPU time, and how many other
//! processes' threads wanted the CPU beyond the cores the job left free, sampled five times a
//! second while the epoch trains (Linux `/proc`; elsewhere nothing is measured).
//!
//! The tool's own processes are not "other": the worker daemon that started this job, the
//! daemon's other jobs (its other slots, each taking as many threads as this one, so leaving
//! fewer cores free), and the coordinator that started the daemon, if one did. Contention is
//! what else wants the CPU beyond the cores the grid's jobs leave free. (Counting the tool's
//! own, a quiet 2-core machine running one grid on 2 slots flagged half its runs.)
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
                let mut tool = Tool::find();
                loop {
                    // The daemon's jobs come and go: look again every 2 s.
                    if n % 10 == 9 {
                        tool = Tool::find();
                    }
                    if let (Some(all), Some(own)) = (procs_running(), tool.running_threads()) {
                        let jobs = 1 + tool.siblings.len();
                        sum += beyond_free_cores(all, own, cores, threads * jobs);
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
            stop,
            sampler,
        }
    }

    /// The epoch's figures; None where they cannot be measured.
    pub fn finish(mut self) -> Option<EpochHost> {
        self.stop.store(true, Ordering::Relaxed);
        let (sum, n) = self.sampler.take()?.join().ok()?;
        let cpu = process_cpu_seconds()? - self.cpu_at_start?;
        Some(EpochHost {
            cpu_seconds: cpu.max(0.0),
            contention: if n > 0 { sum / n as f64 } else { 0.0 },
        })
    }
}

/// The processes of the tool around this job: its daemon (the parent), the daemon's other
/// children (its other jobs) and the coordinator above the daemon, when there is one.
#[derive(Debug, Default)]
struct Tool {
    daemon: Option<u32>,
    siblings: Vec<u32>,
    coordinator: Option<u32>,
}

impl Tool {
    fn find() -> Tool {
        let me = std::process::id();
        let parent = std::os::unix::process::parent_id();
        let comm =
            |pid: u32| std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        // Only a worker daemon's jobs have siblings that are the tool's (`worker train` run
        // by hand has a shell for a parent).
        if comm(parent).trim() != "worker" {
            return Tool::default();
        }
        let siblings = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|&pid| pid != me && parent_of(pid) == Some(parent))
            .collect();
        let coordinator = parent_of(parent).filter(|&p| comm(p).trim() == "coordinator");
        Tool {
            daemon: Some(parent),
            siblings,
            coordinator,
        }
    }

    /// Running threads of this process and of the tool's others.
    fn running_threads(&self) -> Option<u32> {
        let own = running_threads_of("self")?;
        let rest: u32 = self
            .daemon
            .iter()
            .chain(&self.siblings)
            .chain(&self.coordinator)
            .filter_map(|pid| running_threads_of(&pid.to_string()))
            .sum();
        Some(own + rest)
    }
}

/// One sample's contention: runnable threads of processes not the tool's (`all` on the
/// machine less the tool's `own`; the sampler is counted in both), beyond the cores that the
/// grid's jobs (`job_threads` in all) leave free.
fn beyond_free_cores(all: u32, own: u32, cores: usize, job_threads: usize) -> f64 {
    let others = all.saturating_sub(own) as f64;
    let free = cores.saturating_sub(job_threads) as f64;
    (others - free).max(0.0)
}

/// The parent of process `pid`.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
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

/// The threads of process `pid` (or `self`) that are running or runnable now (state `R`).
fn running_threads_of(pid: &str) -> Option<u32> {
    let mut n = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
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

    /// 2 cores, 2 slots of one thread each: the other slot's job is the grid's, not contention;
    /// one busy process besides is.
    #[test]
    fn the_grids_own_jobs_are_not_contention() {
        // This job's thread and the sibling's (both counted in the tool's own), nothing else.
        assert_eq!(beyond_free_cores(2, 2, 2, 2), 0.0);
        // Another process's busy thread: nowhere left to run.
        assert_eq!(beyond_free_cores(3, 2, 2, 2), 1.0);
        // One slot alone on 2 cores: one other busy thread fits in the free core.
        assert_eq!(beyond_free_cores(2, 1, 2, 1), 0.0);
        assert_eq!(beyond_free_cores(3, 1, 2, 1), 1.0);
        // A test process has no daemon above it: nothing but itself is the tool's.
        let tool = Tool::find();
        assert!(
            tool.daemon.is_none() && tool.siblings.is_empty(),
            "{tool:?}"
        );
    }

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
        assert!(running_threads_of("self").unwrap() >= 1);
    }
}
