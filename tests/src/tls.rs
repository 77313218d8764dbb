//! TLS for the tests: a self-signed certificate made for each test, the
//! `ssl:` endpoint that serves it, and a client (rustls) that trusts it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use crate::{connect, scratch, within};

/// A byte stream a test talks over: TCP, TLS, a Unix socket.
pub trait Wire: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Wire for T {}

/// A key and self-signed certificate for `localhost` and `127.0.0.1`,
/// written as PEM files, and a client configuration that trusts only it.
pub struct TestTls {
    pub key: PathBuf,
    pub cert: PathBuf,
    client: Arc<ClientConfig>,
}

impl TestTls {
    /// Make a fresh key and certificate, in files named after `name`.
    pub fn new(name: &str) -> TestTls {
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let made = rcgen::generate_simple_self_signed(names).expect("a self-signed certificate");
        let key = scratch(&format!("{name}-key.pem"));
        let cert = scratch(&format!("{name}-cert.pem"));
        std::fs::write(&key, made.signing_key.serialize_pem()).expect("writes the key");
        std::fs::write(&cert, made.cert.pem()).expect("writes the certificate");
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(made.cert.der().to_vec()))
            .expect("a valid certificate");
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        TestTls {
            key,
            cert,
            client: Arc::new(client),
        }
    }

    /// `ssl:` on a free port of 127.0.0.1 with this key and certificate.
    pub fn endpoint(&self) -> String {
        self.endpoint_on(0)
    }

    /// `ssl:` on `port` of 127.0.0.1 with this key and certificate.
    pub fn endpoint_on(&self, port: u16) -> String {
        format!(
            "ssl:{port}:privateKey={}:certKey={}:interface=127.0.0.1",
            self.key.display(),
            self.cert.display()
        )
    }

    /// Connect to `addr` and complete a handshake that verifies the
    /// server's certificate is this one.
    pub async fn connect(&self, addr: SocketAddr) -> TlsStream<TcpStream> {
        self.handshake(addr)
            .await
            .expect("the TLS handshake completes")
    }

    /// Connect to `addr` and try a handshake that verifies the server's
    /// certificate is this one.
    pub async fn handshake(&self, addr: SocketAddr) -> std::io::Result<TlsStream<TcpStream>> {
        self.secure(connect(addr).await).await
    }

    /// Try a handshake on `tcp`, already connected (and perhaps past a
    /// PROXY header), that verifies the server's certificate is this one.
    pub async fn secure(&self, tcp: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        let name = ServerName::try_from("localhost").expect("a server name");
        within(TlsConnector::from(self.client.clone()).connect(name, tcp)).await
    }

    /// [`TestTls::connect`], as a boxed stream.
    pub async fn open(&self, addr: SocketAddr) -> Pin<Box<dyn Wire>> {
        Box::pin(self.connect(addr).await)
    }
}
