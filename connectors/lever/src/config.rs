//! `[source]` settings of the Lever plugin.

use serde::Deserialize;
use sluice_core::{Error, Result, Secret};
use std::time::Duration;

/// Production Data API base URL.
pub(crate) const DEFAULT_BASE_URL: &str = "https://api.lever.co/v1";
/// Environment variable holding the API key, unless `api_key_env` names another.
pub(crate) const DEFAULT_API_KEY_ENV: &str = "LEVER_API_KEY";
/// Environment variable overriding the base URL.
pub(crate) const BASE_URL_ENV: &str = "LEVER_BASE_URL";

/// Settings of the Lever source. Credentials are required (an API key, or OAuth), unless
/// `demo` asks for the built-in emulator's demo data.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeverConfig {
    /// Lever API key (HTTP Basic user). Prefer the environment variable named by `api_key_env`.
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// Name of the environment variable read for the API key (default `LEVER_API_KEY`).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Data API base URL (default `https://api.lever.co/v1`; env `LEVER_BASE_URL` wins).
    #[serde(default)]
    pub base_url: Option<String>,
    /// OAuth 2.0 settings for partner apps (instead of an API key).
    #[serde(default)]
    pub oauth: Option<OAuthConfig>,
    /// Client-side rate limit shared by all requests of this account (default 10/s).
    #[serde(default)]
    pub rate_limit_per_second: Option<u32>,
    /// Burst allowed by the rate limiter (default 20).
    #[serde(default)]
    pub rate_limit_burst: Option<u32>,
    /// Maximum number of requests in flight (default 32).
    #[serde(default)]
    pub max_concurrency: Option<usize>,
    /// Timeout of one request, in seconds (default 60).
    #[serde(default)]
    pub request_timeout_secs: Option<u64>,
    /// How many times a failed request is retried before the sync fails (default 8; 429
    /// answers get this many retries more).
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// Total time one request may spend retrying, waits included, in seconds (default 300).
    #[serde(default)]
    pub max_retry_secs: Option<u64>,
    /// Largest response body accepted, in bytes (default 64 MiB).
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    /// Overlap of incremental opportunity reads, in seconds (default 3600).
    #[serde(default)]
    pub lookback_secs: Option<u64>,
    /// Minimum time between full re-imports of the lookup tables, in hours (default 24).
    #[serde(default)]
    pub reimport_interval_hours: Option<f64>,
    /// Also sync confidential opportunities, postings and requisitions (default true; needs a
    /// key with confidential access).
    #[serde(default)]
    pub confidential: Option<bool>,
    /// Page size of list requests, 1–100 (default 100).
    #[serde(default)]
    pub page_size: Option<u32>,
    /// Read a first sync (and a re-sync) of the opportunities newest first, in windows of
    /// `updatedAt` going back in time, committing each window before the next (default true).
    #[serde(default)]
    pub priority_first: Option<bool>,
    /// Ages of the priority-first windows in days, newest first (default 1, 7, 30, 91, 365;
    /// the rest follows the last).
    #[serde(default)]
    pub priority_windows_days: Option<Vec<u32>>,
    /// Every opportunity's children are re-read at least once per this many days, to find
    /// children deleted without their opportunity changing (default 30; 0 turns it off).
    #[serde(default)]
    pub rescan_interval_days: Option<f64>,
    /// Most of a run's requests the re-scan may spend, 0–1 (default 0.1).
    #[serde(default)]
    pub rescan_max_share: Option<f64>,
    /// Sync demo data from the built-in Lever emulator instead of an account (`sluice run
    /// --demo`). Never implied: a missing key is an error, not a reason to show demo data.
    #[serde(default)]
    pub demo: bool,
    /// Proxy, extra CA certificates, client certificate and TLS floor of the Lever client
    /// (`[source.network]`, the same keys as `[sink.network]`).
    #[serde(default)]
    pub network: sluice_net::NetworkConfig,
    /// Read nothing from the process environment: no `LEVER_API_KEY` (nor the variable
    /// `api_key_env` names) and no `LEVER_BASE_URL`; the credentials and the base URL come from
    /// these settings only. `sluice serve` sets it on every connection, so the server's own
    /// environment never reaches a connection.
    #[serde(default)]
    pub ignore_environment: bool,
}

/// OAuth 2.0 refresh-token settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthConfig {
    /// The app's client id.
    pub client_id: String,
    /// The app's client secret.
    pub client_secret: Secret,
    /// The refresh token from the authorization. A rotated token saved in the destination's
    /// secret store wins; this one is tried when the saved one is rejected.
    pub refresh_token: Secret,
    /// Token endpoint (default `https://auth.lever.co/oauth/token`).
    #[serde(default)]
    pub token_url: Option<String>,
}

/// Default OAuth token endpoint.
pub(crate) const DEFAULT_TOKEN_URL: &str = "https://auth.lever.co/oauth/token";

/// How the source authenticates, resolved from config and environment.
#[derive(Debug, Clone)]
pub(crate) enum Credentials {
    /// HTTP Basic with the API key.
    ApiKey(Secret),
    /// OAuth refresh-token flow.
    OAuth(OAuthConfig),
    /// `demo = true`: the built-in emulator's demo data.
    Demo,
}

/// Effective settings with defaults applied.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) credentials: Credentials,
    pub(crate) base_url: Option<String>,
    pub(crate) rate_per_second: u32,
    pub(crate) burst: u32,
    pub(crate) max_concurrency: usize,
    pub(crate) request_timeout: Duration,
    pub(crate) max_retries: u32,
    pub(crate) lookback_ms: i64,
    pub(crate) max_retry_time: Duration,
    pub(crate) max_body_bytes: u64,
    pub(crate) reimport_interval_ms: i64,
    pub(crate) confidential: bool,
    pub(crate) page_size: u32,
    /// Window ages in days of a priority-first walk; empty: plain walks.
    pub(crate) priority_windows_days: Vec<u32>,
    pub(crate) rescan: crate::rescan::RescanSettings,
    /// `[source.network]`, files read.
    pub(crate) network: sluice_net::Network,
}

impl LeverConfig {
    /// Applies defaults and the environment; validates ranges.
    pub(crate) fn settings(&self) -> Result<Settings> {
        let env_name = self
            .api_key_env
            .clone()
            .unwrap_or_else(|| DEFAULT_API_KEY_ENV.to_owned());
        let var = |name: &str| {
            if self.ignore_environment {
                Err(std::env::VarError::NotPresent)
            } else {
                std::env::var(name)
            }
        };
        let env_key = match var(&env_name) {
            Ok(v) if v.trim().is_empty() => {
                return Err(Error::config(format!(
                    "{env_name} is set but empty: set it to the Lever API key (a secret that failed to mount?), or unset it"
                )));
            }
            Ok(v) => Some(Secret::new(v.trim())),
            Err(std::env::VarError::NotPresent) => None,
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(Error::config(format!("{env_name} is not valid UTF-8")));
            }
        };
        if self
            .api_key
            .as_ref()
            .is_some_and(|k| k.expose().trim().is_empty())
        {
            return Err(Error::config("[source].api_key: is empty"));
        }
        let credentials = match (&self.api_key, env_key, &self.oauth) {
            (Some(_), _, Some(_)) => {
                return Err(Error::config(
                    "[source]: set either `api_key` or `oauth`, not both",
                ));
            }
            (Some(k), _, None) => Credentials::ApiKey(Secret::new(k.expose().trim())),
            (None, _, Some(o)) => Credentials::OAuth(o.clone()),
            (None, Some(k), None) => Credentials::ApiKey(k),
            (None, None, None) if self.demo => Credentials::Demo,
            (None, None, None) => {
                return Err(Error::config(format!(
                    "no Lever credentials: set {env_name} (or [source].api_key, or [source.oauth]); for the built-in emulator's demo data pass --demo"
                )));
            }
        };
        if self.demo && !matches!(credentials, Credentials::Demo) {
            return Err(Error::config(format!(
                "--demo syncs the built-in emulator's demo data, but Lever credentials are configured ({env_name}, [source].api_key or [source.oauth]): drop one of them"
            )));
        }
        if let Some(o) = &self.oauth {
            check_oauth(o)?;
        }
        let base_url = match var(BASE_URL_ENV) {
            Ok(v) if v.trim().is_empty() => {
                return Err(Error::config(format!("{BASE_URL_ENV} is set but empty")));
            }
            Ok(v) => Some(v.trim().to_owned()),
            Err(_) => self.base_url.clone(),
        };
        if self.demo && base_url.is_some() {
            return Err(Error::config(format!(
                "--demo uses the built-in emulator: unset [source].base_url and {BASE_URL_ENV}"
            )));
        }
        let positive = |name: &str, v: Option<u32>, default: u32| -> Result<u32> {
            match v {
                Some(0) => Err(Error::config(format!(
                    "[source].{name}: must be at least 1"
                ))),
                Some(v) => Ok(v),
                None => Ok(default),
            }
        };
        let page_size = positive("page_size", self.page_size, 100)?;
        if page_size > 100 {
            return Err(Error::config(
                "[source].page_size: Lever allows at most 100",
            ));
        }
        let interval_h = self.reimport_interval_hours.unwrap_or(24.0);
        if !(interval_h >= 0.0 && interval_h.is_finite()) {
            return Err(Error::config(
                "[source].reimport_interval_hours: must be a non-negative number",
            ));
        }
        let priority_windows_days = match (self.priority_first, &self.priority_windows_days) {
            (Some(false), _) => Vec::new(),
            (_, Some(days)) if days.is_empty() || days.contains(&0) => {
                return Err(Error::config(
                    "[source].priority_windows_days: give one or more ages in days, each at least 1",
                ));
            }
            (_, Some(days)) => days.clone(),
            (_, None) => crate::priority::DEFAULT_WINDOW_DAYS.to_vec(),
        };
        let rescan_days = self.rescan_interval_days.unwrap_or(30.0);
        if !(rescan_days >= 0.0 && rescan_days.is_finite()) {
            return Err(Error::config(
                "[source].rescan_interval_days: must be a non-negative number",
            ));
        }
        let rescan_share = self.rescan_max_share.unwrap_or(0.1);
        if !(0.0..=1.0).contains(&rescan_share) {
            return Err(Error::config(
                "[source].rescan_max_share: must be between 0 and 1",
            ));
        }
        let network = self
            .network
            .resolve("[source.network]")
            .map_err(|e| Error::config(e.to_string()))?;
        Ok(Settings {
            network,
            priority_windows_days,
            rescan: crate::rescan::RescanSettings {
                interval_ms: (rescan_days * 86_400_000.0) as i64,
                max_share: rescan_share,
            },
            credentials,
            base_url,
            rate_per_second: positive("rate_limit_per_second", self.rate_limit_per_second, 10)?,
            burst: positive("rate_limit_burst", self.rate_limit_burst, 20)?,
            max_concurrency: self.max_concurrency.unwrap_or(32).clamp(1, 256),
            request_timeout: Duration::from_secs(self.request_timeout_secs.unwrap_or(60).max(1)),
            max_retries: self.max_retries.unwrap_or(8),
            lookback_ms: self.lookback_secs.unwrap_or(3600) as i64 * 1_000,
            max_retry_time: Duration::from_secs(
                self.max_retry_secs
                    .unwrap_or(crate::http::DEFAULT_MAX_RETRY_SECS),
            ),
            max_body_bytes: self
                .max_body_bytes
                .unwrap_or(crate::http::DEFAULT_MAX_BODY_BYTES)
                .max(1),
            reimport_interval_ms: (interval_h * 3_600_000.0) as i64,
            confidential: self.confidential.unwrap_or(true),
            page_size,
        })
    }
}

/// Checks that the OAuth settings are usable before anything is requested.
fn check_oauth(o: &OAuthConfig) -> Result<()> {
    if o.client_id.trim().is_empty() {
        return Err(Error::config("[source.oauth].client_id: is empty"));
    }
    if o.client_secret.expose().trim().is_empty() {
        return Err(Error::config("[source.oauth].client_secret: is empty"));
    }
    if o.refresh_token.expose().trim().is_empty() {
        return Err(Error::config("[source.oauth].refresh_token: is empty"));
    }
    Ok(())
}

impl Settings {
    /// The endpoint this configuration reads (the base URL, or the demo emulator).
    pub(crate) fn origin(&self) -> sluice_core::Origin {
        match self.credentials {
            Credentials::Demo => sluice_core::Origin::demo("built-in Lever emulator"),
            _ => sluice_core::Origin::live(
                self.base_url
                    .as_deref()
                    .unwrap_or(DEFAULT_BASE_URL)
                    .trim_end_matches('/'),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_rejected() {
        let e =
            serde_json::from_value::<LeverConfig>(serde_json::json!({"apikey": "x"})).unwrap_err();
        assert!(e.to_string().contains("apikey"), "{e}");
    }

    #[test]
    fn defaults_and_debug_redaction() {
        let c: LeverConfig = serde_json::from_value(serde_json::json!({
            "api_key": "super-secret-key", "api_key_env": "SLUICE_TEST_NO_SUCH_ENV"
        }))
        .unwrap();
        assert!(!format!("{c:?}").contains("super-secret-key"));
        let s = c.settings().unwrap();
        assert!(!format!("{s:?}").contains("super-secret-key"));
        assert_eq!(s.rate_per_second, 10);
        assert_eq!(s.burst, 20);
        assert_eq!(s.page_size, 100);
        assert!(s.confidential);
        assert_eq!(s.lookback_ms, 3_600_000);
        assert!(matches!(s.credentials, Credentials::ApiKey(_)));
        assert_eq!(
            s.priority_windows_days,
            crate::priority::DEFAULT_WINDOW_DAYS
        );
        assert_eq!(s.rescan.interval_ms, 30 * 86_400_000);
        assert!((s.rescan.max_share - 0.1).abs() < 1e-9);
        let bad: LeverConfig =
            serde_json::from_value(serde_json::json!({"page_size": 500})).unwrap();
        assert!(bad.settings().is_err());
    }
}
