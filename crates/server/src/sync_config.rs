//! A stored connection and its secrets, mapped to what `sluice run` builds from `sluice.toml`:
//! the source's settings as JSON (`[source]`, secrets merged in memory only), the sink's
//! settings with `dest`, and the [`RunSettings`] that become the engine's options.

use crate::store::{Store, StoredConnection, secret};
use serde_json::{Value, json};
use sluice_core::{Error, Result, RunSettings};

/// Everything `sluice_core::run_sync` needs besides the plugins.
pub struct SyncConfig {
    /// The source's settings, as `[source]` of `sluice.toml` (holds secrets: never log it).
    pub source: Value,
    /// The sink's settings, as `[sink]` with `dest`.
    pub sink: Value,
    /// Per-table settings, salt and commit settings.
    pub run: RunSettings,
}

impl std::fmt::Debug for SyncConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SyncConfig(***)")
    }
}

/// Keys of the source's settings that hold secrets: set through the credentials endpoint,
/// never stored with the settings.
pub const SECRET_SOURCE_KEYS: [&str; 2] = ["api_key", "oauth"];

/// Builds the sync configuration of `c`.
pub fn sync_config(store: &Store, c: &StoredConnection) -> Result<SyncConfig> {
    let mut source = Value::Object(c.source_settings.clone());
    if let Some(key) = store.secret(&c.id, secret::API_KEY)? {
        source["api_key"] = Value::String(key.expose().to_owned());
    }
    if let Some(oauth) = &c.oauth {
        let client_secret = store
            .secret(&c.id, secret::OAUTH_CLIENT_SECRET)?
            .ok_or_else(|| Error::config("credentials.oauth.client_secret: is not set"))?;
        let refresh = store.secret(&c.id, secret::OAUTH_REFRESH_TOKEN)?.ok_or_else(|| {
            Error::auth(format!(
                "connection `{}` is not authorized yet: POST /v1/connections/{}/authorize and open the URL",
                c.id, c.id
            ))
        })?;
        let mut o = json!({
            "client_id": oauth.client_id,
            "client_secret": client_secret.expose(),
            "refresh_token": refresh.expose(),
        });
        if let Some(url) = &oauth.token_url {
            o["token_url"] = Value::String(url.clone());
        }
        source["oauth"] = o;
    }
    let sink =
        sluice_core::sink_config(Value::Object(c.sink_settings.clone()), Some(&c.destination));
    let run = RunSettings::new(c.tables.clone(), store.secret(&c.id, secret::HASH_SALT)?);
    Ok(SyncConfig { source, sink, run })
}
