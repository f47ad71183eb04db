//! The `[sink]` settings of the `delta` sink: the lake's keys plus Delta's own.

use serde::Deserialize;
use serde_json::{Map, Value};
use sluice_lake::LakeConfig;

/// Settings of the `delta` sink: every key of [`LakeConfig`] plus the ones below.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "Map<String, Value>")]
pub struct DeltaSinkConfig {
    /// The keys every lake sink shares (`dest`, S3, file sizes, buckets, lease, manifests).
    pub lake: LakeConfig,
    /// A file whose deleted rows reach this share of its rows is rewritten without them at
    /// the next commit that touches it (default 0.25).
    pub max_deleted_share: f64,
    /// `true` (the default): a commit that changes a few stored rows marks them deleted in
    /// deletion vectors (Delta protocol reader 3 / writer 7, `deletionVectors` feature).
    /// `false`: copy-on-write, files with changed rows are rewritten, and new tables use
    /// protocol reader 1 / writer 2, for readers without deletion vectors (Redshift
    /// Spectrum, older Athena and Snowflake, Apache XTable).
    pub deletion_vectors: bool,
    /// Hours a file superseded by a commit stays in the table folder (default 168, Delta's
    /// own `delta.deletedFileRetentionDuration`), so that readers holding an older snapshot
    /// and time travel within that window keep working; later commits delete it.
    pub retention_hours: u64,
}

/// Default of [`DeltaSinkConfig::retention_hours`] (Delta's default, 7 days).
pub const DEFAULT_RETENTION_HOURS: u64 = 168;

/// Default of [`DeltaSinkConfig::max_deleted_share`].
pub const DEFAULT_MAX_DELETED_SHARE: f64 = 0.25;

impl Default for DeltaSinkConfig {
    fn default() -> Self {
        DeltaSinkConfig {
            lake: LakeConfig::default(),
            max_deleted_share: DEFAULT_MAX_DELETED_SHARE,
            deletion_vectors: true,
            retention_hours: DEFAULT_RETENTION_HOURS,
        }
    }
}

impl DeltaSinkConfig {
    /// A config for `dest` with every other setting at its default.
    pub fn new(dest: impl Into<String>) -> Self {
        DeltaSinkConfig {
            lake: LakeConfig::new(dest),
            ..Default::default()
        }
    }

    /// Checks the Delta keys (the lake's are checked by the engine).
    pub fn validate(&self) -> Result<(), String> {
        if !(self.max_deleted_share > 0.0 && self.max_deleted_share <= 1.0) {
            return Err("sink.max_deleted_share must be above 0 and at most 1".to_owned());
        }
        Ok(())
    }
}

/// Takes the Delta keys out of the section, then reads the rest as the lake's keys (which
/// refuse unknown ones).
impl TryFrom<Map<String, Value>> for DeltaSinkConfig {
    type Error = String;
    fn try_from(mut map: Map<String, Value>) -> Result<Self, String> {
        let mut config = DeltaSinkConfig::default();
        if let Some(v) = map.remove("max_deleted_share") {
            config.max_deleted_share =
                serde_json::from_value(v).map_err(|e| format!("sink.max_deleted_share: {e}"))?;
        }
        if let Some(v) = map.remove("deletion_vectors") {
            config.deletion_vectors =
                serde_json::from_value(v).map_err(|e| format!("sink.deletion_vectors: {e}"))?;
        }
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
