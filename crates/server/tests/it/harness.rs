//! A server, an emulator and a client for one test; reading the lake back and comparing it
//! with the emulator's truth; captured log lines.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sluice_core::{Secret, TableSpec};
use sluice_lever_emulator::expected::{self, ExpectedOptions};
use sluice_lever_emulator::{Emulator, EmulatorConfig, ServerHandle};
use sluice_server::{ServeOptions, Server};
use sluice_testkit::{Row, batch_rows};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

pub(crate) const TOKEN: &str = "test-api-token-0123456789";

/// Every log line of this test process (JSON), captured once per process.
pub(crate) fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = Capture(Arc::clone(&buf));
        let _ = tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_writer(move || writer.clone())
            .try_init();
        buf
    })
    .clone()
}

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The captured log as text.
pub(crate) fn log_text() -> String {
    String::from_utf8_lossy(&logs().lock().unwrap()).into_owned()
}

/// An emulator serving on 127.0.0.1:0.
pub(crate) struct Lever {
    pub(crate) emu: Emulator,
    pub(crate) server: ServerHandle,
}

impl Lever {
    pub(crate) async fn start(opportunities: usize) -> Lever {
        Lever::with(EmulatorConfig {
            opportunities,
            rate_limit: None,
            ..EmulatorConfig::default()
        })
        .await
    }

    pub(crate) async fn with(config: EmulatorConfig) -> Lever {
        let emu = Emulator::new(config);
        let server = emu.start().await.expect("emulator starts");
        Lever { emu, server }
    }

    /// Source settings pointing at this emulator, without the client-side rate limit.
    pub(crate) fn source_settings(&self) -> Value {
        json!({
            "base_url": self.server.base_url(),
            "rate_limit_per_second": 10000,
            "rate_limit_burst": 10000,
        })
    }
}

/// A server on a data dir of its own, with a client.
pub(crate) struct TestServer {
    pub(crate) server: Option<Server>,
    pub(crate) base: String,
    pub(crate) client: reqwest::Client,
    pub(crate) dir: tempfile::TempDir,
}

/// Options for a server in `data_dir`: port 0, the test token, a schedule minute that keeps
/// the scheduler out of the way unless a test shortens it.
pub(crate) fn options(data_dir: &Path) -> ServeOptions {
    let mut o = ServeOptions::new("127.0.0.1:0".parse().unwrap(), data_dir);
    o.api_token = Some(TOKEN.to_owned());
    o.scheduler_tick = Duration::from_millis(50);
    o
}

impl TestServer {
    pub(crate) async fn start() -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let o = options(&dir.path().join("data"));
        TestServer::start_with(dir, o).await
    }

    pub(crate) async fn start_with(dir: tempfile::TempDir, options: ServeOptions) -> TestServer {
        logs();
        let registry = sluice_plugins::registry().expect("registry");
        let server = Server::start(options, registry)
            .await
            .expect("server starts");
        TestServer {
            base: format!("http://{}", server.addr()),
            server: Some(server),
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
            dir,
        }
    }

    pub(crate) fn lake(&self) -> PathBuf {
        self.dir.path().join("lake")
    }

    /// Stops the server and returns its temp dir (to start another on the same data).
    pub(crate) async fn stop(mut self) -> tempfile::TempDir {
        self.server
            .take()
            .unwrap()
            .stop()
            .await
            .expect("clean stop");
        self.dir
    }

    /// A request with the API token; returns the status and the JSON body (or `Null`).
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call_as(Some(TOKEN), method, path, body).await
    }

    pub(crate) async fn call_as(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub(crate) async fn get(&self, path: &str) -> Value {
        let (s, v) = self.call(Method::GET, path, None).await;
        assert_eq!(s, StatusCode::OK, "GET {path}: {v}");
        v
    }

    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Value,
        want: StatusCode,
    ) -> Value {
        let (s, v) = self.call(method.clone(), path, Some(body)).await;
        assert_eq!(s, want, "{method} {path}: {v}");
        v
    }

    pub(crate) async fn metrics(&self) -> String {
        let (s, v) = self.call(Method::GET, "/metrics", None).await;
        assert_eq!(s, StatusCode::OK);
        v.as_str().unwrap().to_owned()
    }

    /// Creates a Lever → parquet connection into [`TestServer::lake`] without credentials,
    /// scheduled every `every_minutes` (none: the server's default schedule); returns its id.
    pub(crate) async fn new_lever_connection(
        &self,
        lever: &Lever,
        every_minutes: Option<u32>,
    ) -> String {
        let mut body = json!({
            "name": "lever",
            "source": "lever",
            "sink": "parquet",
            "destination": self.lake().to_str().unwrap(),
            "source_settings": lever.source_settings(),
        });
        if let Some(m) = every_minutes {
            body["schedule"] = json!({"every_minutes": m});
        }
        let c = self
            .send(Method::POST, "/v1/connections", body, StatusCode::CREATED)
            .await;
        c["id"].as_str().unwrap().to_owned()
    }

    /// Creates a Lever → parquet connection into [`TestServer::lake`] with an API key.
    pub(crate) async fn lever_connection(&self, lever: &Lever, every_minutes: u32) -> String {
        let id = self.new_lever_connection(lever, Some(every_minutes)).await;
        self.send(
            Method::PUT,
            &format!("/v1/connections/{id}/credentials"),
            json!({"api_key": lever.emu.api_key()}),
            StatusCode::OK,
        )
        .await;
        id
    }

    /// Polls a run until it ends; returns it.
    pub(crate) async fn wait_run(&self, run_id: &str) -> Value {
        for _ in 0..1200 {
            let run = self.get(&format!("/v1/runs/{run_id}")).await;
            if !matches!(run["status"].as_str(), Some("queued" | "running")) {
                return run;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("run {run_id} did not end within 120 s");
    }

    /// Waits until `connection` has a run matching `pred`; returns it.
    /// Waits until no run of `connection` is queued or running.
    pub(crate) async fn wait_until_idle(&self, connection: &str) {
        for _ in 0..1200 {
            let runs = self
                .get(&format!("/v1/connections/{connection}/runs"))
                .await;
            let busy = runs["runs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| matches!(r["status"].as_str(), Some("queued" | "running")));
            if !busy {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{connection} still had a run in progress after 120 s");
    }

    pub(crate) async fn wait_for_run(
        &self,
        connection: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        for _ in 0..1200 {
            let runs = self
                .get(&format!("/v1/connections/{connection}/runs"))
                .await;
            if let Some(r) = runs["runs"].as_array().unwrap().iter().find(|r| pred(r)) {
                return r.clone();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no such run of {connection} within 120 s");
    }
}

/// The Lever catalog.
pub(crate) fn catalog() -> Vec<TableSpec> {
    let registry = sluice_plugins::registry().expect("registry");
    (registry.source("lever").expect("lever").build)().catalog()
}

/// The committed rows of `spec` in a Parquet lake.
async fn scan(dest: &Path, spec: &TableSpec) -> Vec<Row> {
    let registry = sluice_plugins::registry().expect("registry");
    let sink = (registry.sink("parquet").unwrap().build)(&json!({"dest": dest.to_str().unwrap()}))
        .expect("sink builds");
    let batches = sink.scan(spec).await.expect("scan");
    batches.iter().flat_map(batch_rows).collect()
}

/// Asserts that the lake holds the emulator's truth with `blocked` tables absent and
/// `hashed` columns (`table.column`) salted-SHA-256 of the true value; tables whose spec
/// the run-time custom fields extend (requisition) are compared on their declared columns.
pub(crate) async fn assert_lake_matches(
    dest: &Path,
    emu: &Emulator,
    blocked: &[&str],
    hashed: &[(&str, &str)],
    salt: &str,
) {
    let expected = expected::tables(&emu.truth(), &ExpectedOptions { confidential: true });
    let specs: BTreeMap<String, TableSpec> =
        catalog().into_iter().map(|s| (s.name.clone(), s)).collect();
    let salt = Secret::new(salt);
    for (table, want) in &expected {
        let spec = &specs[table];
        if blocked.contains(&table.as_str()) {
            assert!(
                !dest.join(table).exists(),
                "blocked table {table} has a folder in the lake"
            );
            continue;
        }
        let got = scan(dest, spec).await;
        let live: Vec<Row> = got
            .into_iter()
            .filter(|r| r.get("_fivetran_deleted") != Some(&Value::Bool(true)))
            .filter(|r| r.get("_fivetran_active") != Some(&Value::Bool(false)))
            .map(|r| {
                r.into_iter()
                    .filter(|(c, _)| !c.starts_with("_fivetran") || c == "_fivetran_id")
                    .collect()
            })
            .collect();
        let want: Vec<Row> = want
            .iter()
            .map(|row| {
                row.iter()
                    .filter(|(c, _)| spec.find(c).is_some() || c.as_str() == "_fivetran_id")
                    .map(|(c, v)| {
                        let v = if hashed.contains(&(table.as_str(), c.as_str())) {
                            match v {
                                Value::Null => Value::Null,
                                Value::String(s) => {
                                    Value::String(sluice_core::hash_value(&salt, s.as_bytes()))
                                }
                                other => Value::String(sluice_core::hash_value(
                                    &salt,
                                    other.to_string().as_bytes(),
                                )),
                            }
                        } else {
                            v.clone()
                        };
                        (c.clone(), v)
                    })
                    .collect()
            })
            .collect();
        let pk: Vec<&str> = spec.primary_key.iter().map(String::as_str).collect();
        let got = sluice_testkit::rows_by_key(&live, &pk);
        let want = sluice_testkit::rows_by_key(&want, &pk);
        assert_eq!(got.len(), want.len(), "table {table}: row count");
        for (k, w) in &want {
            let g = got
                .get(k)
                .unwrap_or_else(|| panic!("table {table}: row {k} missing"));
            let g: Row = g
                .iter()
                .filter(|(c, _)| w.contains_key(*c))
                .map(|(c, v)| (c.clone(), v.clone()))
                .collect();
            assert_eq!(&g, w, "table {table}: row {k} differs");
        }
    }
}

/// Every file below `dir`.
pub(crate) fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("readable dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Asserts that no file below `dir` contains any of `secrets`.
pub(crate) fn assert_no_file_holds(dir: &Path, secrets: &[&str]) {
    for path in walk(dir) {
        let bytes = std::fs::read(&path).unwrap();
        for s in secrets {
            assert!(
                !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
                "{} holds a secret in clear",
                path.display()
            );
        }
    }
}

/// The value of a metric line `name{labels…}` (labels in any order), or 0.
pub(crate) fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (head, value) = l.rsplit_once(' ')?;
            let (n, rest) = head.split_once('{').unwrap_or((head, "}"));
            (n == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}
