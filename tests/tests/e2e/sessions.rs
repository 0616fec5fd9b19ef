//! Credentials over time, against the real coordinator: the page's sign-in throttled per
//! address, its sessions expiring and ending at logout, token files followed as they are
//! rotated, and tokens too short to resist guessing refused.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use integration_tests::{bin, output};

use crate::support::{private_file, waiting_coordinator_with, worker_rpc};

const GRID: &str = "name: creds\nactivations: [relu]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 1, target_accuracy: 0.5}\n";

fn status(r: Result<ureq::Response, ureq::Error>) -> (u16, Option<ureq::Response>) {
    match r {
        Ok(r) => (r.status(), Some(r)),
        Err(ureq::Error::Status(code, r)) => (code, Some(r)),
        Err(e) => panic!("{e}"),
    }
}

/// A coordinator with workers' and operators' token files in `dir`; its gRPC and HTTP ports.
fn coordinator(dir: &Path) -> (crate::support::Killed, u16, u16) {
    let grid = dir.join("grid.yaml");
    std::fs::write(&grid, GRID).unwrap();
    private_file(&dir.join("token"), "w0rkers-first-t0ken\n");
    private_file(&dir.join("operator"), "0perators-first-t0ken\n");
    let p = |n: &str| dir.join(n).to_str().unwrap().to_string();
    waiting_coordinator_with(
        &grid,
        dir,
        &[
            "--token-file",
            &p("token"),
            "--operator-token-file",
            &p("operator"),
        ],
    )
}

/// Five wrong sign-ins from one address, then even the right token waits (429, Retry-After),
/// with one log line for the lot; a session is a random id with a 12-hour Max-Age, not derived
/// from the token, and ends at logout. (Sign-in took ~1,370 guesses a second, each logged, and
/// the cookie was an unsalted hash of the token that never expired.)
#[test]
fn sign_ins_are_throttled_and_sessions_expire_and_end() {
    let tmp = tempfile::tempdir().unwrap();
    let (_coord, _, http) = coordinator(tmp.path());
    let base = format!("http://127.0.0.1:{http}");
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let login = |token: &str| {
        status(
            agent
                .post(&format!("{base}/login"))
                .send_form(&[("token", token)]),
        )
    };
    for _ in 0..5 {
        assert_eq!(login("a-wrong-guess-0123").0, 401);
    }
    let (code, r) = login("0perators-first-t0ken");
    assert_eq!(code, 429, "the sixth attempt in a second");
    assert_eq!(r.unwrap().header("retry-after"), Some("2"));
    let log = std::fs::read_to_string(tmp.path().join("coordinator.log")).unwrap();
    assert_eq!(log.matches("wrong token at sign-in").count(), 1, "{log}");
    std::thread::sleep(Duration::from_millis(2100));
    let (code, r) = login("0perators-first-t0ken");
    assert_eq!(code, 303);
    let cookie = r.unwrap().header("set-cookie").unwrap().to_string();
    assert!(
        cookie.contains("Max-Age=43200") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    let id = pair.split_once('=').unwrap().1;
    assert!(
        id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()),
        "{pair}"
    );
    std::thread::sleep(Duration::from_millis(2100));
    let (_, again) = login("0perators-first-t0ken");
    let again = again.unwrap().header("set-cookie").unwrap().to_string();
    assert_ne!(again.split(';').next().unwrap(), pair, "one id per session");
    let page = |cookie: &str| status(agent.get(&format!("{base}/")).set("Cookie", cookie).call()).0;
    assert_eq!(page(&pair), 200);
    let (_, r) = status(agent.get(&format!("{base}/")).set("Cookie", &pair).call());
    let html = r.unwrap().into_string().unwrap();
    assert!(
        html.contains(r#"<form method="post" action="/logout""#),
        "a sign-out button"
    );
    let (code, r) = status(
        agent
            .post(&format!("{base}/logout"))
            .set("Cookie", &pair)
            .send_string(""),
    );
    assert_eq!(code, 303);
    let cleared = r.unwrap().header("set-cookie").unwrap().to_string();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(page(&pair), 401, "the session ended at logout");
}

/// `coordinator status` with `token` against the gRPC port: whether it answered.
fn status_with(port: u16, token: &Path) -> bool {
    let (s, _, _) = output(Command::new(bin("coordinator")).args([
        "status",
        "--connect",
        &format!("http://127.0.0.1:{port}"),
        "--token-file",
        token.to_str().unwrap(),
    ]));
    s.success()
}

/// Waits up to 10 s for `cond`.
fn within_seconds(what: &str, cond: impl Fn() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(started.elapsed() < Duration::from_secs(10), "{what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Rewriting a token file takes effect within seconds, without a restart: the old token is
/// refused and the new one taken, on the control API, the page (whose sessions end) and the
/// worker protocol; a file that now holds the other role's token is not taken up.
#[test]
fn a_rotated_token_file_takes_effect_without_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_coord, grpc, http) = coordinator(dir);
    let old = dir.join("old-operator");
    private_file(&old, "0perators-first-t0ken\n");
    assert!(status_with(grpc, &old));
    let base = format!("http://127.0.0.1:{http}");
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let (_, r) = status(
        agent
            .post(&format!("{base}/login"))
            .send_form(&[("token", "0perators-first-t0ken")]),
    );
    let cookie = r.unwrap().header("set-cookie").unwrap().to_string();
    let pair = cookie.split(';').next().unwrap().to_string();
    let page = |cookie: &str| status(agent.get(&format!("{base}/")).set("Cookie", cookie).call()).0;
    assert_eq!(page(&pair), 200);

    private_file(&dir.join("operator"), "0perators-sec0nd-t0ken\n");
    within_seconds("the old operators' token still works", || {
        !status_with(grpc, &old)
    });
    assert!(status_with(grpc, &dir.join("operator")));
    assert_eq!(page(&pair), 401, "sessions end with the token");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = format!("http://127.0.0.1:{grpc}");
    let register = |token: &str| {
        rt.block_on(async {
            let mut c = worker_rpc(&url, Some(token), None);
            c.register(crate::support::register_request("rotating"))
                .await
                .map(|_| ())
        })
    };
    assert!(register("w0rkers-first-t0ken").is_ok());
    private_file(&dir.join("token"), "w0rkers-sec0nd-t0ken\n");
    within_seconds("the old workers' token still works", || {
        register("w0rkers-first-t0ken").is_err()
    });
    assert!(register("w0rkers-sec0nd-t0ken").is_ok());

    // The operators' file now holding the workers' token: refused, the last good one stays.
    private_file(&dir.join("operator"), "w0rkers-sec0nd-t0ken\n");
    let log = dir.join("coordinator.log");
    within_seconds("no warning", || {
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("it now holds the workers' token")
    });
    assert!(
        !status_with(grpc, &dir.join("token")),
        "the workers' token became the operators'"
    );
    let second = dir.join("second");
    private_file(&second, "0perators-sec0nd-t0ken\n");
    assert!(status_with(grpc, &second));
}

/// A token shorter than 16 characters is refused at start, naming the file and the length.
#[test]
fn short_tokens_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let grid = tmp.path().join("grid.yaml");
    std::fs::write(&grid, GRID).unwrap();
    let token = tmp.path().join("token");
    private_file(&token, "s3cret\n");
    let (s, _, err) = output(
        Command::new(bin("coordinator"))
            .arg("--grid")
            .arg(&grid)
            .arg("--out")
            .arg(tmp.path().join("out"))
            .args(["--local-workers", "0", "--http", "off", "--token-file"])
            .arg(&token),
    );
    assert_eq!(s.code(), Some(2), "{err}");
    assert!(
        err.contains("the token is 6 characters; at least 16") && err.contains("token"),
        "{err}"
    );
    assert!(!tmp.path().join("out").exists());
}
