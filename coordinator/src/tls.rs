//! The server's TLS: its certificate and key (`--tls-cert`, `--tls-key`), and the CA that
//! client certificates must chain to (`--tls-client-ca`, which makes TLS mutual: a client
//! without a certificate from that CA cannot even complete the handshake). The gRPC port and
//! the live page serve the same certificate; the page does not ask for client certificates
//! (browsers seldom hold one): it asks for the token instead.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::danger::ClientCertVerifier;
use tokio_rustls::rustls::server::WebPkiClientVerifier;

/// Checked certificate files, as a TLS configuration for each server.
pub struct ServerTls {
    mutual: bool,
    grpc: Arc<rustls::ServerConfig>,
    http: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("mutual", &self.mutual)
            .finish_non_exhaustive()
    }
}

fn read(path: &Path, flag: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{flag} {}: cannot read: {e}", path.display()))
}

fn certs(pem: &[u8], path: &Path, flag: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{flag} {}: not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{flag} {}: no PEM CERTIFICATE in it",
            path.display()
        ));
    }
    Ok(certs)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl ServerTls {
    /// Reads and checks the files: certificates parse, the key parses and matches the
    /// certificate, the client CA holds at least one certificate. Errors name the flag and file.
    pub fn load(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<ServerTls, String> {
        let cert_pem = read(cert, "--tls-cert")?;
        let key_pem = read(key, "--tls-key")?;
        let chain = certs(&cert_pem, cert, "--tls-cert")?;
        let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            format!(
                "--tls-key {}: no usable PEM private key: {e}",
                key.display()
            )
        })?;
        let verifier = match client_ca {
            Some(p) => {
                let pem = read(p, "--tls-client-ca")?;
                let mut roots = rustls::RootCertStore::empty();
                for c in certs(&pem, p, "--tls-client-ca")? {
                    roots.add(c).map_err(|e| {
                        format!("--tls-client-ca {}: unusable certificate: {e}", p.display())
                    })?;
                }
                let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                    .build()
                    .map_err(|e| format!("--tls-client-ca {}: {e}", p.display()))?;
                Some(v)
            }
            None => None,
        };
        let config = |verifier: Option<Arc<dyn ClientCertVerifier>>, alpn: &[u8]| {
            let builder = rustls::ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS set-up: {e}"))?;
            let builder = match verifier {
                Some(v) => builder.with_client_cert_verifier(v),
                None => builder.with_no_client_auth(),
            };
            let mut c = builder
                .with_single_cert(chain.clone(), private.clone_key())
                .map_err(|e| {
                    format!(
                        "--tls-cert {} / --tls-key {}: {e}",
                        cert.display(),
                        key.display()
                    )
                })?;
            c.alpn_protocols = vec![alpn.to_vec()];
            Ok::<_, String>(Arc::new(c))
        };
        Ok(ServerTls {
            mutual: verifier.is_some(),
            grpc: config(verifier, b"h2")?,
            http: config(None, b"http/1.1")?,
        })
    }

    /// Whether clients must present a certificate (mutual TLS).
    pub fn mutual(&self) -> bool {
        self.mutual
    }

    /// For the gRPC port (HTTP/2; a client certificate when mutual).
    pub fn grpc(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.grpc.clone())
    }

    /// For the live page (HTTP/1.1; never a client certificate: it asks for the token).
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.http.clone())
    }
}

/// Why a TLS handshake on the gRPC port failed, for the coordinator's log: rustls's words, and
/// what to check where the cause is a common mistake.
pub fn handshake_failure(e: &std::io::Error) -> String {
    let words = e.to_string();
    let hint = if words.contains("NoCertificatesPresented") || words.contains("no certificates") {
        "the client sent no certificate: give the worker --tls-cert and --tls-key, signed by the CA of --tls-client-ca"
    } else if words.contains("invalid peer certificate") {
        "the client's certificate is not signed by the CA of --tls-client-ca (or has expired)"
    } else if words.contains("received fatal alert") {
        "the client refused this server's certificate: is the client's --tls-ca the CA that signed --tls-cert?"
    } else if words.contains("InvalidContentType") || words.contains("corrupt message") {
        "the client does not speak TLS: does it use an http:// URL? Use https://"
    } else {
        ""
    };
    if hint.is_empty() {
        words
    } else {
        format!("{words} ({hint})")
    }
}
