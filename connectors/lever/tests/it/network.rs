//! Private networking of the Lever client, for real on 127.0.0.1: the emulator behind TLS with
//! a CA made in the test, a forward proxy that logs what it carried, a server that requires a
//! client certificate, and a TLS 1.2-only server against `min_tls_version = "1.3"`.

use crate::common::*;
use serde_json::{Value, json};
use sluice_core::{CheckContext, DynSource, ErrorKind};
use sluice_testkit::MemoryDestination;
use sluice_testkit::net::{ForwardProxy, TestPki, TlsFront, TlsOptions};

/// A config reading the emulator through `front` with `network` settings.
fn through(env: &Env, front: &TlsFront, network: Value) -> Value {
    let mut c = env.config();
    c["base_url"] = json!(format!("{}/v1", front.url()));
    c["network"] = network;
    c
}

async fn check_error(config: &Value) -> sluice_core::Error {
    source()
        .check(config, CheckContext::default())
        .await
        .expect_err("check fails")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca_fails_clearly_without_it_and_syncs_with_it() {
    let env = Env::start(8).await;
    let pki = TestPki::new();
    let front = TlsFront::start(&pki, env.server.addr, TlsOptions::default()).await;
    let host = format!("localhost:{}", front.addr.port());

    // Without the CA: one line naming the host and the setting, a config error, no retries.
    let e = check_error(&through(&env, &front, json!({}))).await;
    let msg = e.to_string();
    assert_eq!(e.kind(), ErrorKind::Config, "{msg}");
    assert!(!msg.contains('\n'), "{msg}");
    assert!(
        msg.contains(&format!("certificate of {host} is not trusted"))
            && msg.contains("[source.network].ca_cert_file"),
        "{msg}"
    );
    assert_eq!(
        front.connections(),
        1,
        "an untrusted certificate is not retried"
    );

    // A CA that did not sign the server's certificate: said so.
    let other = through(
        &env,
        &front,
        json!({"ca_cert_file": pki.path("other-ca.pem")}),
    );
    let msg = check_error(&other).await.to_string();
    assert!(
        msg.contains("did not sign it") && msg.contains("other-ca.pem"),
        "{msg}"
    );

    // With the CA: a full sync, equal to the emulator's ground truth.
    let config = through(&env, &front, json!({"ca_cert_file": pki.path("ca.pem")}));
    let dest = MemoryDestination::new("lever");
    sync(&config, &dest, at(1_000))
        .await
        .expect("sync over TLS");
    assert_matches_oracle(&dest, &env.emu.truth(), true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_go_through_the_configured_proxy() {
    let env = Env::start(5).await;
    let pki = TestPki::new();
    let front = TlsFront::start(&pki, env.server.addr, TlsOptions::default()).await;
    let proxy = ForwardProxy::start().await;
    let config = through(
        &env,
        &front,
        json!({"ca_cert_file": pki.path("ca.pem"), "proxy_url": proxy.url()}),
    );
    let dest = MemoryDestination::new("lever");
    sync(&config, &dest, at(1_000))
        .await
        .expect("sync through the proxy");
    assert_matches_oracle(&dest, &env.emu.truth(), true);
    let log = proxy.log();
    let tunnel = format!("CONNECT localhost:{}", front.addr.port());
    assert!(
        !log.is_empty() && log.iter().all(|l| l == &tunnel),
        "{log:?}"
    );

    // Plain http:// through the proxy: forwarded requests, absolute-form.
    let proxy = ForwardProxy::start().await;
    let mut plain = env.config();
    plain["network"] = json!({"proxy_url": proxy.url()});
    source()
        .check(&plain, CheckContext::default())
        .await
        .expect("check through the proxy");
    let log = proxy.log();
    let want = format!("GET {}/users?limit=1", env.server.base_url());
    assert_eq!(log, vec![want]);

    // `no_proxy` sends the host direct.
    let proxy = ForwardProxy::start().await;
    plain["network"] = json!({"proxy_url": proxy.url(), "no_proxy": "127.0.0.1"});
    source()
        .check(&plain, CheckContext::default())
        .await
        .expect("check without the proxy");
    assert_eq!(proxy.log(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_requiring_a_client_certificate() {
    let env = Env::start(5).await;
    let pki = TestPki::new();
    let mtls = TlsOptions {
        require_client_cert: true,
        ..TlsOptions::default()
    };
    let front = TlsFront::start(&pki, env.server.addr, mtls).await;

    let e = check_error(&through(
        &env,
        &front,
        json!({"ca_cert_file": pki.path("ca.pem")}),
    ))
    .await;
    let msg = e.to_string();
    assert_eq!(e.kind(), ErrorKind::Config, "{msg}");
    assert!(
        msg.contains(&format!("localhost:{}", front.addr.port()))
            && msg.contains("[source.network].client_cert_file")
            && !msg.contains('\n'),
        "{msg}"
    );

    let config = through(
        &env,
        &front,
        json!({
            "ca_cert_file": pki.path("ca.pem"),
            "client_cert_file": pki.path("client.pem"),
            "client_key_file": pki.path("client.key"),
        }),
    );
    let dest = MemoryDestination::new("lever");
    sync(&config, &dest, at(1_000))
        .await
        .expect("sync with mutual TLS");
    assert_matches_oracle(&dest, &env.emu.truth(), true);

    // The server's certificate as a client certificate: refused, named, key never shown.
    let wrong = through(
        &env,
        &front,
        json!({
            "ca_cert_file": pki.path("ca.pem"),
            "client_cert_file": pki.path("server.pem"),
            "client_key_file": pki.path("server.key"),
        }),
    );
    let msg = check_error(&wrong).await.to_string();
    assert!(
        msg.contains("refused the client certificate") && msg.contains("server.pem"),
        "{msg}"
    );
    let key = std::fs::read_to_string(pki.path("server.key")).unwrap();
    let body = key.lines().nth(1).unwrap();
    assert!(!msg.contains(body), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_tls_version_refuses_an_older_server() {
    let env = Env::start(5).await;
    let pki = TestPki::new();
    let old = TlsOptions {
        tls12_only: true,
        ..TlsOptions::default()
    };
    let front = TlsFront::start(&pki, env.server.addr, old).await;
    let ca = pki.path("ca.pem");
    let e = check_error(&through(
        &env,
        &front,
        json!({"ca_cert_file": ca, "min_tls_version": "1.3"}),
    ))
    .await;
    let msg = e.to_string();
    assert_eq!(e.kind(), ErrorKind::Config, "{msg}");
    assert!(
        msg.contains("min_tls_version") && msg.contains("TLS 1.3"),
        "{msg}"
    );
    source()
        .check(
            &through(
                &env,
                &front,
                json!({"ca_cert_file": ca, "min_tls_version": "1.2"}),
            ),
            CheckContext::default(),
        )
        .await
        .expect("TLS 1.2 is accepted by default");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_network_files_are_config_errors_before_any_request() {
    let env = Env::start(1).await;
    let mut config = env.config();
    config["network"] = json!({"ca_cert_file": "/nonexistent/ca.pem"});
    let e = check_error(&config).await;
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(
        e.to_string()
            .contains("[source.network].ca_cert_file: cannot read `/nonexistent/ca.pem`"),
        "{e}"
    );
    assert_eq!(env.emu.counters().total, 0);
}
