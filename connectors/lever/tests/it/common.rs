//! Shared helpers: emulator start-up, configs, and the comparison with the oracle.

use serde_json::{Value, json};
use sluice_core::{DynSource, ErrorKind, SyncOptions, SyncReport, SyncSettings, TableSettings};
use sluice_lever_emulator::expected::{self, ExpectedOptions};
use sluice_lever_emulator::{Emulator, EmulatorConfig, ServerHandle, Truth};
use sluice_source_lever::LeverSource;
use sluice_source_lever::catalog::catalog;
use sluice_testkit::{MemoryDestination, Row, rows_by_key, sync_with};
use std::collections::BTreeMap;
use std::time::Duration;

/// Upper bound of any one sync in these tests.
pub(crate) const SYNC_TIMEOUT: Duration = Duration::from_secs(120);

/// A started emulator.
pub(crate) struct Env {
    pub(crate) emu: Emulator,
    pub(crate) server: ServerHandle,
}

impl Env {
    /// An emulator with `opportunities` opportunities and no rate limit.
    pub(crate) async fn start(opportunities: usize) -> Env {
        Self::with(EmulatorConfig {
            opportunities,
            rate_limit: None,
            ..EmulatorConfig::default()
        })
        .await
    }

    /// An emulator with `cfg`.
    pub(crate) async fn with(cfg: EmulatorConfig) -> Env {
        let emu = Emulator::new(cfg);
        let server = emu.start().await.expect("emulator starts");
        Env { emu, server }
    }

    /// A source config with the emulator's key and a fast client-side limit.
    pub(crate) fn config(&self) -> Value {
        json!({
            "api_key": self.emu.api_key(),
            "base_url": self.server.base_url(),
            "rate_limit_per_second": 2000,
            "rate_limit_burst": 2000,
            "max_concurrency": 32,
            "request_timeout_secs": 20,
        })
    }
}

/// The source under test.
pub(crate) fn source() -> LeverSource {
    LeverSource
}

/// Runs one sync with a bound on its duration.
pub(crate) async fn sync(
    config: &Value,
    dest: &MemoryDestination,
    options: SyncOptions,
) -> sluice_core::Result<SyncReport> {
    let src = source();
    tokio::time::timeout(
        SYNC_TIMEOUT,
        sync_with(&src as &dyn DynSource, config, dest, options),
    )
    .await
    .expect("sync finished in time")
}

/// Sync options with a fixed start time (epoch ms).
pub(crate) fn at(ms: i64) -> SyncOptions {
    SyncOptions::default().with_started_at_ms(ms)
}

/// Settings blocking every table except `keep`.
pub(crate) fn only(keep: &[&str]) -> SyncSettings {
    SyncSettings::default().with_tables(
        catalog()
            .iter()
            .filter(|t| !keep.contains(&t.name.as_str()))
            .map(|t| (t.name.clone(), TableSettings::default().with_enabled(false)))
            .collect(),
    )
}

/// The live rows of a destination table: soft-deleted rows dropped, system columns removed
/// (except `contact_link._fivetran_id`).
pub(crate) fn live_rows(dest: &MemoryDestination, table: &str) -> Vec<Row> {
    dest.committed_rows(table)
        .into_iter()
        .filter(|r| r.get("_fivetran_deleted") != Some(&Value::Bool(true)))
        .map(|mut r| {
            r.retain(|k, _| !k.starts_with("_fivetran") || k == "_fivetran_id");
            r
        })
        .collect()
}

/// Compares every table of `dest` with the oracle for `truth`, rows and values. Rows the
/// destination keeps for hard-deleted opportunities in tables that do not capture deletes
/// (Fivetran leaves them) are tolerated only when their key is one of the rows the oracle
/// derives from the deleted opportunities themselves (their children, contacts and
/// grand-children), so a stray row of any other origin is reported.
pub(crate) fn assert_matches_oracle(dest: &MemoryDestination, truth: &Truth, confidential: bool) {
    let options = ExpectedOptions { confidential };
    let expected = expected::tables(truth, &options);
    let removed_truth = Truth {
        opportunities: truth.removed_opportunities.clone(),
        children: truth.removed_children.clone(),
        ..truth.clone()
    };
    let removed = expected::tables(&removed_truth, &options);
    let removed_keys: BTreeMap<String, BTreeMap<String, Row>> = catalog()
        .iter()
        .map(|spec| {
            let key: Vec<&str> = spec.primary_key.iter().map(String::as_str).collect();
            let rows = removed.get(&spec.name).cloned().unwrap_or_default();
            (spec.name.clone(), rows_by_key(&rows, &key))
        })
        .collect();
    let mut problems = Vec::new();
    for spec in catalog() {
        let key: Vec<&str> = spec.primary_key.iter().map(String::as_str).collect();
        let want_rows = expected.get(&spec.name).cloned().unwrap_or_default();
        let want = rows_by_key(&want_rows, &key);
        let got = rows_by_key(&live_rows(dest, &spec.name), &key);
        for (k, w) in &want {
            match got.get(k) {
                None => problems.push(format!("{}: missing row {k}", spec.name)),
                Some(g) => {
                    for (col, wv) in w {
                        let gv = g.get(col).unwrap_or(&Value::Null);
                        if !same(gv, wv) {
                            problems.push(format!("{}[{k}].{col}: got {gv}, want {wv}", spec.name));
                        }
                    }
                    for (col, gv) in g {
                        if !w.contains_key(col) && !gv.is_null() {
                            problems.push(format!("{}[{k}]: extra column {col} = {gv}", spec.name));
                        }
                    }
                }
            }
        }
        for k in got.keys() {
            if want.contains_key(k) {
                continue;
            }
            let tolerated = !spec.capture_deletes
                && removed_keys
                    .get(&spec.name)
                    .is_some_and(|keys| keys.contains_key(k));
            if !tolerated {
                problems.push(format!("{}: unexpected row {k}", spec.name));
            }
        }
    }
    if !problems.is_empty() {
        let n = problems.len();
        problems.truncate(40);
        panic!("{n} differences from the oracle:\n{}", problems.join("\n"));
    }
}

/// Equality of two cell values: integers compare as integers (3 is not 3.0, and integers past
/// 2^53 keep their last digits); floats compare bit for bit as JSON numbers.
fn same(a: &Value, b: &Value) -> bool {
    a == b
}

/// Row counts per table (for sanity checks).
pub(crate) fn counts(dest: &MemoryDestination) -> BTreeMap<String, usize> {
    catalog()
        .iter()
        .map(|t| (t.name.clone(), dest.committed_rows(&t.name).len()))
        .collect()
}

/// Asserts an error kind.
pub(crate) fn assert_kind(r: &sluice_core::Result<SyncReport>, kind: ErrorKind) {
    match r {
        Ok(_) => panic!("expected a {kind:?} error, the sync succeeded"),
        Err(e) => assert_eq!(e.kind(), kind, "{e}"),
    }
}
