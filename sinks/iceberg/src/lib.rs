//! # sluice-sink-iceberg
//!
//! The `iceberg` sink: every table folder of the lake (see `sluice-lake`) is also an Apache
//! Iceberg table (format 2) with its metadata in `<table>/metadata/`, found by path the way
//! a filesystem catalog finds it (`version-hint.text`), read by pyiceberg, DuckDB's iceberg
//! extension, Spark, Trino and others, and with `catalog = "sql"` registered in the SQL
//! catalog of pyiceberg and iceberg-rust on SQLite or PostgreSQL (`catalog.rs`, `postgres.rs`)
//! so that engines load it by name. See `docs/iceberg-sink.md`.
//!
//! This crate is the Iceberg [`TableFormat`]: the metadata version each manifest commit
//! computes and publishes after it ([`metadata`]), the table schema with stable field ids
//! ([`schema`]), the Avro manifests ([`avro`]) and the position-delete files
//! ([`position_deletes`]) that record replaced and deleted rows (merge on read; with
//! `position_deletes = false`, commits rewrite files instead); the lake engine does the rest.

// `LakeError` carries object_store errors by value, as the engine does: errors are rare here.
#![allow(clippy::result_large_err)]

mod avro;
mod catalog;
mod config;
mod metadata;
mod position_deletes;
mod postgres;
mod schema;

pub use config::{Catalog, DEFAULT_MAX_DELETED_SHARE, DEFAULT_RETENTION_HOURS, IcebergSinkConfig};
use object_store::ObjectStore;
use object_store::path::Path;
pub use postgres::PostgresCatalog;
use sluice_core::{Sink, SinkFactory, async_trait};
use sluice_lake::{
    DeletedRows, Destination, LakeSink, Result, RoaringTreemap, TableEntry, TableFormat, TableLog,
};
use std::sync::Arc;
use std::time::Duration;

/// The Iceberg table format (see the crate docs).
#[derive(Debug, Clone)]
pub struct IcebergFormat {
    /// The destination as readers address it: `file:///…` or the object store URL.
    base: String,
    retention_hours: u64,
    /// How replaced and deleted rows are recorded (position deletes or rewrites).
    deleted_rows: DeletedRows,
    /// The SQL catalog tables are registered in, if any.
    catalog: Option<catalog::SqlCatalog>,
}

impl IcebergFormat {
    /// The format for the destination and settings of `config`.
    pub fn new(config: &IcebergSinkConfig) -> Result<IcebergFormat> {
        let dest = Destination::from_config(&config.lake)?;
        let base = if dest.is_local() {
            format!("file:///{}", dest.root)
        } else {
            dest.url.trim_end_matches('/').to_owned()
        };
        let catalog = match &config.catalog {
            Catalog::Filesystem => None,
            Catalog::Sqlite(path) => Some(catalog::Db::Sqlite(path.clone())),
            Catalog::Postgres(pg) => Some(catalog::Db::Postgres(pg.clone())),
        }
        .map(|db| catalog::SqlCatalog {
            db,
            name: config.catalog_name.clone(),
            namespace: config.namespace.clone(),
        });
        let deleted_rows = if config.position_deletes {
            DeletedRows::Vectors {
                max_deleted_share: config.max_deleted_share,
            }
        } else {
            DeletedRows::Rewrite
        };
        Ok(IcebergFormat {
            base,
            retention_hours: config.retention_hours,
            deleted_rows,
            catalog,
        })
    }

    fn location(&self, table: &str) -> String {
        format!("{}/{table}", self.base)
    }

    /// The metadata file of `log`'s version of the table in `dir`, as readers address it.
    fn metadata_location(&self, dir: &Path, log: &TableLog) -> String {
        let table = dir.filename().unwrap_or_default();
        format!(
            "{}/metadata/v{}.metadata.json",
            self.location(table),
            log.version
        )
    }
}

#[async_trait]
impl TableFormat for IcebergFormat {
    fn name(&self) -> &'static str {
        "iceberg"
    }

    /// Iceberg readers take the schema from the table metadata.
    fn embeds_arrow_schema(&self) -> bool {
        false
    }

    fn retention(&self) -> Duration {
        Duration::from_secs(self.retention_hours.saturating_mul(3600))
    }

    fn deleted_rows(&self) -> DeletedRows {
        self.deleted_rows
    }

    /// Column bounds and NULL counts go into the manifests, for readers to skip files.
    fn records_file_stats(&self) -> bool {
        true
    }

    /// Every deletion vector has its position-delete file (also when `position_deletes`
    /// was turned off later: the files already written stay until rewritten).
    fn dv_companion_extension(&self) -> Option<&'static str> {
        Some("parquet")
    }

    fn encode_deleted_rows(
        &self,
        table: &str,
        deleted: &[(String, RoaringTreemap)],
    ) -> Result<Vec<u8>> {
        position_deletes::encode(&self.location(table), deleted)
    }

    fn keeps_log(&self) -> bool {
        true
    }

    fn next_log(
        &self,
        table: &str,
        key: &[String],
        old: Option<&TableEntry>,
        new: &TableEntry,
        now_ms: i64,
    ) -> Option<TableLog> {
        metadata::next_version(
            &self.location(table),
            key,
            old,
            new,
            now_ms,
            self.retention(),
        )
    }

    async fn is_published(
        &self,
        store: &dyn ObjectStore,
        dir: &Path,
        log: &TableLog,
    ) -> Result<bool> {
        if !metadata::is_published(store, dir, log.version).await? {
            return Ok(false);
        }
        // With an SQL catalog, published means registered too. A version whose files are
        // published but whose catalog row is missing or older (the row lost, or a run stopped
        // before registering) is registered here: that needs only its location, not the
        // metadata text, which the manifest keeps only until the files are written.
        let Some(catalog) = &self.catalog else {
            return Ok(true);
        };
        let table = dir.filename().unwrap_or_default();
        let want = self.metadata_location(dir, log);
        if catalog.location(table).await?.as_deref() != Some(want.as_str()) {
            catalog.register(table, &want).await?;
        }
        Ok(true)
    }

    async fn publish(&self, store: &dyn ObjectStore, dir: &Path, entry: &TableEntry) -> Result<()> {
        metadata::publish(store, dir, entry).await?;
        if let (Some(log), Some(catalog)) = (&entry.log, &self.catalog) {
            let at = self.metadata_location(dir, log);
            catalog
                .register(dir.filename().unwrap_or_default(), &at)
                .await?;
        }
        if let Some(log) = &entry.log {
            metadata::expire(store, dir, log, self.retention()).await;
        }
        Ok(())
    }
}

/// An `iceberg` sink for `config` (no I/O yet).
pub fn iceberg_sink(config: IcebergSinkConfig) -> sluice_core::Result<LakeSink> {
    let format = Arc::new(IcebergFormat::new(&config)?);
    Ok(LakeSink::new(config.lake, format)?)
}

/// Builds `iceberg` sinks from the `[sink]` section.
pub struct IcebergSinkFactory;

impl SinkFactory for IcebergSinkFactory {
    type Config = IcebergSinkConfig;
    fn build(config: IcebergSinkConfig) -> sluice_core::Result<Box<dyn Sink>> {
        Ok(Box::new(iceberg_sink(config)?))
    }
}

sluice_core::inventory::submit! {
    sluice_core::SinkPlugin::new(
        "iceberg",
        "Apache Iceberg tables (format 2; by path, or by name in an SQL catalog on SQLite or PostgreSQL) on local disk or S3 (object_store URL)",
        sluice_core::build_sink::<IcebergSinkFactory>,
    )
    .with_defaults(&[sluice_lake::LAKE_DEFAULTS, ICEBERG_DEFAULTS])
}

/// The defaults of the `iceberg` sink's own keys, as TOML (shown by `sluice config show`).
const ICEBERG_DEFAULTS: &str = "retention_hours = 168\nposition_deletes = true\n\
     max_deleted_share = 0.25\ncatalog_name = \"sluice\"\nnamespace = \"default\"\n";

#[cfg(test)]
mod defaults_tests {
    #[test]
    fn the_listed_defaults_are_the_defaults() {
        let text = format!("{}{}", sluice_lake::LAKE_DEFAULTS, super::ICEBERG_DEFAULTS);
        let listed: serde_json::Value = toml::from_str(&text).unwrap();
        let listed: crate::IcebergSinkConfig = serde_json::from_value(listed).unwrap();
        assert_eq!(
            format!("{listed:?}"),
            format!(
                "{:?}",
                crate::IcebergSinkConfig::new(sluice_lake::DEFAULT_DEST)
            )
        );
    }
}
