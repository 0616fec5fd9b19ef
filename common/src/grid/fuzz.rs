//! Property tests of the grid parser: whatever the text (arbitrary, or the paper's grid cut,
//! spliced and with extreme numbers), parsing never panics, an error names the file, and a grid
//! that parses expands into jobs with checked, distinct ids. Cases: `PROPTEST_CASES` (256 by
//! default), so CI runs a bounded number.

use std::path::Path;

use proptest::prelude::*;

use super::Grid;

const BASE: &str = "\
name: fuzz
activations: [relu, tanh]
datasets:
  - {dataset: mnist, model: paper-cnn, epochs: 2, target_accuracy: 0.98, train_limit: 100}
  - dataset: cifar10
    model: vgg11-bn
    epochs: 50
    target_accuracy: 0.87
seeds: [0, 1]
training: {optimizer: adam, learning_rate: 0.001, batch_size: 128}
cost_per_hour: 3.06
retries: 1
";

/// Tokens that stress the parser where they land: numbers at the edges, YAML structure,
/// control and multi-byte characters.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("-1".to_string()),
        Just("1e309".to_string()),
        Just(".nan".to_string()),
        Just("18446744073709551616".to_string()),
        Just("0".to_string()),
        // Brackets and braces as code points, so brace-counting tools read this file right.
        Just(char::from(0x5b).to_string()),
        Just(char::from(0x7b).to_string()),
        Just(": ".to_string()),
        Just("\n  - ".to_string()),
        Just("&a *a".to_string()),
        Just("!!binary".to_string()),
        Just("\u{1b}[2J".to_string()),
        Just("é✓".to_string()),
        "[a-z_]{1,12}",
        any::<u32>().prop_map(|n| n.to_string()),
    ]
}

/// The base grid with `cuts` replaced by tokens: (position, length to delete, token).
fn mutated() -> impl Strategy<Value = String> {
    prop::collection::vec((0..BASE.len(), 0..12usize, token()), 1..6).prop_map(|cuts| {
        let mut s = BASE.to_string();
        for (at, len, tok) in cuts {
            let at = floor_char(&s, at.min(s.len()));
            let end = floor_char(&s, (at + len).min(s.len()));
            s.replace_range(at..end, &tok);
        }
        s
    })
}

fn floor_char(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn check(text: &str) {
    match Grid::parse(text, Path::new("fuzz.yaml")) {
        Ok(g) => {
            let cells = g.activations().len() * g.datasets().len() * g.seeds().len();
            assert!(cells > 0, "a grid without jobs parsed: {text:?}");
            if cells <= 10_000 {
                let jobs = g.jobs();
                let mut ids: Vec<_> = jobs.iter().map(|j| j.id.clone()).collect();
                ids.sort();
                ids.dedup();
                assert_eq!(ids.len(), jobs.len(), "duplicate job ids from {text:?}");
                for j in &jobs {
                    assert!(
                        j.spec.epochs >= 1 && j.target_accuracy > 0.0 && j.target_accuracy <= 1.0
                    );
                }
            }
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("fuzz.yaml"), "error without the file: {msg}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
        check(&text);
    }

    #[test]
    fn mutated_grids_never_panic(text in mutated()) {
        check(&text);
    }
}

#[test]
fn the_base_grid_parses() {
    let g = Grid::parse(BASE, Path::new("fuzz.yaml")).unwrap();
    assert_eq!(g.jobs().len(), 8);
}

#[test]
fn repeated_cells_are_checked() {
    for text in [
        BASE.replace("seeds: [0, 1]", "seeds: [0, 0]"),
        BASE.replace("[relu, tanh]", "[relu, relu]"),
    ] {
        check(&text);
    }
}
