//! Tests of grid.yaml parsing, validation and expansion.

use std::collections::HashSet;
use std::path::Path;

use super::*;
use crate::names::{Activation, Optimizer, Precision};
use crate::{DeviceSpec, Requirements};

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
    let (msg, line, _) = err(&PAPER.replace("[relu, tanh, selu, prelu, elu, leaky_relu]", "[]"));
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
    assert!(r.admit(DeviceSpec::Cuda(Some(1)), 80 * 1024));
    assert!(
        !r.admit(DeviceSpec::Cuda(Some(0)), 8 * 1024),
        "too little memory"
    );
    assert!(!r.admit(DeviceSpec::Cpu, 1 << 20), "no GPU");
    assert!(Requirements::default().admit(DeviceSpec::Cpu, 0));
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
fn author_from_the_file_or_the_environment() {
    let g = parse(&format!("{PAPER}author: Ada Lovelace\n")).unwrap();
    let g = g.with_author_defaults(Some("env".into()), Some("ada@example.org".into()));
    assert_eq!(
        (g.author(), g.author_email()),
        ("Ada Lovelace", "ada@example.org")
    );
    let (msg, _, _) = err(&format!("{PAPER}author: \"a\\u0007b\"\n"));
    assert!(msg.contains("author") && msg.contains("printable"), "{msg}");
    // Grids stored before these fields existed still load.
    let old: Grid = serde_json::from_str(
        &serde_json::to_string(&parse(PAPER).unwrap())
            .unwrap()
            .replace(",\"author\":\"\",\"author_email\":\"\"", ""),
    )
    .unwrap();
    assert_eq!(old.author(), "");
}

#[test]
fn missing_file() {
    let e = Grid::from_file(Path::new("/nonexistent/grid.yaml")).unwrap_err();
    assert!(matches!(e, GridError::Read { .. }));
    assert!(e.to_string().contains("/nonexistent/grid.yaml"), "{e}");
}

/// Every grid in `examples/` is valid, and the paper's is the paper's: 6 activations × MNIST
/// (10 epochs, 98%) and CIFAR-10 (50 epochs, 87%).
#[test]
fn the_examples_are_valid_grids() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let g = Grid::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(!g.jobs().is_empty(), "{}", path.display());
            seen += 1;
        }
    }
    assert!(seen >= 4, "{seen} examples");
    let paper = Grid::from_file(&dir.join("paper.yaml")).unwrap();
    assert_eq!(paper.activations().len(), 6);
    let epochs: Vec<(u32, f64)> = paper
        .datasets()
        .iter()
        .map(|d| (d.epochs, d.target_accuracy))
        .collect();
    assert_eq!(epochs, [(10, 0.98), (50, 0.87)]);
}

/// What a new user tripped over: each message names the problem and what to do.
#[test]
fn messages_say_what_to_do() {
    let err = |text: &str| {
        Grid::parse(text, Path::new("g.yaml"))
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err("name = \"x\"\nactivations = [\"relu\"]\n[[datasets]]\ndataset = \"mnist\"\n"),
        "g.yaml:1:1: this is not a grid file: a grid is YAML, with `name:`, `activations:` and \
         `datasets:` at the top level (see examples/ and the grid.yaml reference in the manual)"
    );
    let unclosed = err("name: x\nactivations: [relu, tanh\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 1, target_accuracy: 0.9}\n");
    assert!(
        unclosed.starts_with("g.yaml:2:21: activations[1]: unknown variant `tanh datasets`"),
        "{unclosed}"
    );
    assert!(
        unclosed.ends_with("(is a `[` or `{` left unclosed on this line?)"),
        "{unclosed}"
    );
    assert_eq!(
        err("name: x\nactivations: [relu]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 1, target_accuracy: 0.9, train_limit: 100000}\n"),
        "g.yaml:4: datasets[0].train_limit: 100000 is more than the 60000 training images \
         mnist has (0 means all of them)"
    );
    assert_eq!(
        err("name: x\nactivations: [relu]\ndatasets:\n  - {dataset: cifar10, model: paper-cnn, epochs: 1, target_accuracy: 0.9, test_limit: 10001}\n"),
        "g.yaml:4: datasets[0].test_limit: 10001 is more than the 10000 test images cifar10 \
         has (0 means all of them)"
    );
    // The whole set is fine.
    Grid::parse(
        "name: x\nactivations: [relu]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 1, target_accuracy: 0.9, train_limit: 60000}\n",
        Path::new("g.yaml"),
    )
    .unwrap();
}

/// A grid that would expand past a million jobs is refused before anything is expanded.
#[test]
fn a_grid_of_more_than_a_million_jobs_is_refused() {
    let seeds: Vec<String> = (0..200_001).map(|s| s.to_string()).collect();
    let text = format!(
        "name: big\nactivations: [relu, tanh, selu, elu, gelu]\nseeds: [{}]\ndatasets:\n  - {{dataset: mnist, model: paper-cnn, epochs: 1, target_accuracy: 0.9}}\n",
        seeds.join(", ")
    );
    let err = Grid::parse(&text, Path::new("g.yaml"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "g.yaml: the grid expands to 1000005 jobs (datasets × activations × seeds); at most \
         1000000 are run from one grid: split it"
    );
}

#[test]
fn equivalence_margin_is_percentage_points_above_zero() {
    let base = "name: e\nactivations: [relu]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 1, target_accuracy: 0.9}\n";
    let g = Grid::parse(
        &format!("{base}equivalence_margin: 0.5\n"),
        Path::new("g.yaml"),
    )
    .unwrap();
    assert_eq!(g.equivalence_margin(), Some(0.5));
    assert_eq!(
        Grid::parse(base, Path::new("g.yaml"))
            .unwrap()
            .equivalence_margin(),
        None
    );
    for bad in ["0", "-1", "101", ".nan"] {
        let e = Grid::parse(
            &format!("{base}equivalence_margin: {bad}\n"),
            Path::new("g.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("g.yaml:5") && e.contains("equivalence_margin"),
            "{bad}: {e}"
        );
    }
}

#[test]
fn a_seed_race_expands_to_its_max_seeds_and_keeps_the_list_form_ids() {
    let raced = parse(&PAPER.replace("seeds: [0, 1]", "seeds: {min: 3, max: 10}")).unwrap();
    assert_eq!(raced.race(), Some(SeedRace { min: 3, max: 10 }));
    assert_eq!(raced.race().unwrap().looks(), 8);
    assert_eq!(raced.seeds(), (0..10).collect::<Vec<u64>>());
    assert_eq!(raced.job_count(), 60);
    // Seed 1 of the race is seed 1 of the list form: a raced grid reuses finished seeds.
    let listed = parse(PAPER).unwrap();
    assert!(listed.race().is_none());
    let ids: HashSet<_> = raced.jobs().into_iter().map(|j| j.id).collect();
    assert!(listed.jobs().iter().all(|j| ids.contains(&j.id)));
}

#[test]
fn a_bad_seed_race_is_refused_where_it_is() {
    for (race, says) in [
        ("{min: 1, max: 5}", "min: 1 is too few"),
        ("{min: 4, max: 3}", "max: 3 is below min: 4"),
        ("{min: 3, max: 5000}", "max: 5000 is more than 1000"),
        ("{min: 3, most: 5}", "unknown field `most`"),
        ("{min: 3}", "missing field `max`"),
        ("3", "a list of seeds ([0, 1, 2]) or a seed race"),
    ] {
        let (msg, line, _) = err(&PAPER.replace("[0, 1]", race));
        assert!(msg.contains(says), "{race}: {msg}");
        assert_eq!(line, Some(8), "{race}: {msg}");
    }
}
