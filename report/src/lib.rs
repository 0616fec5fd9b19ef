//! The report of a grid, rendered from its job records alone, so `coordinator report` can
//! re-render every file from saved state. Only the coordinator depends on this crate: the
//! worker, which links libtorch, never compiles it.
//!
//! # Layout
//! - [`results`]: the `results.json` schema ([`Results`], [`Environment`], [`WorkerEnv`]).
//! - [`stats`]: Welch's t-test, TOST and Holm's adjustment.
//! - [`table`]: aggregation into one paper-style table per dataset × model, with the best
//!   value of each column; [`significance`]: each comparison with it, corrected for the
//!   table's family (also `results.json`'s `comparisons`).
//! - [`summary`]: the summary in words and the recommendation.
//! - [`format`]: durations and escaping for each output format.
//! - [`markdown`], [`html`] (with [`svg`] figures), [`csv`]: the report's files.
//! - [`compare`]: two runs side by side, each difference with its CI and p.
//! - [`dawnbench`], [`mllog`], [`tensorboard`]: each job in the formats other tools read
//!   (DAWNBench entries, MLPerf Training logs, TensorBoard event files).

pub mod compare;
pub mod csv;
pub mod dawnbench;
pub mod format;
pub mod html;
mod json;
pub mod markdown;
pub mod mllog;
pub mod race;
pub mod results;
pub mod significance;
pub mod stats;
pub mod summary;
pub mod svg;
pub mod table;
pub mod tensorboard;

pub use results::{Environment, Results, RunInfo, WorkerEnv};

#[cfg(test)]
pub(crate) mod fixtures;
