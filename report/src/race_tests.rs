//! The race's rules on hand-made runs, and simulated races: does the seed race keep its
//! error rate, find what is there, and save seeds?

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::*;
use crate::significance::sim::{bound, normal, ACTIVATIONS, MEAN, SD, STUDIES};

const RACE: SeedRace = SeedRace { min: 3, max: 10 };

fn done(vs: &[f64]) -> Vec<Run> {
    vs.iter().map(|&v| Run::Done(Some(v))).collect()
}

/// Every activation's runs padded to `max` with seeds not yet run.
fn padded(mut runs: Vec<Vec<Run>>) -> Vec<Vec<Run>> {
    for r in &mut runs {
        r.resize(RACE.max as usize, Run::Waiting);
    }
    runs
}

#[test]
fn a_race_waits_for_its_first_seeds_then_gives_open_comparisons_one_more() {
    let mut runs = padded(vec![done(&[0.010, 0.011]), done(&[0.010, 0.011, 0.012])]);
    let r = replay(&runs, RACE, None);
    assert_eq!((r.looks, r.finished), (0, false));
    assert_eq!(r.seeds_released(), 6);
    runs[0][2] = Run::Done(Some(0.012));
    let r = replay(&runs, RACE, None);
    // Equal so far, and no margin: open; the best and the open one get a fourth seed.
    assert_eq!((r.looks, r.finished), (1, false));
    assert_eq!(r.entrants[0].seeds, 4);
    assert_eq!(r.entrants[1].seeds, 4);
    assert_eq!(r.max_looks, 8);
}

#[test]
fn an_activation_shown_worse_gets_no_more_seeds_and_the_race_ends() {
    let runs = padded(vec![
        done(&[0.010, 0.0101, 0.0099]),
        done(&[0.030, 0.0301, 0.0299]),
    ]);
    let r = replay(&runs, RACE, None);
    assert!(r.finished);
    assert_eq!(r.entrants[0].standing, Standing::Best);
    assert_eq!(r.entrants[1].standing, Standing::Worse);
    assert_eq!(r.entrants[1].decided_at_look, Some(1));
    assert_eq!(r.seeds_released(), 6);
}

#[test]
fn equivalence_within_the_margin_ends_a_race_too() {
    let runs = padded(vec![
        done(&[0.0100, 0.0101, 0.0099]),
        done(&[0.0101, 0.0100, 0.0102]),
    ]);
    let r = replay(&runs, RACE, Some(0.005));
    assert!(r.finished);
    assert_eq!(r.entrants[1].standing, Standing::Equivalent);
    // Without a margin the same runs stay open and take seeds.
    let r = replay(&runs, RACE, None);
    assert!(!r.finished);
    assert_eq!(r.seeds_released(), 8);
}

#[test]
fn a_race_stops_at_max_with_the_comparison_open() {
    let vals: Vec<f64> = (0..10).map(|i| 0.010 + 0.001 * f64::from(i % 3)).collect();
    let runs = vec![
        done(&vals),
        done(&vals.iter().rev().copied().collect::<Vec<_>>()),
    ];
    let r = replay(&runs, RACE, None);
    assert!(r.finished);
    assert_eq!(r.looks, 8);
    assert!(r.entrants.iter().all(|e| e.seeds == 10));
    assert!(r.entrants.iter().any(|e| e.standing == Standing::Open));
}

#[test]
fn runs_without_a_value_count_as_done() {
    let mut runs = padded(vec![done(&[0.010, 0.011, 0.012]), done(&[0.010, 0.011])]);
    runs[1][2] = Run::Done(None);
    let r = replay(&runs, RACE, None);
    assert_eq!(r.looks, 1);
}

// Simulated races: the studies of the fixed-seed simulations (six activations, MNIST-like
// error rates: mean 1.0%, sd 0.1 pp per seed), raced.

/// One study's runs, every seed up to `max` drawn (the race reads only those it releases);
/// the first activation `shift` sds worse.
fn study(rng: &mut StdRng, race: SeedRace, shift: f64) -> Vec<Vec<Run>> {
    (0..ACTIVATIONS)
        .map(|a| {
            let mean = MEAN + if a == 0 { shift * SD } else { 0.0 };
            (0..race.max)
                .map(|_| Run::Done(Some(mean + SD * normal(rng))))
                .collect()
        })
        .collect()
}

/// Over `STUDIES` simulated races: the share in which `found` held, and the mean seeds used
/// per activation.
fn simulate(
    seed: u64,
    race: SeedRace,
    shift: f64,
    margin: Option<f64>,
    found: impl Fn(&Race) -> bool,
) -> (f64, f64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut hits, mut seeds) = (0, 0u64);
    for _ in 0..STUDIES {
        let r = replay(&study(&mut rng, race, shift), race, margin);
        assert!(r.finished);
        hits += usize::from(found(&r));
        seeds += u64::from(r.seeds_released());
    }
    let per_activation = seeds as f64 / (STUDIES * ACTIVATIONS) as f64;
    (hits as f64 / STUDIES as f64, per_activation)
}

fn any_worse(r: &Race) -> bool {
    r.entrants.iter().any(|e| e.standing == Standing::Worse)
}

/// All six equal: a race calls one of them worse in at most α of studies, despite looking
/// after every round (printed: the rate and the seeds used, for 3–10 and 3–12 seeds).
#[test]
fn races_of_equal_activations_call_one_worse_in_at_most_alpha_of_studies() {
    for (i, race) in [RACE, SeedRace { min: 3, max: 12 }].into_iter().enumerate() {
        let (rate, seeds) = simulate(10 + i as u64, race, 0.0, None, any_worse);
        eprintln!(
            "race {}–{}, all equal: false 'worse' in {rate:.3} of studies, {seeds:.2} seeds \
             per activation",
            race.min, race.max
        );
        assert!(rate <= bound(), "{rate} > {}", bound());
    }
}

/// The same races with the fixed-sample test repeated at every look (α spent in full each
/// time) would not hold: the reason for spending α/K per look.
#[test]
fn the_fixed_sample_test_repeated_at_every_look_would_not_hold() {
    let mut rng = StdRng::seed_from_u64(12);
    let naive = SeedRace { min: 3, max: 3 };
    let mut hits = 0;
    for _ in 0..STUDIES {
        let runs = study(&mut rng, RACE, 0.0);
        // Look after 3, 4, ..., 10 seeds, each at level α: any false "worse" counts.
        let worse_at = |n: u32| {
            let cut: Vec<Vec<Run>> = runs.iter().map(|r| r[..n as usize].to_vec()).collect();
            any_worse(&replay(&cut, SeedRace { min: n, max: n }, None))
        };
        hits += usize::from((RACE.min..=RACE.max).any(worse_at));
    }
    let rate = hits as f64 / STUDIES as f64;
    eprintln!("fixed-sample test repeated over 8 looks: false 'worse' in {rate:.3} of studies");
    assert_eq!(naive.looks(), 1);
    assert!(rate > bound(), "{rate}");
}

/// One activation truly 3 sds worse: races of 3–10 seeds find it in at least 80% of studies,
/// and with a margin of 3 sds they settle the equal ones as equivalent and save seeds
/// (printed: power and seeds used).
#[test]
fn races_find_an_activation_three_sds_worse_and_save_seeds() {
    let found = |r: &Race| r.entrants[0].standing == Standing::Worse;
    let (power, seeds) = simulate(13, RACE, 3.0, None, found);
    eprintln!("race 3–10, one 3 sd worse: found in {power:.3}, {seeds:.2} seeds per activation");
    assert!(power >= 0.8, "{power}");
    let margin = Some(3.0 * SD);
    let (power, seeds) = simulate(14, RACE, 3.0, margin, found);
    let (equal, equal_seeds) = simulate(15, RACE, 0.0, margin, |r| {
        r.entrants.iter().all(|e| e.standing != Standing::Open)
    });
    eprintln!(
        "race 3–10, margin 3 sd: one 3 sd worse found in {power:.3} ({seeds:.2} seeds per \
         activation); all equal decided in {equal:.3} ({equal_seeds:.2} seeds)"
    );
    assert!(power >= 0.8, "{power}");
    assert!(equal_seeds < f64::from(RACE.max), "{equal_seeds}");
    // No false claim either way: equal ones called worse, or the worse one equivalent.
    let (false_worse, _) = simulate(16, RACE, 0.0, margin, any_worse);
    assert!(false_worse <= bound(), "{false_worse}");
}

/// The report of a decided race: what it decided, the jobs it saved, and the seeds it did
/// not need counted as such, in report.md and results.json.
#[test]
fn the_report_says_what_the_race_decided_and_saved() {
    let yaml = crate::fixtures::GRID.replace("seeds: [0, 1]", "seeds: {min: 2, max: 4}");
    let mut r = crate::fixtures::results_of(&yaml);
    for j in &mut r.jobs {
        if j.seed >= 2 {
            j.status = JobStatus::Pending;
        } else {
            let base = if j.activation == common::Activation::Tanh {
                0.15
            } else {
                0.05
            };
            j.error_rate = Some(base + 0.001 * j.seed as f64);
        }
    }
    let md = r.to_markdown();
    assert!(
        md.contains("0 not finished, 4 not needed (the seed race decided without them)"),
        "{md}"
    );
    assert!(
        md.contains("Seed race (2 to 4 seeds; each of at most 3 looks spends α/3"),
        "{md}"
    );
    assert!(md.contains("decided after 1 look(s)"), "{md}");
    assert!(
        md.contains("worse than the best, no more seeds: tanh (look 1, 2 seeds)"),
        "{md}"
    );
    assert!(
        md.contains("It ran 4 of 8 jobs: 4 saved against 4 seeds of every activation."),
        "{md}"
    );
    assert!(md.contains("and over the seed race's 3 looks"), "{md}");
    let html = r.to_html();
    assert!(
        html.contains("4 not needed (the seed race decided without them)"),
        "{html}"
    );
    assert!(html.contains("Seed race (2 to 4 seeds;"), "{html}");
    let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    let race = &json["races"][0];
    assert_eq!(race["jobs_saved"], 4, "{race}");
    assert_eq!(race["entrants"][1]["standing"], "worse", "{race}");
    assert!(json["comparisons"][0]["correction"]
        .as_str()
        .unwrap()
        .contains("times 3 looks of the seed race"));
}
