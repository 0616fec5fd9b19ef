//! Pure logic shared by the coordinator and the worker; no async runtime, no RPC, no libtorch.
//!
//! # Layout
//! - [`names`]: the closed vocabularies (activations, datasets, models, optimizers).
//! - [`grid`]: grid.yaml → validated [`grid::Grid`] → [`job::Job`]s with stable ids.
//! - [`job`]: job specs, ids, per-epoch metrics, the DAWNBench summary and job records.
//! - [`report`]: `results.json`, `results.csv` and `report.md` from job records.

pub mod grid;
pub mod html;
pub mod job;
pub mod names;
pub mod report;
pub mod stats;

pub use grid::{Grid, GridError};
pub use job::{EpochMetrics, Job, JobId, JobRecord, JobStatus, Summary, TrainOutcome, TrainSpec};
pub use names::{Activation, Dataset, Model, Optimizer, Precision};
