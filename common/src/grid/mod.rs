//! grid.yaml: the file as written ([`file`]) → a validated [`Grid`] → its [`Job`]s.
//!
//! Validation happens inside serde visitors ([`crate::checks`]) rather than after parsing, because
//! only while the YAML parser is visiting a value does it know where in the file that value
//! sits; errors raised there come back with its path, line and column.

mod file;
mod seeds;
mod training;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cadence::CheckpointEvery;
use crate::job::{Job, TrainSpec};
use crate::names::{Activation, Dataset, Model};
use crate::requirements::Requirements;
use file::{DatasetEntryFile, GridFile};
use seeds::SeedsFile;
pub use seeds::{SeedRace, MAX_RACE_SEEDS};
pub use training::Training;

/// The most jobs one grid may expand to: what the coordinator was measured to hold (a million
/// queued jobs in about a third of a GiB; see the benchmarks page), and a bound on what a
/// grid file can make it allocate.
pub const MAX_JOBS: u64 = 1_000_000;

/// A grid file that could not be read or is not a valid grid.
#[derive(Debug, thiserror::Error)]
pub enum GridError {
    #[error("{}: cannot read grid file: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}{}: {message}", path.display(), fmt_location(*line, *column))]
    Invalid {
        path: PathBuf,
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },
}

fn fmt_location(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        (Some(l), None) => format!(":{l}"),
        _ => String::new(),
    }
}

/// A validated grid. Its fields are private: the only ways to make one are [`Grid::parse`]
/// (and [`Grid::from_file`]), which check everything, and deserializing a grid this program
/// stored itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grid {
    name: String,
    activations: Vec<Activation>,
    datasets: Vec<DatasetEntry>,
    seeds: Vec<u64>,
    training: Training,
    cost_per_hour: f64,
    /// How many times a job that fails (an error in training, not a lost worker) is retried.
    #[serde(default)]
    retries: u32,
    /// How often jobs checkpoint.
    #[serde(default)]
    checkpoint_every: CheckpointEvery,
    /// After this many jobs of one dataset × model failed with the same error (and none
    /// succeeded), the rest of them are not run; 0 = never stop.
    #[serde(default = "file::default_stop_after_failures")]
    stop_after_failures: u32,
    /// SHA-256 of the grid file's bytes, for the report's provenance.
    source_sha256: String,
    /// Who ran the study, for DAWNBench entries and MLPerf logs (may be empty).
    #[serde(default)]
    author: String,
    #[serde(default)]
    author_email: String,
    /// Percentage points of error rate within which an activation counts as equivalent to the
    /// best (two one-sided tests); None: equivalence is not tested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    equivalence_margin: Option<f64>,
    /// grid.yaml `seeds: {min, max}`: seeds raced (`seeds` is then 0 to max−1); None: every
    /// seed of `seeds` runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    race: Option<SeedRace>,
}

/// One model on one dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetEntry {
    pub dataset: Dataset,
    pub model: Model,
    pub epochs: u32,
    pub target_accuracy: f64,
    pub train_limit: u64,
    pub test_limit: u64,
    /// Random crop (4-pixel padding) + horizontal flip while training.
    pub augment: bool,
    /// Test images classified one at a time for the latency figure; 0 = the whole test set.
    pub latency_samples: u64,
    /// What a worker must have to run these jobs.
    pub requires: Requirements,
}

impl Grid {
    /// Reads and validates a grid file.
    pub fn from_file(path: &Path) -> Result<Grid, GridError> {
        let text = std::fs::read_to_string(path).map_err(|source| GridError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Grid::parse(&text, path)
    }

    /// Validates grid YAML; `path` only names the source in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Grid, GridError> {
        let invalid = |line, column, message: String| GridError::Invalid {
            path: path.to_path_buf(),
            line,
            column,
            message,
        };
        if text.trim().is_empty() {
            return Err(invalid(None, None, "the grid file is empty".into()));
        }
        let file: GridFile = serde_yaml::from_str(text).map_err(|e| {
            let loc = e.location();
            invalid(
                loc.as_ref().map(|l| l.line()),
                loc.as_ref().map(|l| l.column()),
                strip_location(&e.to_string()),
            )
        })?;
        let mut datasets = Vec::with_capacity(file.datasets.0.len());
        for (i, entry) in file.datasets.0.into_iter().enumerate() {
            if let Some(why) = entry.model.incompatibility(entry.dataset) {
                let line = line_of_item(text, "datasets", i);
                return Err(invalid(line, None, format!("datasets[{i}]: {why}")));
            }
            if let Some(why) = limit_beyond_the_data(&entry) {
                let line = line_of_item(text, "datasets", i);
                return Err(invalid(line, None, format!("datasets[{i}].{why}")));
            }
            datasets.push(DatasetEntry::from(entry));
        }
        if let Some(m) = file.equivalence_margin {
            if !(m.is_finite() && m > 0.0 && m <= 100.0) {
                let line = text
                    .lines()
                    .position(|l| l.starts_with("equivalence_margin"))
                    .map(|i| i + 1);
                return Err(invalid(
                    line,
                    None,
                    format!(
                        "equivalence_margin: {m} is not a margin: give percentage points of \
                         error rate, above 0 and at most 100 (e.g. 0.5)"
                    ),
                ));
            }
        }
        let (seeds, race) = match file.seeds {
            None => (vec![0], None),
            Some(SeedsFile::List(list)) => (list, None),
            Some(SeedsFile::Race(r)) => ((0..u64::from(r.max)).collect(), Some(r)),
        };
        let jobs = datasets.len() as u64 * file.activations.0.len() as u64 * seeds.len() as u64;
        if jobs > MAX_JOBS {
            return Err(invalid(
                None,
                None,
                format!(
                    "the grid expands to {jobs} jobs (datasets × activations × seeds); at most \
                     {MAX_JOBS} are run from one grid: split it"
                ),
            ));
        }
        Ok(Grid {
            name: file.name,
            activations: file.activations.0,
            datasets,
            seeds,
            training: file.training,
            cost_per_hour: file.cost_per_hour,
            retries: file.retries,
            checkpoint_every: file.checkpoint_every,
            stop_after_failures: file.stop_after_failures,
            source_sha256: hex::encode(Sha256::digest(text.as_bytes())),
            author: file.author,
            author_email: file.author_email,
            equivalence_margin: file.equivalence_margin,
            race,
        })
    }

    /// grid.yaml `seeds: {min, max}`: the seed race, if the seeds are raced.
    pub fn race(&self) -> Option<SeedRace> {
        self.race
    }

    /// grid.yaml `equivalence_margin`: percentage points of error rate within which an
    /// activation counts as equivalent to the best; None: not tested.
    pub fn equivalence_margin(&self) -> Option<f64> {
        self.equivalence_margin
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn activations(&self) -> &[Activation] {
        &self.activations
    }
    pub fn datasets(&self) -> &[DatasetEntry] {
        &self.datasets
    }
    pub fn seeds(&self) -> &[u64] {
        &self.seeds
    }
    pub fn training(&self) -> &Training {
        &self.training
    }
    /// USD per worker-hour, for the DAWNBench cost columns; 0 = not priced.
    pub fn cost_per_hour(&self) -> f64 {
        self.cost_per_hour
    }
    /// How many times a job that fails in training is retried.
    pub fn retries(&self) -> u32 {
        self.retries
    }
    /// grid.yaml `stop_after_failures`: jobs of one dataset × model failing alike before the
    /// rest of them are not run (0: never).
    pub fn stop_after_failures(&self) -> u32 {
        self.stop_after_failures
    }
    /// How often jobs checkpoint (grid.yaml `checkpoint_every`).
    pub fn checkpoint_every(&self) -> CheckpointEvery {
        self.checkpoint_every
    }
    /// SHA-256 of the grid file's bytes.
    pub fn source_sha256(&self) -> &str {
        &self.source_sha256
    }

    /// Who ran the study (grid.yaml `author`; may be empty).
    pub fn author(&self) -> &str {
        &self.author
    }
    /// grid.yaml `author_email` (may be empty).
    pub fn author_email(&self) -> &str {
        &self.author_email
    }

    /// Fills an author or e-mail address the file leaves empty (from the environment).
    pub fn with_author_defaults(mut self, author: Option<String>, email: Option<String>) -> Grid {
        if self.author.is_empty() {
            self.author = author.unwrap_or_default();
        }
        if self.author_email.is_empty() {
            self.author_email = email.unwrap_or_default();
        }
        self
    }

    /// Every job of the grid: datasets × activations × seeds, in that nesting order.
    pub fn jobs(&self) -> Vec<Job> {
        let mut jobs = Vec::with_capacity(self.job_count());
        jobs.extend(self.iter_jobs());
        jobs
    }

    /// How many jobs the grid has.
    pub fn job_count(&self) -> usize {
        self.datasets.len() * self.activations.len() * self.seeds.len()
    }

    /// The jobs of [`Grid::jobs`], made one at a time (for a million seeds, no million in
    /// memory at once).
    pub fn iter_jobs(&self) -> impl Iterator<Item = Job> + '_ {
        self.datasets.iter().flat_map(move |entry| {
            self.activations.iter().flat_map(move |&activation| {
                self.seeds.iter().map(move |&seed| {
                    let mut job =
                        Job::new(self.spec(entry, activation, seed), entry.target_accuracy);
                    job.requires = entry.requires;
                    job.checkpoint_every = self.checkpoint_every;
                    job
                })
            })
        })
    }

    fn spec(&self, entry: &DatasetEntry, activation: Activation, seed: u64) -> TrainSpec {
        let t = &self.training;
        TrainSpec {
            dataset: entry.dataset,
            model: entry.model,
            activation,
            seed,
            epochs: entry.epochs,
            train_limit: entry.train_limit,
            test_limit: entry.test_limit,
            augment: entry.augment,
            latency_samples: entry.latency_samples,
            optimizer: t.optimizer,
            learning_rate: t.learning_rate,
            batch_size: t.batch_size,
            momentum: t.momentum,
            weight_decay: t.weight_decay,
            precision: t.precision,
            tf32: t.tf32,
            deterministic: t.deterministic,
        }
    }
}

/// A limit past the images the dataset has would run on all of them while every record said
/// the limit: refused, naming the size.
fn limit_beyond_the_data(e: &DatasetEntryFile) -> Option<String> {
    let info = e.dataset.info();
    [
        ("train_limit", e.train_limit, info.train_images, "training"),
        ("test_limit", e.test_limit, info.test_images, "test"),
    ]
    .into_iter()
    .find(|&(_, limit, size, _)| limit > size)
    .map(|(field, limit, size, what)| {
        format!(
            "{field}: {limit} is more than the {size} {what} images {} has (0 means all of them)",
            e.dataset
        )
    })
}

impl From<DatasetEntryFile> for DatasetEntry {
    fn from(e: DatasetEntryFile) -> DatasetEntry {
        DatasetEntry {
            dataset: e.dataset,
            model: e.model,
            epochs: e.epochs,
            target_accuracy: e.target_accuracy,
            train_limit: e.train_limit,
            test_limit: e.test_limit,
            augment: e
                .augment
                .unwrap_or(matches!(e.dataset, Dataset::Cifar10 | Dataset::Cifar100)),
            latency_samples: e.latency_samples,
            requires: e.requires,
        }
    }
}

/// serde_yaml appends " at line L column C" to its messages; we print the location up front.
fn strip_location(msg: &str) -> String {
    let msg = match msg.rfind(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    };
    explain(msg)
}

/// serde's words where they would puzzle a user: what is wrong with the file, and what to do.
fn explain(msg: &str) -> String {
    if msg.contains("expected struct GridFile") {
        // The whole file read as one string or list: not YAML keys at all (TOML, say).
        return "this is not a grid file: a grid is YAML, with `name:`, `activations:` and \
                `datasets:` at the top level (see examples/ and the grid.yaml reference in the \
                manual)"
            .into();
    }
    // An unclosed `[` or `{` swallows the lines after it: a "name" with spaces in it.
    let swallowed = msg
        .split_once("unknown variant `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .is_some_and(|(name, _)| name.contains(char::is_whitespace));
    if swallowed {
        return format!("{msg} (is a `[` or `{{` left unclosed on this line?)");
    }
    msg.to_string()
}

/// Best-effort 1-based line of the `index`-th `- ` item under the top-level key `key`.
fn line_of_item(text: &str, key: &str, index: usize) -> Option<usize> {
    let mut in_key = false;
    let mut seen = 0;
    for (n, line) in text.lines().enumerate() {
        if !line.starts_with(' ') && !line.starts_with('-') && !line.trim().is_empty() {
            in_key = line.trim_start().starts_with(&format!("{key}:"));
            continue;
        }
        if in_key && line.trim_start().starts_with("- ") {
            if seen == index {
                return Some(n + 1);
            }
            seen += 1;
        }
    }
    None
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
