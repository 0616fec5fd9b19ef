//! How many CPU cores the worker may use, and how it shares them among its jobs.
//!
//! Training processes that share cores slow each other far more than fairly: each libtorch
//! process runs an OpenMP team of as many threads as it was given, whose idle threads spin
//! waiting for the next parallel region. Measured on a 2-core AMD EPYC VM (paper CNN, 30,000
//! images per epoch): one job alone with 2 threads, 1.04 s per epoch; two such jobs at once,
//! 3.7–5.0 s each (4×); two jobs with 1 thread each, 1.88 s each (1.8×, the fair 2× less the
//! second thread's imperfect scaling); two 2-thread jobs with `OMP_WAIT_POLICY=PASSIVE`, 2.8 s
//! each (2.7×), while a lone job with passive waiting takes 1.51 s (45% slower). So a worker
//! gives each job its share of the cores, and asks OpenMP to wait passively only where the
//! shares add up to more than the cores (threads set by hand).

/// Cores this process may run on: its affinity mask (`taskset`, a container's cpuset) and its
/// cgroup's CPU quota (a Kubernetes pod's `limits.cpu`, rounded down, at least 1), as the
/// standard library counts them.
pub fn available() -> usize {
    let bound = std::thread::available_parallelism().map_or(1, |n| n.get());
    slurm_cpus(std::env::var("SLURM_CPUS_ON_NODE").ok().as_deref(), bound)
}

/// Inside a SLURM job, the CPUs it was allocated on this node (`SLURM_CPUS_ON_NODE`), where
/// fewer than `bound`: a cluster without CPU binding (`TaskPlugin=task/none`) leaves every
/// core in the affinity mask, and jobs sharing a node would each take them all.
fn slurm_cpus(on_node: Option<&str>, bound: usize) -> usize {
    on_node
        .and_then(|n| n.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .map_or(bound, |n| n.min(bound))
}

/// Intra-op threads for each of `slots` jobs run at once: `requested` where not 0, otherwise
/// the available cores divided among the slots (at least one each).
pub fn per_job(requested: usize, slots: u32) -> usize {
    share(requested, slots, available())
}

#[cfg(test)]
#[test]
fn a_slurm_allocation_bounds_the_cores() {
    assert_eq!(slurm_cpus(Some("1"), 16), 1);
    assert_eq!(
        slurm_cpus(Some("32"), 16),
        16,
        "never more than the affinity mask"
    );
    assert_eq!(slurm_cpus(None, 16), 16);
    assert_eq!(slurm_cpus(Some("junk"), 16), 16);
}

fn share(requested: usize, slots: u32, cores: usize) -> usize {
    match requested {
        0 => (cores / slots.max(1) as usize).max(1),
        t => t,
    }
}

/// Whether `slots` jobs of `threads` threads each need more cores than there are, so their
/// OpenMP threads should sleep rather than spin while waiting.
pub fn oversubscribed(threads: usize, slots: u32) -> bool {
    threads * slots as usize > available()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cores_are_shared_among_slots() {
        assert_eq!(share(0, 1, 16), 16);
        assert_eq!(share(0, 2, 2), 1);
        assert_eq!(share(0, 3, 16), 5);
        assert_eq!(share(0, 4, 2), 1);
        assert_eq!(share(3, 4, 2), 3);
        assert!(available() >= 1);
        assert!(oversubscribed(available() + 1, 1));
        assert!(!oversubscribed(1, 1));
    }
}
