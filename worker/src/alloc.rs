//! The process allocator, set up for training.

/// Makes glibc keep freed memory for reuse instead of returning it to the kernel: by default
/// every tensor above its (adaptive) mmap threshold is a fresh mapping, so each training step
/// pays page faults for its activations and gradients all over again. Measured on the 2-core
/// CPU, in a process that had not yet freed a large buffer (which raises that threshold): a
/// paper-CNN step 15% slower, a VGG-11 step 5% slower without these settings. Loading a dataset
/// happens to raise the threshold too, so `worker train` ran as fast either way; this makes the
/// speed independent of such history. Call once, before the first tensor.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts glibc's allocator parameters; it is called before other
    // threads allocate.
    unsafe {
        // Allocations up to 32 MiB (glibc's upper limit for this setting) come from the heap...
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        // ...and so do larger ones (VGG-11's first activations on CIFAR-10 are 33.5 MB at
        // batch 128), rather than a fresh mapping each step.
        libc::mallopt(libc::M_MMAP_MAX, 0);
        // ...which is only trimmed once 1 GiB at its top is free.
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}
