//! # sluice-sink-delta
//!
//! The `delta` sink: every table folder of the lake (see `sluice-lake`) is also a Delta Lake
//! table (`<table>/_delta_log/`), read through Delta by Spark, Trino, Athena, DuckDB's delta
//! extension, delta-rs and others. A commit that changes a few stored rows marks them deleted
//! in deletion vectors instead of rewriting their files. See `docs/delta-sink.md`.
//!
//! This crate is the Delta [`TableFormat`]: the log version each manifest commit computes and
//! publishes after it ([`log`]), and its settings; the lake engine does the rest.

// `LakeError` carries object_store errors by value, as the engine does: errors are rare here.
#![allow(clippy::result_large_err)]

mod config;
mod log;

pub use config::{DEFAULT_MAX_DELETED_SHARE, DEFAULT_RETENTION_HOURS, DeltaSinkConfig};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use sluice_core::{Sink, SinkFactory, async_trait};
use sluice_lake::{DeletedRows, LakeSink, Result, TableEntry, TableFormat, TableLog};
use std::sync::Arc;
use std::time::Duration;

/// The Delta table format (see the crate docs).
#[derive(Debug, Clone)]
pub struct DeltaFormat {
    max_deleted_share: f64,
    options: log::LogOptions,
}

impl DeltaFormat {
    /// The format with the Delta keys of `config`.
    pub fn new(config: &DeltaSinkConfig) -> DeltaFormat {
        DeltaFormat {
            max_deleted_share: config.max_deleted_share,
            options: log::LogOptions {
                deletion_vectors: config.deletion_vectors,
                retention_hours: config.retention_hours,
            },
        }
    }
}

#[async_trait]
impl TableFormat for DeltaFormat {
    fn name(&self) -> &'static str {
        "delta"
    }

    fn deleted_rows(&self) -> DeletedRows {
        if self.options.deletion_vectors {
            DeletedRows::Vectors {
                max_deleted_share: self.max_deleted_share,
            }
        } else {
            DeletedRows::Rewrite
        }
    }

    fn records_file_stats(&self) -> bool {
        true
    }

    /// Delta readers take the schema from the log, never from a data file's footer.
    fn embeds_arrow_schema(&self) -> bool {
        false
    }

    fn retention(&self) -> Duration {
        Duration::from_secs(self.options.retention_hours.saturating_mul(3600))
    }

    fn keeps_log(&self) -> bool {
        true
    }

    fn next_log(
        &self,
        _table: &str,
        _key: &[String],
        old: Option<&TableEntry>,
        new: &TableEntry,
        now_ms: i64,
    ) -> Option<TableLog> {
        log::next_state(old, new, now_ms, self.options)
    }

    async fn is_published(
        &self,
        store: &dyn ObjectStore,
        dir: &Path,
        log: &TableLog,
    ) -> Result<bool> {
        Ok(store.head(&log::log_path(dir, log.version)).await.is_ok())
    }

    async fn publish(&self, store: &dyn ObjectStore, dir: &Path, entry: &TableEntry) -> Result<()> {
        let Some(state) = &entry.log else {
            return Ok(());
        };
        if log::publish(store, dir, state).await? && log::checkpoint_due(state.version) {
            // Optional for readers (they can replay every version): a failure is only
            // logged, and the next checkpoint is 10 versions on.
            if let Err(e) = log::write_checkpoint(store, dir, entry, state, self.options).await {
                tracing::warn!(error = %e, dir = %dir, "cannot write a Delta checkpoint");
            }
        }
        Ok(())
    }
}

/// A `delta` sink for `config` (no I/O yet).
pub fn delta_sink(config: DeltaSinkConfig) -> sluice_core::Result<LakeSink> {
    config.validate().map_err(sluice_core::Error::config)?;
    let format = Arc::new(DeltaFormat::new(&config));
    Ok(LakeSink::new(config.lake, format)?)
}

/// Builds `delta` sinks from the `[sink]` section.
pub struct DeltaSinkFactory;

impl SinkFactory for DeltaSinkFactory {
    type Config = DeltaSinkConfig;
    fn build(config: DeltaSinkConfig) -> sluice_core::Result<Box<dyn Sink>> {
        Ok(Box::new(delta_sink(config)?))
    }
}

sluice_core::inventory::submit! {
    sluice_core::SinkPlugin::new(
        "delta",
        "Delta Lake tables with deletion vectors on local disk or S3 (object_store URL)",
        sluice_core::build_sink::<DeltaSinkFactory>,
    )
    .with_defaults(&[sluice_lake::LAKE_DEFAULTS, DELTA_DEFAULTS])
}

/// The defaults of the `delta` sink's own keys, as TOML (shown by `sluice config show`).
const DELTA_DEFAULTS: &str =
    "max_deleted_share = 0.25\ndeletion_vectors = true\nretention_hours = 168\n";

#[cfg(test)]
mod defaults_tests {
    #[test]
    fn the_listed_defaults_are_the_defaults() {
        let text = format!("{}{}", sluice_lake::LAKE_DEFAULTS, super::DELTA_DEFAULTS);
        let listed: serde_json::Value = toml::from_str(&text).unwrap();
        let listed: crate::DeltaSinkConfig = serde_json::from_value(listed).unwrap();
        assert_eq!(
            format!("{listed:?}"),
            format!(
                "{:?}",
                crate::DeltaSinkConfig::new(sluice_lake::DEFAULT_DEST)
            )
        );
    }
}
