//! Operations: `/metrics` mid-grid (checked by Prometheus' own `promtool`), gRPC reflection
//! behind the token, and JSON logs, with the real binaries over loopback.

use std::process::{Command, Stdio};

use integration_tests::{bin, wait_exit};
use orchestrator_proto::v1 as pb;
use orchestrator_proto::BearerAuth;

use crate::support::{
    coordinator, fixture, private_file, register_request, waiting_coordinator_with, worker_rpc,
    Killed,
};

const GRID: &str = "name: ops\nactivations: [relu, tanh]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 2, target_accuracy: 0.5}\n";

/// A coordinator with a token, waiting for external workers: (child, gRPC port, HTTP port).
fn with_token(dir: &std::path::Path) -> (Killed, u16, u16) {
    let grid = dir.join("grid.yaml");
    std::fs::write(&grid, GRID).unwrap();
    let token = dir.join("token");
    private_file(&token, "0ps-t0ken-0123456789\n");
    let operator = dir.join("operator-token");
    private_file(&operator, "0ps-0perat0r-0123456\n");
    waiting_coordinator_with(
        &grid,
        dir,
        &[
            "--token-file",
            token.to_str().unwrap(),
            "--operator-token-file",
            operator.to_str().unwrap(),
        ],
    )
}

/// Mid-grid (a worker holds a lease and has reported an epoch), `/metrics` needs the token,
/// carries every documented metric with the state of the grid, and passes `promtool check
/// metrics` (Debian's `prometheus` package; that step is skipped, with a note, without it).
#[test]
#[cfg_attr(
    not(any(ci, have_promtool)),
    ignore = "needs promtool (Debian's prometheus package; scripts/test.sh installs it)"
)]
fn metrics_mid_grid_pass_promtool() {
    let tmp = tempfile::tempdir().unwrap();
    let (coord, grpc, http) = with_token(tmp.path());
    let url = format!("http://127.0.0.1:{grpc}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let reg = worker_rpc(&url, Some("0ps-t0ken-0123456789"), None)
            .register(register_request("probe"))
            .await
            .unwrap()
            .into_inner();
        let mut c = worker_rpc(&url, Some("0ps-t0ken-0123456789"), Some(&reg.session));
        let req = pb::LeaseJobRequest {
            worker_id: reg.worker_id.clone(),
            request_id: "1".into(),
        };
        let lease = c.lease_job(req).await.unwrap().into_inner().lease.unwrap();
        let m = pb::EpochMetrics {
            epoch: 1,
            train_seconds: 2.0,
            train_loss: 0.3,
            test_loss: 0.3,
            test_accuracy: 0.9,
            start_ms: 1_000_000,
            train_end_ms: 1_002_000,
            eval_end_ms: 1_002_500,
            ..Default::default()
        };
        let report = pb::ReportEpochRequest {
            worker_id: reg.worker_id,
            job_id: lease.job.unwrap().job_id,
            lease_id: lease.lease_id,
            metrics: Some(m),
        };
        assert!(c.report_epoch(report).await.unwrap().into_inner().accepted);
    });
    let page = format!("http://127.0.0.1:{http}/metrics");
    assert!(matches!(
        ureq::get(&page).call(),
        Err(ureq::Error::Status(401, _))
    ));
    // The workers' token does not open the page; the operators' does.
    assert!(matches!(
        ureq::get(&page)
            .set("Authorization", "Bearer 0ps-t0ken-0123456789")
            .call(),
        Err(ureq::Error::Status(401, _))
    ));
    let r = ureq::get(&page)
        .set("Authorization", "Bearer 0ps-0perat0r-0123456")
        .call()
        .unwrap();
    assert!(r.content_type().starts_with("text/plain"));
    let text = r.into_string().unwrap();
    for line in [
        "dlgrid_jobs{state=\"running\"} 1",
        "dlgrid_jobs{state=\"pending\"} 1",
        "dlgrid_workers_connected{device=\"cpu\"} 1",
        "dlgrid_epochs_reported_total 1",
        "dlgrid_epoch_duration_seconds_sum 2.5",
        "dlgrid_rpc_duration_seconds_count{method=\"LeaseJob\"} 1",
        "dlgrid_rpc_duration_seconds_count{method=\"Register\"} 1",
        "dlgrid_leases_expired_total 0",
        "dlgrid_checkpoint_bytes_stored_total 0",
        "dlgrid_worker_calls_denied_total 0",
        "dlgrid_build_info{version=",
    ] {
        assert!(text.contains(line), "{line} missing in:\n{text}");
    }
    drop(coord);
    let Ok(mut promtool) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        crate::support::missing("promtool (Debian's prometheus package)")
    };
    use std::io::Write;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// gRPC reflection lists the services (what `grpcurl -H 'authorization: Bearer …' HOST:PORT
/// list` asks), with the token; without it, nothing.
#[test]
fn reflection_lists_the_services_behind_the_token() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let tmp = tempfile::tempdir().unwrap();
    let (coord, grpc, _) = with_token(tmp.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let list = |token: Option<&'static str>| {
        rt.block_on(async move {
            let channel =
                tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{grpc}"))
                    .unwrap()
                    .connect()
                    .await
                    .unwrap();
            let mut c =
                ServerReflectionClient::with_interceptor(channel, BearerAuth::new(token).unwrap());
            let req = ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            };
            let mut answers = c
                .server_reflection_info(tokio_stream::iter([req]))
                .await?
                .into_inner();
            let first = answers.message().await?.expect("an answer");
            match first.message_response {
                Some(MessageResponse::ListServicesResponse(l)) => {
                    Ok(l.service.into_iter().map(|s| s.name).collect::<Vec<_>>())
                }
                other => panic!("{other:?}"),
            }
        })
    };
    let services = list(Some("0ps-t0ken-0123456789")).unwrap();
    for s in [
        "orchestrator.v1.WorkerService",
        "orchestrator.v1.ControlService",
        "grpc.health.v1.Health",
    ] {
        assert!(services.iter().any(|x| x == s), "{s} not in {services:?}");
    }
    let refused: tonic::Status = list(None).unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    drop(coord);
}

/// A log format or idle time that does not exist is a usage error naming the flag (exit 2).
#[test]
fn bad_log_format_and_idle_time_are_refused() {
    for (binary, args, why) in [
        ("coordinator", &["--log-format", "yaml"][..], "text or json"),
        ("worker", &["--log-format", "yaml"][..], "text or json"),
        (
            "coordinator",
            &["--idle-seconds", "0"][..],
            "--idle-seconds",
        ),
    ] {
        let (status, _, stderr) = integration_tests::output(Command::new(bin(binary)).args(args));
        assert_eq!(status.code(), Some(2), "{binary} {args:?}: {stderr}");
        assert!(stderr.contains(why), "{binary} {args:?}: {stderr}");
    }
}

/// `--log-format json`: every line the coordinator and its local worker write is one JSON
/// object with timestamp, level, target and message.
#[test]
fn json_logs_parse_line_by_line() {
    let tmp = tempfile::tempdir().unwrap();
    let data = fixture(tmp.path());
    let grid = tmp.path().join("grid.yaml");
    std::fs::write(
        &grid,
        "name: jsonlogs\nactivations: [tanh]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 1, target_accuracy: 0.5, test_limit: 200, latency_samples: 10}\n",
    )
    .unwrap();
    let out = tmp.path().join("out");
    let log = tmp.path().join("coordinator.log");
    let mut child = coordinator(&grid, &out, &data)
        .args(["--log-format", "json"])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut child, std::time::Duration::from_secs(120));
    let coordinator_log = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{coordinator_log}");
    let worker_log = std::fs::read_to_string(out.join("logs").join("worker-0.log")).unwrap();
    let mut messages = Vec::new();
    for (name, text) in [("coordinator", &coordinator_log), ("worker", &worker_log)] {
        assert!(!text.trim().is_empty(), "{name} wrote nothing");
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {line}"));
            for key in ["timestamp", "level", "target", "message"] {
                assert!(v.get(key).is_some(), "{name}: no {key} in {line}");
            }
            messages.push(v["message"].as_str().unwrap().to_string());
        }
    }
    assert!(messages.iter().any(|m| m == "job finished"), "{messages:?}");
    assert!(messages.iter().any(|m| m == "registered"), "{messages:?}");
}

/// On a terminal (the coordinator run under `script`, which gives it one), a live display
/// replaces the log lines: the grid's bar with jobs done of all and a line per running job
/// with its worker and epoch; the final summary follows.
#[test]
#[cfg_attr(not(any(ci, have_script)), ignore = "needs script (util-linux)")]
fn a_terminal_gets_the_live_display() {
    let tmp = tempfile::tempdir().unwrap();
    let data = fixture(tmp.path());
    let grid = tmp.path().join("grid.yaml");
    std::fs::write(
        &grid,
        "name: tty\nactivations: [relu, tanh]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 3, target_accuracy: 0.5, test_limit: 200, latency_samples: 10}\n",
    )
    .unwrap();
    let out = tmp.path().join("out");
    let quote = |p: &std::path::Path| format!("'{}'", p.display());
    let cmdline = format!(
        "{} --grid {} --out {} --data-dir {} --device cpu --listen 127.0.0.1:0 --http off",
        quote(&bin("coordinator")),
        quote(&grid),
        quote(&out),
        quote(&data)
    );
    let Ok(o) = Command::new("script")
        .args(["-qefc", &cmdline, "/dev/null"])
        .env_remove("RUST_LOG")
        .env("WORKER_BIN", bin("worker"))
        .env("COLUMNS", "160")
        .output()
    else {
        crate::support::missing("script (util-linux)")
    };
    let screen = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{screen}");
    assert!(
        screen.contains("] 0/2 jobs"),
        "no bar at the start:\n{screen}"
    );
    assert!(
        screen.contains("] 2/2 jobs"),
        "no bar at the end:\n{screen}"
    );
    assert!(
        screen.contains("mnist-paper-cnn-")
            && screen.contains("local-0/cpu")
            && screen.contains("epoch "),
        "no running-job line:\n{screen}"
    );
    assert!(screen.contains("grid finished: 2 succeeded"), "{screen}");
    assert!(
        !screen.contains(" INFO "),
        "log lines under the display:\n{screen}"
    );
}

/// A worker pointed at the wrong port says so, with the URL and what to check, at its first
/// attempt and again while it waits: at a closed port, that nothing accepts connections there;
/// at the live page's port, that it does not speak gRPC and which port does.
#[test]
fn a_worker_at_the_wrong_port_says_what_to_check() {
    let tmp = tempfile::tempdir().unwrap();
    let grid = tmp.path().join("grid.yaml");
    std::fs::write(
        &grid,
        "name: ports\nactivations: [relu]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 1, target_accuracy: 0.5}\n",
    )
    .unwrap();
    let (_coord, _grpc, http) = crate::support::waiting_coordinator_with(&grid, tmp.path(), &[]);
    // A port nothing listens on: one the system gave and took back.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for (port, words) in [
        (
            closed,
            "tcp connect error (nothing accepts connections there: is the coordinator running, and is this its --listen address?)",
        ),
        (
            http,
            "(this port does not speak gRPC: is it the live page's, --http, default 50052? Workers connect to the coordinator's --listen port, default 50051)",
        ),
    ] {
        let url = format!("http://127.0.0.1:{port}");
        let log = tmp.path().join(format!("worker-{port}.log"));
        let worker = crate::support::Killed(
            Command::new(bin("worker"))
                .args(["--coordinator", &url, "--device", "cpu"])
                .env_remove("RUST_LOG")
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap(),
        );
        let said = || std::fs::read_to_string(&log).unwrap_or_default();
        integration_tests::wait_until(std::time::Duration::from_secs(20), "the worker's second line", || {
            said().matches("waiting for the coordinator").count() >= 2
        });
        drop(worker);
        let said = said();
        assert!(said.contains(&format!("register with {url}")), "{said}");
        assert!(said.contains(words), "{said}");
    }
}
