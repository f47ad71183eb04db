//! 401 without the token, 400 naming the field, 404 for unknown ids, the OpenAPI document.

use crate::harness::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[tokio::test]
async fn missing_or_wrong_token_is_401_except_healthz() {
    let s = TestServer::start().await;
    for (method, path) in [
        (Method::GET, "/v1/connections"),
        (Method::POST, "/v1/connections"),
        (Method::GET, "/v1/connections/x"),
        (Method::POST, "/v1/connections/x/sync"),
        (Method::GET, "/v1/runs/x"),
        (Method::GET, "/v1/openapi.json"),
        (Method::GET, "/metrics"),
    ] {
        for token in [None, Some("wrong-token")] {
            let (status, body) = s.call_as(token, method.clone(), path, None).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} {token:?}"
            );
            assert_eq!(body["error"]["code"], "unauthorized");
        }
    }
    // Every route of the OpenAPI document but the OAuth callback (authenticated by `state`).
    let doc = s.get("/v1/openapi.json").await;
    let mut checked = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        if path == "/v1/oauth/callback" {
            continue;
        }
        for method in ops.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let path = path.replace("{id}", "x");
            let (status, _) = s.call_as(None, method.clone(), &path, None).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
            checked += 1;
        }
    }
    assert!(checked >= 17, "{checked} routes");
    let (status, _) = s.call_as(None, Method::GET, "/healthz", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = s.call_as(None, Method::GET, "/", None).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the status page needs the token too"
    );
    s.stop().await;
}

async fn expect_400(
    s: &TestServer,
    method: Method,
    path: &str,
    body: Value,
    field: &str,
    says: &str,
) {
    let (status, v) = s.call(method.clone(), path, Some(body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {path}: {v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert_eq!(v["error"]["field"], field, "{message}");
    assert!(message.starts_with(&format!("{field}: ")), "{message}");
    assert!(message.contains(says), "{message:?} lacks {says:?}");
    assert!(!message.contains('\n'));
}

#[tokio::test]
async fn invalid_bodies_are_400_naming_the_field() {
    let lever = Lever::start(5).await;
    let s = TestServer::start().await;
    let lake = s.lake();
    let base = json!({"source": "lever", "sink": "parquet", "destination": lake.to_str().unwrap()});
    let with = |extra: Value| {
        let mut b = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let create = |b: Value, field: &'static str, says: &'static str| {
        let s = &s;
        async move { expect_400(s, Method::POST, "/v1/connections", b, field, says).await }
    };
    create(
        json!({"sink": "parquet", "destination": "x"}),
        "body",
        "missing field `source`",
    )
    .await;
    create(
        with(json!({"sourec": 1})),
        "sourec",
        "unknown field `sourec`, expected one of",
    )
    .await;
    create(
        with(json!({"source": "nope"})),
        "source",
        "unknown source `nope`",
    )
    .await;
    create(
        with(json!({"sink": 7})),
        "sink",
        "invalid type: integer `7`",
    )
    .await;
    create(
        with(json!({"schedule": {"every_minutes": 1}})),
        "schedule.every_minutes",
        "between 5 and 1440",
    )
    .await;
    create(
        with(json!({"schedule": {"every_minutes": "often"}})),
        "schedule.every_minutes",
        "invalid type",
    )
    .await;
    create(
        with(json!({"source_settings": {"pagesize": 5}})),
        "source_settings",
        "unknown field `pagesize`",
    )
    .await;
    create(
        with(json!({"source_settings": {"api_key": "k"}})),
        "source_settings.api_key",
        "is a secret",
    )
    .await;
    create(
        with(json!({"sink_settings": {"dest": "/x"}})),
        "sink_settings.dest",
        "destination",
    )
    .await;
    // Settings that would read the server's own environment or files.
    create(
        with(json!({"source_settings": {"api_key_env": "SLUICE_MASTER_KEY"}})),
        "source_settings.api_key_env",
        "the server's environment",
    )
    .await;
    create(
        with(json!({"source_settings": {"ignore_environment": false}})),
        "source_settings.ignore_environment",
        "the server's environment",
    )
    .await;
    for key in ["ca_cert_file", "client_cert_file", "client_key_file"] {
        for section in ["source_settings", "sink_settings"] {
            create(
                with(json!({section: {"network": {key: "/etc/passwd"}}})),
                Box::leak(format!("{section}.network.{key}").into_boxed_str()),
                "names a file on the server's disk",
            )
            .await;
        }
    }
    // Object-store secrets are not taken (they would be stored and shown in clear).
    for key in ["access_key_id", "secret_access_key", "session_token"] {
        create(
            with(json!({"sink_settings": {key: "AKIA-OR-SECRET"}})),
            Box::leak(format!("sink_settings.{key}").into_boxed_str()),
            "the server's environment or instance role",
        )
        .await;
    }

    // A PostgreSQL catalog: its password would be stored in clear or be the server's
    // PGPASSWORD.
    for uri in [
        "postgresql://cat:pw@db:5432/lake",
        "postgres://cat@db/lake",
        "postgresql+psycopg2://cat@db/lake",
    ] {
        create(
            with(
                json!({"sink": "iceberg", "sink_settings": {"catalog": "sql", "catalog_uri": uri}}),
            ),
            "sink_settings.catalog_uri",
            "PGPASSWORD",
        )
        .await;
    }

    let id = s.lever_connection(&lever, 60).await;
    let schema = format!("/v1/connections/{id}/schema");
    // The same messages as sluice.toml.
    for (body, field, says) in [
        (
            json!({"tables": {"users": {"enabeld": false}}}),
            "tables.users.enabeld",
            "unknown field `enabeld`, expected one of `enabled`",
        ),
        (
            json!({"tables": {"users": {"enabled": "yes"}}}),
            "tables.users.enabled",
            "invalid type: string \"yes\", expected a boolean",
        ),
        (
            json!({"tables": {"users": {"blocked_columns": ["id"]}}}),
            "tables.users.blocked_columns",
            "`id` is part of the primary key and cannot be blocked",
        ),
        (
            json!({"tables": {"users": {"hashed_columns": ["nope"]}}}),
            "tables.users.hashed_columns",
            "unknown column `nope`",
        ),
        (
            json!({"tables": {"no_such_table": {}}}),
            "tables.no_such_table",
            "unknown table `no_such_table`",
        ),
        (
            json!({"tables": {"users": {"hashed_columns": ["email"]}}}),
            "hash_salt",
            "no salt is set",
        ),
    ] {
        expect_400(&s, Method::PATCH, &schema, body, field, says).await;
    }
    expect_400(
        &s,
        Method::PUT,
        &format!("/v1/connections/{id}/credentials"),
        json!({"api_key": " "}),
        "api_key",
        "is empty",
    )
    .await;
    expect_400(
        &s,
        Method::PUT,
        &format!("/v1/connections/{id}/credentials"),
        json!({"oauth": {"client_id": "a"}}),
        "oauth",
        "missing field `client_secret`",
    )
    .await;
    expect_400(
        &s,
        Method::POST,
        &format!("/v1/connections/{id}/resync"),
        json!({"table": "nope"}),
        "table",
        "unknown table `nope`",
    )
    .await;
    expect_400(
        &s,
        Method::POST,
        &format!("/v1/connections/{id}/authorize"),
        json!({}),
        "credentials.oauth",
        "set the OAuth app first",
    )
    .await;
    // Nothing was changed by the refused patches.
    let after = s.get(&schema).await;
    assert!(
        after["tables"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["enabled"] == true)
    );

    // Unknown ids.
    for (method, path) in [
        (Method::GET, "/v1/connections/conn_nope".to_owned()),
        (Method::PATCH, "/v1/connections/conn_nope".to_owned()),
        (Method::DELETE, "/v1/connections/conn_nope".to_owned()),
        (Method::POST, "/v1/connections/conn_nope/sync".to_owned()),
        (Method::GET, "/v1/connections/conn_nope/runs".to_owned()),
        (Method::GET, "/v1/connections/conn_nope/schema".to_owned()),
        (Method::GET, "/v1/runs/run_nope".to_owned()),
    ] {
        let (status, v) = s.call(method.clone(), &path, Some(json!({}))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {v}");
        assert_eq!(v["error"]["code"], "not_found");
    }

    // Delete forgets the connection but never the lake.
    std::fs::create_dir_all(&lake).unwrap();
    std::fs::write(lake.join("keep"), "data").unwrap();
    let (status, _) = s
        .call(Method::DELETE, &format!("/v1/connections/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = s
        .call(Method::GET, &format!("/v1/connections/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(lake.join("keep").exists());
    s.stop().await;
}

#[tokio::test]
async fn the_openapi_document_is_generated_from_the_code() {
    let s = TestServer::start().await;
    let doc = s.get("/v1/openapi.json").await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/v1/connections",
        "/v1/connections/{id}",
        "/v1/connections/{id}/credentials",
        "/v1/connections/{id}/check",
        "/v1/connections/{id}/authorize",
        "/v1/oauth/callback",
        "/v1/connections/{id}/schema",
        "/v1/connections/{id}/sync",
        "/v1/connections/{id}/resync",
        "/v1/connections/{id}/pause",
        "/v1/connections/{id}/resume",
        "/v1/connections/{id}/runs",
        "/v1/connections/{id}/state",
        "/v1/runs/{id}",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from the document"
        );
    }
    let run = &doc["components"]["schemas"]["RunStatus"];
    assert_eq!(
        run["enum"],
        json!(["queued", "running", "succeeded", "failed", "cancelled"]),
        "{run}"
    );
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    s.stop().await;
}

#[tokio::test]
async fn changing_base_url_drops_the_stored_credentials() {
    use base64::Engine;
    let lever = Lever::start(5).await;
    let s = TestServer::start().await;
    let id = s.lever_connection(&lever, 60).await;
    let key = lever.emu.api_key();
    let other = sluice_testkit::net::RecordingListener::start().await;
    let c = s
        .send(
            Method::PATCH,
            &format!("/v1/connections/{id}"),
            json!({"source_settings": {"base_url": other.url}}),
            StatusCode::OK,
        )
        .await;
    assert_eq!(c["credentials"]["api_key"], false, "{c}");
    assert_eq!(c["authorized"], false, "{c}");
    let notice = c["notice"].as_str().unwrap_or_else(|| panic!("{c}"));
    assert!(notice.contains("dropped"), "{notice}");
    let check = s
        .send(
            Method::POST,
            &format!("/v1/connections/{id}/check"),
            json!({}),
            StatusCode::OK,
        )
        .await;
    assert_eq!(check["ok"], false, "{check}");
    let run = s
        .send(
            Method::POST,
            &format!("/v1/connections/{id}/sync"),
            json!({}),
            StatusCode::ACCEPTED,
        )
        .await;
    let run = s.wait_run(run["id"].as_str().unwrap()).await;
    assert_eq!(run["status"], "failed", "{run}");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{key}:"));
    let got = other.received();
    assert!(
        !got.contains(&key) && !got.contains(&basic),
        "the old key reached the new host"
    );
    // A patch that keeps the base URL keeps the credentials.
    s.send(
        Method::PUT,
        &format!("/v1/connections/{id}/credentials"),
        json!({"api_key": "another-key"}),
        StatusCode::OK,
    )
    .await;
    let c = s
        .send(
            Method::PATCH,
            &format!("/v1/connections/{id}"),
            json!({"name": "renamed", "source_settings": {"base_url": other.url}}),
            StatusCode::OK,
        )
        .await;
    assert_eq!(c["credentials"]["api_key"], true, "{c}");
    assert!(c.get("notice").is_none(), "{c}");
    s.stop().await;
}

#[tokio::test]
async fn the_login_form_posts_the_token_and_the_cookie_is_secure_behind_https() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(&dir.path().join("data"));
    o.public_url = Some("https://sluice.example.com".to_owned());
    let s = TestServer::start_with(dir, o).await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = client
        .get(format!("{}/", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(form.contains("method=\"post\""), "{form}");
    let post = |token: &str| {
        client
            .post(format!("{}/", s.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={token}"))
            .send()
    };
    let wrong = post("wrong-token").await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get("set-cookie").is_none());
    let ok = post(TOKEN).await.unwrap();
    assert!(ok.status().is_redirection(), "{}", ok.status());
    assert_eq!(ok.headers()["location"], "/");
    let cookie = ok.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attr in ["HttpOnly", "SameSite=Strict", "Secure"] {
        assert!(cookie.contains(attr), "{attr} missing: {cookie}");
    }
    let page = client
        .get(format!("{}/", s.base))
        .header("cookie", cookie.split(';').next().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    s.stop().await;
}
