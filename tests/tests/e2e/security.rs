//! Input from the network is untrusted: a real gRPC client, as a buggy or hostile worker would
//! be, against the real coordinator.

use std::process::Command;

use integration_tests::bin;
use orchestrator_proto::client::WorkerClient;
use orchestrator_proto::v1 as pb;

use crate::support::{
    register_request as register, waiting_coordinator, waiting_coordinator_with, worker_rpc,
};

/// A worker's client with no session yet (for Register), and the same with `session`.
fn client(url: &str, session: Option<&str>) -> WorkerClient {
    worker_rpc(url, None, session)
}

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
        let url = format!("http://127.0.0.1:{port}");
        let mut c = client(&url, None);
        // Control characters would reach terminals and logs: refused.
        let s = c.register(register("\u{1b}[2Jowned")).await.unwrap_err();
        assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
        // Printable but hostile where printed: escaped in the report and the CSV (below).
        let reg = c.register(register(HOSTILE)).await.unwrap().into_inner();
        let mut c = client(&url, Some(&reg.session));
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
            (
                pb::EpochMetrics {
                    contention: Some(-1.0),
                    cpu_seconds: Some(1.0),
                    ..metrics(1, 1.0, 0.5)
                },
                "contention",
            ),
        ] {
            let s = c.report_epoch(report(bad)).await.unwrap_err();
            assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
            assert!(s.message().contains(why), "{why}: {s:?}");
        }
        // Batched, each bad report is refused alone, naming its problem, beside a good one.
        let bad = [
            (metrics(1, 1.0, f64::NAN), "test_accuracy"),
            (metrics(3, 1.0, 0.5), "not in 1..=2"),
        ];
        let reports = vec![
            report(bad[0].0),
            report(metrics(1, 1.0, 0.5)),
            report(bad[1].0),
        ];
        let results = c
            .report_epochs(pb::ReportEpochsRequest { reports })
            .await
            .unwrap()
            .into_inner()
            .results;
        assert_eq!(results.len(), 3);
        assert!(results[1].accepted && results[1].invalid.is_empty());
        for (r, (_, why)) in [&results[0], &results[2]].into_iter().zip(bad) {
            assert!(!r.accepted && r.invalid.contains(why), "{why}: {r:?}");
        }
        let reports = vec![report(metrics(1, 1.0, 0.5)); 257];
        let s = c
            .report_epochs(pb::ReportEpochsRequest { reports })
            .await
            .unwrap_err();
        assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
        assert!(s.message().contains("at most 256"), "{s:?}");
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
    std::fs::write(&token, "s3cret-t0ken-0123456\n").unwrap();
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

/// A lease is its worker's: another registered worker, a call without the session or with
/// someone else's, and an id never registered are all refused (PERMISSION_DENIED), logged and
/// counted, whatever they try (report, upload, download, complete, hand back); lease ids are
/// not guessable from one another; the honest worker's job is untouched and completes.
#[test]
fn leases_are_bound_to_their_worker() {
    let tmp = tempfile::tempdir().unwrap();
    let grid = tmp.path().join("grid.yaml");
    std::fs::write(
        &grid,
        "name: bound\nactivations: [relu, tanh]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 1, target_accuracy: 0.5}\n",
    )
    .unwrap();
    let (mut coord, port) = waiting_coordinator(&grid, tmp.path());
    let url = format!("http://127.0.0.1:{port}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let denied = rt.block_on(async {
        let honest = client(&url, None)
            .register(register("honest"))
            .await
            .unwrap()
            .into_inner();
        let thief = client(&url, None)
            .register(register("thief"))
            .await
            .unwrap()
            .into_inner();
        let mut a = client(&url, Some(&honest.session));
        let mut b = client(&url, Some(&thief.session));
        let lease_req = |w: &pb::RegisterResponse, r: &str| pb::LeaseJobRequest {
            worker_id: w.worker_id.clone(),
            request_id: r.into(),
        };
        let la = a
            .lease_job(lease_req(&honest, "a1"))
            .await
            .unwrap()
            .into_inner()
            .lease
            .unwrap();
        let lb = b
            .lease_job(lease_req(&thief, "b1"))
            .await
            .unwrap()
            .into_inner()
            .lease
            .unwrap();
        // Unguessable: the low 32 bits are random, so one lease id says nothing of the next.
        assert!(la.lease_id > u64::from(u32::MAX) && lb.lease_id > la.lease_id);
        assert_ne!((lb.lease_id as u32).wrapping_sub(la.lease_id as u32), 1);
        let job = la.job.as_ref().unwrap().job_id.clone();
        let epoch = |worker: &str| pb::ReportEpochRequest {
            worker_id: worker.into(),
            job_id: job.clone(),
            lease_id: la.lease_id,
            metrics: Some(metrics(1, 1.0, 1.0)),
        };
        let mut refusals = 0;
        let mut refused = |s: tonic::Status, what: &str| {
            assert_eq!(s.code(), tonic::Code::PermissionDenied, "{what}: {s:?}");
            refusals += 1;
        };
        // Another worker, with its own valid session, on the honest worker's lease.
        refused(
            b.report_epoch(epoch(&thief.worker_id)).await.unwrap_err(),
            "report",
        );
        // Batched: one foreign lease, or another worker's id, refuses the whole call.
        let own = pb::ReportEpochRequest {
            lease_id: lb.lease_id,
            job_id: lb.job.as_ref().unwrap().job_id.clone(),
            ..epoch(&thief.worker_id)
        };
        for (reports, what) in [
            (
                vec![own.clone(), epoch(&thief.worker_id)],
                "batch with a foreign lease",
            ),
            (
                vec![own.clone(), epoch(&honest.worker_id)],
                "batch as two workers",
            ),
        ] {
            let batch = pb::ReportEpochsRequest { reports };
            refused(b.report_epochs(batch).await.unwrap_err(), what);
        }
        let complete = pb::CompleteJobRequest {
            worker_id: thief.worker_id.clone(),
            job_id: job.clone(),
            lease_id: la.lease_id,
            outcome: pb::Outcome::Succeeded as i32,
            device: "cpu".into(),
            epochs: vec![metrics(1, 1.0, 1.0)],
            latency_ms_per_sample: Some(0.1),
            ..Default::default()
        };
        refused(
            b.complete_job(complete.clone()).await.unwrap_err(),
            "complete",
        );
        let release = pb::ReleaseJobRequest {
            worker_id: thief.worker_id.clone(),
            job_id: job.clone(),
            lease_id: la.lease_id,
        };
        refused(b.release_job(release).await.unwrap_err(), "release");
        let chunk = pb::CheckpointChunk {
            worker_id: thief.worker_id.clone(),
            job_id: job.clone(),
            lease_id: la.lease_id,
            epoch: 1,
            data: b"forged".to_vec(),
        };
        let upload = b.upload_checkpoint(tokio_stream::iter(vec![chunk])).await;
        refused(upload.unwrap_err(), "upload");
        let download = pb::DownloadCheckpointRequest {
            worker_id: thief.worker_id.clone(),
            job_id: job.clone(),
            lease_id: la.lease_id,
        };
        refused(
            b.download_checkpoint(download).await.unwrap_err(),
            "download",
        );
        // The honest worker's id with the thief's session, with none, and an id never issued.
        refused(
            b.report_epoch(epoch(&honest.worker_id)).await.unwrap_err(),
            "borrowed id",
        );
        let mut none = client(&url, None);
        refused(
            none.report_epoch(epoch(&honest.worker_id))
                .await
                .unwrap_err(),
            "no session",
        );
        refused(
            none.report_epoch(epoch("w99")).await.unwrap_err(),
            "unregistered",
        );
        refused(
            none.lease_job(lease_req(&honest, "x")).await.unwrap_err(),
            "lease as another",
        );
        let beat = pb::HeartbeatRequest {
            worker_id: honest.worker_id.clone(),
            lease_ids: vec![la.lease_id],
        };
        refused(b.heartbeat(beat).await.unwrap_err(), "heartbeat as another");
        // The honest worker is unaffected: its report and completion are accepted.
        assert!(
            a.report_epoch(epoch(&honest.worker_id))
                .await
                .unwrap()
                .into_inner()
                .accepted
        );
        let mine = pb::CompleteJobRequest {
            worker_id: honest.worker_id.clone(),
            ..complete
        };
        assert!(a.complete_job(mine).await.unwrap().into_inner().accepted);
        refusals
    });
    // Counted, and shown to the operator.
    let (status, stdout, stderr) =
        integration_tests::output(Command::new(bin("coordinator")).args([
            "status",
            "--connect",
            &url,
        ]));
    assert!(status.success(), "{stderr}");
    assert!(
        stdout.contains(&format!("{denied} worker call(s) refused")),
        "{stdout}"
    );
    let _ = coord.kill();
    let _ = coord.wait();
    let log = std::fs::read_to_string(tmp.path().join("coordinator.log")).unwrap();
    let refused_lines = log
        .lines()
        .filter(|l| l.contains("worker call refused"))
        .count();
    assert_eq!(refused_lines, denied, "{log}");
    assert!(log.contains("peer=\"127.0.0.1:"), "{log}");
    assert!(log.contains("is held by another worker"), "{log}");
}

/// Registering is rate-limited per address: a flood is answered RESOURCE_EXHAUSTED after a
/// burst, while the coordinator keeps serving.
#[test]
fn registration_floods_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let grid = tmp.path().join("grid.yaml");
    std::fs::write(
        &grid,
        "name: flood\nactivations: [relu]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 1, target_accuracy: 0.5}\n",
    )
    .unwrap();
    let (mut coord, port) = waiting_coordinator(&grid, tmp.path());
    let url = format!("http://127.0.0.1:{port}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (ok, limited) = rt.block_on(async {
        let mut c = client(&url, None);
        let (mut ok, mut limited) = (0, 0);
        for i in 0..100 {
            match c.register(register(&format!("flood-{i}"))).await {
                Ok(_) => ok += 1,
                Err(s) if s.code() == tonic::Code::ResourceExhausted => limited += 1,
                Err(s) => panic!("{s:?}"),
            }
        }
        (ok, limited)
    });
    let _ = coord.kill();
    let _ = coord.wait();
    assert!(
        // A burst of 32, then 2 a second: however slow this machine, most of the 100 are
        // refused.
        ok >= 32 && limited >= 30,
        "{ok} accepted, {limited} limited"
    );
}

/// With a token, the live page needs it (bearer header, or the cookie its login form sets:
/// HttpOnly, SameSite=Strict), and every answer forbids scripts, framing and sniffing.
#[test]
fn the_live_page_needs_the_token() {
    let tmp = tempfile::tempdir().unwrap();
    let grid = tmp.path().join("grid.yaml");
    std::fs::write(
        &grid,
        "name: page\nactivations: [relu]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 1, target_accuracy: 0.5}\n",
    )
    .unwrap();
    let token = tmp.path().join("token");
    crate::support::private_file(&token, "w0rker-s3cret-012345\n");
    let operator = tmp.path().join("operator");
    crate::support::private_file(&operator, "pag3-s3cret-0123456\n");
    let (coord, _, http) = waiting_coordinator_with(
        &grid,
        tmp.path(),
        &[
            "--token-file",
            token.to_str().unwrap(),
            "--operator-token-file",
            operator.to_str().unwrap(),
        ],
    );
    let base = format!("http://127.0.0.1:{http}");
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let status = |r: Result<ureq::Response, ureq::Error>| match r {
        Ok(r) => (r.status(), r),
        Err(ureq::Error::Status(code, r)) => (code, r),
        Err(e) => panic!("{e}"),
    };
    let (code, r) = status(agent.get(&format!("{base}/results.json")).call());
    assert_eq!(code, 401);
    let (code, _) = status(agent.get(&format!("{base}/healthz")).call());
    assert_eq!(code, 200, "probes need no token");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let (code, r) = status(agent.get(&format!("{base}/")).call());
    assert_eq!(code, 401);
    let csp = r
        .header("content-security-policy")
        .unwrap_or("")
        .to_string();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert!(r
        .into_string()
        .unwrap()
        .contains("<form method=\"post\" action=\"/login\">"));
    for wrong in ["Bearer wrong", "Bearer w0rker-s3cret-012345"] {
        let (code, _) = status(
            agent
                .get(&format!("{base}/results.json"))
                .set("Authorization", wrong)
                .call(),
        );
        assert_eq!(code, 401, "{wrong}: the workers' token is no operator's");
    }
    let (code, r) = status(
        agent
            .get(&format!("{base}/results.json"))
            .set("Authorization", "Bearer pag3-s3cret-0123456")
            .call(),
    );
    assert_eq!(code, 200);
    assert!(r.into_string().unwrap().contains("\"jobs\""));
    let (code, _) = status(
        agent
            .post(&format!("{base}/login"))
            .send_form(&[("token", "nope")]),
    );
    assert_eq!(code, 401);
    let (code, r) = status(
        agent
            .post(&format!("{base}/login"))
            .send_form(&[("token", "pag3-s3cret-0123456")]),
    );
    assert_eq!(code, 303);
    let cookie = r.header("set-cookie").unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && !cookie.contains("pag3-s3cret-0123456"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap();
    let (code, r) = status(agent.get(&format!("{base}/")).set("Cookie", pair).call());
    assert_eq!(code, 200);
    assert!(r.into_string().unwrap().contains("DAWNBench-style report"));
    drop(coord);
}

/// Connections that send nothing (idle gRPC connections, half-sent HTTP requests) are closed
/// after `--idle-seconds`, on both ports, instead of being held for as long as a client likes.
#[test]
fn silent_connections_are_closed() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let grid = tmp.path().join("grid.yaml");
    std::fs::write(
        &grid,
        "name: idle\nactivations: [relu]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 1, target_accuracy: 0.5}\n",
    )
    .unwrap();
    let (coord, grpc, http) = waiting_coordinator_with(&grid, tmp.path(), &["--idle-seconds", "2"]);
    let started = std::time::Instant::now();
    let mut conns = Vec::new();
    for i in 0..20 {
        let port = if i % 2 == 0 { grpc } else { http };
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        if i % 2 == 1 {
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
        }
        s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        conns.push(s);
    }
    for mut s in conns {
        let mut buf = [0u8; 64];
        // Closed by the server: end of stream (or a reset), not our 20 s read timeout.
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("still open after {:?}: {e}", started.elapsed()),
            }
        }
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
    drop(coord);
}
