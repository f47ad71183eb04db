//! API keys, confidential access and OAuth.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use sluice_lever_emulator::EmulatorConfig;

use crate::common::{env, small};

#[tokio::test]
async fn api_key_failures_answer_401_with_lever_body() {
    let env = small().await;
    let (status, body) = env.get_as("/opportunities", None).await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], "UnauthorizedError");
    assert!(body["message"].is_string());
    assert_eq!(env.get_as("/users", Some("wrong-key")).await.0, 401);
    // a password is not allowed
    let resp = env
        .client
        .get(env.url("/users"))
        .basic_auth(&env.key, Some("pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let resp = env
        .client
        .get(env.url("/users"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(env.get("/users").await.0, 200);
    env.stop().await;
}

#[tokio::test]
async fn confidential_access_is_enforced() {
    let env = small().await;
    let t = env.emu.truth();
    let plain = env.emu.create_api_key(false);
    for path in [
        "/opportunities?confidentiality=all",
        "/opportunities?confidentiality=confidential",
        "/postings?confidentiality=all",
        "/requisitions?confidentiality=confidential",
    ] {
        let (status, body) = env.get_as(path, Some(&plain)).await;
        assert_eq!(status, 403, "{path}");
        assert!(body["code"].is_string());
    }
    let (items, _) = env.walk_as("/opportunities", &plain).await;
    assert!(
        !items.is_empty()
            && items
                .iter()
                .all(|o| o["confidentiality"] == "non-confidential")
    );
    assert_eq!(
        env.walk_as("/opportunities?confidentiality=non-confidential", &plain)
            .await
            .0,
        items
    );
    let secret = t
        .opportunities
        .iter()
        .find(|o| o["confidentiality"] == "confidential")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        env.get_as(&format!("/opportunities/{secret}"), Some(&plain))
            .await
            .0,
        403
    );
    assert_eq!(
        env.get_as(&format!("/opportunities/{secret}/notes"), Some(&plain))
            .await
            .0,
        403
    );
    assert_eq!(
        env.get(&format!("/opportunities/{secret}/notes")).await.0,
        200
    );
    // a confidential key still gets non-confidential by default
    assert_eq!(env.walk("/opportunities").await, items);
    env.stop().await;
}

async fn token(env: &crate::common::Env, form: &[(&str, &str)]) -> (u16, Value) {
    let resp = env
        .client
        .post(format!("{}/oauth/token", env.server.root_url()))
        .form(form)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test]
async fn oauth_code_refresh_rotation_and_expiry() {
    let env = env(EmulatorConfig {
        opportunities: 20,
        rate_limit: None,
        access_token_ttl: Duration::from_millis(1500),
        // Reuse of a rotated token is refused without revoking the family here; the strict
        // policy is tested in the emulator's unit tests and by the Lever source's tests.
        oauth_rotation: sluice_lever_emulator::RotationPolicy {
            grace: Duration::ZERO,
            reuse_revokes_family: false,
        },
        ..EmulatorConfig::default()
    })
    .await;
    let (id, secret) = env.emu.register_oauth_client();
    let code = env.emu.issue_authorization_code(&id, true).unwrap();
    let (status, t1) = token(
        &env,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", &id),
            ("client_secret", &secret),
            ("code", &code),
            ("redirect_uri", "https://example.com/cb"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{t1}");
    assert_eq!(t1["token_type"], "Bearer");
    assert_eq!(t1["expires_in"], 1);
    assert!(
        t1["scope"]
            .as_str()
            .unwrap()
            .contains("confidential:access:admin")
    );
    let access = t1["access_token"].as_str().unwrap();
    let resp = env
        .client
        .get(env.url("/opportunities?confidentiality=all"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    // wrong secret
    assert_eq!(
        token(
            &env,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", &id),
                ("client_secret", "x"),
                ("refresh_token", t1["refresh_token"].as_str().unwrap())
            ]
        )
        .await
        .0,
        401
    );
    // rotation
    let r1 = t1["refresh_token"].as_str().unwrap();
    let (status, t2) = token(
        &env,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &id),
            ("client_secret", &secret),
            ("refresh_token", r1),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let r2 = t2["refresh_token"].as_str().unwrap();
    assert_ne!(r1, r2);
    let (status, err) = token(
        &env,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &id),
            ("client_secret", &secret),
            ("refresh_token", r1),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(err["error"], "invalid_grant");
    // directly issued refresh token without confidential access
    let direct = env.emu.issue_refresh_token(&id, false);
    let (status, t3) = token(
        &env,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &id),
            ("client_secret", &secret),
            ("refresh_token", &direct),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let resp = env
        .client
        .get(env.url("/opportunities?confidentiality=all"))
        .bearer_auth(t3["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    // expiry (real time)
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let resp = env
        .client
        .get(env.url("/users"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let body: Value = resp.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("expired"));
    // the rotated refresh token still gives a fresh access token
    let (status, t4) = token(
        &env,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &id),
            ("client_secret", &secret),
            ("refresh_token", r2),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let resp = env
        .client
        .get(env.url("/users"))
        .bearer_auth(t4["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    env.stop().await;
}

#[tokio::test]
async fn authorize_redirects_with_a_code_and_the_state() {
    let env = env(EmulatorConfig {
        opportunities: 5,
        rate_limit: None,
        ..EmulatorConfig::default()
    })
    .await;
    let (id, secret) = env.emu.register_oauth_client();
    let no_redirects = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let authorize = |client_id: &str, scope: &str| {
        let mut url =
            url::Url::parse(&format!("{}/oauth/authorize", env.server.root_url())).unwrap();
        url.query_pairs_mut()
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", "http://127.0.0.1:9/cb?x=1")
            .append_pair("response_type", "code")
            .append_pair("state", "st ate")
            .append_pair("scope", scope);
        no_redirects.get(url).send()
    };
    let resp = authorize(&id, "offline_access confidential:access:admin")
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 302);
    let location = url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(location.path(), "/cb");
    let q: HashMap<String, String> = location.query_pairs().into_owned().collect();
    assert_eq!(q["x"], "1");
    assert_eq!(q["state"], "st ate");
    let (status, t) = token(
        &env,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", &id),
            ("client_secret", &secret),
            ("code", &q["code"]),
        ],
    )
    .await;
    assert_eq!(status, 200, "{t}");
    assert!(
        t["scope"]
            .as_str()
            .unwrap()
            .contains("confidential:access:admin")
    );
    assert!(t["refresh_token"].as_str().is_some());
    let unknown = authorize("client_nope", "offline_access").await.unwrap();
    assert_eq!(unknown.status().as_u16(), 400);
    env.stop().await;
}
