//! The wire between the coordinator and its workers, and what both binaries share at run time.
//!
//! # Layout
//! - [`v1`]: code generated from `orchestrator/v1/orchestrator.proto`.
//! - [`convert`]: every conversion between the domain's types and the wire's.
//! - [`auth`]: the bearer token: reading its file, sending it (client) and checking it (server).
//! - [`client`]: channels and authenticated clients for a coordinator URL.
//! - [`telemetry`]: the tracing set-up of both binaries.
//! - [`shutdown`]: the SIGTERM / Ctrl-C future both servers stop on.
//! - [`host`]: facts about this machine (host name, CPU, memory, GPUs via `nvidia-smi`).
//! - [`checkpoint`]: the checkpoint format (safetensors: data only), parsed and checked.
//! - [`reporter`]: a worker's epoch reports, batched into `ReportEpochs` calls.

pub mod v1 {
    tonic::include_proto!("orchestrator.v1");
}

/// The encoded descriptors of `orchestrator.v1`, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("orchestrator_descriptor");

pub mod auth;
pub mod checkpoint;
pub mod client;
pub mod convert;
pub mod host;
pub mod reporter;
pub mod shutdown;
pub mod telemetry;

pub use auth::{
    follow, read_token_file, session_of, BearerAuth, RequireToken, TokenCell, FOLLOW_EVERY,
    MIN_TOKEN_CHARS, SESSION_HEADER,
};

/// Bytes per checkpoint chunk on the wire (both directions), well under gRPC's 4 MiB default
/// message limit.
pub const CHECKPOINT_CHUNK: usize = 1 << 20;

/// Most epoch reports in one `ReportEpochs` call; the coordinator refuses more.
pub const REPORT_BATCH: usize = 256;
