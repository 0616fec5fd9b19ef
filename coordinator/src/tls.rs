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
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

/// Checked certificate files, ready for both servers.
pub struct ServerTls {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
    http: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("mutual", &self.client_ca.is_some())
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
        let ca_pem = match client_ca {
            Some(p) => {
                let pem = read(p, "--tls-client-ca")?;
                let mut roots = rustls::RootCertStore::empty();
                for c in certs(&pem, p, "--tls-client-ca")? {
                    roots.add(c).map_err(|e| {
                        format!("--tls-client-ca {}: unusable certificate: {e}", p.display())
                    })?;
                }
                Some(pem)
            }
            None => None,
        };
        let mut http = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS set-up: {e}"))?
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .map_err(|e| {
                format!(
                    "--tls-cert {} / --tls-key {}: {e}",
                    cert.display(),
                    key.display()
                )
            })?;
        http.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ServerTls {
            cert: cert_pem,
            key: key_pem,
            client_ca: ca_pem,
            http: Arc::new(http),
        })
    }

    /// Whether clients must present a certificate (mutual TLS).
    pub fn mutual(&self) -> bool {
        self.client_ca.is_some()
    }

    /// For the gRPC server.
    pub fn grpc(&self) -> ServerTlsConfig {
        let c = ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert, &self.key))
            .timeout(std::time::Duration::from_secs(10));
        match &self.client_ca {
            Some(ca) => c.client_ca_root(Certificate::from_pem(ca)),
            None => c,
        }
    }

    /// For the live page.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.http.clone())
    }
}
