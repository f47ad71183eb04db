//! Shared helpers: run the binary, read the Parquet destination, compare it with the emulator's
//! ground truth.

use sluice_core::TableSpec;
use sluice_lever_emulator::expected::{self, ExpectedOptions};
use sluice_lever_emulator::{Emulator, EmulatorConfig, ServerHandle};
use sluice_testkit::{Row, batch_rows};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

pub(crate) const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");

/// An emulator serving on 127.0.0.1:0 for one test.
pub(crate) struct Lever {
    pub(crate) emu: Emulator,
    pub(crate) server: ServerHandle,
    config_dir: tempfile::TempDir,
}

/// Source settings that lift the client-side rate limit (the emulator has none in these
/// tests), so a sync is bounded by work, not by Lever's 10 requests/s.
pub(crate) const FAST_SOURCE: &str =
    "[source]\nrate_limit_per_second = 10000\nrate_limit_burst = 10000\n";

impl Lever {
    pub(crate) async fn start(opportunities: usize) -> Lever {
        Lever::with(EmulatorConfig {
            opportunities,
            rate_limit: None,
            ..EmulatorConfig::default()
        })
        .await
    }

    /// An emulator with `config`.
    pub(crate) async fn with(config: EmulatorConfig) -> Lever {
        let emu = Emulator::new(config);
        let server = emu.start().await.expect("emulator starts");
        let config_dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(config_dir.path().join("fast.toml"), FAST_SOURCE).expect("write config");
        Lever {
            emu,
            server,
            config_dir,
        }
    }

    /// A `sluice` command with the Lever environment pointing at this emulator.
    /// `run` commands without `--config` get [`FAST_SOURCE`].
    pub(crate) fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = base_command(args);
        if args.contains(&"run") && !args.contains(&"--config") {
            c.arg("--config")
                .arg(self.config_dir.path().join("fast.toml"));
        }
        c.env("LEVER_BASE_URL", self.server.base_url());
        c.env("LEVER_API_KEY", self.emu.api_key());
        c
    }
}

/// A `sluice` command with a clean environment (no Lever or AWS settings inherited).
pub(crate) fn base_command(args: &[&str]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(SLUICE);
    c.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("LEVER_")
            || k.starts_with("AWS_")
            || k.starts_with("SLUICE_")
            || k == "RUST_LOG"
        {
            c.env_remove(k);
        }
    }
    c.kill_on_drop(true);
    c
}

pub(crate) async fn output(mut c: tokio::process::Command) -> Output {
    tokio::time::timeout(Duration::from_secs(180), c.output())
        .await
        .expect("sluice finished within 180 s")
        .expect("sluice runs")
}

pub(crate) fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The Lever catalog as the plugins registry knows it.
pub(crate) fn catalog() -> Vec<TableSpec> {
    let registry = sluice_plugins::registry().expect("registry");
    (registry.source("lever").expect("lever").build)().catalog()
}

/// The committed rows of every table in a Parquet destination.
pub(crate) async fn read_dest(dest: &Path) -> BTreeMap<String, Vec<Row>> {
    read_dest_with(dest, &BTreeMap::new()).await
}

/// Like [`read_dest`], reading run-time columns (requisition custom fields) named in `extra`.
pub(crate) async fn read_dest_with(
    dest: &Path,
    extra: &BTreeMap<String, Vec<sluice_core::ColumnSpec>>,
) -> BTreeMap<String, Vec<Row>> {
    read_sink(local_sink(dest).as_ref(), extra).await
}

/// A `parquet` sink on the local destination `dest`.
pub(crate) fn local_sink(dest: &Path) -> Box<dyn sluice_core::Sink> {
    parquet_sink(&serde_json::json!({ "dest": dest.to_str().expect("utf-8") }))
}

/// A `parquet` sink with the `[sink]` settings `config` (as JSON).
pub(crate) fn parquet_sink(config: &serde_json::Value) -> Box<dyn sluice_core::Sink> {
    let registry = sluice_plugins::registry().expect("registry");
    (registry.sink("parquet").expect("parquet").build)(config).expect("sink builds")
}

/// The committed rows of every table `sink` holds, with the run-time columns of `extra`.
pub(crate) async fn read_sink(
    sink: &dyn sluice_core::Sink,
    extra: &BTreeMap<String, Vec<sluice_core::ColumnSpec>>,
) -> BTreeMap<String, Vec<Row>> {
    let mut out = BTreeMap::new();
    for mut spec in catalog() {
        if let Some(cols) = extra.get(&spec.name) {
            spec.columns.extend(cols.iter().cloned());
        }
        let batches = sink.scan(&spec).await.expect("scan");
        out.insert(
            spec.name.clone(),
            batches.iter().flat_map(batch_rows).collect(),
        );
    }
    out
}

/// Asserts that the destination's live rows equal the emulator's expected tables, table by
/// table and row by row, and that no storage key appears twice.
pub(crate) async fn assert_matches_truth(dest: &Path, emu: &Emulator) {
    assert_sink_matches_truth(local_sink(dest).as_ref(), emu).await;
}

/// [`assert_matches_truth`] for the destination of any `sink` (an object store).
pub(crate) async fn assert_sink_matches_truth(sink: &dyn sluice_core::Sink, emu: &Emulator) {
    let expected = expected::tables(&emu.truth(), &ExpectedOptions { confidential: true });
    // Columns discovered at run time (custom fields) are declared from the expected rows.
    let static_specs: BTreeMap<String, TableSpec> =
        catalog().into_iter().map(|s| (s.name.clone(), s)).collect();
    let mut extra: BTreeMap<String, Vec<sluice_core::ColumnSpec>> = BTreeMap::new();
    for (table, rows) in &expected {
        let Some(spec) = static_specs.get(table) else {
            continue;
        };
        let mut seen = std::collections::BTreeMap::new();
        for row in rows {
            for (col, v) in row {
                if spec.find(col).is_some() || col.starts_with("_fivetran") {
                    continue;
                }
                let ty = match v {
                    serde_json::Value::Bool(_) => Some(sluice_core::ColumnType::Boolean),
                    serde_json::Value::Number(n) if n.is_i64() => {
                        Some(sluice_core::ColumnType::Int64)
                    }
                    serde_json::Value::Number(_) => Some(sluice_core::ColumnType::Float64),
                    serde_json::Value::String(_) => Some(sluice_core::ColumnType::String),
                    _ => None,
                };
                let entry = seen.entry(col.clone()).or_insert(None);
                if entry.is_none() {
                    *entry = ty;
                }
            }
        }
        let cols = seen
            .into_iter()
            .map(|(c, t)| {
                sluice_core::ColumnSpec::new(c, t.unwrap_or(sluice_core::ColumnType::String))
            })
            .collect::<Vec<_>>();
        if !cols.is_empty() {
            extra.insert(table.clone(), cols);
        }
    }
    let actual = read_sink(sink, &extra).await;
    let specs: BTreeMap<String, TableSpec> =
        catalog().into_iter().map(|s| (s.name.clone(), s)).collect();
    for (table, want) in &expected {
        let spec = specs
            .get(table)
            .unwrap_or_else(|| panic!("no spec for {table}"));
        let got = actual.get(table).cloned().unwrap_or_default();
        let key = spec.storage_key();
        let key: Vec<&str> = key.iter().map(String::as_str).collect();
        sluice_testkit::rows_by_key(&got, &key); // no key twice
        let live: Vec<Row> = got
            .into_iter()
            .filter(|r| r.get("_fivetran_deleted") != Some(&serde_json::Value::Bool(true)))
            .filter(|r| r.get("_fivetran_active") != Some(&serde_json::Value::Bool(false)))
            .map(|r| {
                r.into_iter()
                    .filter(|(c, _)| !c.starts_with("_fivetran") || c == "_fivetran_id")
                    .collect()
            })
            .collect();
        let pk: Vec<&str> = spec.primary_key.iter().map(String::as_str).collect();
        let got = sluice_testkit::rows_by_key(&live, &pk);
        let want = sluice_testkit::rows_by_key(want, &pk);
        assert_eq!(got.len(), want.len(), "table {table}: row count");
        for (k, w) in &want {
            let g = got
                .get(k)
                .unwrap_or_else(|| panic!("table {table}: row {k} missing"));
            assert_eq!(g, w, "table {table}: row {k} differs");
        }
    }
}

/// Column names found in the Parquet files of `table` (union over its files).
pub(crate) fn file_columns(dest: &Path, table: &str) -> std::collections::BTreeSet<String> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let mut out = std::collections::BTreeSet::new();
    for e in std::fs::read_dir(dest.join(table)).expect("table folder") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "parquet") {
            let r =
                SerializedFileReader::new(std::fs::File::open(&p).expect("open")).expect("parquet");
            for f in r.metadata().file_metadata().schema_descr().columns() {
                out.insert(f.name().to_owned());
            }
        }
    }
    out
}

/// Every file below `dir`, recursively.
pub(crate) fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("readable dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Asserts that a first run's summary `s` describes what `stored` holds: per table, the rows
/// its commits inserted are the rows stored (a first run only inserts), and something was
/// committed.
pub(crate) fn assert_summary_counts_the_stored_rows(
    s: &serde_json::Value,
    stored: &BTreeMap<String, Vec<Row>>,
) {
    assert!(s["commits"].as_u64().unwrap() >= 1, "{s}");
    assert!(s["bytes_written"].as_u64().unwrap() > 0, "{s}");
    for (table, rows) in stored {
        let t = &s["tables"][table];
        let inserted = t["inserted"].as_u64().unwrap_or(0);
        assert_eq!(rows.len() as u64, inserted, "table {table}: {s}");
        if inserted > 0 {
            assert!(t["bytes_written"].as_u64().unwrap() > 0, "{table}: {s}");
        }
    }
}
