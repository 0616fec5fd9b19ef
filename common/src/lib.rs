//! The pure domain of dlgrid, shared by the coordinator, the worker and the report: no async
//! runtime, no RPC, no libtorch, no presentation.
//!
//! # Layout
//! - [`names`]: the closed vocabularies (activations, datasets, models, optimizers, precision),
//!   one spelling each.
//! - [`dataset`]: the one table of dataset facts (folders, files and checksums, sources, shape,
//!   normalization, default target).
//! - [`grid`]: grid.yaml as written → validated [`Grid`] → [`Job`]s with stable ids.
//! - [`requirements`]: what a worker must have to run a job.
//! - [`job`]: what a job trains ([`TrainSpec`]), the scheduled [`Job`], its [`JobStatus`].
//! - [`cadence`]: how often a job checkpoints ([`CheckpointEvery`]).
//! - [`ids`]: [`JobId`], [`WorkerId`], [`LeaseId`].
//! - [`device`]: [`DeviceSpec`], the one parsed form of `auto | cpu | cuda | cuda:N`.
//! - [`engine`]: the layout and kernels a job trained with, and how they were chosen.
//! - [`worker`]: what a worker declares about itself ([`WorkerInfo`]).
//! - [`metrics`]: per-epoch metrics and the DAWNBench [`Summary`].
//! - [`outcome`]: how a job ended ([`Outcome`]: succeeded, failed or diverged, nothing else).
//! - [`record`]: one job as `results.json` records it ([`JobRecord`]).

pub mod cadence;
mod checks;
pub mod dataset;
pub mod device;
pub mod engine;
pub mod grid;
pub mod ids;
pub mod job;
pub mod metrics;
pub mod names;
pub mod outcome;
pub mod record;
pub mod requirements;
pub mod worker;

pub use cadence::CheckpointEvery;
pub use dataset::{DatasetInfo, Shape};
pub use device::DeviceSpec;
pub use engine::{Chosen, Engine, KernelSet, Layout};
pub use grid::{DatasetEntry, Grid, GridError, SeedRace, Training};
pub use ids::{JobId, LeaseId, NotAJobId, WorkerId};
pub use job::{Job, JobStatus, TrainSpec};
pub use metrics::{EpochClock, EpochHost, EpochMetrics, RunClock, Summary};
pub use names::{Activation, Dataset, Model, Optimizer, Precision, Tf32};
pub use outcome::{Outcome, TrainOutcome};
pub use record::{JobRecord, RunFacts};
pub use requirements::Requirements;
pub use worker::WorkerInfo;
