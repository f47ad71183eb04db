//! The server is not trusted blindly: tiny misbehaving servers on 127.0.0.1 answer with
//! looping pagination, truncated lists, absurd `Retry-After` values, huge bodies and endless
//! errors. Each gives an upstream error naming the endpoint (or a clean sync), never a hang or
//! a panic, and a list that did not end deletes nothing.

use crate::common::*;
use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sluice_core::{ErrorKind, SyncOptions};
use sluice_testkit::MemoryDestination;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A server on 127.0.0.1:0 answering `/v1/users` with `users` and every other route with an
/// empty list; stopped when dropped.
struct Server {
    base_url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(app: Router) -> Server {
    let app = app.fallback(|| async { axum::Json(json!({"data": [], "hasNext": false})) });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server {
        base_url: format!("http://{addr}/v1"),
        task,
    }
}

/// A server whose `/v1/users` answers `answer(n)` to its n-th request (1-based).
async fn users_server(answer: impl Fn(usize) -> Response + Send + Sync + 'static) -> Server {
    let n = Arc::new(AtomicUsize::new(0));
    let answer = Arc::new(answer);
    serve(Router::new().route(
        "/v1/users",
        axum::routing::get(move || {
            let k = n.fetch_add(1, Ordering::SeqCst) + 1;
            let answer = answer.clone();
            async move { answer(k) }
        }),
    ))
    .await
}

fn json_page(v: Value) -> Response {
    ([("content-type", "application/json")], v.to_string()).into_response()
}

fn config_for(server: &Server) -> Value {
    json!({
        "api_key": "k",
        "base_url": server.base_url,
        "rate_limit_per_second": 1000,
        "rate_limit_burst": 1000,
        "max_retries": 3,
    })
}

fn users_only(ms: i64) -> SyncOptions {
    at(ms).with_settings(only(&["users"]))
}

/// Runs a users-only sync against `server` and returns its upstream error's message.
async fn upstream_error(config: &Value) -> String {
    let dest = MemoryDestination::new("lever");
    let r = sync(config, &dest, users_only(1_000)).await;
    assert_kind(&r, ErrorKind::Upstream);
    r.unwrap_err().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_next_token_is_an_upstream_error_naming_the_endpoint() {
    let server = users_server(|k| {
        json_page(json!({"data": [{"id": format!("u{k}")}], "hasNext": true, "next": "same"}))
    })
    .await;
    let msg = upstream_error(&config_for(&server)).await;
    assert!(
        msg.contains("/users") && msg.contains("a second time"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_empty_pages_are_an_upstream_error_naming_the_endpoint() {
    let server =
        users_server(|k| json_page(json!({"data": [], "hasNext": true, "next": format!("t{k}")})))
            .await;
    let msg = upstream_error(&config_for(&server)).await;
    assert!(
        msg.contains("/users") && msg.contains("empty pages"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_opportunity_token_is_an_upstream_error_naming_the_endpoint() {
    let server = serve(Router::new().route(
        "/v1/opportunities",
        axum::routing::get(|| async {
            json_page(json!({"data": [{"id": "o1"}], "hasNext": true, "next": "again"}))
        }),
    ))
    .await;
    let dest = MemoryDestination::new("lever");
    let options = at(1_000).with_settings(only(&["opportunity"]));
    let r = sync(&config_for(&server), &dest, options).await;
    assert_kind(&r, ErrorKind::Upstream);
    let msg = r.unwrap_err().to_string();
    assert!(
        msg.contains("/opportunities") && msg.contains("a second time"),
        "{msg}"
    );
}

/// `hasNext: true` without a `next` token fails the re-import instead of ending the list, and
/// the users of the earlier import are not soft-deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn has_next_without_a_token_is_an_error_and_deletes_nothing() {
    let server = users_server(|k| match k {
        1 => json_page(json!({"data": [{"id": "u1"}, {"id": "u2"}], "hasNext": false})),
        _ => json_page(json!({"data": [{"id": "u1"}], "hasNext": true})),
    })
    .await;
    let config = config_for(&server);
    let dest = MemoryDestination::new("lever");
    sync(&config, &dest, users_only(1_000))
        .await
        .expect("first import");
    let mut again = users_only(2_000);
    again.force_resync.insert("users".into());
    let r = sync(&config, &dest, again).await;
    assert_kind(&r, ErrorKind::Upstream);
    let msg = r.unwrap_err().to_string();
    assert!(msg.contains("/users") && msg.contains("hasNext"), "{msg}");
    let rows = dest.committed_rows("users");
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .all(|r| r.get("_fivetran_deleted") == Some(&Value::Bool(false))),
        "a list that did not end deletes nothing: {rows:?}"
    );
}

fn throttled(retry_after: &str) -> Response {
    let mut h = HeaderMap::new();
    h.insert("retry-after", retry_after.parse().unwrap());
    (StatusCode::TOO_MANY_REQUESTS, h, "slow down").into_response()
}

/// `Retry-After` values that are negative, not numbers, not finite or dates in the past:
/// the sync waits little or not at all and succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_retry_after_values_do_not_stop_the_sync() {
    for value in [
        "-5",
        "soon",
        "NaN",
        "inf",
        "1e400",
        "Thu, 01 Jan 1970 00:00:00 GMT",
    ] {
        let server = users_server(move |k| match k {
            1 => throttled(value),
            _ => json_page(json!({"data": [{"id": "u1"}], "hasNext": false})),
        })
        .await;
        let dest = MemoryDestination::new("lever");
        sync(&config_for(&server), &dest, users_only(1_000))
            .await
            .unwrap_or_else(|e| panic!("Retry-After: {value}: {e}"));
        assert_eq!(dest.committed_rows("users").len(), 1, "{value}");
    }
}

/// A `Retry-After` far beyond the retry budget (in seconds or as a date) fails the request at
/// once with an upstream error naming the endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_retry_after_fails_within_the_retry_budget() {
    for value in [
        "99999999999999999999999999",
        "18446744073709551616",
        "Fri, 31 Dec 9999 23:59:59 GMT",
    ] {
        let server = users_server(move |_| throttled(value)).await;
        let mut config = config_for(&server);
        config["max_retry_secs"] = json!(5);
        let msg = upstream_error(&config).await;
        assert!(
            msg.contains("/users") && msg.contains("max_retry_secs"),
            "{value}: {msg}"
        );
    }
}

/// An endless run of 503s with `Retry-After: 1` and a high retry count ends when the retry
/// budget is spent, not after the count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_bounded_in_time() {
    let server = users_server(|_| {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "1".parse().unwrap());
        (StatusCode::SERVICE_UNAVAILABLE, h, "down").into_response()
    })
    .await;
    let mut config = config_for(&server);
    config["max_retries"] = json!(1000);
    config["max_retry_secs"] = json!(2);
    let msg = upstream_error(&config).await;
    assert!(
        msg.contains("/users") && msg.contains("retry budget"),
        "{msg}"
    );
}

/// A body past `max_body_bytes`, announced by `Content-Length` or streamed without it, is an
/// upstream error naming the endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_past_the_cap_is_an_upstream_error() {
    let big =
        json!({"data": [{"id": "u1", "name": "x".repeat(10_000)}], "hasNext": false}).to_string();
    for streamed in [false, true] {
        let body = big.clone();
        let server = users_server(move |_| {
            if streamed {
                let chunks: Vec<Result<String, std::io::Error>> = body
                    .as_bytes()
                    .chunks(1000)
                    .map(|c| Ok(String::from_utf8(c.to_vec()).unwrap()))
                    .collect();
                let stream = futures::stream::iter(chunks);
                axum::body::Body::from_stream(stream).into_response()
            } else {
                json_page(serde_json::from_str(&body).unwrap())
            }
        })
        .await;
        let mut config = config_for(&server);
        config["max_body_bytes"] = json!(4096);
        let msg = upstream_error(&config).await;
        assert!(
            msg.contains("/users") && msg.contains("max_body_bytes"),
            "streamed {streamed}: {msg}"
        );
    }
}
