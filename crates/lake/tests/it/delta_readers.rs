//! Two Delta readers that sluice did not write read every `delta` table: delta-rs (the
//! `deltalake` Python package, its `QueryBuilder`) and DuckDB's delta extension (built on
//! delta-kernel-rs, loaded offline from the `duckdb-ext-delta` wheel). After a full sync,
//! incremental syncs with updates and deletes, a re-sync and a schema change, both read the
//! sink's rows with one row per key, with deletion vectors and without them. Also: the add
//! actions carry column statistics that both use to skip files, and superseded files stay
//! for `retention_hours`.

use crate::common::*;
use crate::reader_steps::*;
use sluice_core::{Sink, TableSpec};
use std::collections::BTreeMap;

/// The path of DuckDB's delta extension from the `duckdb-ext-delta` wheel, when python3 has
/// duckdb, the extension and deltalake (see [`python_modules_available`]).
fn readers() -> Option<String> {
    let pip = "'duckdb==1.4.4' 'duckdb-ext-delta==1.4.4.20260205' deltalake pyarrow";
    if !python_modules_available("duckdb, duckdb_ext, deltalake, pyarrow", pip) {
        return None;
    }
    let v = python_json(
        "duckdb",
        r#"
import duckdb, duckdb_ext, glob, json, os
found = []
for base in duckdb_ext.__path__:
    found += glob.glob(os.path.join(base, "extensions", "v" + duckdb.__version__, "*", "delta.duckdb_extension"))
print(json.dumps(found))
"#,
    );
    let path = v
        .as_array()
        .and_then(|a| a.first())
        .and_then(|p| p.as_str());
    Some(
        path.unwrap_or_else(|| {
            panic!("no delta.duckdb_extension for this duckdb in duckdb_ext: {v}")
        })
        .to_owned(),
    )
}

/// `id -> (name, deleted)` as each reader sees the table in `dir`: `(delta-rs, DuckDB)`.
type Rows = BTreeMap<String, (String, bool)>;

fn read_both(ext: &str, dir: &std::path::Path) -> (Rows, Rows) {
    read_columns(ext, dir, "name", "_fivetran_deleted")
}

/// [`read_both`] with the value column `value` and the deleted flag `deleted` (an SQL
/// expression).
fn read_columns(ext: &str, dir: &std::path::Path, value: &str, deleted: &str) -> (Rows, Rows) {
    let script = format!(
        r#"
import duckdb, json, pyarrow
from deltalake import DeltaTable, QueryBuilder
t = DeltaTable({dir:?})
q = "select id, {value}, {deleted} from t"
rs = [list(r.values()) for r in pyarrow.table(QueryBuilder().register("t", t).execute(q).read_all()).to_pylist()]
con = duckdb.connect()
con.execute("LOAD '{ext}'")
dd = con.execute("select id, {value}, {deleted} from delta_scan('{dir}')").fetchall()
print(json.dumps({{"deltars": rs,
                   "duckdb": [list(r) for r in dd]}}))
"#,
        dir = dir.display().to_string()
    );
    let v = python_json("a Delta reader", &script);
    let rows = |reader: &str| {
        let mut out = Rows::new();
        for r in v[reader].as_array().unwrap() {
            let id = r[0].as_str().unwrap().to_owned();
            let name = r[1].as_str().unwrap_or("").to_owned();
            let prev = out.insert(id.clone(), (name, r[2].as_bool().unwrap_or(false)));
            assert!(prev.is_none(), "{reader} reads {id} twice");
        }
        out
    };
    (rows("deltars"), rows("duckdb"))
}

/// Asserts that both readers read exactly the sink's committed rows of `spec`.
async fn both_read_the_sinks_rows(lake: &Lake, ext: &str, spec: &TableSpec, step: &str) {
    let expected = expected_rows(lake, spec).await;
    assert!(!expected.is_empty(), "{step}: the sink holds rows");
    let TableAt::Local(dir) = lake.table_at(&spec.name) else {
        panic!("the Delta readers read local lakes");
    };
    let (deltars, duckdb) = read_columns(
        ext,
        std::path::Path::new(&dir),
        value_column(spec),
        deleted_expr(spec),
    );
    assert_eq!(deltars, expected, "{step}: delta-rs differs from the sink");
    assert_eq!(duckdb, expected, "{step}: DuckDB differs from the sink");
}

/// Full sync, incremental syncs with updates, soft and hard deletes, a re-sync and a schema
/// change; after each, delta-rs and DuckDB read the sink's rows.
async fn sync_steps_read_by_both(deletion_vectors: bool) {
    let Some(ext) = readers() else { return };
    let mut lake = Lake::local().delta();
    lake.delta_config().deletion_vectors = deletion_vectors;
    lake.config.table_buckets.insert("opp".into(), 4);
    sync_steps(&lake, async |spec: &TableSpec, step: &'static str| {
        both_read_the_sinks_rows(&lake, &ext, spec, step).await
    })
    .await;

    // Without deletion vectors, the protocol names no reader feature.
    let dir = lake.tmp.as_ref().unwrap().path().join("lake/opp");
    let v0 = std::fs::read_to_string(dir.join("_delta_log/00000000000000000000.json")).unwrap();
    let protocol: serde_json::Value = v0
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find_map(|a| a.get("protocol").cloned())
        .unwrap();
    if deletion_vectors {
        assert_eq!(
            protocol["readerFeatures"][0], "deletionVectors",
            "{protocol}"
        );
    } else {
        assert_eq!(
            protocol,
            serde_json::json!({"minReaderVersion": 1, "minWriterVersion": 2})
        );
        let dvs = lake.objects("opp").await;
        assert!(
            !dvs.iter().any(|o| o.contains("deletion_vector_")),
            "copy-on-write writes no deletion vector: {dvs:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_readers_read_every_step_with_deletion_vectors() {
    sync_steps_read_by_both(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_readers_read_every_step_without_deletion_vectors() {
    sync_steps_read_by_both(false).await;
}

/// Every add action carries numRecords, minValues, maxValues and nullCount of the stored
/// columns; delta-rs reads them as add actions, and a filtered DuckDB query scans fewer
/// files than the table has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_actions_carry_statistics_that_readers_use_to_skip_files() {
    let Some(ext) = readers() else { return };
    let lake = Lake::local().delta();
    let mut s = lake.sink();
    s.open(&specs()).await.unwrap();
    // Four commits of disjoint score ranges: four files in the one bucket.
    for c in 0..4i64 {
        let ids: Vec<String> = (0..50).map(|i| format!("opp-{c}-{i:02}")).collect();
        let rows: Vec<(&str, &str, i64)> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), "n", c * 1000 + i as i64))
            .collect();
        s.write(stamp(opp_rows("opp", &rows), T1 + c))
            .await
            .unwrap();
        s.commit(&state(c + 1)).await.unwrap();
    }
    s.close().await.unwrap();
    let dir = lake.tmp.as_ref().unwrap().path().join("lake/opp");
    let script = format!(
        r#"
import duckdb, json, pyarrow
from deltalake import DeltaTable
t = DeltaTable({dir:?})
adds = pyarrow.table(t.get_add_actions(flatten=True)).to_pylist()
con = duckdb.connect()
con.execute("LOAD '{ext}'")
plan = con.execute("explain analyze select count(*) from delta_scan('{dir}') where score = 2010").fetchall()[0][1]
n = con.execute("select count(*) from delta_scan('{dir}') where score = 2010").fetchone()[0]
print(json.dumps({{"adds": adds, "plan": plan, "n": n}}, default=str))
"#,
        dir = dir.display().to_string()
    );
    let v = python_json("a Delta reader", &script);
    let adds = v["adds"].as_array().unwrap();
    assert_eq!(adds.len(), 4, "{v}");
    let mut ranges: Vec<(i64, i64)> = adds
        .iter()
        .map(|a| {
            assert_eq!(a["num_records"], 50, "{a}");
            assert_eq!(a["null_count.score"], 0, "{a}");
            assert_eq!(a["null_count.name"], 0, "{a}");
            assert!(
                a["min.id"].is_string() && a["max.updated_at"].is_string(),
                "{a}"
            );
            (
                a["min.score"].as_i64().unwrap(),
                a["max.score"].as_i64().unwrap(),
            )
        })
        .collect();
    ranges.sort();
    assert_eq!(ranges, [(0, 49), (1000, 1049), (2000, 2049), (3000, 3049)]);
    assert_eq!(v["n"], 1);
    let plan = v["plan"].as_str().unwrap();
    assert!(
        plan.contains("Scanning Files: 1/4"),
        "DuckDB skips files by value:\n{plan}"
    );
}

/// Superseded files stay for `retention_hours`: a reader of the previous version (and time
/// travel to it) keeps working after a commit; once the retention is over, the next commit
/// deletes them. The `parquet` sink keeps deleting them at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn superseded_files_stay_for_the_retention_and_go_after() {
    let Some(_) = readers() else { return };
    let mut lake = Lake::local().delta();
    lake.delta_config().retention_hours = 1;
    lake.delta_config().deletion_vectors = false;
    let ids: Vec<String> = (0..100).map(|i| format!("opp-{i:04}")).collect();
    let mut s = lake.sink();
    s.open(&specs()).await.unwrap();
    let rows: Vec<(&str, &str, i64)> = ids.iter().map(|i| (i.as_str(), "v1", 1)).collect();
    s.write(stamp(opp_rows("opp", &rows), T1)).await.unwrap();
    s.commit(&state(1)).await.unwrap();
    let first = lake.objects("opp").await;
    // A rewrite supersedes the first file.
    s.write(stamp(opp_rows("opp", &[("opp-0001", "v2", 2)]), T2))
        .await
        .unwrap();
    s.commit(&state(2)).await.unwrap();
    s.close().await.unwrap();
    let dir = lake.tmp.as_ref().unwrap().path().join("lake/opp");
    let now = lake.objects("opp").await;
    for f in first.iter().filter(|f| f.ends_with(".parquet")) {
        assert!(now.contains(f), "{f} stays within the retention");
    }
    let old = python_json(
        "a Delta reader",
        &format!(
            r#"
import json, pyarrow
from deltalake import DeltaTable, QueryBuilder
t = DeltaTable({dir:?}, version=0)
q = QueryBuilder().register("t", t).execute("select id, name from t").read_all()
print(json.dumps(pyarrow.table(q).to_pylist()))
"#,
            dir = dir.display().to_string()
        ),
    );
    let old = old.as_array().unwrap();
    assert_eq!(old.len(), 100);
    assert!(
        old.iter().all(|r| r["name"] == "v1"),
        "time travel to version 0"
    );
    lake.assert_no_orphans(&["opp"]).await;

    // The retention passes (the manifest's record moved back in time): the next commit
    // deletes the superseded file, and the one after it keeps only live files.
    let entry = lake.manifest_entry("opp").await;
    let retired = entry["retired"].as_array().expect("retired files").clone();
    assert!(!retired.is_empty(), "{entry}");
    age_retired_files(&lake, 2 * 3600 * 1000).await;
    let mut s = lake.sink();
    s.open(&specs()).await.unwrap();
    s.write(stamp(opp_rows("opp", &[("opp-0002", "v3", 3)]), T3))
        .await
        .unwrap();
    s.commit(&state(3)).await.unwrap();
    s.close().await.unwrap();
    let after = lake.objects("opp").await;
    for r in &retired {
        let name = r["name"].as_str().unwrap();
        assert!(
            !after.iter().any(|o| o.ends_with(name)),
            "{name} goes after the retention"
        );
    }
    lake.assert_no_orphans(&["opp"]).await;
    let (deltars, duckdb) = read_both(&readers().unwrap(), &dir);
    assert_eq!(deltars.len(), 100);
    assert_eq!(deltars, duckdb);
}

/// Moves the `since_ms` of every retired file of the live manifest `by_ms` into the past
/// (rewriting the manifest in place, as a clock jump would).
async fn age_retired_files(lake: &Lake, by_ms: i64) {
    let root = lake
        .tmp
        .as_ref()
        .unwrap()
        .path()
        .join("lake/_sluice/manifest");
    let newest = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .max()
        .unwrap();
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&newest).unwrap()).unwrap();
    for t in m["tables"].as_object_mut().unwrap().values_mut() {
        if let Some(r) = t.get_mut("retired").and_then(|r| r.as_array_mut()) {
            for f in r {
                let since = f["since_ms"].as_i64().unwrap();
                f["since_ms"] = (since - by_ms).into();
            }
        }
    }
    std::fs::write(&newest, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}
