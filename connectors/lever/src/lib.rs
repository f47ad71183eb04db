//! # sluice-source-lever
//!
//! The Lever applicant-tracking source: syncs the Lever Data API v1 into the 46 tables of
//! Fivetran's Lever connector (`src/destination_schema.json`), so Fivetran's dbt package
//! for Lever runs unchanged on the output.
//!
//! * [`catalog`]: the tables, generated from the vendored `destination_schema.json`.
//! * `lever_tables`: how each table is read, declared once (checked against the schema).
//! * `lists`: the lists re-imported in full.
//! * `json`: response bodies parsed into a tape of JSON nodes (simd-json), read by `http`
//!   (pages, cursors) and `decode`.
//! * `decode`: JSON → Arrow builders driven by the table declarations.
//! * `http`: reqwest client, one shared rate limiter, retries with backoff, OAuth.
//! * `sync`: re-imports, the incremental opportunity walk, deletes, checkpoints.
//! * `custom_fields`: requisition custom fields as columns.
//! * `demo` (cargo feature `demo`): with `demo = true` (`sluice run --demo`), the built-in
//!   emulator serves demo data. Never implied by missing credentials.
//!
//! Interpretation notes (also in the crate README, `connectors/lever/README.md`):
//! `opportunity` captures deletes (a deliberate deviation: hard-deleted opportunities from
//! `/opportunities/deleted` are soft-deleted, together with their notes, feedback forms and
//! profile forms; other child tables are left as Fivetran leaves them). `candidate_stage_history`
//! comes from the deprecated `/candidates` endpoint: it is declared but never requested and
//! stays empty.

#[cfg(any(test, feature = "demo"))]
#[doc(hidden)]
#[path = "bench.rs"]
pub mod __bench;
pub mod catalog;
mod config;
mod custom_fields;
mod decode;
#[cfg(feature = "demo")]
mod demo;
mod http;
mod id_hash;
mod json;
mod lever_tables;
mod list_digest;
mod lists;
mod priority;
mod rescan;
mod sync;

pub use config::{LeverConfig, OAuthConfig};
pub use http::auth::REFRESH_TOKEN_STATE_KEY;

use config::{Credentials, Settings};
use http::auth::{Auth, OAuth};
use http::{Client, ClientOptions};
use sluice_core::{
    CheckContext, DynSource, Emitter, Error, Metrics, Origin, ReadContext, Result, Secret,
    SecretStore, Source, TableSpec, async_trait,
};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The Lever source plugin.
#[derive(Debug, Default, Clone)]
pub struct LeverSource;

fn build() -> Box<dyn DynSource> {
    Box::new(LeverSource)
}

sluice_core::inventory::submit! {
    sluice_core::SourcePlugin::new(
        "lever",
        "Lever applicant-tracking API (46 Fivetran-compatible tables)",
        build
    )
    .with_defaults(&[LEVER_DEFAULTS])
}

/// The defaults of the `[source]` keys, as TOML (shown by `sluice config show`).
const LEVER_DEFAULTS: &str = "\
api_key_env = \"LEVER_API_KEY\"
base_url = \"https://api.lever.co/v1\"
rate_limit_per_second = 10
rate_limit_burst = 20
max_concurrency = 32
request_timeout_secs = 60
max_retries = 8
max_retry_secs = 300
max_body_bytes = 67108864
lookback_secs = 3600
reimport_interval_hours = 24.0
confidential = true
page_size = 100
priority_first = true
priority_windows_days = [1, 7, 30, 91, 365]
rescan_interval_days = 30.0
rescan_max_share = 0.1
demo = false
";

/// A connected client plus what keeps it alive (the demo emulator).
struct Connection {
    client: Client,
    #[cfg(feature = "demo")]
    _demo: Option<demo::Demo>,
    base_url: String,
}

/// Where OAuth saves rotated refresh tokens, and the token a format-1 state carried.
struct TokenHome<'a> {
    store: Option<Arc<dyn SecretStore>>,
    legacy: Option<&'a Secret>,
}

async fn connect(
    settings: &Settings,
    tokens: TokenHome<'_>,
    metrics: Metrics,
    cancel: CancellationToken,
) -> Result<Connection> {
    #[allow(unused_mut)]
    let mut settings = settings.clone();
    #[cfg(feature = "demo")]
    let mut demo = None;
    let (auth, base_url) = match &settings.credentials {
        Credentials::Demo => {
            #[cfg(feature = "demo")]
            {
                let d = demo::Demo::start().await?;
                tracing::info!(
                    "--demo: syncing demo data from the built-in Lever emulator, not a Lever account"
                );
                if settings.rate_per_second == 10 && settings.burst == 20 {
                    // The in-process emulator has no rate limit; don't make the demo wait.
                    settings.rate_per_second = 1_000;
                    settings.burst = 1_000;
                }
                let auth = Auth::api_key(&d.api_key)?;
                let url = d.base_url.clone();
                demo = Some(d);
                (auth, url)
            }
            #[cfg(not(feature = "demo"))]
            {
                return Err(Error::config(
                    "--demo: this build of sluice has no built-in Lever emulator (the `demo` feature of sluice-source-lever is off)",
                ));
            }
        }
        Credentials::ApiKey(k) => (Auth::api_key(k)?, settings.origin().endpoint),
        Credentials::OAuth(o) => {
            let store = tokens.store.ok_or_else(|| {
                Error::config(
                    "[source.oauth]: OAuth needs a destination that keeps the rotated refresh token (Lever invalidates the previous one); this sink keeps none",
                )
            })?;
            (
                Auth::OAuth(OAuth::new(o, store, tokens.legacy.cloned())),
                settings.origin().endpoint,
            )
        }
    };
    let base_url = base_url.trim_end_matches('/').to_owned();
    if settings.network.is_set() {
        tracing::info!("Lever network: {}", settings.network.describe());
    }
    let client = Client::new(
        ClientOptions {
            base_url: base_url.clone(),
            rate_per_second: settings.rate_per_second,
            burst: settings.burst,
            timeout: settings.request_timeout,
            max_retries: settings.max_retries,
            page_size: settings.page_size,
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            max_retry_time: settings.max_retry_time,
            max_body_bytes: settings.max_body_bytes,
            network: settings.network.clone(),
        },
        auth,
        metrics,
        cancel,
    )?;
    Ok(Connection {
        client,
        #[cfg(feature = "demo")]
        _demo: demo,
        base_url,
    })
}

#[async_trait]
impl Source for LeverSource {
    type Config = LeverConfig;

    fn catalog(&self) -> Vec<TableSpec> {
        catalog::catalog().to_vec()
    }

    fn origin(&self, config: &LeverConfig) -> Result<Option<Origin>> {
        Ok(Some(config.settings()?.origin()))
    }

    async fn check(&self, config: &LeverConfig, ctx: CheckContext) -> Result<String> {
        let settings = config.settings()?;
        let tokens = TokenHome {
            store: ctx.secrets,
            legacy: None,
        };
        let conn = connect(&settings, tokens, Metrics::new(), CancellationToken::new()).await?;
        let q = [("limit", "1".to_owned())];
        conn.client
            .get("users", "/users", &q)
            .await
            .map_err(|e| match e {
                http::PageError::Other(e) => e,
                http::PageError::InvalidOffset => Error::upstream("unexpected offset error"),
            })?
            .ok_or_else(|| {
                Error::upstream(format!(
                    "{}/users answered 404: is base_url right?",
                    conn.base_url
                ))
            })?;
        let what = match settings.credentials {
            Credentials::Demo => "the built-in Lever emulator (demo data)",
            Credentials::ApiKey(_) => "Lever with an API key",
            Credentials::OAuth(_) => "Lever with OAuth",
        };
        Ok(format!("reached {what} at {}", conn.base_url))
    }

    async fn read(&self, config: &LeverConfig, ctx: ReadContext, out: Emitter) -> Result<()> {
        let settings = config.settings()?;
        let tokens = TokenHome {
            store: ctx.secrets.clone(),
            legacy: ctx.state.legacy_secrets.get(REFRESH_TOKEN_STATE_KEY),
        };
        let extra = read_extra(&ctx.state.extra)?;
        let conn = connect(&settings, tokens, ctx.metrics.clone(), ctx.cancel.clone()).await?;
        let state = ctx.state.clone();
        let run = sync::Sync {
            client: conn.client.clone(),
            ctx: &ctx,
            out: &out,
            confidential: settings.confidential,
            lookback_ms: settings.lookback_ms,
            reimport_interval_ms: settings.reimport_interval_ms,
            max_concurrency: settings.max_concurrency,
            priority_windows_days: settings.priority_windows_days.clone(),
            rescan: settings.rescan,
            state,
            extra,
            issues: Default::default(),
            seen: Default::default(),
            written_contacts: Default::default(),
        };
        run.run().await
    }
}

/// The Lever extras of a committed state. Extras of a newer format, or that this build cannot
/// read, are a destination error: a walk position, cursor or custom-field list misread or
/// reset would skip or rewrite data.
fn read_extra(v: &serde_json::Value) -> Result<sync::Extra> {
    if v.is_null() {
        return Ok(sync::Extra::default());
    }
    let format = v.get("format").map_or(Some(1), serde_json::Value::as_u64);
    match format {
        Some(f) if f <= u64::from(sync::EXTRA_FORMAT) => {}
        Some(f) => {
            return Err(Error::destination(format!(
                "the Lever state was written by a newer sluice (extras format {f}; this build reads up to {}): upgrade sluice",
                sync::EXTRA_FORMAT
            )));
        }
        None => {
            return Err(Error::destination(
                "the Lever state's extras format is not a number: was the state edited by hand?",
            ));
        }
    }
    let mut extra: sync::Extra = serde_json::from_value(v.clone()).map_err(|e| {
        Error::destination(format!(
            "the Lever state's extras are unreadable ({e}): written by a newer sluice? upgrade sluice"
        ))
    })?;
    extra.format = sync::ExtraFormat::default();
    Ok(extra)
}

#[cfg(test)]
mod defaults_tests {
    #[test]
    fn the_listed_defaults_are_the_defaults() {
        let key = serde_json::json!("k");
        let mut listed: serde_json::Value = toml::from_str(super::LEVER_DEFAULTS).unwrap();
        // Resolved where they are used, not in the settings.
        assert_eq!(listed["base_url"], crate::config::DEFAULT_BASE_URL);
        assert_eq!(listed["api_key_env"], crate::config::DEFAULT_API_KEY_ENV);
        let map = listed.as_object_mut().unwrap();
        map.remove("base_url");
        map.remove("api_key_env");
        listed["api_key"] = key.clone();
        let listed: crate::config::LeverConfig = serde_json::from_value(listed).unwrap();
        let unset: crate::config::LeverConfig =
            serde_json::from_value(serde_json::json!({ "api_key": key })).unwrap();
        let (listed, unset) = (listed.settings(), unset.settings());
        assert_eq!(format!("{listed:?}"), format!("{unset:?}"));
    }
}
