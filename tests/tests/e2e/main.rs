//! End to end: the real `coordinator` and `worker` binaries on loopback, one test binary with a
//! module per concern (and the Kubernetes manifests checked against the binaries).

mod auth;
mod bounds;
mod data;
mod deploy;
mod docs;
mod faults;
mod gpu;
mod grid;
mod interop;
mod lifecycle;
mod ops;
mod race;
mod report;
mod security;
mod sessions;
mod slurm;
mod slurm_batch;
mod support;
mod tls;
mod training;
mod untrusted;
