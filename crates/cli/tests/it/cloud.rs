//! Private networking and cloud credentials of the destination, end to end through `sluice
//! run`: moto (S3) behind a TLS front with a CA made in the test, with and without a client
//! certificate, through a forward proxy (configured, and from `HTTPS_PROXY`); the S3 credential
//! chain (environment, a shared profile file, container credentials from a fake endpoint on
//! 127.0.0.1); Azure Blob Storage on Azurite. moto does not check request signatures, so the
//! credential tests show which source was used (its log line, the endpoint that was asked),
//! not that AWS would accept the keys.
//!
//! The tools (`moto_server`, `azurite-blob`) are started and stopped by each test. A missing
//! tool skips the test with a message, and fails it when `CI=true`.

use crate::harness::*;
use sluice_testkit::net::{ForwardProxy, TestPki, TlsFront, TlsOptions};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A tool's process, killed (by PID) and reaped on drop.
struct Service {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Starts `program args…` (with `{port}` and `{dir}` filled in) and waits for its port; `None`
/// (skipped, said on stderr) when the program is missing, unless `CI=true`.
fn start(program: &str, args: &[&str], install: &str) -> Option<Service> {
    let port = free_port();
    let dir = tempfile::tempdir().expect("temp dir");
    let args: Vec<String> = args
        .iter()
        .map(|a| {
            a.replace("{port}", &port.to_string())
                .replace("{dir}", dir.path().to_str().unwrap())
        })
        .collect();
    let child = match Command::new(program)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true: `{program}` must be installed ({install}): {e}")
        }
        Err(e) => {
            eprintln!("skipped: `{program}` is not runnable here ({e}); install it with {install}");
            return None;
        }
    };
    let service = Service {
        child,
        port,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{program} did not listen on {port} within 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(service)
}

fn moto() -> Option<Service> {
    let m = start(
        "moto_server",
        &["-H", "127.0.0.1", "-p", "{port}"],
        "pip install 'moto[server]'",
    )?;
    http_put(m.port, "/lake", &[]);
    Some(m)
}

/// A plain HTTP/1.1 PUT with an empty body; panics unless the answer is 2xx.
fn http_put(port: u16, path: &str, headers: &[(String, String)]) {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!(
        "PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 2"), "PUT {path}: {answer}");
}

/// `sluice run lever --sink parquet --dest s3://lake/lever --config <toml>` with `extra`
/// environment, against `lever`.
async fn run_s3(
    lever: &Lever,
    toml: &str,
    env: &[(&str, String)],
    home: &std::path::Path,
) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(&config, format!("{FAST_SOURCE}{toml}")).unwrap();
    let mut c = lever.command(&[
        "run",
        "lever",
        "--sink",
        "parquet",
        "--dest",
        "s3://lake/lever",
        "--config",
        config.to_str().unwrap(),
    ]);
    c.env("HOME", home);
    for (k, v) in env {
        c.env(k, v);
    }
    let o = output(c).await;
    (o.status.success(), text(&o).1)
}

/// Asserts that `s3://lake/lever` on `moto` holds the emulator's truth, read back through a
/// `parquet` sink of its own (plain HTTP to moto, static keys).
async fn assert_s3_matches_truth(moto: &Service, lever: &Lever) {
    let sink = parquet_sink(&serde_json::json!({
        "dest": "s3://lake/lever",
        "endpoint": format!("http://127.0.0.1:{}", moto.port),
        "region": "us-east-1",
        "access_key_id": "AKIDREADBACK",
        "secret_access_key": "read-back",
    }));
    assert_sink_matches_truth(sink.as_ref(), &lever.emu).await;
}

/// A fake HTTP endpoint on 127.0.0.1 for credential services: answers each request (one per
/// connection) with `answer(request line, headers)` → (status, body) and records the request
/// lines. Stopped on drop.
struct FakeEndpoint {
    addr: SocketAddr,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeEndpoint {
    async fn start(
        answer: impl Fn(&str, &[(String, String)]) -> (u16, String) + Send + Sync + 'static,
    ) -> FakeEndpoint {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let log = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let Ok((line, headers)) = sluice_testkit::net::read_request_head(&mut tcp).await
                else {
                    continue;
                };
                log.lock().unwrap().push(line.clone());
                let (status, body) = answer(&line, &headers);
                let reply = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tcp.write_all(reply.as_bytes()).await;
            }
        });
        FakeEndpoint { addr, seen, task }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for FakeEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn keys() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "AKIDTESTKEY".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test-secret-do-not-log".to_owned()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_over_tls_with_a_private_ca_a_client_certificate_and_a_proxy() {
    let Some(moto) = moto() else { return };
    let lever = Lever::start(4).await;
    let home = tempfile::tempdir().unwrap();
    let pki = TestPki::new();
    let backend: SocketAddr = ([127, 0, 0, 1], moto.port).into();
    let front = TlsFront::start(&pki, backend, TlsOptions::default()).await;
    let ca = pki.path("ca.pem");
    let sink = |network: String| format!("[sink]\nendpoint = \"{}\"\n{network}", front.url());

    // Without the CA: the store check at open fails in one line naming host and key.
    let (ok, err) = run_s3(&lever, &sink(String::new()), &keys(), home.path()).await;
    assert!(!ok);
    // The error is the last line, and the only one.
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("sluice: ")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    let line = errors[0];
    assert_eq!(err.lines().last(), Some(line), "{err}");
    assert!(
        line.starts_with("sluice: destination error: ") && line.contains("not trusted"),
        "{line}"
    );
    assert!(
        line.contains(&format!("localhost:{}", front.addr.port()))
            && line.contains("[sink.network].ca_cert_file"),
        "{line}"
    );
    assert!(!err.contains("test-secret-do-not-log"), "{err}");

    // With the CA, through a proxy: a full sync, every request tunnelled.
    let proxy = ForwardProxy::start().await;
    let network = format!(
        "[sink.network]\nca_cert_file = \"{}\"\nproxy_url = \"{}\"\n",
        ca.display(),
        proxy.url()
    );
    let (ok, err) = run_s3(&lever, &sink(network), &keys(), home.path()).await;
    assert!(ok, "{err}");
    assert!(
        err.contains("S3 credentials: environment (AWS_ACCESS_KEY_ID)"),
        "{err}"
    );
    assert!(!err.contains("test-secret-do-not-log"), "{err}");
    let log = proxy.log();
    let tunnel = format!("CONNECT localhost:{}", front.addr.port());
    assert!(
        !log.is_empty() && log.iter().all(|l| *l == tunnel),
        "{log:?}"
    );

    // A store that requires a client certificate: refused without one, synced with one.
    let mtls = TlsFront::start(
        &pki,
        backend,
        TlsOptions {
            require_client_cert: true,
            ..TlsOptions::default()
        },
    )
    .await;
    let sink = |network: String| format!("[sink]\nendpoint = \"{}\"\n{network}", mtls.url());
    let ca_only = format!("[sink.network]\nca_cert_file = \"{}\"\n", ca.display());
    let (ok, err) = run_s3(&lever, &sink(ca_only.clone()), &keys(), home.path()).await;
    assert!(!ok);
    assert!(err.contains("[sink.network].client_cert_file"), "{err}");
    let with_cert = format!(
        "{ca_only}client_cert_file = \"{}\"\nclient_key_file = \"{}\"\n",
        pki.path("client.pem").display(),
        pki.path("client.key").display()
    );
    let (ok, err) = run_s3(&lever, &sink(with_cert), &keys(), home.path()).await;
    assert!(ok, "{err}");
    assert_s3_matches_truth(&moto, &lever).await;

    // `min_tls_version = "1.3"` refuses a store that speaks TLS 1.2 only, in one line naming
    // the key; the same front is used with the default floor.
    let tls12 = TlsFront::start(
        &pki,
        backend,
        TlsOptions {
            tls12_only: true,
            ..TlsOptions::default()
        },
    )
    .await;
    let sink = |network: &str| {
        format!(
            "[sink]\nendpoint = \"{}\"\n[sink.network]\nca_cert_file = \"{}\"\n{network}",
            tls12.url(),
            ca.display()
        )
    };
    let (ok, err) = run_s3(
        &lever,
        &sink("min_tls_version = \"1.3\"\n"),
        &keys(),
        home.path(),
    )
    .await;
    assert!(!ok);
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("sluice: ")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(
        errors[0].starts_with("sluice: destination error: ")
            && errors[0].contains("min_tls_version"),
        "{err}"
    );
    let (ok, err) = run_s3(&lever, &sink(""), &keys(), home.path()).await;
    assert!(ok, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_proxy_variable_carries_lever_and_s3_requests() {
    let Some(moto) = moto() else { return };
    let lever = Lever::start(4).await;
    let home = tempfile::tempdir().unwrap();
    let pki = TestPki::new();
    let s3 = TlsFront::start(
        &pki,
        ([127, 0, 0, 1], moto.port).into(),
        TlsOptions::default(),
    )
    .await;
    let api = TlsFront::start(&pki, lever.server.addr, TlsOptions::default()).await;
    let proxy = ForwardProxy::start().await;
    let ca = pki.path("ca.pem").display().to_string();
    let toml = format!(
        "[source.network]\nca_cert_file = \"{ca}\"\n[sink]\nendpoint = \"{}\"\n[sink.network]\nca_cert_file = \"{ca}\"\n",
        s3.url()
    );
    let mut env = keys();
    env.push(("HTTPS_PROXY", proxy.url()));
    env.push(("LEVER_BASE_URL", format!("{}/v1", api.url())));
    let (ok, err) = run_s3(&lever, &toml, &env, home.path()).await;
    assert!(ok, "{err}");
    let log = proxy.log();
    for front in [&s3, &api] {
        let tunnel = format!("CONNECT localhost:{}", front.addr.port());
        assert!(log.contains(&tunnel), "{tunnel} not in {log:?}");
    }
    // NO_PROXY exempts both.
    let proxy2 = ForwardProxy::start().await;
    let mut env = keys();
    env.push(("HTTPS_PROXY", proxy2.url()));
    env.push(("NO_PROXY", "localhost".to_owned()));
    env.push(("LEVER_BASE_URL", format!("{}/v1", api.url())));
    let (ok, err) = run_s3(&lever, &toml, &env, home.path()).await;
    assert!(ok, "{err}");
    assert_eq!(proxy2.log(), Vec::<String>::new());
    assert_s3_matches_truth(&moto, &lever).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_credentials_from_a_profile_file_and_container_credentials() {
    let Some(moto) = moto() else { return };
    let lever = Lever::start(3).await;
    let endpoint = format!("[sink]\nendpoint = \"http://127.0.0.1:{}\"\n", moto.port);

    // A shared profile file (no AWS_* variables).
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".aws")).unwrap();
    std::fs::write(
        home.path().join(".aws/credentials"),
        "[ci]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = profile-secret-do-not-log\n",
    )
    .unwrap();
    let (ok, err) = run_s3(
        &lever,
        &endpoint,
        &[("AWS_PROFILE", "ci".into())],
        home.path(),
    )
    .await;
    assert!(ok, "{err}");
    assert!(
        err.contains("S3 credentials: shared profile `ci` ("),
        "{err}"
    );
    assert!(!err.contains("profile-secret-do-not-log"), "{err}");
    assert_s3_matches_truth(&moto, &lever).await;

    // Container credentials: a fake endpoint on 127.0.0.1 hands out temporary keys for the
    // token in the token file.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    let server = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut tcp, _)) = listener.accept().await {
            let (line, headers) = sluice_testkit::net::read_request_head(&mut tcp)
                .await
                .unwrap();
            let auth = headers
                .iter()
                .find(|(k, _)| k == "authorization")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            log.lock().unwrap().push(format!("{line} auth={auth}"));
            let body = r#"{"AccessKeyId":"ASIATEMP","SecretAccessKey":"temp-secret-do-not-log","Token":"temp-session","Expiration":"2099-01-01T00:00:00Z"}"#;
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tcp.write_all(answer.as_bytes()).await;
        }
    });
    let token_file = home.path().join("container-token");
    std::fs::write(&token_file, "container-token-123").unwrap();
    let empty_home = tempfile::tempdir().unwrap();
    let env = [
        (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            format!("http://{addr}/v1/credentials"),
        ),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            token_file.display().to_string(),
        ),
    ];
    let (ok, err) = run_s3(&lever, &endpoint, &env, empty_home.path()).await;
    server.abort();
    assert!(ok, "{err}");
    assert!(
        err.contains("S3 credentials: container credentials (AWS_CONTAINER_CREDENTIALS_FULL_URI"),
        "{err}"
    );
    assert!(!err.contains("temp-secret-do-not-log"), "{err}");
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty(), "the container endpoint was never asked");
    assert!(
        seen.iter()
            .all(|l| l == "GET /v1/credentials HTTP/1.1 auth=container-token-123"),
        "{seen:?}"
    );
    assert_s3_matches_truth(&moto, &lever).await;
}

/// EKS IRSA: `AWS_WEB_IDENTITY_TOKEN_FILE` and `AWS_ROLE_ARN`, with STS at
/// `AWS_ENDPOINT_URL_STS`: a fake STS on 127.0.0.1 behind a TLS front with the test CA (the
/// web identity client refuses plain HTTP) answers AssumeRoleWithWebIdentity for the token in
/// the file; the sync uses the temporary keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_credentials_from_a_web_identity_token_through_sts() {
    let Some(moto) = moto() else { return };
    let lever = Lever::start(3).await;
    let sts = FakeEndpoint::start(|line, _| {
        let body = r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <Credentials>
      <AccessKeyId>ASIAIRSA</AccessKeyId>
      <SecretAccessKey>sts-secret-do-not-log</SecretAccessKey>
      <SessionToken>sts-session-do-not-log</SessionToken>
      <Expiration>2099-01-01T00:00:00Z</Expiration>
    </Credentials>
  </AssumeRoleWithWebIdentityResult>
</AssumeRoleWithWebIdentityResponse>"#;
        if line.starts_with("POST /?Action=AssumeRoleWithWebIdentity&") {
            (200, body.to_owned())
        } else {
            (400, String::new())
        }
    })
    .await;
    let pki = TestPki::new();
    let front = TlsFront::start(&pki, sts.addr, TlsOptions::default()).await;
    let home = tempfile::tempdir().unwrap();
    let token_file = home.path().join("eks-token");
    std::fs::write(&token_file, "web-identity-token-42").unwrap();
    let toml = format!(
        "[sink]\nendpoint = \"http://127.0.0.1:{}\"\n[sink.network]\nca_cert_file = \"{}\"\n",
        moto.port,
        pki.path("ca.pem").display()
    );
    let env = [
        (
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            token_file.display().to_string(),
        ),
        (
            "AWS_ROLE_ARN",
            "arn:aws:iam::123456789012:role/sluice".into(),
        ),
        ("AWS_ROLE_SESSION_NAME", "sluice-test".into()),
        ("AWS_ENDPOINT_URL_STS", front.url()),
    ];
    let (ok, err) = run_s3(&lever, &toml, &env, home.path()).await;
    assert!(ok, "{err}");
    assert!(
        err.contains("S3 credentials: web identity token file (AWS_WEB_IDENTITY_TOKEN_FILE"),
        "{err}"
    );
    for secret in [
        "sts-secret-do-not-log",
        "sts-session-do-not-log",
        "web-identity-token-42",
    ] {
        assert!(!err.contains(secret), "{secret} in: {err}");
    }
    let seen = sts.seen();
    assert!(!seen.is_empty(), "STS was never asked");
    for line in &seen {
        for part in [
            "Action=AssumeRoleWithWebIdentity",
            "RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fsluice",
            "RoleSessionName=sluice-test",
            "WebIdentityToken=web-identity-token-42",
        ] {
            assert!(line.contains(part), "{part} not in {line}");
        }
    }
    assert_s3_matches_truth(&moto, &lever).await;
}

/// EC2 instance metadata (IMDSv2) at `AWS_EC2_METADATA_SERVICE_ENDPOINT`: a fake on 127.0.0.1
/// hands out a session token, the role's name and its temporary keys, the last two only for
/// the session token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_credentials_from_instance_metadata() {
    let Some(moto) = moto() else { return };
    let lever = Lever::start(3).await;
    const ROLES: &str = "/latest/meta-data/iam/security-credentials/";
    let imds = FakeEndpoint::start(|line, headers| {
        let session = header(headers, "x-aws-ec2-metadata-token") == Some("imds-session-7");
        let mut parts = line.split(' ');
        match (parts.next(), parts.next()) {
            (Some("PUT"), Some("/latest/api/token"))
                if header(headers, "x-aws-ec2-metadata-token-ttl-seconds").is_some() =>
            {
                (200, "imds-session-7".to_owned())
            }
            (Some("GET"), Some(ROLES)) if session => (200, "sluice-node-role".to_owned()),
            (Some("GET"), Some(p)) if session && p == format!("{ROLES}sluice-node-role") => (
                200,
                r#"{"Code":"Success","AccessKeyId":"ASIAIMDS","SecretAccessKey":"imds-secret-do-not-log","Token":"imds-token-do-not-log","Expiration":"2099-01-01T00:00:00Z"}"#
                    .to_owned(),
            ),
            _ => (401, String::new()),
        }
    })
    .await;
    let empty_home = tempfile::tempdir().unwrap();
    let endpoint = format!("[sink]\nendpoint = \"http://127.0.0.1:{}\"\n", moto.port);
    let env = [(
        "AWS_EC2_METADATA_SERVICE_ENDPOINT",
        format!("http://{}", imds.addr),
    )];
    let (ok, err) = run_s3(&lever, &endpoint, &env, empty_home.path()).await;
    assert!(ok, "{err}");
    assert!(
        err.contains(&format!(
            "S3 credentials: instance metadata (IMDS at http://{}",
            imds.addr
        )),
        "{err}"
    );
    for secret in [
        "imds-secret-do-not-log",
        "imds-token-do-not-log",
        "imds-session-7",
    ] {
        assert!(!err.contains(secret), "{secret} in: {err}");
    }
    let seen = imds.seen();
    for want in [
        "PUT /latest/api/token HTTP/1.1".to_owned(),
        format!("GET {ROLES} HTTP/1.1"),
        format!("GET {ROLES}sluice-node-role HTTP/1.1"),
    ] {
        assert!(seen.contains(&want), "{want} not in {seen:?}");
    }
    assert_s3_matches_truth(&moto, &lever).await;
}

/// Azurite's well-known development account.
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Creates a blob container on Azurite with a SharedKey-signed PUT.
fn create_container(port: u16, container: &str) {
    use base64::Engine;
    use sha2::Digest;
    let date = http_date(std::time::SystemTime::now());
    let version = "2021-08-06";
    let to_sign = format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}/{container}\nrestype:container"
    );
    let key = base64::engine::general_purpose::STANDARD
        .decode(AZURITE_KEY)
        .unwrap();
    // HMAC-SHA256 (RFC 2104).
    let mut k = [0u8; 64];
    k[..key.len()].copy_from_slice(&key);
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let inner = sha2::Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(to_sign.as_bytes())
        .finalize();
    let mac = sha2::Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    let sig = base64::engine::general_purpose::STANDARD.encode(mac);
    http_put(
        port,
        &format!("/{AZURITE_ACCOUNT}/{container}?restype=container"),
        &[
            ("x-ms-date".into(), date),
            ("x-ms-version".into(), version.into()),
            (
                "Authorization".into(),
                format!("SharedKey {AZURITE_ACCOUNT}:{sig}"),
            ),
        ],
    );
}

/// An RFC 1123 date (`Sun, 06 Dec 2026 07:14:00 GMT`).
fn http_date(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    // Civil date from days since 1970-01-01 (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{weekday}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        months[(month - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Azurite with the container `sluice`.
fn azurite() -> Option<Service> {
    let azurite = start(
        "azurite-blob",
        &[
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            "{port}",
            "--location",
            "{dir}",
            "--silent",
            "--skipApiVersionCheck",
            "--disableTelemetry",
        ],
        "npm install -g azurite",
    )?;
    create_container(azurite.port, "sluice");
    Some(azurite)
}

/// Azure Blob Storage over TLS with the test CA and through `proxy_url`: Azurite behind a TLS
/// front, every request tunnelled by a proxy the test runs; the data equals the truth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_over_tls_with_a_private_ca_through_a_proxy() {
    let Some(azurite) = azurite() else { return };
    let lever = Lever::start(4).await;
    let pki = TestPki::new();
    let front = TlsFront::start(
        &pki,
        ([127, 0, 0, 1], azurite.port).into(),
        TlsOptions::default(),
    )
    .await;
    let proxy = ForwardProxy::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    let write_config = |network: &str| {
        std::fs::write(
            &config,
            format!(
                "{FAST_SOURCE}[sink.network]\nproxy_url = \"{}\"\n{network}",
                proxy.url()
            ),
        )
        .unwrap();
    };
    let run = || {
        let mut c = lever.command(&[
            "run",
            "lever",
            "--sink",
            "parquet",
            "--dest",
            "az://sluice/lever",
            "--config",
            config.to_str().unwrap(),
        ]);
        c.env("AZURE_STORAGE_USE_EMULATOR", "true")
            .env("AZURITE_BLOB_STORAGE_URL", front.url())
            .env("AZURE_STORAGE_ACCOUNT_NAME", AZURITE_ACCOUNT)
            .env("AZURE_STORAGE_ACCOUNT_KEY", AZURITE_KEY);
        c
    };
    // Without the CA: one destination error line naming the key that fixes it.
    write_config("");
    let o = output(run()).await;
    let err = text(&o).1;
    assert_eq!(o.status.code(), Some(5), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("sluice: ")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(errors[0].contains("[sink.network].ca_cert_file"), "{err}");
    // With it: a full sync, every request tunnelled to the TLS front.
    write_config(&format!(
        "ca_cert_file = \"{}\"\n",
        pki.path("ca.pem").display()
    ));
    let o = output(run()).await;
    let err = text(&o).1;
    assert!(o.status.success(), "{err}");
    assert!(!err.contains(AZURITE_KEY), "{err}");
    let log = proxy.log();
    let tunnel = format!("CONNECT localhost:{}", front.addr.port());
    assert!(
        !log.is_empty() && log.iter().all(|l| *l == tunnel),
        "{log:?}"
    );
    assert_sink_matches_truth(azurite_sink(azurite.port).as_ref(), &lever.emu).await;
}

/// A `parquet` sink on `az://sluice/lever` of the Azurite at `port` (path-style account URL,
/// the development account's key), built in the test without `AZURE_*` variables.
fn azurite_sink(port: u16) -> Box<dyn sluice_core::Sink> {
    use std::sync::Arc;
    let store = object_store::azure::MicrosoftAzureBuilder::new()
        .with_account(AZURITE_ACCOUNT)
        .with_access_key(AZURITE_KEY)
        .with_container_name("sluice")
        .with_endpoint(format!("http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"))
        .with_allow_http(true)
        .build()
        .expect("Azure store");
    let mut config = sluice_lake::LakeConfig::new("s3://sluice/lever");
    config.access_key_id = Some("unused".into());
    config.secret_access_key = Some(sluice_core::Secret::new("unused"));
    let format = Arc::new(sluice_sink_parquet::ParquetFormat);
    let placeholder = sluice_lake::LakeSink::new(config.clone(), format.clone()).expect("sink");
    let mut dest = placeholder.destination().clone();
    dest.store = Arc::new(store);
    Box::new(sluice_lake::LakeSink::with_destination(
        dest, config, format,
    ))
}

/// Azure Blob Storage on Azurite: a first sync that fails after some commits (every request
/// fails from the fifth opportunities page on) and keeps them, a rerun from those commits to
/// the emulator's truth, a change merged by a third run, and `state show`; the data read back
/// from Azurite is checked after each run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_blob_storage_on_azurite_keeps_a_failed_runs_commits_reruns_and_merges_to_the_truth()
{
    let Some(azurite) = azurite() else { return };
    let lever = Lever::start(40).await;
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.json");
    // The failing run commits at every checkpoint; the others at the default interval.
    let failing = dir.path().join("failing.toml");
    std::fs::write(
        &failing,
        format!("commit_interval_secs = 0\n{FAST_SOURCE}page_size = 5\nmax_retries = 0\n"),
    )
    .unwrap();
    let fast = dir.path().join("fast.toml");
    std::fs::write(&fast, FAST_SOURCE).unwrap();
    let dest = "az://sluice/lever";
    let azure = |c: &mut tokio::process::Command| {
        c.env("AZURE_STORAGE_USE_EMULATOR", "true")
            .env(
                "AZURITE_BLOB_STORAGE_URL",
                format!("http://127.0.0.1:{}", azurite.port),
            )
            .env("AZURE_STORAGE_ACCOUNT_NAME", AZURITE_ACCOUNT)
            .env("AZURE_STORAGE_ACCOUNT_KEY", AZURITE_KEY);
    };
    let run = |config: &std::path::Path| {
        let mut c = lever.command(&[
            "run",
            "lever",
            "--sink",
            "parquet",
            "--dest",
            dest,
            "--config",
            config.to_str().unwrap(),
            "--summary-json",
            summary.to_str().unwrap(),
        ]);
        azure(&mut c);
        c
    };
    let read_summary = || -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap()
    };

    // First run: the conditional-write probe at open passes on Azurite; the run commits, then
    // fails at the third opportunities page.
    let hook: sluice_lever_emulator::ListHook = std::sync::Arc::new(|emu, n| {
        if n == 5 {
            emu.set_faults(sluice_lever_emulator::FaultConfig {
                error_rate: 1.0,
                ..Default::default()
            });
        }
    });
    lever.emu.set_list_hook(Some(hook));
    let o = output(run(&failing)).await;
    let err = text(&o).1;
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(
        err.contains("Azure credentials: the Azurite emulator"),
        "{err}"
    );
    assert!(!err.contains(AZURITE_KEY), "{err}");
    let s = read_summary();
    assert_eq!(s["status"], "failed", "{s}");
    let sink = azurite_sink(azurite.port);
    let stored = read_sink(sink.as_ref(), &Default::default()).await;
    assert_summary_counts_the_stored_rows(&s, &stored);
    let inserted = |s: &serde_json::Value| -> u64 {
        s["tables"]
            .as_object()
            .unwrap()
            .values()
            .map(|t| t["inserted"].as_u64().unwrap_or(0))
            .sum()
    };
    let first = inserted(&s);

    // The rerun starts from those commits and ends at the truth: every stored row was
    // inserted once, by one of the two runs.
    lever.emu.set_list_hook(None);
    lever
        .emu
        .set_faults(sluice_lever_emulator::FaultConfig::default());
    let o = output(run(&fast)).await;
    assert!(o.status.success(), "{}", text(&o).1);
    let s = read_summary();
    assert_eq!(s["status"], "succeeded", "{s}");
    assert_sink_matches_truth(sink.as_ref(), &lever.emu).await;
    let stored: usize = read_sink(sink.as_ref(), &Default::default())
        .await
        .values()
        .map(Vec::len)
        .sum();
    assert_eq!(first + inserted(&s), stored as u64, "{s}");

    // A change, then a third run: it reads the state and the stored bucket back from Azure
    // and merges one new note.
    let opp = lever.emu.truth().opportunities[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    lever.emu.add_note(&opp);
    let o = output(run(&fast)).await;
    assert!(o.status.success(), "{}", text(&o).1);
    let s = read_summary();
    assert_eq!(s["status"], "succeeded", "{s}");
    assert_eq!(s["tables"]["note"]["inserted"], 1, "{s}");
    assert_sink_matches_truth(sink.as_ref(), &lever.emu).await;

    // The committed state is readable from Azure.
    let mut c = lever.command(&["state", "show", "--sink", "parquet", "--dest", dest]);
    azure(&mut c);
    let o = output(c).await;
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("opportunity"), "{out}");
}
