//! What [`crate::run`] needs, already validated (by the binary's flag parsing).

use std::path::PathBuf;
use std::sync::Arc;

use common::{DeviceSpec, Grid};

use crate::local::LocalWorkers;
use crate::store::Durability;
use crate::tls::ServerTls;

#[derive(Debug, Clone)]
pub struct Config {
    pub grid: Grid,
    pub grid_file: String,
    pub out: PathBuf,
    pub state: PathBuf,
    pub local_workers: LocalWorkers,
    /// `--launcher slurm`: workers submitted as SLURM jobs; None: `--launcher local`.
    pub slurm: Option<crate::slurm::SlurmConfig>,
    pub device: DeviceSpec,
    pub data_dir: Option<PathBuf>,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    /// The operators' token (`--operator-token-file`); None with a worker token means a fresh
    /// one in `<out>/operator-token` (see [`crate::operator::resolve`]).
    pub operator_token: Option<String>,
    pub operator_token_file: Option<PathBuf>,
    /// TLS for both ports (`--tls-cert`, `--tls-key`, `--tls-client-ca`); None: plaintext.
    pub tls: Option<Arc<ServerTls>>,
    /// A connection (either port) that sends nothing this long is closed.
    pub idle: std::time::Duration,
    pub worker_bin: PathBuf,
    pub worker_slots: u32,
    pub lease_seconds: u32,
    pub heartbeat_seconds: u32,
    /// Run every job again, even those finished in the state.
    pub rerun: bool,
    /// Largest checkpoint a worker may store with the coordinator.
    pub max_checkpoint_mb: u64,
    /// What a commit of the state survives.
    pub durability: Durability,
    /// Whether to show the live progress display (stderr is a terminal) instead of progress
    /// log lines.
    pub display: bool,
    /// Exit 3 when the grid finishes with failed jobs.
    pub fail_on_job_failure: bool,
    /// How the coordinator logs; local workers log the same way.
    pub log_format: orchestrator_proto::telemetry::LogFormat,
}
