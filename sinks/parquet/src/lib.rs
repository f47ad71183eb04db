//! # sluice-sink-parquet
//!
//! The `parquet` sink: a lake of plain Parquet tables (see `sluice-lake` for the layout and
//! the commit protocol). A table folder holds exactly the live rows, one row per primary
//! key, so readers that glob `<dest>/<table>/*.parquet` (DuckDB, Polars, Spark, dbt-duckdb)
//! read the table; `<dest>/_sluice/manifest` gives a strictly consistent file list. See
//! `docs/parquet-sink.md`.
//!
//! This crate is the plain-Parquet [`TableFormat`]: no log, stored rows that change are
//! rewritten (copy-on-write), superseded files are deleted right after the commit.

use serde::Deserialize;
use serde_json::{Map, Value};
use sluice_core::{Sink, SinkFactory};
use sluice_lake::{LakeConfig, LakeSink, TABLE_FORMAT_GONE, TableFormat};
use std::sync::Arc;

/// The plain Parquet table format (see the crate docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct ParquetFormat;

impl TableFormat for ParquetFormat {
    fn name(&self) -> &'static str {
        "parquet"
    }
}

/// Settings of the `parquet` sink: exactly the lake's keys ([`LakeConfig`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(try_from = "Map<String, Value>")]
pub struct ParquetSinkConfig {
    /// The keys every lake sink shares.
    pub lake: LakeConfig,
}

impl ParquetSinkConfig {
    /// A config for `dest` with every other setting at its default.
    pub fn new(dest: impl Into<String>) -> Self {
        ParquetSinkConfig {
            lake: LakeConfig::new(dest),
        }
    }
}

/// Refuses the keys that belong to the `delta` sink with a message saying so.
impl TryFrom<Map<String, Value>> for ParquetSinkConfig {
    type Error = String;
    fn try_from(map: Map<String, Value>) -> Result<Self, String> {
        if map.contains_key("table_format") {
            return Err(TABLE_FORMAT_GONE.to_owned());
        }
        if map.contains_key("max_deleted_share") {
            return Err(
                "sink.max_deleted_share is a setting of the delta sink (`--sink delta`); the \
                 parquet sink rewrites changed rows"
                    .to_owned(),
            );
        }
        let lake = serde_json::from_value(Value::Object(map)).map_err(|e| e.to_string())?;
        Ok(ParquetSinkConfig { lake })
    }
}

/// A `parquet` sink for `config` (no I/O yet).
pub fn parquet_sink(config: ParquetSinkConfig) -> sluice_core::Result<LakeSink> {
    Ok(LakeSink::new(config.lake, Arc::new(ParquetFormat))?)
}

/// Builds `parquet` sinks from the `[sink]` section.
pub struct ParquetSinkFactory;

impl SinkFactory for ParquetSinkFactory {
    type Config = ParquetSinkConfig;
    fn build(config: ParquetSinkConfig) -> sluice_core::Result<Box<dyn Sink>> {
        Ok(Box::new(parquet_sink(config)?))
    }
}

sluice_core::inventory::submit! {
    sluice_core::SinkPlugin::new(
        "parquet",
        "Parquet files on local disk or S3 (object_store URL)",
        sluice_core::build_sink::<ParquetSinkFactory>,
    )
    .with_defaults(&[sluice_lake::LAKE_DEFAULTS])
}
