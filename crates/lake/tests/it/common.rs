//! Fixtures: table specs, change builders, and a lake on local disk or on moto.

use crate::moto::Moto;
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use sluice_core::arrow::array::{
    ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use sluice_core::{
    Change, ColumnSpec, ColumnType, Cursor, Plan, Sink, SinkChange, State, SyncKind, SyncSettings,
    TableSpec,
};
use sluice_lake::{Destination, LakeConfig, LakeSink, TableFormat};
use sluice_sink_delta::{DeltaFormat, DeltaSinkConfig};
use sluice_sink_iceberg::{IcebergFormat, IcebergSinkConfig};
use sluice_sink_parquet::ParquetFormat;
use sluice_testkit::{Row, batch_rows, rows_by_key};
use std::collections::BTreeMap;
use std::sync::Arc;

pub const T1: i64 = 1_700_000_000_000_000;
pub const T2: i64 = T1 + 60_000_000;
pub const T3: i64 = T2 + 60_000_000;
pub const T4: i64 = T3 + 60_000_000;

/// An incremental table that captures deletes.
pub fn opp() -> TableSpec {
    let mut t = TableSpec::new(
        "opp",
        SyncKind::Incremental {
            cursor: "updated_at".into(),
        },
    )
    .column(ColumnSpec::new("id", ColumnType::String))
    .column(ColumnSpec::new("name", ColumnType::String))
    .column(ColumnSpec::new("score", ColumnType::Int64))
    .column(ColumnSpec::new("updated_at", ColumnType::Timestamp))
    .key(["id"]);
    t.capture_deletes = true;
    t
}

/// A child of `opp`, bucketed by its parent column, with hard deletes.
pub fn note() -> TableSpec {
    let mut t = TableSpec::new(
        "note",
        SyncKind::Child {
            parent: "opp".into(),
            parent_column: "opp_id".into(),
        },
    )
    .column(ColumnSpec::new("id", ColumnType::String))
    .column(ColumnSpec::new("opp_id", ColumnType::String))
    .column(ColumnSpec::new("body", ColumnType::String))
    .key(["id"]);
    t.bucket_column = Some("opp_id".into());
    t
}

/// `opp` in history mode.
pub fn hist() -> TableSpec {
    let mut t = opp();
    t.name = "hist".into();
    t.capture_deletes = false;
    t.history = true;
    t
}

pub fn specs() -> Vec<TableSpec> {
    vec![opp(), note(), hist()]
}

fn s(v: Vec<String>) -> ArrayRef {
    Arc::new(StringArray::from(v))
}

/// Upserts `(id, name, score)` rows into `table` (an `opp`-shaped table).
pub fn opp_rows(table: &str, rows: &[(&str, &str, i64)]) -> Change {
    let spec = if table == "hist" { hist() } else { opp() };
    opp_rows_spec(&spec, rows, None)
}

/// Upserts into an `opp`-shaped `spec`, with an optional trailing Int64 column.
pub fn opp_rows_spec(
    spec: &TableSpec,
    rows: &[(&str, &str, i64)],
    extra: Option<Vec<Option<i64>>>,
) -> Change {
    let mut cols = vec![
        s(rows.iter().map(|r| r.0.to_owned()).collect()),
        s(rows.iter().map(|r| r.1.to_owned()).collect()),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))) as ArrayRef,
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.2 * 1000))
                .with_timezone("UTC"),
        ),
    ];
    if let Some(extra) = extra {
        cols.push(Arc::new(Int64Array::from(extra)));
    }
    Change::Upsert {
        table: spec.name.clone(),
        batch: RecordBatch::try_new(spec.source_schema(), cols).expect("valid batch"),
    }
}

/// Upserts `(id, opp_id, body)` rows into `note`.
pub fn note_rows(rows: &[(&str, &str, &str)]) -> Change {
    Change::Upsert {
        table: "note".into(),
        batch: RecordBatch::try_new(
            note().source_schema(),
            vec![
                s(rows.iter().map(|r| r.0.to_owned()).collect()),
                s(rows.iter().map(|r| r.1.to_owned()).collect()),
                s(rows.iter().map(|r| r.2.to_owned()).collect()),
            ],
        )
        .expect("valid batch"),
    }
}

pub fn keys(ids: &[&str]) -> RecordBatch {
    RecordBatch::try_from_iter(vec![(
        "id",
        s(ids.iter().map(|i| (*i).to_owned()).collect()),
    )])
    .expect("keys")
}

/// Stamps a change as the engine does (adds `_fivetran_synced`).
pub fn stamp_with(tables: &[TableSpec], change: Change, at: i64) -> SinkChange {
    let plan = Plan::new(tables, &SyncSettings::default()).expect("plan");
    SinkChange {
        change: plan.apply(change, at).expect("transform").expect("enabled"),
        synced_at_us: at,
    }
}

pub fn stamp(change: Change, at: i64) -> SinkChange {
    stamp_with(&specs(), change, at)
}

pub fn state(n: i64) -> State {
    let mut s = State::new("test");
    s.table_mut("opp").cursor = Some(Cursor::Int(n));
    s
}

/// The committed rows of `spec` by storage key (panics on a duplicate key).
pub async fn scan(sink: &dyn Sink, spec: &TableSpec) -> BTreeMap<String, Row> {
    let batches = sink.scan(spec).await.expect("scan");
    let rows: Vec<Row> = batches.iter().flat_map(batch_rows).collect();
    let key = spec.storage_key();
    let key: Vec<&str> = key.iter().map(String::as_str).collect();
    rows_by_key(&rows, &key)
}

/// The credentials of the tests' moto servers (moto accepts any).
pub const MOTO_KEY_ID: &str = "testing";
pub const MOTO_SECRET: &str = "TOP-SECRET-KEY";

/// A destination for one test.
pub struct Lake {
    /// The keys every lake format shares.
    pub config: LakeConfig,
    /// `Some`: the `delta` sink with these Delta keys (its `lake` field is unused);
    /// `None`: the `parquet` sink.
    pub delta: Option<DeltaSinkConfig>,
    /// The `iceberg` sink (superseded files go at once) instead of `parquet` or `delta`.
    pub iceberg: bool,
    /// The `iceberg` sink's catalog.
    pub iceberg_catalog: sluice_sink_iceberg::Catalog,
    /// The `iceberg` sink's `position_deletes` (default true; false: copy-on-write).
    pub iceberg_position_deletes: bool,
    /// The `iceberg` sink's `retention_hours` (0 here unless a test sets it).
    pub iceberg_retention_hours: u64,
    pub kind: &'static str,
    pub tmp: Option<tempfile::TempDir>,
    _moto: Option<Moto>,
}

impl Lake {
    pub fn local() -> Lake {
        let tmp = tempfile::tempdir().expect("tempdir");
        let config = LakeConfig::new(tmp.path().join("lake").display().to_string());
        Lake {
            config,
            delta: None,
            iceberg: false,
            iceberg_position_deletes: true,
            iceberg_retention_hours: 0,
            iceberg_catalog: sluice_sink_iceberg::Catalog::Filesystem,
            kind: "local",
            tmp: Some(tmp),
            _moto: None,
        }
    }

    /// A lake in a fresh moto server, or `None` when S3 tests are skipped.
    pub fn s3() -> Option<Lake> {
        let moto = Moto::start()?;
        moto.create_bucket("lake");
        let mut config = LakeConfig::new("s3://lake/some/prefix");
        config.endpoint = Some(moto.endpoint());
        config.region = Some("us-east-1".into());
        config.access_key_id = Some(MOTO_KEY_ID.into());
        config.secret_access_key = Some(sluice_core::Secret::new(MOTO_SECRET));
        Some(Lake {
            config,
            delta: None,
            iceberg: false,
            iceberg_position_deletes: true,
            iceberg_retention_hours: 0,
            iceberg_catalog: sluice_sink_iceberg::Catalog::Filesystem,
            kind: "s3",
            tmp: None,
            _moto: Some(moto),
        })
    }

    /// This lake as a `delta` destination: default Delta keys, except that superseded
    /// files go at once (`retention_hours = 0`), so that table folders hold exactly what the
    /// manifest lists (the retention tests set it themselves).
    pub fn delta(mut self) -> Lake {
        self.delta = Some(DeltaSinkConfig {
            retention_hours: 0,
            ..DeltaSinkConfig::default()
        });
        self
    }

    /// This lake as an `iceberg` destination: default keys, except that superseded files
    /// go at once (`retention_hours = 0`).
    pub fn iceberg(mut self) -> Lake {
        self.iceberg = true;
        self
    }

    /// This lake as an `iceberg` destination that rewrites files instead of writing
    /// position deletes (`position_deletes = false`).
    pub fn iceberg_copy_on_write(mut self) -> Lake {
        self.iceberg = true;
        self.iceberg_position_deletes = false;
        self
    }

    /// The Delta keys (panics on a `parquet` lake).
    pub fn delta_config(&mut self) -> &mut DeltaSinkConfig {
        self.delta.as_mut().expect("a delta lake")
    }

    /// The table format of this lake's sink.
    pub fn format(&self) -> Arc<dyn TableFormat> {
        if self.iceberg {
            let config = IcebergSinkConfig {
                lake: self.config.clone(),
                retention_hours: self.iceberg_retention_hours,
                position_deletes: self.iceberg_position_deletes,
                catalog: self.iceberg_catalog.clone(),
                catalog_name: "sluice".to_owned(),
                namespace: "lever".to_owned(),
                ..IcebergSinkConfig::default()
            };
            return Arc::new(IcebergFormat::new(&config).expect("a valid destination"));
        }
        match &self.delta {
            Some(d) => Arc::new(DeltaFormat::new(d)),
            None => Arc::new(ParquetFormat),
        }
    }

    /// A `parquet` sink on this lake's destination, whatever its format.
    pub fn parquet_sink(&self) -> LakeSink {
        LakeSink::new(self.config.clone(), Arc::new(ParquetFormat)).expect("valid config")
    }

    pub fn sink(&self) -> LakeSink {
        LakeSink::new(self.config.clone(), self.format()).expect("valid config")
    }

    pub fn dest(&self) -> Destination {
        self.sink().destination().clone()
    }

    /// A sink whose store is `wrap(real store)`.
    pub fn sink_on(
        &self,
        wrap: impl FnOnce(Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore>,
    ) -> LakeSink {
        let mut dest = self.dest();
        dest.store = wrap(Arc::clone(&dest.store));
        LakeSink::with_destination(dest, self.config.clone(), self.format())
    }

    /// Every object under `<root>/<under>`, as full object paths, sorted.
    pub async fn objects(&self, under: &str) -> Vec<String> {
        let dest = self.dest();
        let prefix = dest.root.clone().join(under);
        let mut names: Vec<String> =
            match dest.store.list(Some(&prefix)).try_collect::<Vec<_>>().await {
                Ok(m) => m.into_iter().map(|m| m.location.to_string()).collect(),
                Err(object_store::Error::NotFound { .. }) => Vec::new(),
                Err(e) => panic!("list {prefix}: {e}"),
            };
        names.sort();
        names
    }

    /// Asserts that each table folder holds exactly the manifest's live files.
    pub async fn assert_no_orphans(&self, tables: &[&str]) {
        let sink = self.sink();
        for t in tables {
            let mut live = sink.live_objects(t).await.expect("live objects");
            live.sort();
            let found: Vec<String> = self
                .objects(t)
                .await
                .into_iter()
                .filter(|o| !o.contains("/_delta_log/") && !o.contains("/metadata/"))
                .collect();
            assert_eq!(
                found, live,
                "{}: folder `{t}` differs from the manifest",
                self.kind
            );
        }
    }
}

impl Lake {
    /// The footer's key-value metadata keys of each live data file of `table`.
    pub async fn footer_keys(&self, table: &str) -> Vec<Vec<String>> {
        let dest = self.dest();
        let mut out = Vec::new();
        for name in self.sink().live_objects(table).await.expect("live objects") {
            if !name.ends_with(".parquet") {
                continue;
            }
            let bytes = dest
                .store
                .get(&object_store::path::Path::from(name.as_str()))
                .await
                .expect("get data file")
                .bytes()
                .await
                .expect("read data file");
            let meta = parquet::file::metadata::ParquetMetaDataReader::new()
                .parse_and_finish(&bytes)
                .expect("a Parquet footer");
            let keys = meta
                .file_metadata()
                .key_value_metadata()
                .map(|kv| kv.iter().map(|k| k.key.clone()).collect())
                .unwrap_or_default();
            out.push(keys);
        }
        out
    }

    /// The entry of `table` in the live (highest) manifest.
    pub async fn manifest_entry(&self, table: &str) -> serde_json::Value {
        let dest = self.dest();
        let latest = self
            .objects("_sluice")
            .await
            .into_iter()
            .filter(|n| n.contains("/manifest/") && n.ends_with(".json"))
            .max()
            .expect("a manifest");
        let bytes = dest
            .store
            .get(&object_store::path::Path::from(latest.as_str()))
            .await
            .expect("get manifest")
            .bytes()
            .await
            .expect("manifest bytes");
        let m: serde_json::Value = serde_json::from_slice(&bytes).expect("manifest JSON");
        m["tables"][table].clone()
    }
}

/// Runs a Python script (a reader this project did not write: DuckDB, delta-rs) and parses
/// the JSON it prints; `what` names the reader in the failure, with its exit status and
/// output.
pub fn python_json(what: &str, script: &str) -> serde_json::Value {
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    // The script prints its JSON on one line, last; a reader may print before it (DuckDB's
    // progress bar, drawn with carriage returns, when a query runs long on a loaded machine).
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = stdout
        .split(['\n', '\r'])
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or("");
    serde_json::from_str(json)
        .unwrap_or_else(|e| panic!("json from {what}: {e}; its output: {stdout}"))
}

/// Whether `python3` can run `import <modules>`; panics when it cannot, unless
/// `SLUICE_SKIP_DUCKDB_TESTS=1` (the switch of the Python-reader tests; then the test is
/// skipped). `pip` names what to install.
pub fn python_modules_available(modules: &str, pip: &str) -> bool {
    let skip = std::env::var("SLUICE_SKIP_DUCKDB_TESTS").is_ok_and(|v| v == "1");
    let probe = std::process::Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .output();
    match probe {
        Ok(o) if o.status.success() => true,
        other => {
            if skip {
                eprintln!("skipping: python3 with {modules} is not available ({other:?})");
                return false;
            }
            panic!(
                "this test needs python3 with {modules} (pip install {pip}): {other:?}; set \
                 SLUICE_SKIP_DUCKDB_TESTS=1 to skip it"
            );
        }
    }
}
