//! Workers on other hosts: an external worker authenticated by the bearer token.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use integration_tests::{bin, output, wait_exit};

use crate::support::{bound_ports, fixture, jobs, private_file, read_json};

#[test]
fn external_worker_with_token() {
    let tmp = tempfile::tempdir().unwrap();
    let data = fixture(tmp.path());
    let grid = tmp.path().join("grid.yaml");
    std::fs::write(
        &grid,
        "name: ext\nactivations: [tanh]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 1, target_accuracy: 0.5, train_limit: 1000, latency_samples: 10}\n",
    )
    .unwrap();
    let token = tmp.path().join("token");
    private_file(&token, "s3cret-t0ken-0123456\n");
    let wrong = tmp.path().join("wrong");
    private_file(&wrong, "n0pe-n0pe-n0pe-n0pe\n");
    let out = tmp.path().join("out");
    let log = tmp.path().join("coordinator.log");
    let mut coord = Command::new(bin("coordinator"))
        .args(["--local-workers", "0", "--listen", "127.0.0.1:0"])
        .args(["--http", "off"])
        .arg("--grid")
        .arg(&grid)
        .arg("--out")
        .arg(&out)
        .arg("--token-file")
        .arg(&token)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let (port, _) = bound_ports(&log, 0, false);
    let url = format!("http://127.0.0.1:{port}");
    // Operators apart from workers: the coordinator made an operators' token (mode 600) in
    // its output folder and said where; `status` on this machine finds it by itself; the
    // workers' token neither reads the grid nor cancels it.
    let operator = out.join("operator-token");
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(
        said.contains(&format!(
            "the operators' token (status, cancel, the live page) is in {}",
            std::path::absolute(&operator).unwrap().display()
        )),
        "{said}"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&operator).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (status, stdout, stderr) =
        output(Command::new(bin("coordinator")).args(["status", "--connect", &url]));
    assert!(status.success() && stdout.contains("grid ext:"), "{stderr}");
    for cmd in [vec!["status"], vec!["cancel", "--all"]] {
        let (status, _, stderr) = output(
            Command::new(bin("coordinator"))
                .args(&cmd)
                .args(["--connect", &url, "--token-file"])
                .arg(&token),
        );
        assert_eq!(status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("invalid bearer token (--token-file must hold the operators' token"),
            "{stderr}"
        );
    }
    let worker = |token: &Path| {
        let mut c = Command::new(bin("worker"));
        c.args([
            "--coordinator",
            &url,
            "--device",
            "cpu",
            "--name",
            "ext-worker",
        ])
        .arg("--data-dir")
        .arg(&data)
        .arg("--token-file")
        .arg(token);
        c
    };
    // A wrong token is refused, with a message that says so.
    let (status, _, stderr) = output(&mut worker(&wrong));
    assert!(!status.success());
    assert!(stderr.contains("token"), "{stderr}");
    // The right one works; the worker exits when the grid is done.
    let (status, _, stderr) = output(&mut worker(&token));
    assert!(status.success(), "{stderr}");
    let status = wait_exit(&mut coord, Duration::from_secs(60));
    assert!(status.success());
    let results = read_json(&out.join("results.json"));
    assert_eq!(jobs(&results)[0]["status"], "succeeded");
    assert!(jobs(&results)[0]["worker"]
        .as_str()
        .unwrap()
        .contains("ext-worker"));
}
