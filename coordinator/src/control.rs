//! `coordinator status` and `coordinator cancel`: the control API from the command line.

use std::io::Write as _;

use coordinator::state::{Counts, Progress, RunningJob};
use orchestrator_proto::client::{control_client, ControlClient};
use orchestrator_proto::v1 as pb;

use crate::cli::Connect;

/// Prints a line of what the coordinator sent, escaped for the terminal (see `terminal_safe`).
macro_rules! say {
    ($($arg:tt)*) => {
        println!("{}", coordinator::terminal::terminal_safe(&format!($($arg)*)))
    };
}

/// A failed call, with a hint where the usual cause is known.
fn failed(what: &str, conn: &Connect) -> impl FnOnce(tonic::Status) -> anyhow::Error {
    let https = conn.connect.starts_with("https://");
    let client_cert = conn.tls_cert.is_some();
    let no_token = conn.token_file.is_none();
    let what = what.to_string();
    move |s| {
        let closed = matches!(
            s.code(),
            tonic::Code::Cancelled | tonic::Code::Unavailable | tonic::Code::Unknown
        );
        if s.code() == tonic::Code::Unauthenticated {
            let remedy = if no_token {
                "pass the operators' token with --token-file FILE: the coordinator's \
                 --operator-token-file, or <out>/operator-token"
            } else {
                "--token-file must hold the operators' token (the coordinator's \
                 --operator-token-file, or <out>/operator-token), not the workers'"
            };
            return anyhow::anyhow!("{what}: {} ({remedy})", s.message());
        }
        // Plain HTTP/2 to a TLS port: the TLS alert reads as a broken HTTP/2 frame.
        let garbled = !https
            && s.code() == tonic::Code::Internal
            && s.message().contains("h2 protocol error");
        if !closed && !garbled {
            // The coordinator's answer says what is wrong; its message is the error.
            return anyhow::anyhow!("{what}: {}", s.message());
        }
        let hint = if https {
            (!client_cert).then_some(
                "the coordinator closed the connection; if it requires client certificates \
                 (mutual TLS), give --tls-cert and --tls-key",
            )
        } else {
            // Plain HTTP/2 to a TLS port is cut without an answer (refused is Unavailable).
            (s.code() != tonic::Code::Unavailable).then_some(
                "the coordinator closed the connection; if it serves TLS (its --tls-cert), \
                 connect with an https:// URL (--coordinator https://HOST:PORT) and its CA \
                 (--tls-ca)",
            )
        };
        let e = anyhow::Error::new(s).context(what);
        match hint {
            Some(hint) => e.context(hint),
            None => e,
        }
    }
}

async fn client(conn: &Connect) -> anyhow::Result<ControlClient> {
    // Without --token-file: the operators' token a coordinator on this machine noted.
    let file = conn.token_file.clone().or_else(|| {
        let cache = coordinator::operator::cache_dir(&|k| std::env::var(k).ok());
        coordinator::operator::find(cache, &conn.connect)
    });
    let token = file
        .as_deref()
        .map(orchestrator_proto::read_token_file)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    Ok(control_client(&conn.connect, &conn.tls(), token.as_deref()).await?)
}

pub async fn cancel(conn: Connect, jobs: Vec<String>, all: bool) -> anyhow::Result<()> {
    let r = client(&conn)
        .await?
        .cancel_jobs(pb::CancelJobsRequest { job_ids: jobs, all })
        .await
        .map_err(failed("CancelJobs", &conn))?
        .into_inner();
    say!("{} job(s) cancelled", r.cancelled);
    Ok(())
}

pub async fn status(conn: Connect) -> anyhow::Result<()> {
    let mut client = client(&conn).await?;
    let page = |token: String| pb::GridStatusRequest {
        page_size: 10_000,
        page_token: token,
    };
    let mut s = client
        .grid_status(page(String::new()))
        .await
        .map_err(failed("GridStatus", &conn))?
        .into_inner();
    say!(
        "grid {}: {} pending, {} running, {} succeeded, {} failed, {} diverged, {} cancelled",
        s.grid_name,
        s.pending,
        s.running,
        s.succeeded,
        s.failed,
        s.diverged,
        s.cancelled
    );
    if s.held > 0 {
        say!(
            "{} seed(s) held by the seed race: run only if their comparisons stay open",
            s.held
        );
    }
    print!(
        "{}",
        coordinator::terminal::terminal_safe(&coordinator::terminal::render_once(&progress(&s)))
    );
    if s.denied_calls > 0 {
        println!(
            "{} worker call(s) refused: wrong session or another worker's lease (see the coordinator's log)",
            s.denied_calls
        );
    }
    if !s.slurm_jobs.is_empty() {
        let jobs: Vec<(u64, String)> = s
            .slurm_jobs
            .iter()
            .map(|j| (j.job_id, j.state.clone()))
            .collect();
        say!("SLURM worker jobs: {}", coordinator::slurm::summary(&jobs));
    }
    println!("\nWORKER      NAME                          DEVICE    SLOTS  RUNNING  LAST SEEN");
    for w in &s.workers {
        let seen = if w.seconds_since_seen < 0.0 {
            "earlier run".to_string()
        } else {
            format!("{:.0}s ago", w.seconds_since_seen)
        };
        say!(
            "{:<11} {:<29} {:<9} {:>5}  {:>7}  {seen}",
            w.worker_id,
            w.name,
            w.device,
            w.slots,
            w.running
        );
    }
    println!("\nJOB                                             STATE      ATTEMPTS  EPOCHS  ACCURACY  WORKER");
    loop {
        print_jobs(&s.jobs);
        if s.next_page_token.is_empty() {
            return Ok(());
        }
        s = client
            .grid_status(page(s.next_page_token))
            .await
            .map_err(failed("GridStatus", &conn))?
            .into_inner();
    }
}

/// What the live display shows, from the first page of GridStatus.
fn progress(s: &pb::GridStatusResponse) -> Progress {
    Progress {
        counts: Counts {
            pending: s.pending,
            running: s.running,
            succeeded: s.succeeded,
            failed: s.failed,
            diverged: s.diverged,
            cancelled: s.cancelled,
            held: s.held,
        },
        running: s
            .running_jobs
            .iter()
            .map(|j| RunningJob {
                id: common::JobId::from_stored(j.job_id.clone()),
                worker: j.worker.clone(),
                epochs_done: j.epochs_done,
                epochs: j.epochs_total,
                accuracy: j.last_test_accuracy,
            })
            .collect(),
        eta: s
            .eta_seconds
            .filter(|e| e.is_finite() && *e >= 0.0)
            .map(std::time::Duration::from_secs_f64),
    }
}

fn print_jobs(jobs: &[pb::JobStatus]) {
    let mut out = std::io::stdout().lock();
    for j in jobs {
        let accuracy = j
            .last_test_accuracy
            .map_or("-".into(), |a| format!("{:.2}%", 100.0 * a));
        // A closed pipe (`| head`) ends the listing, not the program with a panic.
        let line = format!(
            "{:<47} {:<10} {:>8}  {:>3}/{:<3} {:>8}  {}",
            j.job_id, j.state, j.attempts, j.epochs_done, j.epochs_total, accuracy, j.worker
        );
        let _ = writeln!(out, "{}", coordinator::terminal::terminal_safe(&line));
    }
}
