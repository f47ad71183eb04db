//! # sluice-source-lever
//!
//! The Lever applicant-tracking source: syncs the Lever Data API v1 into the 46 tables of
//! Fivetran's Lever connector (`shared/lever/DESTINATION_SCHEMA.md`), so Fivetran's dbt package
//! for Lever runs unchanged on the output.
//!
//! * [`catalog`]: the tables, generated from the vendored `destination_schema.json`.
//! * `decode`: JSON → Arrow builders driven by the table declarations.
//! * `http`: reqwest client, one shared rate limiter, retries with backoff, OAuth.
//! * `sync`: re-imports, the incremental opportunity walk, deletes, checkpoints.
//! * `custom_fields`: requisition custom fields as columns.
//! * `demo`: with no credentials at all, the built-in emulator serves demo data.
//!
//! Interpretation notes (also in the crate README, `connectors/lever/README.md`):
//! `opportunity` captures deletes (a deliberate deviation: hard-deleted opportunities from
//! `/opportunities/deleted` are soft-deleted, together with their notes, feedback forms and
//! profile forms; other child tables are left as Fivetran leaves them). `candidate_stage_history`
//! comes from the deprecated `/candidates` endpoint: it is declared but never requested and
//! stays empty.

#[doc(hidden)]
#[path = "bench.rs"]
pub mod __bench;
pub mod catalog;
mod config;
mod custom_fields;
mod decode;
mod demo;
mod http;
mod sync;

pub use config::{LeverConfig, OAuthConfig};
pub use http::auth::REFRESH_TOKEN_STATE_KEY;

use config::{Credentials, Settings};
use http::auth::{Auth, OAuth};
use http::{Client, ClientOptions};
use sluice_core::{
    DynSource, Emitter, Error, Metrics, ReadContext, Result, Source, TableSpec, async_trait,
};
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
}

/// A connected client plus what keeps it alive (the demo emulator).
struct Connection {
    client: Client,
    _demo: Option<demo::Demo>,
    base_url: String,
}

async fn connect(
    settings: &Settings,
    state_refresh: Option<&sluice_core::Secret>,
    metrics: Metrics,
    cancel: CancellationToken,
) -> Result<Connection> {
    let mut settings = settings.clone();
    let (auth, demo, base_url) = match &settings.credentials {
        Credentials::None => {
            if settings.base_url.is_some() {
                return Err(Error::config(
                    "[source]: base_url is set but no credentials: set LEVER_API_KEY (or [source].api_key, or [source].oauth)",
                ));
            }
            let d = demo::Demo::start().await?;
            tracing::info!(
                "no Lever credentials configured (LEVER_API_KEY): syncing from the built-in Lever emulator with demo data"
            );
            if settings.rate_per_second == 10 && settings.burst == 20 {
                // The in-process emulator has no rate limit; don't make the demo wait.
                settings.rate_per_second = 1_000;
                settings.burst = 1_000;
            }
            let auth = Auth::api_key(&d.api_key)?;
            let url = d.base_url.clone();
            (auth, Some(d), url)
        }
        Credentials::ApiKey(k) => (
            Auth::api_key(k)?,
            None,
            settings
                .base_url
                .clone()
                .unwrap_or_else(|| config::DEFAULT_BASE_URL.to_owned()),
        ),
        Credentials::OAuth(o) => {
            let refresh = state_refresh
                .cloned()
                .unwrap_or_else(|| o.refresh_token.clone());
            (
                Auth::OAuth(OAuth::new(o, refresh)),
                None,
                settings
                    .base_url
                    .clone()
                    .unwrap_or_else(|| config::DEFAULT_BASE_URL.to_owned()),
            )
        }
    };
    let base_url = base_url.trim_end_matches('/').to_owned();
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
        },
        auth,
        metrics,
        cancel,
    )?;
    Ok(Connection {
        client,
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

    async fn check(&self, config: &LeverConfig) -> Result<String> {
        let settings = config.settings()?;
        let conn = connect(&settings, None, Metrics::new(), CancellationToken::new()).await?;
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
            Credentials::None => "the built-in Lever emulator (demo data)",
            Credentials::ApiKey(_) => "Lever with an API key",
            Credentials::OAuth(_) => "Lever with OAuth",
        };
        Ok(format!("reached {what} at {}", conn.base_url))
    }

    async fn read(&self, config: &LeverConfig, ctx: ReadContext, out: Emitter) -> Result<()> {
        let settings = config.settings()?;
        let state_refresh = ctx.state.secrets.get(REFRESH_TOKEN_STATE_KEY).cloned();
        let conn = connect(
            &settings,
            state_refresh.as_ref(),
            ctx.metrics.clone(),
            ctx.cancel.clone(),
        )
        .await?;
        let extra: sync::Extra = if ctx.state.extra.is_null() {
            sync::Extra::default()
        } else {
            serde_json::from_value(ctx.state.extra.clone()).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "unreadable Lever state extras; starting the walk afresh");
                sync::Extra::default()
            })
        };
        let state = ctx.state.clone();
        let run = sync::Sync {
            client: conn.client.clone(),
            ctx: &ctx,
            out: &out,
            confidential: settings.confidential,
            lookback_ms: settings.lookback_ms,
            reimport_interval_ms: settings.reimport_interval_ms,
            max_concurrency: settings.max_concurrency,
            state,
            extra,
            issues: Default::default(),
        };
        run.run().await
    }
}
