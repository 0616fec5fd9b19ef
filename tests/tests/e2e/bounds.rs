//! What one peer can hold, against the real coordinator: connections under the process's
//! open-file limit, leases within the slots a worker declared, lease request ids that are
//! short and a worker's own.

use std::process::Command;
use std::time::{Duration, Instant};

use integration_tests::{bin, output};
use orchestrator_proto::v1 as pb;

use crate::support::{bound_ports, register_request, waiting_coordinator, worker_rpc, Killed};

const GRID: &str = "name: bounds\nactivations: [relu, tanh, elu]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 2, target_accuracy: 0.5}\n";

/// CPU seconds (user + system) that process `pid` has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces), from field 3 on.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// 300 idle connections against a coordinator limited to 256 open files: it caps the gRPC
/// port below the limit (and says so), refuses the rest without spinning, keeps serving the
/// page, and serves status again as soon as they close. (With the cap at 4,096 above a
/// 1,024 limit, `accept` failed for want of descriptors and the loop spun at full CPU.)
#[test]
fn idle_connections_past_the_file_limit_neither_spin_nor_starve() {
    let tmp = tempfile::tempdir().unwrap();
    let grid = tmp.path().join("grid.yaml");
    std::fs::write(&grid, GRID).unwrap();
    let log = tmp.path().join("coordinator.log");
    let coord = Command::new("bash")
        .arg("-c")
        .arg("ulimit -n 256 && exec \"$0\" \"$@\"")
        .arg(bin("coordinator"))
        .arg("--grid")
        .arg(&grid)
        .arg("--out")
        .arg(tmp.path().join("out"))
        .args(["--local-workers", "0", "--listen", "127.0.0.1:0"])
        .args(["--http", "127.0.0.1:0"])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let coord = Killed(coord);
    let (grpc, http) = bound_ports(&log, 0, true);
    let http = http.unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let capped = text.lines().find(|l| l.contains("connections capped"));
    assert!(
        capped.is_some_and(|l| l.contains("open_file_limit=256") && l.contains("grpc=96")),
        "{text}"
    );
    let idle: Vec<_> = (0..300)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", grpc)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let before = cpu_seconds(coord.0.id());
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_seconds(coord.0.id()) - before;
    assert!(used < 0.5, "{used:.2} CPU seconds in 2 s while idle");
    let health = ureq::get(&format!("http://127.0.0.1:{http}/healthz")).call();
    assert_eq!(health.map(|r| r.status()).ok(), Some(200));
    let text = std::fs::read_to_string(&log).unwrap();
    let refused: Vec<_> = text
        .lines()
        .filter(|l| l.contains("connection refused: as many open as the cap allows"))
        .collect();
    assert_eq!(refused.len(), 1, "said once, not per connection: {text}");
    assert!(refused[0].contains("total_cap=96"), "{}", refused[0]);
    drop(idle);
    let url = format!("http://127.0.0.1:{grpc}");
    let started = Instant::now();
    loop {
        let (s, out, err) =
            output(Command::new(bin("coordinator")).args(["status", "--connect", &url]));
        if s.success() && out.contains("grid bounds:") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "status after the connections closed: {out}{err}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn lease_req(worker: &str, request: &str) -> pb::LeaseJobRequest {
    pb::LeaseJobRequest {
        worker_id: worker.into(),
        request_id: request.into(),
    }
}

/// A one-slot worker gets one lease (its retried request gets it back, a second request
/// nothing); another worker replaying the same request id gets a lease of its own; a request
/// id longer than 128 bytes is refused. (One slot held five leases, and B replaying A's
/// `w1/0` got A's lease id; 3 MiB ids were kept forever.)
#[test]
fn leases_stay_within_slots_and_request_ids_are_a_workers_own() {
    let tmp = tempfile::tempdir().unwrap();
    let grid = tmp.path().join("grid.yaml");
    std::fs::write(&grid, GRID).unwrap();
    let (coord, port) = waiting_coordinator(&grid, tmp.path());
    let _coord = Killed(coord);
    let url = format!("http://127.0.0.1:{port}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut anon = worker_rpc(&url, None, None);
        let a = anon.register(register_request("a")).await.unwrap();
        let a = a.into_inner();
        let b = anon.register(register_request("b")).await.unwrap();
        let b = b.into_inner();
        let mut ca = worker_rpc(&url, None, Some(&a.session));
        let mut cb = worker_rpc(&url, None, Some(&b.session));
        let lease = |c: &mut orchestrator_proto::client::WorkerClient, w: &str, r: &str| {
            let mut c = c.clone();
            let req = lease_req(w, r);
            async move { c.lease_job(req).await.map(|r| r.into_inner().lease) }
        };
        let first = lease(&mut ca, &a.worker_id, "w1/0").await.unwrap().unwrap();
        let again = lease(&mut ca, &a.worker_id, "w1/0").await.unwrap().unwrap();
        assert_eq!(again.lease_id, first.lease_id, "a retried request");
        let second = lease(&mut ca, &a.worker_id, "w1/1").await.unwrap();
        assert!(second.is_none(), "a second lease on one slot: {second:?}");
        let theirs = lease(&mut cb, &b.worker_id, "w1/0").await.unwrap().unwrap();
        assert_ne!(theirs.lease_id, first.lease_id, "B got A's lease");
        let long = "x".repeat(129);
        let e = lease(&mut cb, &b.worker_id, &long).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains("at most 128"), "{}", e.message());
    });
}

/// A worker holding the token stores a well-formed checkpoint for a job, padded to 8 MiB (a
/// paper-cnn job's can have about 1.6 MiB), and hands the job back. The next worker refuses
/// the download at its bound, without buffering it, and trains the job from epoch 0. (A worker
/// used to buffer any download whole: 768 MiB took 2 GB.)
#[test]
fn an_oversized_stored_checkpoint_is_refused_by_the_worker() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let grid = dir.join("grid.yaml");
    std::fs::write(&grid, "name: big\nactivations: [relu]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 1, target_accuracy: 0.5, test_limit: 200, latency_samples: 10}\n").unwrap();
    let (coord, port) = waiting_coordinator(&grid, dir);
    let mut coord = Killed(coord);
    let url = format!("http://127.0.0.1:{port}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (reg, mut c, lease) = crate::untrusted::leased(&url, "padder").await;
        let job = lease.job.as_ref().unwrap().job_id.clone();
        let meta = format!(r#"{{"job_id": "{job}", "step": 1, "epochs": []}}"#);
        let padding = vec![0u8; 8 << 20];
        fn view(bytes: &[u8]) -> safetensors::tensor::TensorView<'_> {
            safetensors::tensor::TensorView::new(safetensors::Dtype::U8, vec![bytes.len()], bytes)
                .unwrap()
        }
        let file = safetensors::tensor::serialize(
            vec![("meta", view(meta.as_bytes())), ("padding", view(&padding))],
            &None,
        )
        .unwrap();
        let chunks: Vec<_> = file
            .chunks(1 << 20)
            .map(|data| pb::CheckpointChunk {
                worker_id: reg.worker_id.clone(),
                job_id: job.clone(),
                lease_id: lease.lease_id,
                epoch: 1,
                data: data.to_vec(),
            })
            .collect();
        let stored = c.upload_checkpoint(tokio_stream::iter(chunks)).await;
        assert!(stored.unwrap().into_inner().accepted);
        c.release_job(pb::ReleaseJobRequest {
            worker_id: reg.worker_id.clone(),
            job_id: job.clone(),
            lease_id: lease.lease_id,
        })
        .await
        .unwrap();
    });
    let log = dir.join("worker.log");
    let worker = Command::new(bin("worker"))
        .args(["--coordinator", &url, "--device", "cpu", "--name", "honest"])
        .arg("--data-dir")
        .arg(crate::support::fixture(dir))
        .arg("--checkpoint-dir")
        .arg(dir.join("ckpt"))
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let _worker = Killed(worker);
    let done = integration_tests::wait_exit(&mut coord.0, Duration::from_secs(120));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(done.success(), "{text}");
    assert!(
        text.contains("could not fetch the stored checkpoint")
            && text.contains("larger than the")
            && text.contains("bytes this job's can have: refused"),
        "{text}"
    );
    let results = crate::support::read_json(&dir.join("out").join("results.json"));
    let job = &crate::support::jobs(&results)[0];
    assert_eq!(job["status"], "succeeded", "{job}");
    let leftovers: Vec<_> = std::fs::read_dir(dir.join("ckpt"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        !leftovers
            .iter()
            .any(|n| n.to_string_lossy().ends_with(".download")),
        "{leftovers:?}"
    );
}
