//! The `[sink]` settings of the `iceberg` sink: the lake's keys plus Iceberg's own.

use serde::Deserialize;
use serde_json::{Map, Value};
use sluice_lake::LakeConfig;

/// Settings of the `iceberg` sink: every key of [`LakeConfig`] plus the ones below.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "Map<String, Value>")]
pub struct IcebergSinkConfig {
    /// The keys every lake sink shares (`dest`, S3, file sizes, buckets, lease, manifests).
    pub lake: LakeConfig,
    /// Hours a file superseded by a commit stays in the table folder (default 168), so that
    /// readers holding an older metadata file keep working; later commits delete it.
    pub retention_hours: u64,
}

/// Default of [`IcebergSinkConfig::retention_hours`] (7 days, as the `delta` sink).
pub const DEFAULT_RETENTION_HOURS: u64 = 168;

impl Default for IcebergSinkConfig {
    fn default() -> Self {
        IcebergSinkConfig {
            lake: LakeConfig::default(),
            retention_hours: DEFAULT_RETENTION_HOURS,
        }
    }
}

impl IcebergSinkConfig {
    /// A config for `dest` with every other setting at its default.
    pub fn new(dest: impl Into<String>) -> Self {
        IcebergSinkConfig {
            lake: LakeConfig::new(dest),
            ..Default::default()
        }
    }
}

/// Takes the Iceberg keys out of the section, then reads the rest as the lake's keys (which
/// refuse unknown ones).
impl TryFrom<Map<String, Value>> for IcebergSinkConfig {
    type Error = String;
    fn try_from(mut map: Map<String, Value>) -> Result<Self, String> {
        let mut config = IcebergSinkConfig::default();
        if let Some(v) = map.remove("retention_hours") {
            config.retention_hours =
                serde_json::from_value(v).map_err(|e| format!("sink.retention_hours: {e}"))?;
        }
        if map.contains_key("table_format") {
            return Err(sluice_lake::TABLE_FORMAT_GONE.to_owned());
        }
        config.lake = serde_json::from_value(Value::Object(map)).map_err(|e| e.to_string())?;
        Ok(config)
    }
}
