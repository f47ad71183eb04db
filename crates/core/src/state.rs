//! Typed, versioned sync state. It lives in the destination and advances only after the data
//! it covers is durable.

use crate::error::{Error, Result};
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The state format this build writes and the newest it reads.
///
/// * 1: cursors, re-import times, source extras, and secrets (a rotated OAuth refresh token)
///   inside the state.
/// * 2: the source's [`Origin`]; secrets are no longer part of the state (they live in the
///   destination's [`crate::SecretStore`]). A format-1 sluice would write to a destination of
///   another origin and lose the token, so it must refuse format 2.
/// * 3: the Lever source's extras hold the walk's start, its priority windows, the rolling
///   re-scan and the list digests, and record their own format (`extra.format`), checked by
///   the source. A format-2 sluice would resume a window's page under an unfiltered query and
///   move the cursor past the walk's start, so it must refuse format 3.
pub const STATE_VERSION: u32 = 3;

/// Where a destination's data came from: the endpoint a source read, and whether it was demo
/// data. Recorded in the state by the engine; a run whose source reads from another origin is
/// refused, so demo rows never mix with an account's and one account's cursor never drives
/// another's sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Origin {
    /// The endpoint read (a base URL, without credentials), or a fixed name for built-in demo
    /// data.
    pub endpoint: String,
    /// Whether the data is demo data from a built-in emulator.
    #[serde(default)]
    pub demo: bool,
}

impl Origin {
    /// A live endpoint.
    pub fn live(endpoint: impl Into<String>) -> Self {
        Origin {
            endpoint: endpoint.into(),
            demo: false,
        }
    }

    /// Built-in demo data called `name`.
    pub fn demo(name: impl Into<String>) -> Self {
        Origin {
            endpoint: name.into(),
            demo: true,
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.demo {
            write!(f, "demo data ({})", self.endpoint)
        } else {
            f.write_str(&self.endpoint)
        }
    }
}

/// Where an incremental table resumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "value")]
pub enum Cursor {
    /// An instant in epoch milliseconds (Lever's `updatedAt`).
    TimestampMs(i64),
    /// An integer position.
    Int(i64),
    /// An opaque text position (e.g. a page token).
    Text(String),
}

/// Per-table state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TableState {
    /// The highest cursor value committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<Cursor>,
    /// When the table was last fully re-imported (epoch ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reimport_ms: Option<i64>,
    /// Set by `sluice resync`: the next run re-imports the table from scratch.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resync_requested: bool,
    /// The stored table carries history-mode version columns (history is or was on). Set by
    /// the engine; when history is switched off later, the versions are kept.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub versioned: bool,
}

/// The whole state of one destination.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct State {
    /// Format version; see [`STATE_VERSION`].
    pub version: u32,
    /// The source plugin that owns this destination.
    pub source: String,
    /// Per-table state.
    #[serde(default)]
    pub tables: BTreeMap<String, TableState>,
    /// Source-specific state (page positions, windows).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub extra: serde_json::Value,
    /// Where the data came from (format 2 on); `None` in a state of format 1, adopted by the
    /// next run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    /// Secrets found in a format-1 state (a rotated OAuth refresh token), for a source to
    /// move into the [`crate::SecretStore`]. Read, never written: secrets are not part of the
    /// state from format 2 on.
    #[serde(
        default,
        skip_serializing,
        deserialize_with = "secret_map::deserialize"
    )]
    #[serde(rename = "secrets")]
    pub legacy_secrets: BTreeMap<String, Secret>,
    /// When this state was committed (epoch ms).
    #[serde(default)]
    pub committed_at_ms: i64,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("version", &self.version)
            .field("source", &self.source)
            .field("tables", &self.tables)
            .field("extra", &self.extra)
            .field("origin", &self.origin)
            .field(
                "legacy_secrets",
                &self.legacy_secrets.keys().collect::<Vec<_>>(),
            )
            .field("committed_at_ms", &self.committed_at_ms)
            .finish()
    }
}

impl State {
    /// An empty state for `source`.
    pub fn new(source: impl Into<String>) -> Self {
        State {
            version: STATE_VERSION,
            source: source.into(),
            tables: BTreeMap::new(),
            extra: serde_json::Value::Null,
            origin: None,
            legacy_secrets: BTreeMap::new(),
            committed_at_ms: 0,
        }
    }

    /// The state of `table`, default when never synced.
    pub fn table(&self, table: &str) -> TableState {
        self.tables.get(table).cloned().unwrap_or_default()
    }

    /// Mutable state of `table`, created on first use.
    pub fn table_mut(&mut self, table: &str) -> &mut TableState {
        self.tables.entry(table.to_owned()).or_default()
    }

    /// Serializes to pretty JSON (the state file's content; it holds no secrets).
    pub fn to_json(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("state serializes");
        bytes.push(b'\n');
        bytes
    }

    /// The state as JSON for display (it holds no secrets; see [`State::legacy_secrets`]).
    pub fn to_redacted_json(&self) -> String {
        let v = serde_json::to_value(self).expect("state serializes");
        serde_json::to_string_pretty(&v).expect("state serializes")
    }

    /// Parses a state file, rejecting versions newer than this build understands.
    pub fn from_json(bytes: &[u8]) -> Result<State> {
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let v: Version = serde_json::from_slice(bytes).map_err(|e| {
            Error::destination("state file is not valid sluice state JSON").with_source(e)
        })?;
        if v.version > STATE_VERSION {
            return Err(Error::destination(format!(
                "state version {} was written by a newer sluice; this build reads up to version {STATE_VERSION}: upgrade sluice",
                v.version
            )));
        }
        serde_json::from_slice(bytes)
            .map_err(|e| Error::destination("state file is corrupt").with_source(e))
    }
}

mod secret_map {
    use super::Secret;
    use serde::{Deserialize, Deserializer};
    use std::collections::BTreeMap;

    /// Format 1 kept secrets under `secrets`.
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, Secret>, D::Error> {
        BTreeMap::<String, Secret>::deserialize(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let mut s = State::new("lever");
        s.table_mut("opportunity").cursor = Some(Cursor::TimestampMs(1_700_000_000_000));
        s.table_mut("users").last_reimport_ms = Some(5);
        s.table_mut("stage").resync_requested = true;
        s.extra = serde_json::json!({"page": "abc"});
        s.origin = Some(Origin::live("https://api.lever.co/v1"));
        let back = State::from_json(&s.to_json()).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.version, STATE_VERSION);
    }

    #[test]
    fn format_1_secrets_are_read_but_never_written() {
        let v1 = br#"{"version": 1, "source": "lever", "secrets": {"lever_oauth_refresh_token": "rt-secret"}}"#;
        let s = State::from_json(v1).unwrap();
        assert_eq!(
            s.legacy_secrets["lever_oauth_refresh_token"].expose(),
            "rt-secret"
        );
        assert_eq!(s.origin, None);
        let written = String::from_utf8(s.to_json()).unwrap();
        assert!(!written.contains("rt-secret"), "{written}");
        assert!(!written.contains("secrets"), "{written}");
        assert!(!s.to_redacted_json().contains("rt-secret"));
        assert!(!format!("{s:?}").contains("rt-secret"));
    }

    #[test]
    fn origins_compare_endpoint_and_demo() {
        assert_ne!(Origin::demo("emulator"), Origin::live("emulator"));
        assert_ne!(Origin::live("https://a"), Origin::live("https://b"));
        assert_eq!(Origin::live("https://a"), Origin::live("https://a"));
        assert_eq!(Origin::demo("x").to_string(), "demo data (x)");
    }

    #[test]
    fn future_version_is_rejected_clearly() {
        let json = br#"{"version": 99, "source": "lever"}"#;
        let e = State::from_json(json).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Destination);
        assert!(e.to_string().contains("state version 99"), "{e}");
        assert!(e.to_string().contains("upgrade sluice"));
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(State::from_json(b"not json").is_err());
    }
}
