//! The settings of one sync besides the plugins' own sections, and how they become
//! [`SyncOptions`]. `sluice run` reads them from the top level of `sluice.toml`; `sluice serve`
//! stores them per connection. Both run the engine through this one mapping.

use crate::engine::SyncOptions;
use crate::secret::Secret;
use crate::transform::{SyncSettings, TableSettings};
use std::collections::BTreeMap;
use std::time::Duration;

/// Environment variable holding the hashing salt; it wins over a configured salt.
const SALT_ENV: &str = "SLUICE_HASH_SALT";
/// Default of [`RunSettings::commit_interval_secs`].
const DEFAULT_COMMIT_INTERVAL_SECS: u64 = 30;
/// Default of [`RunSettings::commit_max_rows`].
const DEFAULT_COMMIT_MAX_ROWS: u64 = 250_000;

/// Everything that shapes a sync besides the source's and the sink's own settings.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RunSettings {
    /// Per-table settings (blocking, hashing, history).
    pub tables: BTreeMap<String, TableSettings>,
    /// The configured hashing salt (`SLUICE_HASH_SALT` wins when set).
    pub hash_salt: Option<Secret>,
    /// Seconds between commits at checkpoints (default 30; 0 commits at every checkpoint).
    pub commit_interval_secs: Option<u64>,
    /// Rows staged before a commit is due whatever the interval (default 250000).
    pub commit_max_rows: Option<u64>,
    /// Accept a source reading from another origin than the destination's (see
    /// [`SyncOptions::allow_origin_change`]).
    pub allow_origin_change: bool,
}

impl RunSettings {
    /// Settings with these per-table settings and salt, defaults elsewhere.
    pub fn new(tables: BTreeMap<String, TableSettings>, hash_salt: Option<Secret>) -> Self {
        RunSettings {
            tables,
            hash_salt,
            ..Default::default()
        }
    }

    /// Per-table settings and the salt (from `SLUICE_HASH_SALT`, else the configured one).
    pub fn sync_settings(&self) -> SyncSettings {
        let salt = std::env::var(SALT_ENV)
            .ok()
            .filter(|s| !s.is_empty())
            .map(Secret::new)
            .or_else(|| self.hash_salt.clone());
        SyncSettings {
            tables: self.tables.clone(),
            hash_salt: salt,
        }
    }

    /// The engine's options for one run (fresh cancellation token and counters).
    pub fn sync_options(&self) -> SyncOptions {
        SyncOptions {
            settings: self.sync_settings(),
            commit_interval: Duration::from_secs(
                self.commit_interval_secs
                    .unwrap_or(DEFAULT_COMMIT_INTERVAL_SECS),
            ),
            commit_max_rows: self
                .commit_max_rows
                .unwrap_or(DEFAULT_COMMIT_MAX_ROWS)
                .max(1),
            allow_origin_change: self.allow_origin_change,
            ..Default::default()
        }
    }
}

/// A sink's settings (an object) with `dest` set to `dest` when given.
pub fn sink_config(mut settings: serde_json::Value, dest: Option<&str>) -> serde_json::Value {
    if !settings.is_object() {
        settings = serde_json::Value::Object(Default::default());
    }
    if let Some(dest) = dest {
        settings["dest"] = serde_json::Value::String(dest.to_owned());
    }
    settings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_dest_override() {
        let o = RunSettings::default().sync_options();
        assert_eq!(o.commit_interval, Duration::from_secs(30));
        assert_eq!(o.commit_max_rows, 250_000);
        let s = sink_config(serde_json::json!({"dest": "a", "x": 1}), Some("b"));
        assert_eq!(s, serde_json::json!({"dest": "b", "x": 1}));
        assert_eq!(
            sink_config(serde_json::Value::Null, None),
            serde_json::json!({})
        );
    }
}
