//! Bad input from the API (README "Bad input from the API"): a local proxy in front of the
//! emulator serves its answers unchanged except for one doctored endpoint.

use crate::common::*;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sluice_core::ErrorKind;
use sluice_testkit::MemoryDestination;
use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// One request as the doctor sees it.
pub(crate) struct Req<'a> {
    /// Path without the `/v1` prefix (`/opportunities`, `/opportunities/<id>/notes`).
    pub(crate) path: &'a str,
    /// The offset token asked for, if any.
    pub(crate) offset: Option<&'a str>,
    /// 1-based count of requests to this path (and offset) so far.
    pub(crate) nth: usize,
}

/// Returns a replacement HTTP 200 body for a request, given the emulator's answer.
type Doctor = Arc<dyn Fn(&Req<'_>, &[u8]) -> Option<Vec<u8>> + Send + Sync>;

#[derive(Clone)]
struct Proxy {
    upstream: String,
    http: reqwest::Client,
    doctor: Doctor,
    seen: Arc<Mutex<HashMap<String, usize>>>,
}

async fn forward(State(p): State<Proxy>, req: Request) -> Response {
    let uri = req.uri().clone();
    let path_q = uri.path_and_query().map_or("/", |x| x.as_str()).to_owned();
    let mut r = p.http.get(format!("{}{path_q}", p.upstream));
    for name in ["authorization", "accept"] {
        if let Some(v) = req.headers().get(name) {
            r = r.header(name, v.as_bytes());
        }
    }
    let resp = match r.send().await {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = resp.status().as_u16();
    let retry_after = resp.headers().get("retry-after").cloned();
    let body = resp.bytes().await.unwrap_or_default();
    let offset = uri.query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "offset")
            .map(|(_, v)| v.into_owned())
    });
    let path = uri
        .path()
        .strip_prefix("/v1")
        .unwrap_or(uri.path())
        .to_owned();
    let nth = {
        let mut seen = p.seen.lock().unwrap();
        let n = seen
            .entry(format!("{path}?{}", offset.as_deref().unwrap_or("")))
            .or_default();
        *n += 1;
        *n
    };
    let doctored = (status == 200)
        .then(|| {
            (p.doctor)(
                &Req {
                    path: &path,
                    offset: offset.as_deref(),
                    nth,
                },
                &body,
            )
        })
        .flatten();
    let mut headers = HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    if let Some(v) = retry_after {
        headers.insert("retry-after", v.to_str().unwrap().parse().unwrap());
    }
    let (status, body) = match doctored {
        Some(b) => (200, b),
        None => (status, body.to_vec()),
    };
    (
        StatusCode::from_u16(status).unwrap(),
        headers,
        Body::from(body),
    )
        .into_response()
}

/// An emulator behind a doctoring proxy.
struct Doctored {
    env: Env,
    base_url: String,
    seen: Arc<Mutex<HashMap<String, usize>>>,
}

impl Doctored {
    async fn start(opportunities: usize, doctor: Doctor) -> Doctored {
        let env = Env::start(opportunities).await;
        let seen = Arc::new(Mutex::new(HashMap::new()));
        let proxy = Proxy {
            upstream: env.server.root_url(),
            http: reqwest::Client::new(),
            doctor,
            seen: seen.clone(),
        };
        let app = axum::Router::new().fallback(forward).with_state(proxy);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Doctored {
            env,
            base_url: format!("http://{addr}/v1"),
            seen,
        }
    }

    /// A config reading through the proxy: pages of 5, quick retries.
    fn config(&self) -> Value {
        let mut c = self.env.config();
        c["base_url"] = json!(self.base_url);
        c["page_size"] = json!(5);
        c["max_retries"] = json!(2);
        // Page numbers in the messages are those of a plain walk.
        c["priority_first"] = json!(false);
        c
    }

    /// Requests made to `path` (any offset).
    fn requests(&self, path: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.split('?').next() == Some(path))
            .map(|(_, n)| *n)
            .sum()
    }
}

fn edit(body: &[u8], f: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(body).unwrap();
    f(&mut v);
    serde_json::to_vec(&v).unwrap()
}

/// The second page of the opportunity walk (the first asked for with an offset token).
fn second_opportunity_page(r: &Req<'_>) -> bool {
    r.path == "/opportunities" && r.offset.is_some()
}

/// Asserts the state of a run that failed on page 2 of the opportunity walk: the checkpoint
/// points at page 2 (pages 1 committed), and page 2's opportunities are not in the destination.
fn assert_stopped_before_page_two(dest: &MemoryDestination, token: &str) {
    let state = dest.state().expect("page 1 committed");
    let walk = &state.extra["walk"];
    assert_eq!(walk["pages"], json!(1), "{walk}");
    assert_eq!(walk["offset"], json!(token), "resumes at the bad page");
    assert!(
        state.table("opportunity").cursor.is_none(),
        "cursor not advanced"
    );
    assert_eq!(dest.committed_rows("opportunity").len(), 5, "page 1 only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbled_json_page_fails_after_bounded_retries_naming_endpoint_page_and_tables() {
    let broken = Arc::new(AtomicBool::new(true));
    let token = Arc::new(Mutex::new(String::new()));
    let (b, t) = (broken.clone(), token.clone());
    let d = Doctored::start(
        12,
        Arc::new(move |r, _| {
            if b.load(Ordering::SeqCst) && second_opportunity_page(r) {
                *t.lock().unwrap() = r.offset.unwrap().to_owned();
                return Some(br#"{"data": [{"id": "8c1f", "name": "Sha"#.to_vec());
            }
            None
        }),
    )
    .await;
    let dest = MemoryDestination::new("lever");
    let r = sync(&d.config(), &dest, at(1_000)).await;
    assert_kind(&r, ErrorKind::Upstream);
    let msg = r.unwrap_err().to_string();
    let token = token.lock().unwrap().clone();
    for part in [
        "GET /opportunities page 2",
        &format!("offset token {token}"),
        "for tables opportunity, opportunity_stage_history",
        "not valid JSON, 3 times in a row",
    ] {
        assert!(msg.contains(part), "`{part}` not in: {msg}");
    }
    assert_eq!(
        d.seen.lock().unwrap()[&format!("/opportunities?{token}")],
        3,
        "one try and two retries"
    );
    assert_stopped_before_page_two(&dest, &token);
    // Healed: the next run resumes at page 2 and ends with the oracle's output.
    broken.store(false, Ordering::SeqCst);
    sync(&d.config(), &dest, at(2_000))
        .await
        .expect("resumed run");
    assert_matches_oracle(&dest, &d.env.emu.truth(), true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbled_json_once_is_retried() {
    let d = Doctored::start(
        12,
        Arc::new(|r, body| {
            (second_opportunity_page(r) && r.nth == 1).then(|| body[..body.len() / 2].to_vec())
        }),
    )
    .await;
    let dest = MemoryDestination::new("lever");
    sync(&d.config(), &dest, at(1_000))
        .await
        .expect("a proxy hiccup is retried");
    assert_matches_oracle(&dest, &d.env.emu.truth(), true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_id_fails_naming_table_endpoint_and_page() {
    let token = Arc::new(Mutex::new(String::new()));
    let t = token.clone();
    let d = Doctored::start(
        12,
        Arc::new(move |r, body| {
            if second_opportunity_page(r) {
                *t.lock().unwrap() = r.offset.unwrap().to_owned();
                return Some(edit(body, |v| {
                    v["data"][1].as_object_mut().unwrap().remove("id");
                }));
            }
            None
        }),
    )
    .await;
    let dest = MemoryDestination::new("lever");
    let r = sync(&d.config(), &dest, at(1_000)).await;
    assert_kind(&r, ErrorKind::Upstream);
    let e = r.unwrap_err();
    assert!(!e.is_retryable(), "the same data would fail again");
    let msg = e.to_string();
    let token = token.lock().unwrap().clone();
    for part in [
        "GET /opportunities page 2",
        &format!("offset token {token}"),
        "tables opportunity,",
        "item 2 of 5 has no `id`",
    ] {
        assert!(msg.contains(part), "`{part}` not in: {msg}");
    }
    assert_stopped_before_page_two(&dest, &token);

    // A child endpoint: a note without `id` (and an `id` of the wrong type elsewhere).
    let d = Doctored::start(
        3,
        Arc::new(|r, body| {
            (r.path.ends_with("/notes")).then(|| {
                edit(body, |v| {
                    v["data"] = json!([{"id": 7, "value": "x"}]);
                })
            })
        }),
    )
    .await;
    let dest = MemoryDestination::new("lever");
    let r = sync(&d.config(), &dest, at(1_000)).await;
    assert_kind(&r, ErrorKind::Upstream);
    let msg = r.unwrap_err().to_string();
    assert!(msg.contains("/notes page 1 (no offset token)"), "{msg}");
    assert!(msg.contains("tables note, note_field"), "{msg}");
    assert!(msg.contains("`id` that is a number"), "{msg}");
    let state = dest.state().expect("re-imports committed");
    assert!(state.extra.get("walk").is_none_or(Value::is_null));
    assert!(state.table("opportunity").cursor.is_none());
    assert!(dest.committed_rows("opportunity").is_empty());
    assert!(dest.committed_rows("note").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelope_without_a_data_list_fails_naming_endpoint_and_page() {
    for (path, body, why) in [
        (
            "/users",
            json!({"users": [], "hasNext": false}),
            "no `data` field (fields: hasNext, users)",
        ),
        (
            "/stages",
            json!({"data": "none"}),
            "`data` is a string, not a list",
        ),
        (
            "/opportunities",
            json!({"data": {"id": "x"}}),
            "`data` is an object, not a list",
        ),
    ] {
        let body = serde_json::to_vec(&body).unwrap();
        let d = Doctored::start(
            3,
            Arc::new(move |r, _| (r.path == path).then(|| body.clone())),
        )
        .await;
        let dest = MemoryDestination::new("lever");
        let r = sync(&d.config(), &dest, at(1_000)).await;
        assert_kind(&r, ErrorKind::Upstream);
        let msg = r.unwrap_err().to_string();
        let table = match path {
            "/users" => "table users:",
            "/stages" => "table stage:",
            _ => "tables opportunity,",
        };
        for part in [&format!("GET {path} page 1 (no offset token)"), table, why] {
            assert!(msg.contains(part), "`{part}` not in: {msg}");
        }
        assert_eq!(d.requests(path), 1, "not retried");
        let state = dest.state().expect("initial checkpoint");
        let t = table[6..].trim().trim_end_matches([':', ',']);
        assert!(state.table(t).last_reimport_ms.is_none(), "{path}");
        assert!(state.table("opportunity").cursor.is_none());
        assert!(dest.committed_rows(t).is_empty(), "{path}");
    }
}

#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);
impl Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn unexpected_types_become_nulls_with_one_warning_per_column() {
    // Current-thread runtime: the thread-local subscriber sees every task of the sync.
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let ids = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen_ids = ids.clone();
    let d = Doctored::start(
        12,
        Arc::new(move |r, body| {
            if r.path != "/opportunities" || r.offset.is_some() {
                return None;
            }
            Some(edit(body, |v| {
                let mut got = seen_ids.lock().unwrap();
                got.clear();
                for o in v["data"].as_array_mut().unwrap().iter_mut().take(2) {
                    got.push(o["id"].as_str().unwrap().to_owned());
                    o["createdAt"] = json!("yesterday");
                    o["archived"] = json!(5);
                    o["stage"] = json!({"text": "Phone screen"});
                    o["isAnonymized"] = json!(5);
                    o["tags"] = json!("not-a-list");
                }
            }))
        }),
    )
    .await;
    let dest = MemoryDestination::new("lever");
    sync(&d.config(), &dest, at(1_000))
        .await
        .expect("values of the wrong type do not fail the sync");
    let ids = ids.lock().unwrap().clone();
    assert_eq!(ids.len(), 2);
    let opps = live_rows(&dest, "opportunity");
    assert_eq!(opps.len(), 12, "every row kept");
    for id in &ids {
        let row = opps.iter().find(|r| r["id"] == json!(id)).expect("kept");
        for col in [
            "created_at",
            "archived_at",
            "archived_reason_id",
            "stage_id",
        ] {
            assert!(row[col].is_null(), "{col} of {id}: {}", row[col]);
        }
        assert!(row["is_anonymized"].is_null());
        assert!(!row["name"].is_null(), "the other columns are kept");
        assert!(!row["updated_at"].is_null());
        assert!(
            !live_rows(&dest, "opportunity_tag")
                .iter()
                .any(|t| t["opportunity_id"] == json!(id))
        );
    }
    // The untouched opportunities keep their values.
    assert!(
        opps.iter()
            .filter(|r| !ids.contains(&r["id"].as_str().unwrap().to_owned()))
            .all(|r| !r["created_at"].is_null() && !r["stage_id"].is_null())
    );
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains("WARN")).collect();
    for col in [
        "opportunity.created_at",
        "opportunity.archived_at",
        "opportunity.archived_reason_id",
        "opportunity.stage_id",
        "opportunity.is_anonymized",
        "opportunity_tag.tags",
    ] {
        let lines: Vec<&&str> = warnings
            .iter()
            .filter(|l| l.contains(&format!("for {col}:")))
            .collect();
        assert_eq!(lines.len(), 1, "one warning for {col}:\n{text}");
        assert!(
            lines[0].contains("2 value(s) of an unexpected JSON type"),
            "{}",
            lines[0]
        );
    }
    // Nothing else is reported (the emulator's clean data gives no warnings); the contact's
    // `is_anonymized` comes from the same field.
    let others: Vec<&&str> = warnings
        .iter()
        .filter(|l| {
            !l.contains("for opportunity.")
                && !l.contains("for opportunity_tag.tags")
                && !l.contains("for contact.is_anonymized")
        })
        .collect();
    assert!(others.is_empty(), "unexpected warnings: {others:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_refresh_token_says_how_to_reauthorize_and_a_new_one_recovers() {
    let env = Env::start(5).await;
    let (id, secret) = env.emu.register_oauth_client();
    let first = env.emu.issue_refresh_token(&id, true);
    let config = |refresh: &str| {
        json!({
            "base_url": env.server.base_url(),
            "oauth": {
                "client_id": id, "client_secret": secret, "refresh_token": refresh,
                "token_url": format!("{}/oauth/token", env.server.root_url()),
            },
            "rate_limit_per_second": 2000, "rate_limit_burst": 2000,
        })
    };
    // A revoked (unknown) token.
    let r = sync(
        &config("revoked-0000"),
        &MemoryDestination::new("lever"),
        at(1_000),
    )
    .await;
    assert_kind(&r, ErrorKind::Auth);
    let msg = r.unwrap_err().to_string();
    assert!(
        msg.contains("re-authorize") && msg.contains("[source.oauth].refresh_token"),
        "{msg}"
    );
    assert!(!msg.contains("revoked-0000"));
    // A destination whose state holds a token that another run spent meanwhile.
    let dest = MemoryDestination::new("lever");
    sync(&config(&first), &dest, at(1_000))
        .await
        .expect("first run");
    let kept = dest
        .secrets()
        .get(sluice_source_lever::REFRESH_TOKEN_STATE_KEY)
        .expect("saved")
        .expose()
        .to_owned();
    sync(&config(&kept), &MemoryDestination::new("lever"), at(1_000))
        .await
        .expect("another destination spends the kept token");
    let r = sync(&config(&first), &dest, at(2_000)).await;
    assert_kind(&r, ErrorKind::Auth);
    // The documented fix: re-authorize, put the new token in the configuration.
    let fresh = env.emu.issue_refresh_token(&id, true);
    sync(&config(&fresh), &dest, at(3_000))
        .await
        .expect("the configuration's new token replaces the state's rejected one");
}
