//! TLS for `ssl:` endpoints, terminated by the host with rustls: the
//! operator's key and certificates made into a server configuration (once
//! at start, again at each reload), and the handshake, bounded in time,
//! before a connection reaches its guest.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::net::stream::TlsStream;

/// The files an `ssl:` endpoint names (Twisted's `privateKey`, `certKey`
/// and `extraCertChain`), as given or made absolute against a config
/// file's folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub private_key: PathBuf,
    /// The PEM certificate, the server's own first; may be the key's file.
    pub certificate: PathBuf,
    /// More PEM certificates sent after it: the intermediates.
    pub extra_chain: Option<PathBuf>,
}

impl TlsFiles {
    /// The same files with relative paths taken from `dir`.
    pub fn relative_to(&self, dir: &Path) -> Self {
        Self {
            private_key: dir.join(&self.private_key),
            certificate: dir.join(&self.certificate),
            extra_chain: self.extra_chain.as_ref().map(|chain| dir.join(chain)),
        }
    }

    /// Read the files into a server configuration: TLS 1.3 and 1.2 with
    /// rustls's default (modern) cipher suites, no client certificates.
    /// Fails with which file is wrong and how.
    pub fn load(&self) -> anyhow::Result<Arc<ServerConfig>> {
        let key = PrivateKeyDer::from_pem_file(&self.private_key).map_err(|error| {
            anyhow::anyhow!(
                "cannot read a private key from {}: {}",
                self.private_key.display(),
                pem_problem(&error, "PRIVATE KEY")
            )
        })?;
        let mut chain = certificates(&self.certificate)?;
        if let Some(extra) = &self.extra_chain {
            chain.extend(certificates(extra)?);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("the TLS library has no protocol versions")?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|error| {
                anyhow::anyhow!(
                    "cannot use the private key in {} with the certificate in {}: {error}",
                    self.private_key.display(),
                    self.certificate.display()
                )
            })?;
        Ok(Arc::new(config))
    }
}

/// Every certificate in the PEM file at `path`; at least one.
fn certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let problem = |error: &rustls::pki_types::pem::Error| {
        anyhow::anyhow!(
            "cannot read certificates from {}: {}",
            path.display(),
            pem_problem(error, "CERTIFICATE")
        )
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|error| problem(&error))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| problem(&error))?;
    if chain.is_empty() {
        anyhow::bail!(
            "cannot read certificates from {}: it holds no `BEGIN CERTIFICATE` block",
            path.display()
        );
    }
    Ok(chain)
}

/// What a PEM error means to the operator.
fn pem_problem(error: &rustls::pki_types::pem::Error, expected: &str) -> String {
    use rustls::pki_types::pem::Error;
    match error {
        Error::Io(error) => error.to_string(),
        Error::NoItemsFound => format!("it holds no `BEGIN {expected}` block"),
        other => format!("not a PEM file ({other:?})"),
    }
}

/// A service's current TLS configuration, shared by its workers and
/// replaced in place when a reload re-reads the files, so that a renewed
/// certificate needs no new guest instance.
pub struct Certificates(RwLock<Arc<ServerConfig>>);

impl Certificates {
    pub fn new(config: Arc<ServerConfig>) -> Self {
        Self(RwLock::new(config))
    }

    /// The configuration for the next handshake.
    pub fn current(&self) -> Arc<ServerConfig> {
        // Only replaced whole, under the lock: never poisoned mid-change.
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// New handshakes use `config`; connections made keep theirs.
    pub fn replace(&self, config: Arc<ServerConfig>) {
        *self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = config;
    }
}

/// Why a handshake did not complete.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("no handshake within {0:?}")]
    TimedOut(Duration),
    #[error("{0}")]
    Failed(io::Error),
}

/// Complete the server side of a handshake on `tcp` within `timeout`.
/// Application data that came with the client's last flight stays
/// buffered in the connection, where the first read finds it.
pub async fn handshake(
    tcp: TcpStream,
    config: Arc<ServerConfig>,
    timeout: Duration,
) -> Result<TlsStream, HandshakeError> {
    let tls = rustls::ServerConnection::new(config)
        .map_err(|error| HandshakeError::Failed(io::Error::other(error)))?;
    let mut stream = TlsStream::new(tcp, tls);
    tokio::time::timeout(timeout, drive_handshake(&mut stream))
        .await
        .map_err(|_| HandshakeError::TimedOut(timeout))?
        .map_err(HandshakeError::Failed)?;
    Ok(stream)
}

async fn drive_handshake(stream: &mut TlsStream) -> io::Result<()> {
    while stream.tls.is_handshaking() {
        if stream.tls.wants_write() {
            stream.tcp.ready(Interest::WRITABLE).await?;
            stream.write_tls()?;
        } else {
            stream.tcp.ready(Interest::READABLE).await?;
            match stream.read_tls() {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                // Readiness can be stale: wait again.
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Ok(_) => {}
                Err(error) => return Err(error),
            }
        }
    }
    // The server's last flight (and TLS 1.3 session tickets) go out as
    // the socket takes them, with the first writes.
    stream.write_tls()?;
    Ok(())
}
