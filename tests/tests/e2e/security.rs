//! Input from the network is untrusted: a real gRPC client, as a buggy or hostile worker would
//! be, against the real coordinator.

use std::process::Command;

use integration_tests::bin;
use orchestrator_proto::client::worker_client;
use orchestrator_proto::v1 as pb;

use crate::support::waiting_coordinator;

fn metrics(epoch: u32, secs: f64, acc: f64) -> pb::EpochMetrics {
    pb::EpochMetrics {
        epoch,
        train_seconds: secs,
        train_loss: 0.5,
        test_loss: 0.5,
        test_accuracy: acc,
        ..Default::default()
    }
}

/// Every malformed metric is refused as INVALID_ARGUMENT naming the problem (not stored, not
/// an internal error carrying database text), while well-formed reports, and a retried one,
/// are accepted.
#[test]
fn malformed_metrics_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let grid = tmp.path().join("grid.yaml");
    std::fs::write(
        &grid,
        "name: hostile\nactivations: [relu]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 2, target_accuracy: 0.5}\n",
    )
    .unwrap();
    let (mut coord, port) = waiting_coordinator(&grid, tmp.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = worker_client(&format!("http://127.0.0.1:{port}"), None).unwrap();
        let register = |name: &str| pb::RegisterRequest {
            info: Some(pb::WorkerInfo {
                name: name.into(),
                device: "cpu".into(),
                slots: 1,
                ..Default::default()
            }),
        };
        // Control characters would reach terminals and logs: refused.
        let s = c.register(register("\u{1b}[2Jowned")).await.unwrap_err();
        assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
        // Printable but hostile where printed: escaped in the report and the CSV (below).
        let reg = c.register(register(HOSTILE)).await.unwrap().into_inner();
        let req = pb::LeaseJobRequest {
            worker_id: reg.worker_id.clone(),
            request_id: "1".into(),
        };
        let lease = c.lease_job(req).await.unwrap().into_inner().lease.unwrap();
        let job_id = lease.job.as_ref().unwrap().job_id.clone();
        let report = |m: pb::EpochMetrics| pb::ReportEpochRequest {
            worker_id: reg.worker_id.clone(),
            job_id: job_id.clone(),
            lease_id: lease.lease_id,
            metrics: Some(m),
        };
        for (bad, why) in [
            (metrics(1, 1.0, 1e300), "test_accuracy"),
            (metrics(1, 1.0, -0.5), "test_accuracy"),
            (metrics(1, 1.0, f64::NAN), "test_accuracy"),
            (metrics(1, f64::NEG_INFINITY, 0.5), "train_seconds"),
            (
                pb::EpochMetrics {
                    train_loss: f64::NAN,
                    ..metrics(1, 1.0, 0.5)
                },
                "train_loss",
            ),
            (metrics(3, 1.0, 0.5), "not in 1..=2"),
            (metrics(0, 1.0, 0.5), "not in 1..=2"),
            (metrics(2, 1.0, 0.5), "reported after epoch 0"),
        ] {
            let s = c.report_epoch(report(bad)).await.unwrap_err();
            assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
            assert!(s.message().contains(why), "{why}: {s:?}");
        }
        // Well-formed, and a retry of it (same epoch again), are accepted.
        for _ in 0..2 {
            let r = c.report_epoch(report(metrics(1, 1.0, 0.5))).await.unwrap();
            assert!(r.into_inner().accepted);
        }
        let s = c
            .report_epoch(report(metrics(2, 0.5, 0.6)))
            .await
            .unwrap_err();
        assert!(s.message().contains("went back"), "{s:?}");
        // A completion whose series repeats an epoch, or is short of a success, is refused.
        let complete =
            |epochs: Vec<pb::EpochMetrics>, outcome: pb::Outcome| pb::CompleteJobRequest {
                worker_id: reg.worker_id.clone(),
                job_id: job_id.clone(),
                lease_id: lease.lease_id,
                outcome: outcome as i32,
                device: "cpu".into(),
                epochs,
                latency_ms_per_sample: Some(0.1),
                ..Default::default()
            };
        let repeated = vec![metrics(1, 1.0, 0.5), metrics(1, 2.0, 0.6)];
        let s = c
            .complete_job(complete(repeated, pb::Outcome::Succeeded))
            .await
            .unwrap_err();
        assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
        let short = vec![metrics(1, 1.0, 0.5)];
        let s = c
            .complete_job(complete(short, pb::Outcome::Succeeded))
            .await
            .unwrap_err();
        assert!(s.message().contains("succeeded after 1"), "{s:?}");
        let mut bad_latency = complete(
            vec![metrics(1, 1.0, 0.5), metrics(2, 2.0, 0.6)],
            pb::Outcome::Succeeded,
        );
        bad_latency.latency_ms_per_sample = Some(f64::NEG_INFINITY);
        let s = c.complete_job(bad_latency).await.unwrap_err();
        assert!(s.message().contains("latency"), "{s:?}");
        // The honest completion goes through.
        let ok = complete(
            vec![metrics(1, 1.0, 0.5), metrics(2, 2.0, 0.6)],
            pb::Outcome::Succeeded,
        );
        assert!(c.complete_job(ok).await.unwrap().into_inner().accepted);
    });
    let _ = coord.kill();
    let _ = coord.wait();
    let text = std::fs::read_to_string(tmp.path().join("coordinator.log")).unwrap();
    assert!(text.contains("invalid metrics refused"), "{text}");
    // The worker's name, as printed: no formula in the CSV, no HTML or link in the Markdown.
    let out = tmp.path().join("rendered");
    let (status, _, stderr) = integration_tests::output(
        Command::new(bin("coordinator"))
            .args(["report", "--state"])
            .arg(tmp.path().join("out").join("state.db"))
            .arg("--out")
            .arg(&out),
    );
    assert!(status.success(), "{stderr}");
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert!(
        csv.contains("'=HYPERLINK(")
            && !csv.contains(",=HYPERLINK(")
            && !csv.contains("\"=HYPERLINK("),
        "{csv}"
    );
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("&lt;img") && !md.contains("<img") && !md.contains("[x]("),
        "{md}"
    );
}

/// A worker name that is printable and still hostile wherever it is printed.
const HOSTILE: &str = "=HYPERLINK(\"http://127.0.0.1:9/\") <img src=x> [x](http://127.0.0.1:9/)";

/// Serving where other machines can reach it needs a token (or `--insecure`, said out loud),
/// and a token file others can read is refused, naming the fix. Nothing starts then.
#[test]
fn no_silent_exposure_and_private_token_files() {
    let tmp = tempfile::tempdir().unwrap();
    let grid = tmp.path().join("grid.yaml");
    std::fs::write(
        &grid,
        "name: exposed\nactivations: [relu]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 1, target_accuracy: 0.5}\n",
    )
    .unwrap();
    let out = tmp.path().join("out");
    let run = |extra: &[&str]| {
        integration_tests::output(
            Command::new(bin("coordinator"))
                .arg("--grid")
                .arg(&grid)
                .arg("--out")
                .arg(&out)
                .args(["--local-workers", "0"])
                .args(extra),
        )
    };
    for args in [
        &["--listen", "0.0.0.0:0", "--http", "off"][..],
        &["--listen", "127.0.0.1:0", "--http", "0.0.0.0:0"][..],
    ] {
        let (status, _, stderr) = run(args);
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("--token-file")
                && stderr.contains("--insecure")
                && stderr.contains("0.0.0.0"),
            "{stderr}"
        );
        assert!(!out.exists(), "nothing started");
    }
    let token = tmp.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (status, _, stderr) = run(&[
        "--listen",
        "0.0.0.0:0",
        "--token-file",
        token.to_str().unwrap(),
    ]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("chmod 600") && stderr.contains(token.to_str().unwrap()),
        "{stderr}"
    );
    let (status, _, stderr) = integration_tests::output(
        Command::new(bin("worker"))
            .args(["--coordinator", "http://127.0.0.1:9", "--token-file"])
            .arg(&token),
    );
    assert!(
        !status.success() && stderr.contains("chmod 600"),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing started");
}
