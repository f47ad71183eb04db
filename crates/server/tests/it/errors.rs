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
