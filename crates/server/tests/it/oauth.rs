//! The OAuth authorization dance against the emulator's authorize and token endpoints, like
//! Fivetran's Connect Card: authorization URL → the admin approves → the callback stores the
//! refresh token → the connection is authorized and syncs.

use crate::harness::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use sluice_lever_emulator::{EmulatorConfig, RotationPolicy};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_dance_end_to_end() {
    let lever = Lever::with(EmulatorConfig {
        opportunities: 15,
        rate_limit: None,
        oauth_rotation: RotationPolicy {
            grace: Duration::ZERO,
            reuse_revokes_family: true,
        },
        ..EmulatorConfig::default()
    })
    .await;
    let (client_id, client_secret) = lever.emu.register_oauth_client();
    let s = TestServer::start().await;
    let id = s.new_lever_connection(&lever, None).await;
    let root = lever.server.root_url();
    let conn = s
        .send(
            Method::PUT,
            &format!("/v1/connections/{id}/credentials"),
            json!({"oauth": {"client_id": client_id, "client_secret": client_secret,
                   "token_url": format!("{root}/oauth/token"),
                   "authorize_url": format!("{root}/oauth/authorize")}}),
            StatusCode::OK,
        )
        .await;
    assert_eq!(conn["authorized"], false);
    assert_eq!(conn["credentials"]["oauth_client_id"], client_id.as_str());
    assert_eq!(conn["credentials"]["oauth_refresh_token"], false);

    let auth = s
        .send(
            Method::POST,
            &format!("/v1/connections/{id}/authorize"),
            json!({}),
            StatusCode::OK,
        )
        .await;
    let url = url::Url::parse(auth["authorization_url"].as_str().unwrap()).unwrap();
    let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(q["client_id"], client_id);
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["state"], auth["state"].as_str().unwrap());
    assert_eq!(q["redirect_uri"], format!("{}/v1/oauth/callback", s.base));
    assert!(q["scope"].contains("offline_access"));

    // The admin's browser: the emulator approves and redirects to the server's callback.
    let browser = reqwest::Client::builder().no_proxy().build().unwrap();
    let resp = browser.get(url.clone()).send().await.unwrap();
    assert_eq!(resp.url().path(), "/v1/oauth/callback");
    let status = resp.status();
    let page = resp.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("authorized"), "{page}");
    let conn = s.get(&format!("/v1/connections/{id}")).await;
    assert_eq!(conn["authorized"], true, "{conn}");
    assert_eq!(conn["credentials"]["oauth_refresh_token"], true);
    let token_file = s
        .lake()
        .join("_sluice")
        .join("secrets")
        .join("lever_oauth_refresh_token");
    let first_token =
        std::fs::read_to_string(&token_file).expect("the destination holds the token");

    // The state is single use.
    let replay = browser.get(url).send().await.unwrap();
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    let unknown = browser
        .get(format!("{}/v1/oauth/callback?code=x&state=nope", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);

    // Check, then sync with the authorization: rotated tokens live in the destination.
    let check = s
        .send(
            Method::POST,
            &format!("/v1/connections/{id}/check"),
            json!({}),
            StatusCode::OK,
        )
        .await;
    assert_eq!(check["ok"], true, "{check}");
    assert!(check["message"].as_str().unwrap().contains("OAuth"));
    let run = s
        .send(
            Method::POST,
            &format!("/v1/connections/{id}/sync"),
            json!({}),
            StatusCode::ACCEPTED,
        )
        .await;
    let run = s.wait_run(run["id"].as_str().unwrap()).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_lake_matches(&s.lake(), &lever.emu, &[], &[], "unused").await;
    let rotated = std::fs::read_to_string(&token_file).unwrap();
    assert_ne!(
        rotated, first_token,
        "the run rotated the token and saved it in the destination"
    );
    let again = s
        .send(
            Method::POST,
            &format!("/v1/connections/{id}/sync"),
            json!({}),
            StatusCode::ACCEPTED,
        )
        .await;
    let again = s.wait_run(again["id"].as_str().unwrap()).await;
    assert_eq!(again["status"], "succeeded", "{again}");

    let body = s.get(&format!("/v1/connections/{id}")).await.to_string();
    for secret in [client_secret.as_str(), first_token.trim(), rotated.trim()] {
        assert!(!body.contains(secret));
        assert!(!log_text().contains(secret), "a log line shows a secret");
    }
    let dir = s.stop().await;
    assert_no_file_holds(
        &dir.path().join("data"),
        &[client_secret.as_str(), first_token.trim()],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_state_is_refused() {
    let lever = Lever::start(1).await;
    let (client_id, client_secret) = lever.emu.register_oauth_client();
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(&dir.path().join("data"));
    // Every state is past its time as soon as it is issued.
    o.oauth_state_ttl = Duration::ZERO;
    let s = TestServer::start_with(dir, o).await;
    let id = s.new_lever_connection(&lever, None).await;
    let root = lever.server.root_url();
    s.send(
        Method::PUT,
        &format!("/v1/connections/{id}/credentials"),
        json!({"oauth": {"client_id": client_id, "client_secret": client_secret,
               "token_url": format!("{root}/oauth/token"),
               "authorize_url": format!("{root}/oauth/authorize")}}),
        StatusCode::OK,
    )
    .await;
    let auth = s
        .send(
            Method::POST,
            &format!("/v1/connections/{id}/authorize"),
            json!({}),
            StatusCode::OK,
        )
        .await;
    let url = url::Url::parse(auth["authorization_url"].as_str().unwrap()).unwrap();
    // The admin approves; the emulator sends the browser back with a valid code.
    let browser = reqwest::Client::builder().no_proxy().build().unwrap();
    let resp = browser.get(url).send().await.unwrap();
    assert_eq!(resp.url().path(), "/v1/oauth/callback");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let page = resp.text().await.unwrap();
    assert!(page.contains("state: expired"), "{page}");
    let conn = s.get(&format!("/v1/connections/{id}")).await;
    assert_eq!(conn["authorized"], false, "{conn}");
    assert_eq!(conn["credentials"]["oauth_refresh_token"], false, "{conn}");
    s.stop().await;
}
