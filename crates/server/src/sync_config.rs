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

/// Keys of the source's settings that would read the server's environment (the flag that
/// turns the environment off is the server's to set).
pub const ENV_SOURCE_KEYS: [&str; 2] = ["api_key_env", "ignore_environment"];

/// Keys of the sink's settings that hold object-store secrets: the server takes object-store
/// credentials from its own environment or instance role only.
pub const SECRET_SINK_KEYS: [&str; 3] = ["access_key_id", "secret_access_key", "session_token"];

/// Keys of a `network` block (source or sink) that name files on the server's disk.
pub const FILE_NETWORK_KEYS: [&str; 3] = ["ca_cert_file", "client_cert_file", "client_key_file"];

/// The source's settings as the plugin reads them: the stored settings, and for Lever the
/// flag that keeps the server's environment (`LEVER_API_KEY`, `LEVER_BASE_URL`) out.
pub fn source_settings(c: &StoredConnection) -> Value {
    let mut source = Value::Object(c.source_settings.clone());
    if c.source == "lever" {
        source["ignore_environment"] = Value::Bool(true);
    }
    source
}

/// Builds the sync configuration of `c`.
pub fn sync_config(store: &Store, c: &StoredConnection) -> Result<SyncConfig> {
    let mut source = source_settings(c);
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
