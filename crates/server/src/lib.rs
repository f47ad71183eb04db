//! # sluice-server
//!
//! `sluice serve`: the long-running form of sluice. A REST API under `/v1` (OpenAPI document
//! at `/v1/openapi.json`) to create and change connections, set their credentials or
//! authorize them with OAuth, change their schema settings, sync them now or re-sync a table,
//! and read their run history; a scheduler that syncs each connection every N minutes;
//! Prometheus metrics at `/metrics`; a status page at `/`.
//!
//! Every run goes through `sluice_core::run_sync`, configured from the stored connection the
//! same way `sluice run` configures it from `sluice.toml` ([`sync_config`]).
//!
//! * [`store`]: SQLite in the data dir: connections, runs, OAuth states, encrypted secrets.
//! * [`crypto`]: ChaCha20-Poly1305 under the master key (`SLUICE_MASTER_KEY` or `master.key`).
//! * [`runner`] and [`scheduler`]: one run per connection, `max_concurrent_runs` at once,
//!   retries with backoff, stop at the last checkpoint on shutdown.
//! * [`api`], [`page`], [`metrics`], [`oauth`].

pub mod api;
pub mod crypto;
pub mod error;
pub mod metrics;
pub mod model;
pub mod oauth;
pub mod page;
pub mod runner;
pub mod scheduler;
pub mod store;
pub mod sync_config;

use crate::api::AppState;
use crate::model::RunStatus;
use sha2::{Digest, Sha256};
use sluice_core::{Error, Registry, Result};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Environment variable holding the API token.
pub const API_TOKEN_ENV: &str = "SLUICE_API_TOKEN";
/// `meta` key of the generated API token's SHA-256.
const TOKEN_HASH_KEY: &str = "api_token_sha256";

/// How to serve.
#[derive(Clone)]
#[non_exhaustive]
pub struct ServeOptions {
    /// Address to listen on (`127.0.0.1:7878`; port 0 picks a free one).
    pub listen: SocketAddr,
    /// Where connections, runs, secrets and the master key live.
    pub data_dir: PathBuf,
    /// The API token (`SLUICE_API_TOKEN`); `None` uses the one generated on first start.
    pub api_token: Option<String>,
    /// The master key in hex (`SLUICE_MASTER_KEY`); `None` uses `<data_dir>/master.key`.
    pub master_key: Option<String>,
    /// At most this many runs at once (default 4).
    pub max_concurrent_runs: usize,
    /// The server's URL as browsers reach it, for the OAuth redirect URI (default
    /// `http://<listen address>`).
    pub public_url: Option<String>,
    /// The length of a schedule minute (one minute; shorter in tests).
    pub schedule_minute: Duration,
    /// How often the scheduler looks for due runs (default 5 s).
    pub scheduler_tick: Duration,
    /// How long an OAuth `state` stays usable (15 minutes; shorter in tests).
    pub oauth_state_ttl: Duration,
}

impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeOptions")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("max_concurrent_runs", &self.max_concurrent_runs)
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

impl ServeOptions {
    /// Defaults for `listen` and `data_dir`.
    pub fn new(listen: SocketAddr, data_dir: impl Into<PathBuf>) -> Self {
        ServeOptions {
            listen,
            data_dir: data_dir.into(),
            api_token: None,
            master_key: None,
            max_concurrent_runs: 4,
            public_url: None,
            schedule_minute: Duration::from_secs(60),
            scheduler_tick: Duration::from_secs(5),
            oauth_state_ttl: oauth::STATE_TTL,
        }
    }
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<Result<()>>,
    generated_token: Option<String>,
}

impl Server {
    /// Opens the data dir, binds `options.listen` and starts serving and scheduling.
    pub async fn start(options: ServeOptions, registry: Registry) -> Result<Server> {
        let dir = &options.data_dir;
        create_private_dir(dir)?;
        let cipher = crypto::Cipher::load(dir, options.master_key.as_deref())?;
        let store = store::Store::open(dir, cipher)?;
        store.check_master_key()?;
        for mut run in store.unfinished_runs()? {
            run.status = RunStatus::Cancelled;
            run.ended_at = Some(run.ended_at.unwrap_or_else(sluice_core::now_ms));
            run.error_kind = Some("cancelled".to_owned());
            run.error_message = Some(
                "the server stopped before the run ended; the destination keeps its last commit"
                    .to_owned(),
            );
            store.put_run(&run)?;
        }
        let mut generated_token = None;
        let token_hash: [u8; 32] = match options.api_token.as_deref().filter(|t| !t.is_empty()) {
            Some(t) => Sha256::digest(t.as_bytes()).into(),
            None => match store.meta(TOKEN_HASH_KEY)? {
                Some(h) => hex::decode(h)
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| Error::internal("the stored API token hash is unreadable"))?,
                None => {
                    let token = oauth::new_state();
                    let h: [u8; 32] = Sha256::digest(token.as_bytes()).into();
                    store.set_meta(TOKEN_HASH_KEY, &hex::encode(h))?;
                    generated_token = Some(token);
                    h
                }
            },
        };
        let registry = Arc::new(registry);
        let metrics = metrics::ServerMetrics::new();
        for c in store.connections()? {
            if let Some(run) = store.last_succeeded_run(&c.id)? {
                metrics.seed_last_success(&c.id, run.ended_at.unwrap_or(run.queued_at));
            }
        }
        let runner = runner::Runner::new(
            store.clone(),
            Arc::clone(&registry),
            metrics.clone(),
            options.max_concurrent_runs,
        );
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .map_err(|e| Error::config(format!("cannot listen on {}: {e}", options.listen)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::internal(format!("no local address: {e}")))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Error::internal(format!("HTTP client: {e}")))?;
        let state = AppState {
            store: store.clone(),
            runner: runner.clone(),
            registry,
            metrics,
            token_hash,
            public_url: options
                .public_url
                .clone()
                .unwrap_or_else(|| format!("http://{addr}")),
            minute_ms: options.schedule_minute.as_millis().max(1) as i64,
            oauth_state_ttl_ms: options.oauth_state_ttl.as_millis() as i64,
            http,
        };
        let stop = CancellationToken::new();
        let scheduler = tokio::spawn(scheduler::run(
            store,
            runner.clone(),
            options.schedule_minute,
            options.scheduler_tick,
            stop.clone(),
        ));
        let app = api::router(state);
        let serve_stop = stop.clone();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { serve_stop.cancelled().await })
                .await;
            let _ = scheduler.await;
            runner.shutdown().await;
            tracing::info!("stopped: runs ended at their last committed checkpoint");
            served.map_err(|e| Error::internal(format!("the HTTP server failed: {e}")))
        });
        tracing::info!(%addr, data_dir = %dir.display(), "sluice serve listening");
        Ok(Server {
            addr,
            stop,
            task,
            generated_token,
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API token generated on this first start (`None` when one was given or stored):
    /// show it once, it is not kept in clear anywhere.
    pub fn generated_token(&self) -> Option<&str> {
        self.generated_token.as_deref()
    }

    /// A token that stops the server when cancelled.
    pub fn stopper(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Stops accepting requests, stops every run at its last committed checkpoint, records
    /// them, and returns.
    pub async fn stop(self) -> Result<()> {
        self.stop.cancel();
        self.wait().await
    }

    /// Waits until the server stops (through [`Server::stopper`]).
    pub async fn wait(self) -> Result<()> {
        self.task
            .await
            .map_err(|e| Error::internal(format!("the server task failed: {e}")))?
    }
}

fn create_private_dir(dir: &std::path::Path) -> Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
        .map_err(|e| Error::config(format!("cannot create the data dir {}: {e}", dir.display())))
}
