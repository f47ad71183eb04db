//! Typed, versioned sync state. It lives in the destination and advances only after the data
//! it covers is durable.

use crate::error::{Error, Result};
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The state format this build writes and the newest it reads.
pub const STATE_VERSION: u32 = 1;

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
    /// Source-specific secrets that must survive between runs (a rotated OAuth refresh
    /// token). Written to the state file because the next run cannot work without them; never
    /// printed (`sluice state show` redacts them).
    #[serde(
        default,
        with = "secret_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub secrets: BTreeMap<String, Secret>,
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
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
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
            secrets: BTreeMap::new(),
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

    /// Serializes to pretty JSON (secrets included: this is the state file's content).
    pub fn to_json(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("state serializes");
        bytes.push(b'\n');
        bytes
    }

    /// The state as JSON with secrets replaced by `***`, for display.
    pub fn to_redacted_json(&self) -> String {
        let mut v = serde_json::to_value(self).expect("state serializes");
        if let Some(secrets) = v.get_mut("secrets").and_then(|s| s.as_object_mut()) {
            for value in secrets.values_mut() {
                *value = serde_json::Value::String("***".into());
            }
        }
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
    use serde::{Deserialize, Deserializer, Serializer, ser::SerializeMap};
    use std::collections::BTreeMap;

    pub(super) fn serialize<S: Serializer>(
        map: &BTreeMap<String, Secret>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(map.len()))?;
        for (k, v) in map {
            m.serialize_entry(k, v.expose())?;
        }
        m.end()
    }

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
        s.secrets
            .insert("refresh_token".into(), Secret::new("rt-1"));
        let back = State::from_json(&s.to_json()).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.secrets["refresh_token"].expose(), "rt-1");
    }

    #[test]
    fn redacts_secrets_for_display() {
        let mut s = State::new("lever");
        s.secrets
            .insert("refresh_token".into(), Secret::new("rt-secret"));
        assert!(!s.to_redacted_json().contains("rt-secret"));
        assert!(!format!("{s:?}").contains("rt-secret"));
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
