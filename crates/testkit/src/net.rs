//! Private-networking test servers on 127.0.0.1: a CA made in the test ([`TestPki`]), a TLS
//! front ([`TlsFront`]) that terminates TLS (optionally requiring a client certificate, or
//! speaking TLS 1.2 only) and forwards the plain bytes to a server such as the Lever emulator
//! or moto, and a forward proxy ([`ForwardProxy`]: HTTP CONNECT tunnels and plain absolute-form
//! requests) that records the hosts it carried. Every server binds `127.0.0.1:0` and stops
//! when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A certificate authority made for one test, with a server certificate for `localhost` and
/// `127.0.0.1` and a client certificate, all written as PEM files into a temporary folder.
pub struct TestPki {
    /// The folder holding the PEM files (removed with the `TestPki`).
    pub dir: tempfile::TempDir,
    ca: rcgen::Issuer<'static, rcgen::KeyPair>,
    ca_der: CertificateDer<'static>,
    server: (CertificateDer<'static>, Vec<u8>),
    client: (CertificateDer<'static>, Vec<u8>),
}

fn key_pem_der(key: &rcgen::KeyPair) -> Vec<u8> {
    key.serialize_der()
}

impl TestPki {
    /// A fresh CA, server and client certificates; files `ca.pem`, `server.pem`,
    /// `server.key`, `client.pem`, `client.key`, and `other-ca.pem` (a CA that signed
    /// nothing).
    pub fn new() -> TestPki {
        let dir = tempfile::tempdir().expect("temp dir");
        let (ca, ca_cert) = make_ca("sluice test CA");
        let (_, other) = make_ca("another test CA");
        let ca_der = ca_cert.der().clone();
        let leaf = |name: &str, client: bool| {
            let mut p = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
                .expect("certificate params");
            p.subject_alt_names
                .push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
            p.distinguished_name
                .push(rcgen::DnType::CommonName, name.to_owned());
            p.extended_key_usages = vec![if client {
                rcgen::ExtendedKeyUsagePurpose::ClientAuth
            } else {
                rcgen::ExtendedKeyUsagePurpose::ServerAuth
            }];
            let key = rcgen::KeyPair::generate().expect("key");
            let cert = p.signed_by(&key, &ca).expect("sign");
            (cert, key)
        };
        let (server_cert, server_key) = leaf("localhost", false);
        let (client_cert, client_key) = leaf("sluice test client", true);
        let w = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text).expect("write pem")
        };
        w("ca.pem", &ca_cert.pem());
        w("other-ca.pem", &other.pem());
        w("server.pem", &server_cert.pem());
        w("server.key", &server_key.serialize_pem());
        w("client.pem", &client_cert.pem());
        w("client.key", &client_key.serialize_pem());
        TestPki {
            ca,
            ca_der,
            server: (server_cert.der().clone(), key_pem_der(&server_key)),
            client: (client_cert.der().clone(), key_pem_der(&client_key)),
            dir,
        }
    }

    /// The path of one of the PEM files.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The CA that signed the certificates (for issuing more).
    pub fn issuer(&self) -> &rcgen::Issuer<'static, rcgen::KeyPair> {
        &self.ca
    }

    fn server_config(&self, opts: &TlsOptions) -> rustls::ServerConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = if opts.tls12_only {
            &[&rustls::version::TLS12]
        } else {
            rustls::ALL_VERSIONS
        };
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .expect("protocol versions");
        let builder = if opts.require_client_cert {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(self.ca_der.clone()).expect("CA root");
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        builder
            .with_single_cert(
                vec![self.server.0.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server.1.clone())),
            )
            .expect("server certificate")
    }

    /// The client certificate and key in DER (for clients built in the test).
    pub fn client_der(&self) -> (CertificateDer<'static>, Vec<u8>) {
        self.client.clone()
    }
}

impl Default for TestPki {
    fn default() -> Self {
        TestPki::new()
    }
}

fn make_ca(name: &str) -> (rcgen::Issuer<'static, rcgen::KeyPair>, rcgen::Certificate) {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(rcgen::DnType::CommonName, name.to_owned());
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let key = rcgen::KeyPair::generate().expect("CA key");
    let cert = p.self_signed(&key).expect("CA self-signed");
    (rcgen::Issuer::new(p, key), cert)
}

/// How a [`TlsFront`] behaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct TlsOptions {
    /// Refuse clients without a certificate signed by the test CA.
    pub require_client_cert: bool,
    /// Speak TLS 1.2 only.
    pub tls12_only: bool,
}

/// Terminates TLS on `127.0.0.1:0` and forwards each connection's plain bytes to `backend`.
pub struct TlsFront {
    /// The TLS address.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
    handshakes: Arc<Mutex<Vec<Result<(), String>>>>,
    connections: Arc<std::sync::atomic::AtomicU64>,
}

impl TlsFront {
    /// Starts a TLS front for `backend` with the test PKI's server certificate.
    pub async fn start(pki: &TestPki, backend: SocketAddr, opts: TlsOptions) -> TlsFront {
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(pki.server_config(&opts)));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let handshakes: Arc<Mutex<Vec<Result<(), String>>>> = Arc::default();
        let log = handshakes.clone();
        let connections: Arc<std::sync::atomic::AtomicU64> = Arc::default();
        let count = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                // Counted before the handshake: a client that saw this server's certificate
                // was counted.
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let acceptor = acceptor.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    match acceptor.accept(tcp).await {
                        Ok(mut tls) => {
                            log.lock().expect("log").push(Ok(()));
                            if let Ok(mut up) = TcpStream::connect(backend).await {
                                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                            }
                        }
                        Err(e) => log.lock().expect("log").push(Err(e.to_string())),
                    }
                });
            }
        });
        TlsFront {
            addr,
            task,
            handshakes,
            connections,
        }
    }

    /// `https://localhost:PORT`.
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Handshakes so far: `Ok` for each completed one, the server's error for each failed one.
    pub fn handshakes(&self) -> Vec<Result<(), String>> {
        self.handshakes.lock().expect("log").clone()
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A forward proxy on `127.0.0.1:0`: `CONNECT host:port` tunnels, and plain `GET
/// http://host/...` requests forwarded. Records every target it carried.
pub struct ForwardProxy {
    /// The proxy's address.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
    log: Arc<Mutex<Vec<String>>>,
}

impl ForwardProxy {
    /// Starts the proxy.
    pub async fn start() -> ForwardProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen = log.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let _ = serve_proxy(tcp, seen).await;
                });
            }
        });
        ForwardProxy { addr, task, log }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What the proxy carried, in order: `CONNECT host:port` or `GET http://host/…`.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().expect("log").clone()
    }
}

impl Drop for ForwardProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_proxy(tcp: TcpStream, log: Arc<Mutex<Vec<String>>>) -> std::io::Result<()> {
    let mut client = BufReader::new(tcp);
    let mut head = String::new();
    client.read_line(&mut head).await?;
    let mut parts = head.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or_default().to_owned(),
        parts.next().unwrap_or_default().to_owned(),
    );
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if client.read_line(&mut line).await? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        headers.push(line);
    }
    if method == "CONNECT" {
        log.lock().expect("log").push(format!("CONNECT {target}"));
        let mut up = match TcpStream::connect(&target).await {
            Ok(up) => up,
            Err(_) => {
                client
                    .get_mut()
                    .write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
                    .await?;
                return Ok(());
            }
        };
        client
            .get_mut()
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await?;
        let buffered = client.buffer().to_vec();
        up.write_all(&buffered).await?;
        let mut tcp = client.into_inner();
        tokio::io::copy_bidirectional(&mut tcp, &mut up).await?;
        return Ok(());
    }
    // Absolute-form request: `GET http://host:port/path HTTP/1.1`.
    log.lock().expect("log").push(format!("{method} {target}"));
    let rest = target.strip_prefix("http://").unwrap_or(&target);
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut up = TcpStream::connect(host).await?;
    let version = parts.next().unwrap_or("HTTP/1.1");
    let mut out = format!("{method} {path} {version}\r\n");
    for h in &headers {
        if !h.to_ascii_lowercase().starts_with("proxy-") {
            out.push_str(h);
        }
    }
    out.push_str("\r\n");
    up.write_all(out.as_bytes()).await?;
    let buffered = client.buffer().to_vec();
    up.write_all(&buffered).await?;
    let mut tcp = client.into_inner();
    tokio::io::copy_bidirectional(&mut tcp, &mut up).await?;
    Ok(())
}

/// Reads a whole file (test convenience).
pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("read file")
}

/// Reads one HTTP/1.1 request head from `tcp` (test servers); returns the request line and
/// the headers, lower-cased names.
pub async fn read_request_head(
    tcp: &mut TcpStream,
) -> std::io::Result<(String, Vec<(String, String)>)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if tcp.read(&mut byte).await? == 0 {
            break;
        }
        buf.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or_default().to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok((first, headers))
}

/// A listener on 127.0.0.1:0 that records every byte it receives and answers 401 (a host a
/// test checks no secret reaches). Stops when dropped.
pub struct RecordingListener {
    /// Its base URL, `http://127.0.0.1:<port>/v1`.
    pub url: String,
    seen: Arc<Mutex<Vec<u8>>>,
    task: JoinHandle<()>,
}

impl RecordingListener {
    /// Starts a listener.
    pub async fn start() -> RecordingListener {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let url = format!(
            "http://{}/v1",
            listener.local_addr().expect("local address")
        );
        let seen = Arc::new(Mutex::new(Vec::new()));
        let rec = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let rec = rec.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    if let Ok(n) = sock.read(&mut buf).await {
                        rec.lock()
                            .expect("recording lock")
                            .extend_from_slice(&buf[..n]);
                    }
                    let _ = sock
                        .write_all(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await;
                });
            }
        });
        RecordingListener { url, seen, task }
    }

    /// Everything received so far, as text (lossy).
    pub fn received(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().expect("recording lock")).into_owned()
    }
}

impl Drop for RecordingListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}
