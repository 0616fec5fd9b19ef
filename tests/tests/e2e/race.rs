//! Seed races end to end: the coordinator runs the first seeds, decides, and neither runs nor
//! plans the seeds the race did not need, again after a restart.

use std::process::Command;

use integration_tests::{bin, output};

use crate::support::{coordinator, fixture, jobs, read_json};

/// Two activations, seeds raced from 2 to 4 with a wide equivalence margin: after the first
/// look they are equivalent, so 4 jobs run and 4 are not needed; `results.json` says so, the
/// same command again runs nothing, and `plan` lists nothing to run.
#[test]
fn a_decided_race_runs_no_more_seeds() {
    let tmp = tempfile::tempdir().unwrap();
    let data = fixture(tmp.path());
    let grid = tmp.path().join("grid.yaml");
    std::fs::write(
        &grid,
        "name: race\nactivations: [relu, elu]\nseeds: {min: 2, max: 4}\nequivalence_margin: 60\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 2, target_accuracy: 0.5, test_limit: 200, latency_samples: 10}\n",
    )
    .unwrap();
    let out = tmp.path().join("out");
    let (status, _, stderr) = output(&mut coordinator(&grid, &out, &data));
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("2 succeeded") || stderr.contains("4 succeeded"),
        "{stderr}"
    );
    assert!(
        stderr.contains("the seed race decided without 4 seed(s)"),
        "{stderr}"
    );
    let results = read_json(&out.join("results.json"));
    let ran: Vec<u64> = jobs(&results)
        .iter()
        .filter(|j| j["status"] == "succeeded")
        .map(|j| j["seed"].as_u64().unwrap())
        .collect();
    assert_eq!(ran, [0, 1, 0, 1], "{results}");
    let race = &results["races"][0];
    assert_eq!(race["finished"], true, "{race}");
    assert_eq!(race["jobs_saved"], 4, "{race}");
    assert_eq!(race["entrants"][1]["standing"], "equivalent", "{race}");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains("4 not needed (the seed race decided without them)"),
        "{report}"
    );
    assert!(report.contains("It ran 4 of 8 jobs: 4 saved"), "{report}");

    // The same command again: nothing to run, the race is decided.
    let (status, _, stderr) = output(&mut coordinator(&grid, &out, &data));
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains("job started"), "{stderr}");
    let (status, plan, err) = output(
        Command::new(bin("coordinator"))
            .args(["plan", "--grid"])
            .arg(&grid)
            .arg("--state")
            .arg(out.join("state.db")),
    );
    assert!(status.success(), "{err}");
    assert!(
        plan.contains("\n8 jobs: 0 to run, 4 already done (4 succeeded), 4 not needed (the seed race of 2 to 4 seeds decided)"),
        "{plan}"
    );
}
