//! Files from elsewhere, as an attacker would craft them. A checkpoint runs no code: a worker
//! holding the token could upload a libtorch archive whose TorchScript `__setstate__` writes a
//! file of its choosing, and the next machine that resumed the job ran it; checkpoints are
//! safetensors now, read as data, and anything else is refused by the coordinator at upload and
//! set aside, unread, by the worker. Results and state files sent by others cannot make
//! `coordinator report` write outside `--out`, hang it, or change them.

use std::path::Path;
use std::process::Command;

use integration_tests::{bin, output};
use orchestrator_proto::v1 as pb;

use crate::support::{fixture, register_request, waiting_coordinator, worker_rpc};

/// A worker registered as `name` at `url`, its client (with its session) and the job it leased.
pub(crate) async fn leased(
    url: &str,
    name: &str,
) -> (
    pb::RegisterResponse,
    orchestrator_proto::client::WorkerClient,
    pb::Lease,
) {
    let reg = worker_rpc(url, None, None)
        .register(register_request(name))
        .await
        .unwrap()
        .into_inner();
    let mut c = worker_rpc(url, None, Some(&reg.session));
    let lease = c
        .lease_job(pb::LeaseJobRequest {
            worker_id: reg.worker_id.clone(),
            request_id: format!("{name}-1"),
        })
        .await
        .unwrap()
        .into_inner()
        .lease
        .unwrap();
    (reg, c, lease)
}

/// Writes a TorchScript archive to `archive` whose loading creates `marker` (as the attack's
/// file did), using the PyTorch of scripts/env.sh; and proves it hostile: loading it with
/// torch.jit.load, as libtorch's archive loader does, makes the marker (removed again).
fn hostile_archive(dir: &Path, archive: &Path, marker: &Path) {
    let script = dir.join("hostile.py");
    std::fs::write(
        &script,
        format!(
            r#"import sys, torch
class Hostile(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.x = torch.zeros(1)
    def forward(self):
        return self.x
    @torch.jit.export
    def __getstate__(self):
        return (self.x, self.training)
    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, bool]):
        m = torch.from_file({marker:?}, shared=True, size=1, dtype=torch.uint8)
        self.x = state[0] + m.to(torch.float32) * 0
        self.training = state[1]
torch.jit.save(torch.jit.script(Hostile()), sys.argv[1])
torch.jit.load(sys.argv[1])
"#,
            marker = marker.display().to_string()
        ),
    )
    .unwrap();
    let (status, _, stderr) = output(Command::new("python3").arg(&script).arg(archive));
    assert!(status.success(), "python3 with torch: {stderr}");
    assert!(
        marker.exists(),
        "the archive must run code when libtorch loads it"
    );
    std::fs::remove_file(marker).unwrap();
}

#[test]
#[cfg_attr(
    not(any(ci, have_python_torch)),
    ignore = "needs python3 with torch (scripts/env.sh puts it on PATH)"
)]
fn a_torchscript_checkpoint_runs_no_code_in_worker_train() {
    let tmp = tempfile::tempdir().unwrap();
    let data = fixture(tmp.path());
    let ckpt = tmp.path().join("job.ckpt");
    let marker = tmp.path().join("written-by-the-checkpoint");
    hostile_archive(tmp.path(), &ckpt, &marker);
    let (status, _, stderr) = output(
        Command::new(bin("worker"))
            .args(["train", "--dataset", "mnist", "--model", "paper-cnn"])
            .args([
                "--activation",
                "relu",
                "--epochs",
                "1",
                "--train-limit",
                "200",
            ])
            .args(["--test-limit", "100", "--device", "cpu", "--json"])
            .arg("--data-dir")
            .arg(&data)
            .arg("--checkpoint")
            .arg(&ckpt),
    );
    assert!(status.success(), "{stderr}");
    assert!(!marker.exists(), "the checkpoint's code ran: {stderr}");
    assert!(
        stderr.contains("ignoring unusable checkpoint, starting from epoch 0")
            && stderr.contains("older checkpoint format (a libtorch archive), which is not read"),
        "{stderr}"
    );
    // Not overwritten: set aside, as it may be someone's own file.
    assert!(tmp.path().join("job.ckpt.unusable").is_file(), "{stderr}");
}

/// The coordinator stores no checkpoint a worker could not load: a libtorch archive, bytes that
/// are not safetensors, or another job's checkpoint are refused at upload, with the reason, and
/// nothing is kept; a well-formed one of the job's own is kept.
#[test]
fn the_coordinator_refuses_checkpoints_it_could_not_load() {
    let tmp = tempfile::tempdir().unwrap();
    let grid = tmp.path().join("grid.yaml");
    std::fs::write(
        &grid,
        "name: ckpt\nactivations: [relu]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 2, target_accuracy: 0.5}\n",
    )
    .unwrap();
    let (coord, port) = waiting_coordinator(&grid, tmp.path());
    let coord = crate::support::Killed(coord);
    let url = format!("http://127.0.0.1:{port}");
    let stored = tmp.path().join("out").join("checkpoints");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (reg, mut c, lease) = leased(&url, "uploader").await;
        let job = lease.job.as_ref().unwrap().job_id.clone();
        let chunk = |data: Vec<u8>| pb::CheckpointChunk {
            worker_id: reg.worker_id.clone(),
            job_id: job.clone(),
            lease_id: lease.lease_id,
            epoch: 1,
            data,
        };
        let safetensors = |job_id: &str| {
            let meta = format!(r#"{{"job_id": "{job_id}", "step": 1, "epochs": []}}"#);
            let view = safetensors::tensor::TensorView::new(
                safetensors::Dtype::U8,
                vec![meta.len()],
                meta.as_bytes(),
            )
            .unwrap();
            safetensors::tensor::serialize(vec![("meta", view)], &None).unwrap()
        };
        for (bytes, why) in [
            (
                b"PK\x03\x04 a zip: libtorch's archive".to_vec(),
                "older checkpoint format",
            ),
            (b"forged".to_vec(), "not a checkpoint of this tool"),
            (safetensors("another-job"), "it belongs to job another-job"),
        ] {
            let s = c
                .upload_checkpoint(tokio_stream::iter(vec![chunk(bytes)]))
                .await
                .unwrap_err();
            assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
            assert!(
                s.message().starts_with("checkpoint refused: ") && s.message().contains(why),
                "{s:?}"
            );
            let left: Vec<_> = std::fs::read_dir(&stored)
                .map(|d| d.flatten().map(|e| e.file_name()).collect())
                .unwrap_or_default();
            assert!(left.is_empty(), "kept after a refusal: {left:?}");
        }
        let ok = c
            .upload_checkpoint(tokio_stream::iter(vec![chunk(safetensors(&job))]))
            .await
            .unwrap()
            .into_inner();
        assert!(ok.accepted);
        assert!(stored.join(format!("{job}.ckpt")).is_file());
    });
    drop(coord);
}

/// `coordinator report` on someone else's results: an id that is not a job id (a relative or an
/// absolute path) is bad input (exit 2) before anything is written, so nothing outside --out is
/// written or deleted; a non-ASCII grid hash renders instead of panicking.
#[test]
fn report_on_foreign_results_stays_inside_out() {
    let tmp = tempfile::tempdir().unwrap();
    let committed = crate::support::repo().join("docs/reproduction/paper-mnist/results.json");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(committed).unwrap()).unwrap();
    let victim = tmp.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("keep.txt"), "mine").unwrap();
    for bad in ["../../escaped".to_string(), victim.display().to_string()] {
        let mut crafted = results.clone();
        crafted["jobs"][0]["id"] = bad.clone().into();
        let file = tmp.path().join("crafted.json");
        std::fs::write(&file, crafted.to_string()).unwrap();
        let out = tmp.path().join("a").join("b").join("out");
        let (status, _, stderr) = output(
            Command::new(bin("coordinator"))
                .args(["report", "--state"])
                .arg(&file)
                .arg("--out")
                .arg(&out),
        );
        assert_eq!(status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!("{}: `{}` is not a job id", file.display(), bad)),
            "{stderr}"
        );
        assert!(
            !out.exists() && !tmp.path().join("a").exists(),
            "written: {stderr}"
        );
        assert_eq!(
            std::fs::read_to_string(victim.join("keep.txt")).unwrap(),
            "mine"
        );
        assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 1, "{stderr}");
    }
    // A grid hash that is not ASCII (it is cut for display by characters, not bytes).
    let mut odd = results.clone();
    odd["environment"]["runs"][0]["grid_sha256"] = "a€€€€€€€€€€€€€".into();
    let file = tmp.path().join("odd.json");
    std::fs::write(&file, odd.to_string()).unwrap();
    let (status, _, stderr) = output(
        Command::new(bin("coordinator"))
            .args(["report", "--state"])
            .arg(&file)
            .arg("--out")
            .arg(tmp.path().join("odd")),
    );
    assert!(status.success(), "{stderr}");
}

/// A crafted state file (a view named like a table, whose recursive query never ends) is
/// refused at once, and opening someone's state file changes nothing in it (it is read through
/// a private copy: no WAL switch, no files beside it).
#[test]
fn report_on_a_crafted_state_file_neither_hangs_nor_changes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("state.db");
    let (status, _, stderr) = output(Command::new("python3").args([
        "-c",
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); \
         c.execute('CREATE VIEW jobs AS WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r) SELECT x FROM r'); \
         c.commit(); c.close()",
        db.to_str().unwrap(),
    ]));
    assert!(status.success(), "python3's sqlite3: {stderr}");
    let before = std::fs::read(&db).unwrap();
    let started = std::time::Instant::now();
    for cmd in [
        vec!["report", "--state", db.to_str().unwrap(), "--out", "x"],
        vec!["compare", db.to_str().unwrap(), db.to_str().unwrap()],
    ] {
        let (status, _, stderr) = output(
            Command::new(bin("coordinator"))
                .current_dir(tmp.path())
                .args(&cmd),
        );
        assert!(!status.success(), "{cmd:?}");
        assert!(
            stderr.contains("not a state file of this tool: it holds a view `jobs`"),
            "{stderr}"
        );
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "it hung"
    );
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "the state file changed"
    );
    let beside: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(beside, vec!["state.db".to_string()], "files made beside it");
}

/// An upload aborted half-way leaves no `.part` file behind, and one left by an earlier run (a
/// coordinator killed mid-upload) is removed at start; the same epoch reported again is
/// answered but not recorded twice.
#[test]
fn aborted_uploads_and_replayed_reports_leave_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let grid = tmp.path().join("grid.yaml");
    std::fs::write(
        &grid,
        "name: parts\nactivations: [relu]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 2, target_accuracy: 0.5}\n",
    )
    .unwrap();
    let stored = tmp.path().join("out").join("checkpoints");
    std::fs::create_dir_all(&stored).unwrap();
    let leftover = stored.join(".mnist-paper-cnn-relu-s0-000000000000.7.part");
    std::fs::write(&leftover, vec![0u8; 4096]).unwrap();
    let (coord, port) = waiting_coordinator(&grid, tmp.path());
    let coord = crate::support::Killed(coord);
    assert!(
        !leftover.exists(),
        "an earlier run's .part file is still there"
    );
    let url = format!("http://127.0.0.1:{port}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (reg, mut c, lease) = leased(&url, "aborter").await;
        let job = lease.job.as_ref().unwrap().job_id.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(pb::CheckpointChunk {
            worker_id: reg.worker_id.clone(),
            job_id: job.clone(),
            lease_id: lease.lease_id,
            epoch: 1,
            data: vec![1u8; 1 << 16],
        })
        .await
        .unwrap();
        let mut upload_client = c.clone();
        let upload = tokio::spawn(async move {
            upload_client
                .upload_checkpoint(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
        });
        let part = stored.join(format!(".{job}.{}.part", lease.lease_id));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !part.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "the upload never began"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        upload.abort();
        drop(tx);
        while part.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "{} was left",
                part.display()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // A report replayed a thousand times: every answer accepts it, the state holds one.
        let report = pb::ReportEpochRequest {
            worker_id: reg.worker_id.clone(),
            job_id: job.clone(),
            lease_id: lease.lease_id,
            metrics: Some(pb::EpochMetrics {
                epoch: 1,
                train_seconds: 1.0,
                train_loss: 0.5,
                test_loss: 0.5,
                test_accuracy: 0.5,
                ..Default::default()
            }),
        };
        for _ in 0..1000 {
            assert!(
                c.report_epoch(report.clone())
                    .await
                    .unwrap()
                    .into_inner()
                    .accepted
            );
        }
    });
    drop(coord);
    let log = std::fs::read_to_string(tmp.path().join("coordinator.log")).unwrap();
    assert_eq!(
        log.matches(" epoch ").count() + log.matches("\"epoch\"").count(),
        1,
        "{log}"
    );
}
