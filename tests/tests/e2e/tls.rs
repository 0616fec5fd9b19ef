//! TLS and mutual TLS with the real binaries over loopback: a lab PKI made here (a CA, the
//! coordinator's certificate for 127.0.0.1, a worker's client certificate; and the wrong ones:
//! another CA, an expired certificate, one for another name).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use integration_tests::{bin, output, wait_exit};
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

use crate::support::{fixture, jobs, private_file, read_json, waiting_coordinator_with, Killed};

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

/// A certificate (PEM) and its key, signed by `ca`, written as `dir/name.pem` and
/// `dir/name.key`.
fn leaf(
    ca: &Issuer<'_, KeyPair>,
    dir: &Path,
    name: &str,
    sans: &[&str],
    usage: ExtendedKeyUsagePurpose,
    expired: bool,
) -> (PathBuf, PathBuf) {
    let mut p =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.extended_key_usages = vec![usage];
    if expired {
        p.not_before = date_time_ymd(2020, 1, 1);
        p.not_after = date_time_ymd(2021, 1, 1);
    }
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, ca).unwrap();
    let (c, k) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    private_file(&k, &key.serialize_pem());
    (c, k)
}

struct Pki {
    ca: PathBuf,
    other_ca: PathBuf,
    server: (PathBuf, PathBuf),
    client: (PathBuf, PathBuf),
    expired: (PathBuf, PathBuf),
    wrong_name: (PathBuf, PathBuf),
    /// A client certificate from the other CA.
    stranger: (PathBuf, PathBuf),
}

fn pki(dir: &Path) -> Pki {
    let lab = ca("lab CA");
    let other = ca("someone else's CA");
    let (ca_pem, other_pem) = (dir.join("ca.pem"), dir.join("other-ca.pem"));
    std::fs::write(&ca_pem, lab.pem()).unwrap();
    std::fs::write(&other_pem, other.pem()).unwrap();
    let server = ExtendedKeyUsagePurpose::ServerAuth;
    Pki {
        ca: ca_pem,
        other_ca: other_pem,
        server: leaf(
            &lab,
            dir,
            "coordinator",
            &["127.0.0.1", "localhost"],
            server.clone(),
            false,
        ),
        client: leaf(
            &lab,
            dir,
            "worker",
            &["worker-1"],
            ExtendedKeyUsagePurpose::ClientAuth,
            false,
        ),
        expired: leaf(&lab, dir, "expired", &["127.0.0.1"], server.clone(), true),
        wrong_name: leaf(
            &lab,
            dir,
            "elsewhere",
            &["coordinator.elsewhere.example"],
            server,
            false,
        ),
        stranger: leaf(
            &other,
            dir,
            "stranger",
            &["worker-2"],
            ExtendedKeyUsagePurpose::ClientAuth,
            false,
        ),
    }
}

const GRID: &str = "name: tls\nactivations: [tanh]\ndatasets:\n  - {dataset: mnist, model: paper-cnn, epochs: 1, target_accuracy: 0.5, test_limit: 200, latency_samples: 10}\n";

/// A coordinator serving TLS with `cert`, waiting for external workers; its gRPC and HTTP ports.
fn coordinator(dir: &Path, cert: &(PathBuf, PathBuf), extra: &[&str]) -> (Killed, u16, u16) {
    let grid = dir.join("grid.yaml");
    std::fs::write(&grid, GRID).unwrap();
    let mut flags = vec!["--tls-cert", p(&cert.0), "--tls-key", p(&cert.1)];
    flags.extend_from_slice(extra);
    waiting_coordinator_with(&grid, dir, &flags)
}

/// `coordinator status` with `args`: (success, stdout + stderr).
fn status(args: &[&str]) -> (bool, String) {
    let (s, out, err) = output(Command::new(bin("coordinator")).arg("status").args(args));
    (s.success(), format!("{out}{err}"))
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The whole path over mutual TLS: status and a real worker need the lab CA, a client
/// certificate and the token; without the certificate, with another CA, over plaintext or
/// with a wrong token they get nothing. The live page is HTTPS with the same certificate.
#[test]
fn mutual_tls_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let pki = pki(dir);
    let token = dir.join("token");
    private_file(&token, "tls-t0ken-0123456789\n");
    let operator = dir.join("operator-token");
    private_file(&operator, "tls-0perat0r-0123456\n");
    let (mut coord, grpc, http) = coordinator(
        dir,
        &pki.server,
        &[
            "--tls-client-ca",
            p(&pki.ca),
            "--token-file",
            p(&token),
            "--operator-token-file",
            p(&operator),
        ],
    );
    let url = format!("https://127.0.0.1:{grpc}");
    let ca = ["--tls-ca", p(&pki.ca)];
    let me = [
        "--tls-cert",
        p(&pki.client.0),
        "--tls-key",
        p(&pki.client.1),
    ];
    let tok = ["--token-file", p(&operator)];
    let with = |parts: &[&[&str]]| {
        let mut a = vec!["--connect", url.as_str()];
        for part in parts {
            a.extend_from_slice(part);
        }
        status(&a)
    };
    let (ok, text) = with(&[&ca, &me, &tok]);
    assert!(ok && text.contains("grid tls:"), "{text}");
    // mTLS without a client certificate: refused, with the likely cause named.
    let (ok, text) = with(&[&ca, &tok]);
    assert!(
        !ok && text.contains("give --tls-cert and --tls-key"),
        "{text}"
    );
    // The server's certificate from a CA the client does not trust.
    let (ok, text) = with(&[&["--tls-ca", p(&pki.other_ca)], &me, &tok]);
    assert!(!ok && text.contains("UnknownIssuer"), "{text}");
    // Right certificates, the workers' token: no operator's.
    let (ok, text) = with(&[&ca, &me, &["--token-file", p(&token)]]);
    assert!(
        !ok && text.contains("invalid bearer token") && text.contains("not the workers'"),
        "{text}"
    );
    // None: on the coordinator's own machine, status finds the operators' token by itself.
    let (ok, text) = with(&[&ca, &me]);
    assert!(ok && text.contains("grid tls:"), "{text}");
    // Plaintext to the TLS port; and TLS files with an http:// URL are refused, not ignored.
    let (ok, text) = status(&[
        "--connect",
        &format!("http://127.0.0.1:{grpc}"),
        "--token-file",
        p(&token),
    ]);
    assert!(
        !ok && text.contains("connect with an https:// URL"),
        "{text}"
    );
    let (ok, text) = status(&[
        "--connect",
        &format!("http://127.0.0.1:{grpc}"),
        "--tls-ca",
        p(&pki.ca),
    ]);
    assert!(!ok && text.contains("https://"), "{text}");

    // The live page: HTTPS with the same certificate, the token as bearer.
    let mut roots = rustls::RootCertStore::empty();
    let ca_pem = std::fs::read(&pki.ca).unwrap();
    use rustls::pki_types::pem::PemObject;
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&ca_pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let agent = ureq::AgentBuilder::new()
        .tls_config(std::sync::Arc::new(tls))
        .build();
    let page = agent
        .get(&format!("https://127.0.0.1:{http}/results.json"))
        .set("Authorization", "Bearer tls-0perat0r-0123456")
        .call()
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(ureq::get(&format!("http://127.0.0.1:{http}/results.json"))
        .call()
        .is_err());

    // A real worker over mutual TLS runs the grid to its end.
    let data = fixture(dir);
    let worker_log = std::fs::File::create(dir.join("worker.log")).unwrap();
    let worker = Command::new(bin("worker"))
        .args([
            "--coordinator",
            &url,
            "--device",
            "cpu",
            "--name",
            "tls-worker",
        ])
        .args(ca)
        .args(me)
        .args(["--token-file", p(&token)])
        .arg("--data-dir")
        .arg(&data)
        .arg("--checkpoint-dir")
        .arg(dir.join("ckpt"))
        .stderr(worker_log)
        .spawn()
        .unwrap();
    let _worker = Killed(worker);
    let done = wait_exit(&mut coord.0, Duration::from_secs(120));
    let log = std::fs::read_to_string(dir.join("worker.log")).unwrap_or_default();
    assert!(done.success(), "{log}");
    let results = read_json(&dir.join("out").join("results.json"));
    let job = &jobs(&results)[0];
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["worker"], "tls-worker");
}

/// A certificate that expired, or names another host, is refused by the client; a server key
/// that does not match its certificate, or a file that is not PEM, stops the coordinator at
/// start (exit 2, naming the flag and the file).
#[test]
fn wrong_server_certificates_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let pki = pki(dir);
    for (cert, why) in [
        (&pki.expired, "certificate expired"),
        (&pki.wrong_name, "not valid for name"),
    ] {
        let (coord, grpc, _) = coordinator(dir, cert, &[]);
        let (ok, text) = status(&[
            "--connect",
            &format!("https://127.0.0.1:{grpc}"),
            "--tls-ca",
            p(&pki.ca),
        ]);
        assert!(!ok && text.contains(why), "{why}: {text}");
        drop(coord);
    }
    let grid = dir.join("grid.yaml");
    let start = |cert: &Path, key: &Path| {
        output(
            Command::new(bin("coordinator"))
                .arg("--grid")
                .arg(&grid)
                .arg("--out")
                .arg(dir.join("never"))
                .args(["--local-workers", "0", "--http", "off"])
                .arg("--tls-cert")
                .arg(cert)
                .arg("--tls-key")
                .arg(key),
        )
    };
    let (s, _, err) = start(&pki.server.0, &pki.client.1);
    assert_eq!(s.code(), Some(2), "{err}");
    assert!(
        err.contains("--tls-cert") && err.contains("coordinator.pem"),
        "{err}"
    );
    let (s, _, err) = start(&pki.server.1, &pki.server.1);
    assert_eq!(s.code(), Some(2), "{err}");
    assert!(err.contains("no PEM CERTIFICATE"), "{err}");
    assert!(!dir.join("never").exists());
}

/// Each common TLS mistake is named within seconds on both sides: the worker says what to
/// pass, and the coordinator logs the refused handshake with the peer's address and cause.
/// (A worker without a client certificate used to hang silently for 15 s.)
#[test]
fn tls_failures_are_named_on_both_sides_within_seconds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let pki = pki(dir);
    let token = dir.join("token");
    private_file(&token, "tls-failures-t0ken\n");
    let (_coord, grpc, _) = coordinator(
        dir,
        &pki.server,
        &["--tls-client-ca", p(&pki.ca), "--token-file", p(&token)],
    );
    let url = format!("https://127.0.0.1:{grpc}");
    // Over TLS 1.3 the server refuses a client's certificate after the client thinks the
    // handshake done; under load the alert saying why can be lost with the connection, and
    // the worker then says what it can ("closed the connection before answering").
    const CLOSED: &str = "if it requires client certificates, pass --tls-cert/--tls-key";
    let cases: [(&str, Vec<&str>, &str, &str); 3] = [
        (
            "no client certificate",
            vec!["--tls-ca", p(&pki.ca)],
            "the coordinator asked for a client certificate: pass --tls-cert/--tls-key",
            "the client sent no certificate",
        ),
        (
            "a client certificate from another CA",
            vec![
                "--tls-ca",
                p(&pki.ca),
                "--tls-cert",
                p(&pki.stranger.0),
                "--tls-key",
                p(&pki.stranger.1),
            ],
            "the coordinator refused this worker's client certificate",
            "not signed by the CA of --tls-client-ca",
        ),
        (
            "trusting another CA",
            vec![
                "--tls-ca",
                p(&pki.other_ca),
                "--tls-cert",
                p(&pki.client.0),
                "--tls-key",
                p(&pki.client.1),
            ],
            "the coordinator's certificate is not signed by --tls-ca",
            "the client refused this server's certificate",
        ),
    ];
    let data = fixture(dir);
    for (i, (case, flags, worker_says, coordinator_says)) in cases.iter().enumerate() {
        let log = dir.join(format!("worker-{i}.log"));
        let worker = Command::new(bin("worker"))
            .args(["--coordinator", &url, "--device", "cpu"])
            .args(flags)
            .args(["--token-file", p(&token)])
            .arg("--data-dir")
            .arg(&data)
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let worker = Killed(worker);
        let started = std::time::Instant::now();
        let said = |path: &Path, what: &str| {
            std::fs::read_to_string(path)
                .unwrap_or_default()
                .contains(what)
        };
        let coord_log = dir.join("coordinator.log");
        let worker_named = || said(&log, worker_says) || (i < 2 && said(&log, CLOSED));
        while !(worker_named() && said(&coord_log, coordinator_says)) {
            // About a second on a quiet machine; 10 s leaves room for a worker loading
            // libtorch beside CI's parallel training tests on two cores.
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{case}: not named within 10 s.\nworker: {}\ncoordinator: {}",
                std::fs::read_to_string(&log).unwrap_or_default(),
                std::fs::read_to_string(&coord_log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(worker);
        let text = std::fs::read_to_string(&coord_log).unwrap();
        let line = text.lines().find(|l| l.contains(coordinator_says)).unwrap();
        assert!(
            line.contains("TLS handshake refused") && line.contains("peer=127.0.0.1:"),
            "{case}: {line}"
        );
    }
}
