//! grid.yaml: parse → validate → [`Grid`], then expand into [`Job`]s.
//!
//! Validation happens inside serde visitors ([`Check`], [`ListVisitor`]) rather than after
//! parsing, because only while the YAML parser is visiting a value does it know where in the
//! file that value sits; errors raised there come back with its path, line and column.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::job::{Job, TrainSpec};
use crate::names::{Activation, Dataset, Model, Optimizer, Precision};

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

/// A validated grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grid {
    pub name: String,
    pub activations: Vec<Activation>,
    pub datasets: Vec<DatasetEntry>,
    pub seeds: Vec<u64>,
    pub training: Training,
    pub cost_per_hour: f64,
    /// How many times a job that fails (an error in training, not a lost worker) is retried.
    #[serde(default)]
    pub retries: u32,
    /// SHA-256 of the grid file's bytes, for the report's provenance.
    pub source_sha256: String,
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

/// Worker capabilities a job needs; the scheduler gives a job only to a worker that has them.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirements {
    /// A CUDA device.
    #[serde(default)]
    pub gpu: bool,
    /// At least this much device memory (GPU memory on CUDA, RAM on CPU), in GiB.
    #[serde(default, deserialize_with = "non_negative_f64")]
    pub memory_gb: f64,
}

impl fmt::Display for Requirements {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.gpu, self.memory_gb > 0.0) {
            (true, true) => write!(f, "a CUDA device with ≥ {} GiB", self.memory_gb),
            (true, false) => write!(f, "a CUDA device"),
            (false, true) => write!(f, "≥ {} GiB of device memory", self.memory_gb),
            (false, false) => write!(f, "nothing"),
        }
    }
}

impl Requirements {
    /// Whether a worker on `device` ("cpu", "cuda:0", ...) with `memory_mb` of memory qualifies.
    pub fn admit(&self, device: &str, memory_mb: u64) -> bool {
        (!self.gpu || device.starts_with("cuda")) && self.memory_gb * 1024.0 <= memory_mb as f64
    }
}

/// Optimizer settings shared by every job; defaults are the paper's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Training {
    #[serde(default = "default_optimizer")]
    pub optimizer: Optimizer,
    #[serde(default = "default_lr", deserialize_with = "positive_f64")]
    pub learning_rate: f64,
    #[serde(default = "default_batch", deserialize_with = "positive_u32")]
    pub batch_size: u32,
    /// SGD momentum; ignored by Adam.
    #[serde(default = "default_momentum", deserialize_with = "unit_interval_f64")]
    pub momentum: f64,
    /// L2 weight decay, for either optimizer.
    #[serde(default, deserialize_with = "non_negative_f64")]
    pub weight_decay: f64,
    /// `fp32` (default) or `bf16` autocast.
    #[serde(default)]
    pub precision: Precision,
}

impl Default for Training {
    fn default() -> Self {
        Training {
            optimizer: default_optimizer(),
            learning_rate: default_lr(),
            batch_size: default_batch(),
            momentum: default_momentum(),
            weight_decay: 0.0,
            precision: Precision::Fp32,
        }
    }
}

fn default_optimizer() -> Optimizer {
    Optimizer::Adam
}
fn default_lr() -> f64 {
    0.001
}
fn default_batch() -> u32 {
    128
}
fn default_momentum() -> f64 {
    0.9
}

// ---- the file as written ------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GridFile {
    #[serde(deserialize_with = "grid_name")]
    name: String,
    activations: List<Activation>,
    datasets: List<DatasetEntryFile>,
    #[serde(default)]
    seeds: Option<List<u64>>,
    #[serde(default)]
    training: Training,
    #[serde(default, deserialize_with = "non_negative_f64")]
    cost_per_hour: f64,
    #[serde(default)]
    retries: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DatasetEntryFile {
    dataset: Dataset,
    model: Model,
    #[serde(deserialize_with = "epochs")]
    epochs: u32,
    #[serde(deserialize_with = "target_fraction")]
    target_accuracy: f64,
    #[serde(default)]
    train_limit: u64,
    #[serde(default)]
    test_limit: u64,
    /// Default: on for CIFAR, off for the MNIST family (as in common practice and the paper).
    #[serde(default)]
    augment: Option<bool>,
    #[serde(default)]
    latency_samples: u64,
    #[serde(default)]
    requires: Requirements,
}

/// What makes two list entries duplicates of each other.
trait DedupKey {
    type Key: Eq + std::hash::Hash + fmt::Display;
    fn dedup_key(&self) -> Self::Key;
}

impl DedupKey for Activation {
    type Key = Activation;
    fn dedup_key(&self) -> Activation {
        *self
    }
}

impl DedupKey for u64 {
    type Key = u64;
    fn dedup_key(&self) -> u64 {
        *self
    }
}

struct PairKey(Dataset, Model);

impl DedupKey for DatasetEntryFile {
    type Key = String;
    fn dedup_key(&self) -> String {
        PairKey(self.dataset, self.model).to_string()
    }
}

impl fmt::Display for PairKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dataset `{}` with model `{}`", self.0, self.1)
    }
}

/// A list that must be non-empty and free of duplicates.
struct List<T>(Vec<T>);

impl<'de, T: Deserialize<'de> + DedupKey> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(ListVisitor(std::marker::PhantomData))
    }
}

/// Checks inside `visit_seq`, so the YAML parser attaches the list's own line and path to
/// the error (a check after `deserialize` returns would be reported at the parent mapping).
struct ListVisitor<T>(std::marker::PhantomData<T>);

impl<'de, T: Deserialize<'de> + DedupKey> de::Visitor<'de> for ListVisitor<T> {
    type Value = List<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a non-empty list")
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<List<T>, A::Error> {
        let mut items = Vec::new();
        let mut seen = HashSet::new();
        while let Some(item) = seq.next_element::<T>()? {
            let key = item.dedup_key();
            if !seen.insert(key) {
                return Err(de::Error::custom(format_args!(
                    "duplicate entry {} (item {} of the list)",
                    item.dedup_key(),
                    items.len() + 1
                )));
            }
            items.push(item);
        }
        if items.is_empty() {
            return Err(de::Error::custom("must not be empty"));
        }
        Ok(List(items))
    }
}

/// A scalar check run inside the visitor, for the same reason as [`ListVisitor`].
struct Check<T> {
    expecting: &'static str,
    check: fn(T) -> Result<T, String>,
}

impl<'de> de::Visitor<'de> for Check<u64> {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        (self.check)(v).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        let v = u64::try_from(v)
            .map_err(|_| E::custom(format_args!("expected {}, got {v}", self.expecting)))?;
        (self.check)(v).map_err(E::custom)
    }
}

impl<'de> de::Visitor<'de> for Check<f64> {
    type Value = f64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
        (self.check)(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
        self.visit_f64(v as f64)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
        self.visit_f64(v as f64)
    }
}

impl<'de> de::Visitor<'de> for Check<String> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        (self.check)(v.to_string()).map_err(E::custom)
    }
}

fn grid_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    d.deserialize_str(Check::<String> {
        expecting: "a grid name",
        check: |s| {
            let ok = !s.is_empty()
                && s.len() <= 100
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if ok {
                Ok(s)
            } else {
                Err(format!(
                    "invalid grid name `{s}`: use 1 to 100 letters, digits, '-' or '_'"
                ))
            }
        },
    })
}

fn epochs<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = d.deserialize_u64(Check::<u64> {
        expecting: "a number of epochs",
        check: |n| match n {
            0 => Err("epochs must be at least 1".into()),
            n if n > 100_000 => Err(format!("epochs must be at most 100000, got {n}")),
            n => Ok(n),
        },
    })?;
    Ok(n as u32)
}

fn target_fraction<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    d.deserialize_f64(Check::<f64> {
        expecting: "an accuracy in (0, 1]",
        check: |x| {
            if x > 0.0 && x <= 1.0 {
                Ok(x)
            } else {
                Err(format!("target_accuracy must be in (0, 1], got {x}"))
            }
        },
    })
}

fn positive_f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    d.deserialize_f64(Check::<f64> {
        expecting: "a positive number",
        check: |x| {
            if x.is_finite() && x > 0.0 {
                Ok(x)
            } else {
                Err(format!("must be a positive number, got {x}"))
            }
        },
    })
}

fn non_negative_f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    d.deserialize_f64(Check::<f64> {
        expecting: "a number >= 0",
        check: |x| {
            if x.is_finite() && x >= 0.0 {
                Ok(x)
            } else {
                Err(format!("must be a number >= 0, got {x}"))
            }
        },
    })
}

fn unit_interval_f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    d.deserialize_f64(Check::<f64> {
        expecting: "a number in [0, 1)",
        check: |x| {
            if (0.0..1.0).contains(&x) {
                Ok(x)
            } else {
                Err(format!("must be in [0, 1), got {x}"))
            }
        },
    })
}

fn positive_u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = d.deserialize_u64(Check::<u64> {
        expecting: "a positive integer",
        check: |n| match n {
            0 => Err("must be at least 1".into()),
            n if n > u32::MAX as u64 => Err(format!("must be at most {}, got {n}", u32::MAX)),
            n => Ok(n),
        },
    })?;
    Ok(n as u32)
}

// ---- parsing ------------------------------------------------------------------------------

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
                return Err(invalid(
                    line_of_item(text, "datasets", i),
                    None,
                    format!("datasets[{i}]: {why}"),
                ));
            }
            datasets.push(DatasetEntry {
                dataset: entry.dataset,
                model: entry.model,
                epochs: entry.epochs,
                target_accuracy: entry.target_accuracy,
                train_limit: entry.train_limit,
                test_limit: entry.test_limit,
                augment: entry.augment.unwrap_or(matches!(
                    entry.dataset,
                    Dataset::Cifar10 | Dataset::Cifar100
                )),
                latency_samples: entry.latency_samples,
                requires: entry.requires,
            });
        }

        Ok(Grid {
            name: file.name,
            activations: file.activations.0,
            datasets,
            seeds: file.seeds.map(|s| s.0).unwrap_or_else(|| vec![0]),
            training: file.training,
            cost_per_hour: file.cost_per_hour,
            retries: file.retries,
            source_sha256: hex::encode(Sha256::digest(text.as_bytes())),
        })
    }

    /// Every job of the grid: datasets × activations × seeds, in that nesting order.
    pub fn jobs(&self) -> Vec<Job> {
        let mut jobs = Vec::new();
        for entry in &self.datasets {
            for &activation in &self.activations {
                for &seed in &self.seeds {
                    let spec = TrainSpec {
                        dataset: entry.dataset,
                        model: entry.model,
                        activation,
                        seed,
                        epochs: entry.epochs,
                        train_limit: entry.train_limit,
                        test_limit: entry.test_limit,
                        augment: entry.augment,
                        latency_samples: entry.latency_samples,
                        optimizer: self.training.optimizer,
                        learning_rate: self.training.learning_rate,
                        batch_size: self.training.batch_size,
                        momentum: self.training.momentum,
                        weight_decay: self.training.weight_decay,
                        precision: self.training.precision,
                    };
                    let mut job = Job::new(spec, entry.target_accuracy);
                    job.requires = entry.requires;
                    jobs.push(job);
                }
            }
        }
        jobs
    }
}

/// serde_yaml appends " at line L column C" to its messages; we print the location up front.
fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
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
mod tests {
    use super::*;

    const PAPER: &str = "\
name: paper-mnist
activations: [relu, tanh, selu, prelu, elu, leaky_relu]
datasets:
  - dataset: mnist
    model: paper-cnn
    epochs: 10
    target_accuracy: 0.98
seeds: [0, 1]
training:
  optimizer: adam
  learning_rate: 0.001
  batch_size: 128
cost_per_hour: 3.06
";

    fn parse(text: &str) -> Result<Grid, GridError> {
        Grid::parse(text, Path::new("grid.yaml"))
    }

    fn err(text: &str) -> (String, Option<usize>, Option<usize>) {
        match parse(text).unwrap_err() {
            e @ GridError::Invalid { line, column, .. } => (e.to_string(), line, column),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn parses_the_paper_grid() {
        let g = parse(PAPER).unwrap();
        assert_eq!(g.name, "paper-mnist");
        assert_eq!(g.activations, Activation::PAPER.to_vec());
        assert_eq!(g.seeds, vec![0, 1]);
        assert_eq!(g.datasets[0].epochs, 10);
        assert_eq!(g.training, Training::default());
        assert_eq!(g.cost_per_hour, 3.06);
        assert_eq!(g.jobs().len(), 12);
    }

    #[test]
    fn defaults_apply() {
        let g = parse(
            "name: g\nactivations: [relu]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 1, target_accuracy: 0.5}\n",
        )
        .unwrap();
        assert_eq!(g.seeds, vec![0]);
        assert_eq!(g.training.batch_size, 128);
        assert_eq!(g.training.optimizer, Optimizer::Adam);
        assert_eq!(g.datasets[0].train_limit, 0);
        assert_eq!(g.cost_per_hour, 0.0);
        assert!(!g.datasets[0].augment);
        let c = parse(
            "name: g\nactivations: [relu]\ndatasets:\n  - {dataset: cifar10, model: vgg11-bn, epochs: 1, target_accuracy: 0.5}\n  - {dataset: cifar100, model: paper-cnn, epochs: 1, target_accuracy: 0.5, augment: false}\n",
        )
        .unwrap();
        assert!(c.datasets[0].augment);
        assert!(!c.datasets[1].augment);
    }

    #[test]
    fn job_ids_are_stable_and_distinct() {
        let a = parse(PAPER).unwrap().jobs();
        let b = parse(&PAPER.replace("name: paper-mnist", "name: renamed"))
            .unwrap()
            .jobs();
        let ids: Vec<_> = a.iter().map(|j| j.id.clone()).collect();
        assert_eq!(ids, b.iter().map(|j| j.id.clone()).collect::<Vec<_>>());
        let unique: HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        assert!(
            ids[0].as_str().starts_with("mnist-paper-cnn-relu-s0-"),
            "{}",
            ids[0]
        );
        // Any change to what is trained changes the id.
        let c = parse(&PAPER.replace("batch_size: 128", "batch_size: 64"))
            .unwrap()
            .jobs();
        assert_ne!(a[0].id, c[0].id);
        // The target only affects the report, not training, so it keeps the id.
        let d = parse(&PAPER.replace("0.98", "0.99")).unwrap().jobs();
        assert_eq!(a[0].id, d[0].id);
    }

    #[test]
    fn expansion_order_is_dataset_activation_seed() {
        let g = parse(PAPER).unwrap();
        let jobs = g.jobs();
        assert_eq!(jobs[0].spec.activation, Activation::Relu);
        assert_eq!(jobs[0].spec.seed, 0);
        assert_eq!(jobs[1].spec.seed, 1);
        assert_eq!(jobs[2].spec.activation, Activation::Tanh);
    }

    #[test]
    fn not_yaml() {
        let (msg, line, _) = err("name: [unclosed\n");
        assert!(msg.starts_with("grid.yaml:"), "{msg}");
        assert!(line.is_some(), "{msg}");
    }

    #[test]
    fn empty_file() {
        let (msg, _, _) = err("  \n");
        assert!(msg.contains("empty"), "{msg}");
    }

    #[test]
    fn unknown_top_level_key() {
        let (msg, line, col) = err(&PAPER.replace("seeds:", "seedz:"));
        assert!(msg.contains("unknown field `seedz`"), "{msg}");
        assert_eq!((line, col), (Some(8), Some(1)), "{msg}");
    }

    #[test]
    fn unknown_nested_key() {
        let (msg, line, _) = err(&PAPER.replace("    epochs: 10", "    epochs: 10\n    epoch: 3"));
        assert!(msg.contains("datasets[0]"), "{msg}");
        assert!(msg.contains("unknown field `epoch`"), "{msg}");
        assert_eq!(line, Some(7), "{msg}");
    }

    #[test]
    fn unknown_activation() {
        let (msg, line, col) = err(&PAPER.replace("elu, leaky", "elu, leaky_reluu, leaky"));
        assert!(msg.contains("activations[5]"), "{msg}");
        assert!(msg.contains("unknown variant `leaky_reluu`"), "{msg}");
        assert_eq!(line, Some(2), "{msg}");
        assert!(col.is_some());
    }

    #[test]
    fn unknown_dataset_and_model() {
        let (msg, line, _) = err(&PAPER.replace("dataset: mnist", "dataset: mnits"));
        assert!(
            msg.contains("datasets[0].dataset") && msg.contains("`mnits`"),
            "{msg}"
        );
        assert_eq!(line, Some(4));
        let (msg, line, _) = err(&PAPER.replace("paper-cnn", "resnet"));
        assert!(
            msg.contains("datasets[0].model") && msg.contains("`resnet`"),
            "{msg}"
        );
        assert_eq!(line, Some(5));
    }

    #[test]
    fn empty_lists() {
        let (msg, line, _) =
            err(&PAPER.replace("[relu, tanh, selu, prelu, elu, leaky_relu]", "[]"));
        assert!(
            msg.contains("activations") && msg.contains("must not be empty"),
            "{msg}"
        );
        assert_eq!(line, Some(2));
        let (msg, _, _) = err(&PAPER.replace("seeds: [0, 1]", "seeds: []"));
        assert!(
            msg.contains("seeds") && msg.contains("must not be empty"),
            "{msg}"
        );
        let (msg, _, _) = err("name: x\nactivations: [relu]\ndatasets: []\n");
        assert!(
            msg.contains("datasets") && msg.contains("must not be empty"),
            "{msg}"
        );
    }

    #[test]
    fn zero_epochs() {
        let (msg, line, _) = err(&PAPER.replace("epochs: 10", "epochs: 0"));
        assert!(
            msg.contains("datasets[0].epochs") && msg.contains("at least 1"),
            "{msg}"
        );
        assert_eq!(line, Some(6));
    }

    #[test]
    fn target_out_of_range() {
        for bad in ["0", "1.5", "-0.2", "0.0"] {
            let (msg, line, _) = err(&PAPER.replace("0.98", bad));
            assert!(
                msg.contains("datasets[0].target_accuracy") && msg.contains("(0, 1]"),
                "{msg}"
            );
            assert_eq!(line, Some(7));
        }
        assert!(parse(&PAPER.replace("0.98", "1")).is_ok());
    }

    #[test]
    fn duplicates() {
        let (msg, _, _) = err(&PAPER.replace("elu, leaky_relu]", "elu, leaky_relu, relu]"));
        assert!(
            msg.contains("activations") && msg.contains("duplicate entry relu"),
            "{msg}"
        );
        let (msg, _, _) = err(&PAPER.replace("[0, 1]", "[0, 1, 0]"));
        assert!(
            msg.contains("seeds") && msg.contains("duplicate entry 0"),
            "{msg}"
        );
        let doubled = PAPER.replace(
            "    target_accuracy: 0.98\n",
            "    target_accuracy: 0.98\n  - dataset: mnist\n    model: paper-cnn\n    epochs: 3\n    target_accuracy: 0.9\n",
        );
        let (msg, _, _) = err(&doubled);
        assert!(
            msg.contains("duplicate entry dataset `mnist` with model `paper-cnn`"),
            "{msg}"
        );
    }

    #[test]
    fn missing_required_field() {
        let (msg, _, _) = err("name: x\nactivations: [relu]\n");
        assert!(msg.contains("missing field `datasets`"), "{msg}");
    }

    #[test]
    fn bad_name_and_numbers() {
        let (msg, line, _) = err(&PAPER.replace("paper-mnist", "paper mnist!"));
        assert!(
            msg.contains("name") && msg.contains("invalid grid name"),
            "{msg}"
        );
        assert_eq!(line, Some(1));
        let (msg, _, _) = err(&PAPER.replace("batch_size: 128", "batch_size: 0"));
        assert!(msg.contains("training.batch_size"), "{msg}");
        let (msg, _, _) = err(&PAPER.replace("learning_rate: 0.001", "learning_rate: -1"));
        assert!(msg.contains("training.learning_rate"), "{msg}");
        let (msg, _, _) = err(&PAPER.replace("optimizer: adam", "optimizer: lbfgs"));
        assert!(msg.contains("training.optimizer"), "{msg}");
        let (msg, _, _) = err(&PAPER.replace("optimizer: adam", "precision: fp16"));
        assert!(msg.contains("training.precision"), "{msg}");
        assert!(msg.contains("`bf16`"), "{msg}");
        let (msg, _, _) = err(&PAPER.replace("3.06", "-1"));
        assert!(msg.contains("cost_per_hour"), "{msg}");
    }

    #[test]
    fn precision_reaches_every_job_and_fp32_ids_are_unchanged() {
        let fp32 = Grid::parse(PAPER, Path::new("g.yaml")).unwrap().jobs();
        let bf16 = Grid::parse(
            &PAPER.replace("optimizer: adam", "optimizer: adam\n  precision: bf16"),
            Path::new("g.yaml"),
        )
        .unwrap()
        .jobs();
        assert!(bf16.iter().all(|j| j.spec.precision == Precision::Bf16));
        assert!(fp32.iter().all(|j| j.spec.precision == Precision::Fp32));
        // fp32 is left out of the spec's serialization, so the ids grids had before stay.
        assert!(!serde_json::to_string(&fp32[0].spec)
            .unwrap()
            .contains("precision"));
        assert_ne!(fp32[0].id, bf16[0].id);
    }

    #[test]
    fn incompatible_model() {
        let (msg, line, _) = err(&PAPER.replace("paper-cnn", "vgg11-bn"));
        assert!(
            msg.contains("datasets[0]") && msg.contains("32x32"),
            "{msg}"
        );
        assert_eq!(line, Some(4));
    }

    #[test]
    fn requirements() {
        let g = parse(&PAPER.replace(
            "    target_accuracy: 0.98\n",
            "    target_accuracy: 0.98\n    requires: {gpu: true, memory_gb: 16}\n",
        ))
        .unwrap();
        let r = g.jobs()[0].requires;
        assert!(r.admit("cuda:1", 80 * 1024));
        assert!(!r.admit("cuda:0", 8 * 1024), "too little memory");
        assert!(!r.admit("cpu", 1 << 20), "no GPU");
        assert!(Requirements::default().admit("cpu", 0));
        let (msg, _, _) = err(&PAPER.replace(
            "    target_accuracy: 0.98\n",
            "    target_accuracy: 0.98\n    requires: {tpu: true}\n",
        ));
        assert!(
            msg.contains("datasets[0].requires") && msg.contains("unknown field `tpu`"),
            "{msg}"
        );
    }

    #[test]
    fn missing_file() {
        let e = Grid::from_file(Path::new("/nonexistent/grid.yaml")).unwrap_err();
        assert!(matches!(e, GridError::Read { .. }));
        assert!(e.to_string().contains("/nonexistent/grid.yaml"), "{e}");
    }
}
