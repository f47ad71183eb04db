//! The `iceberg` sink: the shared scenarios again, and every table read by two Iceberg
//! readers sluice did not write: pyiceberg (`StaticTable` from the metadata file) and
//! DuckDB's iceberg extension (loaded offline from the `duckdb-ext-iceberg` wheel, with
//! `duckdb-ext-avro`, and `duckdb-ext-httpfs` on S3). After a full sync, incremental syncs
//! with updates, soft and hard deletes, a re-sync and a schema change, both read the sink's
//! rows with one row per key, on local disk and on S3 (moto).

use crate::common::*;
use crate::reader_steps::*;
use sluice_core::{Sink, TableSpec};
use std::collections::BTreeMap;

both!(
    iceberg_conformance,
    iceberg_conformance_in_small_chunks,
    iceberg_engine_matches_memory_sink,
    iceberg_faults,
    iceberg_schema_evolution,
);

async fn iceberg_conformance(lake: Lake) {
    crate::scenarios::conformance(lake.iceberg()).await;
}

async fn iceberg_conformance_in_small_chunks(lake: Lake) {
    crate::scenarios::conformance_in_small_chunks(lake.iceberg()).await;
}

async fn iceberg_engine_matches_memory_sink(lake: Lake) {
    crate::scenarios::engine_matches_memory_sink(lake.iceberg()).await;
}

async fn iceberg_faults(lake: Lake) {
    crate::scenarios::faults(lake.iceberg()).await;
}

async fn iceberg_schema_evolution(lake: Lake) {
    crate::scenarios::schema_evolution(lake.iceberg()).await;
}

/// The folder of DuckDB's extensions from the `duckdb-ext-*` wheels, when python3 has
/// duckdb, the iceberg, avro and httpfs extensions, pyiceberg and pyarrow.
fn readers() -> Option<String> {
    let pip = "'duckdb==1.4.4' 'duckdb-ext-iceberg==1.4.4.20260205' \
               'duckdb-ext-avro==1.4.4.20260205' 'duckdb-ext-httpfs==1.4.4.20260205' \
               'pyiceberg[pyarrow]' pyarrow";
    if !python_modules_available("duckdb, duckdb_ext, pyiceberg, pyarrow", pip) {
        return None;
    }
    let v = python_json(
        "duckdb",
        r#"
import duckdb, duckdb_ext, glob, json, os
found = []
for base in duckdb_ext.__path__:
    found += glob.glob(os.path.join(base, "extensions", "v" + duckdb.__version__, "*", "iceberg.duckdb_extension"))
print(json.dumps([os.path.dirname(f) for f in found]))
"#,
    );
    let dir = v
        .as_array()
        .and_then(|a| a.first())
        .and_then(|p| p.as_str())
        .unwrap_or_else(|| {
            panic!("no iceberg.duckdb_extension for this duckdb in duckdb_ext: {v}")
        });
    for ext in ["avro", "httpfs"] {
        let file = format!("{dir}/{ext}.duckdb_extension");
        assert!(
            std::path::Path::new(&file).exists(),
            "{file} is missing (pip install 'duckdb-ext-{ext}==1.4.4.20260205')"
        );
    }
    Some(dir.to_owned())
}

/// `id -> (value, deleted)` as one reader sees a table.
type Rows = BTreeMap<String, (String, bool)>;

/// Version `version` of the table at `at` as `(pyiceberg, DuckDB)` read it: the id,
/// `value` and the deleted flag `deleted` (an SQL expression) of each row.
fn read_both(ext: &str, at: &TableAt, version: &str, value: &str, deleted: &str) -> (Rows, Rows) {
    let meta = format!("{}/metadata/v{version}.metadata.json", at.location());
    let (meta_uri, props) = match at {
        TableAt::Local(_) => (format!("file://{meta}"), "{}".to_owned()),
        TableAt::S3 { endpoint, .. } => (
            meta.clone(),
            format!(
                "{{'s3.endpoint': 'http://{endpoint}', 's3.access-key-id': '{MOTO_KEY_ID}', \
                 's3.secret-access-key': '{MOTO_SECRET}', 's3.region': 'us-east-1'}}"
            ),
        ),
    };
    let script = format!(
        r#"
import duckdb, json
from pyiceberg.table import StaticTable
t = StaticTable.from_metadata({meta_uri:?}, properties={props})
con = duckdb.connect()
con.register("py", t.scan().to_arrow())
py = con.execute("select id, {value}, {deleted} from py").fetchall()
con.execute("LOAD '{ext}/avro.duckdb_extension'")
con.execute("LOAD '{ext}/iceberg.duckdb_extension'")
{setup}
dd = con.execute("select id, {value}, {deleted} from iceberg_scan('{meta}')").fetchall()
print(json.dumps({{"pyiceberg": [list(r) for r in py], "duckdb": [list(r) for r in dd]}}))
"#,
        setup = at.duckdb_setup(ext),
    );
    let v = python_json("an Iceberg reader", &script);
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
    (rows("pyiceberg"), rows("duckdb"))
}

/// The version `version-hint.text` of `table` names.
async fn hinted_version(lake: &Lake, table: &str) -> String {
    use object_store::ObjectStoreExt;
    let dest = lake.dest();
    let hint = dest
        .root
        .clone()
        .join(table)
        .join("metadata")
        .join("version-hint.text");
    let bytes = dest.store.get(&hint).await.unwrap().bytes().await.unwrap();
    String::from_utf8(bytes.to_vec()).unwrap().trim().to_owned()
}

/// The newest metadata file of the local `table` (the one its version hint names).
async fn newest_metadata(lake: &Lake, table: &str) -> String {
    let version = hinted_version(lake, table).await;
    format!(
        "{}/metadata/v{version}.metadata.json",
        lake.table_at(table).location()
    )
}

/// Asserts that both readers read exactly the sink's committed rows of `spec`.
async fn both_read_the_sinks_rows(lake: &Lake, ext: &str, spec: &TableSpec, step: &str) {
    let expected = expected_rows(lake, spec).await;
    assert!(!expected.is_empty(), "{step}: the sink holds rows");
    let version = hinted_version(lake, &spec.name).await;
    let at = lake.table_at(&spec.name);
    let (pyiceberg, duckdb) = read_both(ext, &at, &version, value_column(spec), deleted_expr(spec));
    assert_eq!(
        pyiceberg, expected,
        "{step}: pyiceberg differs from the sink"
    );
    assert_eq!(duckdb, expected, "{step}: DuckDB differs from the sink");
}

/// The snapshot summary of the newest version of `table`.
async fn snapshot_summary(lake: &Lake, table: &str) -> serde_json::Value {
    use object_store::ObjectStoreExt;
    let version = hinted_version(lake, table).await;
    let dest = lake.dest();
    let path = dest
        .root
        .clone()
        .join(table)
        .join("metadata")
        .join(format!("v{version}.metadata.json").as_str());
    let bytes = dest.store.get(&path).await.unwrap().bytes().await.unwrap();
    let meta: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    meta["snapshots"][0]["summary"].clone()
}

/// The reader steps on `lake`: after each, pyiceberg and DuckDB read the sink's rows.
/// Returns, per step, its name and how many position-delete files the table's snapshot
/// lists (`None` when the readers are not installed and nothing ran).
async fn readers_read_every_step(lake: &mut Lake) -> Option<Vec<(&'static str, u64)>> {
    let ext = readers()?;
    lake.config.table_buckets.insert("opp".into(), 4);
    let deletes = std::sync::Mutex::new(Vec::new());
    let lake = &*lake;
    sync_steps(lake, async |spec: &TableSpec, step: &'static str| {
        both_read_the_sinks_rows(lake, &ext, spec, step).await;
        let summary = snapshot_summary(lake, &spec.name).await;
        let files = summary["total-delete-files"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        deletes.lock().unwrap().push((step, files));
    })
    .await;
    Some(deletes.into_inner().unwrap())
}

/// Full sync, incremental syncs with updates, soft and hard deletes, a re-sync and a schema
/// change, on local disk; after each, pyiceberg and DuckDB read the sink's rows. The new
/// column keeps every earlier field id and gets the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_readers_read_every_step() {
    let mut lake = Lake::local().iceberg();
    let dir = lake.tmp.as_ref().unwrap().path().join("lake/opp/metadata");
    let Some(deletes) = readers_read_every_step(&mut lake).await else {
        return; // the readers are not installed and the test was skipped
    };
    // Updates and deletes of a few stored rows are position deletes, read by both.
    for step in ["incremental", "hard deletes"] {
        let (_, files) = deletes.iter().find(|(s, _)| *s == step).unwrap();
        assert!(*files > 0, "{step}: no position-delete file in {deletes:?}");
    }
    let version = std::fs::read_to_string(dir.join("version-hint.text")).unwrap();
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join(format!("v{}.metadata.json", version.trim()))).unwrap(),
    )
    .unwrap();
    let fields = meta["schemas"][0]["fields"].as_array().unwrap();
    let ids: Vec<i64> = fields.iter().map(|f| f["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, (1..=ids.len() as i64).collect::<Vec<_>>(), "{meta}");
    assert_eq!(fields.last().unwrap()["name"], "extra");
    assert_eq!(meta["last-column-id"], ids.len());
    assert!(meta["current-schema-id"].as_i64().unwrap() >= 1, "{meta}");
    // The primary key is the identifier field (required), and pyiceberg reads it so.
    let id = fields.iter().find(|f| f["name"] == "id").unwrap();
    assert_eq!(id["required"], true, "{id}");
    assert_eq!(
        meta["schemas"][0]["identifier-field-ids"],
        serde_json::json!([id["id"]])
    );
    let script = format!(
        "import json\nfrom pyiceberg.table import StaticTable\n\
         t = StaticTable.from_metadata('file://{}/v{}.metadata.json')\n\
         print(json.dumps(sorted(t.schema().identifier_field_names())))",
        dir.display(),
        version.trim()
    );
    assert_eq!(python_json("pyiceberg", &script), serde_json::json!(["id"]));
}

/// The same steps on S3 (moto): pyiceberg and DuckDB (with its httpfs extension) read every
/// table from the bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_readers_read_every_step_on_s3() {
    if let Some(lake) = Lake::s3() {
        let deletes = readers_read_every_step(&mut lake.iceberg()).await;
        assert!(
            deletes.is_none_or(|d| d.iter().any(|(_, files)| *files > 0)),
            "position deletes on S3"
        );
    }
}

/// With `position_deletes = false` the same steps rewrite files (copy-on-write): no
/// snapshot lists a delete file, and both readers read the sink's rows at every step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_readers_read_every_step_copy_on_write() {
    let mut lake = Lake::local().iceberg_copy_on_write();
    let Some(deletes) = readers_read_every_step(&mut lake).await else {
        return;
    };
    assert!(deletes.iter().all(|(_, files)| *files == 0), "{deletes:?}");
}

/// One destination, one table format: the `parquet` and `delta` sinks refuse an Iceberg
/// destination, and the `iceberg` sink a Delta one, each naming the sink to use; nothing is
/// written by the refused open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_formats_refuse_an_iceberg_destination_and_back() {
    let lake = Lake::local().iceberg();
    let mut s = lake.sink();
    s.open(&specs()).await.unwrap();
    s.write(stamp(opp_rows("opp", &[("o1", "a", 1)]), T1))
        .await
        .unwrap();
    s.commit(&state(1)).await.unwrap();
    s.close().await.unwrap();
    let before = lake.objects("opp").await;
    let mut delta = Lake::local().delta();
    delta.config = lake.config.clone();
    for (name, mut other) in [
        ("parquet", Box::new(lake.parquet_sink()) as Box<dyn Sink>),
        ("delta", Box::new(delta.sink())),
    ] {
        let e = other.open(&specs()).await.unwrap_err().to_string();
        assert!(
            e.contains("--sink iceberg") && !e.contains('\n'),
            "{name}: {e}"
        );
    }
    assert_eq!(lake.objects("opp").await, before);

    let delta = Lake::local().delta();
    let mut s = delta.sink();
    s.open(&specs()).await.unwrap();
    s.write(stamp(opp_rows("opp", &[("o1", "a", 1)]), T1))
        .await
        .unwrap();
    s.commit(&state(1)).await.unwrap();
    s.close().await.unwrap();
    let mut ice = Lake::local().iceberg();
    ice.config = delta.config.clone();
    let e = ice.sink().open(&specs()).await.unwrap_err().to_string();
    assert!(e.contains("--sink delta"), "{e}");
}

/// With `catalog = "sql"`, every published version is registered in the SQL catalog, and
/// pyiceberg's `SqlCatalog` loads the table by name (`lever.opp`) at its newest version.
/// A registration lost after the metadata was written (a run stopped in between) is made
/// by the next open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sql_catalog_serves_the_tables_by_name() {
    let Some(_) = readers() else { return };
    let mut lake = Lake::local().iceberg();
    let db = lake.tmp.as_ref().unwrap().path().join("catalog.db");
    lake.iceberg_catalog = sluice_sink_iceberg::Catalog::Sqlite(db.clone());
    let mut s = lake.sink();
    s.open(&specs()).await.unwrap();
    let ids: Vec<String> = (0..50).map(|i| format!("opp-{i:04}")).collect();
    let rows: Vec<(&str, &str, i64)> = ids.iter().map(|i| (i.as_str(), "v1", 1)).collect();
    s.write(stamp(opp_rows("opp", &rows), T1)).await.unwrap();
    s.commit(&state(1)).await.unwrap();
    s.write(stamp(opp_rows("opp", &[("opp-0007", "v2", 2)]), T2))
        .await
        .unwrap();
    s.commit(&state(2)).await.unwrap();
    s.close().await.unwrap();

    let read = || {
        python_json(
            "pyiceberg's SqlCatalog",
            &format!(
                r#"
import json
from pyiceberg.catalog.sql import SqlCatalog
c = SqlCatalog("sluice", uri="sqlite:///{db}")
t = c.load_table("lever.opp")
rows = t.scan().to_arrow().to_pylist()
print(json.dumps({{"location": t.metadata_location, "tables": [list(x) for x in c.list_tables("lever")],
                   "names": {{r["id"]: r["name"] for r in rows}}}}))
"#,
                db = db.display()
            ),
        )
    };
    let v = read();
    assert!(
        v["location"]
            .as_str()
            .unwrap()
            .ends_with("/opp/metadata/v2.metadata.json"),
        "{v}"
    );
    let names = v["names"].as_object().unwrap();
    assert_eq!(names.len(), 50, "{v}");
    assert_eq!(names["opp-0007"], "v2");
    assert_eq!(names["opp-0008"], "v1");
    assert!(
        v["tables"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(["lever", "opp"])),
        "{v}"
    );

    // The catalog file lost (or a run stopped before registering): the next open registers
    // the newest version again.
    std::fs::remove_file(&db).unwrap();
    let mut s = lake.sink();
    s.open(&specs()).await.unwrap();
    s.close().await.unwrap();
    let v = read();
    assert!(
        v["location"]
            .as_str()
            .unwrap()
            .ends_with("/opp/metadata/v2.metadata.json"),
        "{v}"
    );
}

/// A run killed after writing a version's metadata file but before its version hint: the
/// next open finishes the publication, so readers that follow the hint see the newest
/// version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_hint_left_behind_is_written_by_the_next_open() {
    let lake = Lake::local().iceberg();
    let mut s = lake.sink();
    s.open(&specs()).await.unwrap();
    s.write(stamp(opp_rows("opp", &[("o1", "a", 1)]), T1))
        .await
        .unwrap();
    s.commit(&state(1)).await.unwrap();
    s.write(stamp(opp_rows("opp", &[("o2", "b", 1)]), T2))
        .await
        .unwrap();
    s.commit(&state(2)).await.unwrap();
    s.close().await.unwrap();
    let hint = lake
        .tmp
        .as_ref()
        .unwrap()
        .path()
        .join("lake/opp/metadata/version-hint.text");
    assert_eq!(std::fs::read_to_string(&hint).unwrap(), "2");
    std::fs::write(&hint, "1").unwrap();
    let mut s = lake.sink();
    s.open(&specs()).await.unwrap();
    s.close().await.unwrap();
    assert_eq!(std::fs::read_to_string(&hint).unwrap(), "2");
}

/// Position-delete files live and go with their deletion vectors: an update of a few stored
/// rows writes one beside the vector file, a folded file takes both away (retention 0 here),
/// and one no manifest has (left by a killed commit) is removed by the next open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn position_delete_files_live_and_go_with_their_vectors() {
    let lake = Lake::local().iceberg();
    let ids: Vec<String> = (0..1_000).map(|i| format!("opp-{i:04}")).collect();
    let rows = |value: &'static str, n: usize, step: usize| -> Vec<(&str, &str, i64)> {
        ids.iter()
            .step_by(step)
            .take(n)
            .map(|i| (i.as_str(), value, 1))
            .collect()
    };
    let kinds = |objects: Vec<String>| -> (usize, usize) {
        let name = |o: &String| o.rsplit('/').next().unwrap().to_owned();
        let dv = objects.iter().map(name);
        let bins = dv
            .clone()
            .filter(|n| n.starts_with("deletion_vector_") && n.ends_with(".bin"));
        let pos = dv.filter(|n| n.starts_with("deletion_vector_") && n.ends_with(".parquet"));
        (bins.count(), pos.count())
    };
    let mut s = lake.sink();
    s.open(&specs()).await.unwrap();
    s.write(stamp(opp_rows("opp", &rows("v1", 1_000, 1)), T1))
        .await
        .unwrap();
    s.commit(&state(1)).await.unwrap();
    s.write(stamp(opp_rows("opp", &rows("v2", 10, 97)), T2))
        .await
        .unwrap();
    let t = s.commit(&state(2)).await.unwrap().tables["opp"];
    assert_eq!(t.bytes_rewritten, 0, "{t:?}");
    assert_eq!(kinds(lake.objects("opp").await), (1, 1));
    lake.assert_no_orphans(&["opp"]).await;
    let summary = snapshot_summary(&lake, "opp").await;
    assert_eq!(summary["total-delete-files"], "1", "{summary}");
    assert_eq!(summary["total-position-deletes"], "10", "{summary}");
    s.close().await.unwrap();

    // A killed commit's vector and position-delete files: removed at the next open.
    let dir = lake.tmp.as_ref().unwrap().path().join("lake/opp");
    let stray = "deletion_vector_00000000-0000-0000-0000-000000000001";
    std::fs::write(dir.join(format!("{stray}.bin")), b"x").unwrap();
    std::fs::write(dir.join(format!("{stray}.parquet")), b"x").unwrap();
    let mut s = lake.sink();
    s.open(&specs()).await.unwrap();
    assert_eq!(kinds(lake.objects("opp").await), (1, 1));
    lake.assert_no_orphans(&["opp"]).await;

    // Most rows updated: the files are folded, and their vector and delete files go.
    s.write(stamp(opp_rows("opp", &rows("v3", 1_000, 1)), T3))
        .await
        .unwrap();
    let t = s.commit(&state(3)).await.unwrap().tables["opp"];
    assert!(t.bytes_rewritten > 0, "{t:?}");
    s.close().await.unwrap();
    assert_eq!(kinds(lake.objects("opp").await), (0, 0));
    lake.assert_no_orphans(&["opp"]).await;
    let summary = snapshot_summary(&lake, "opp").await;
    assert_eq!(summary["total-delete-files"], "0", "{summary}");
}

/// Data files' column bounds and NULL counts are in the manifests: pyiceberg plans a scan
/// filtered on a value only the newer files hold over fewer files than the table has, and
/// pyiceberg and DuckDB return exactly the matching rows (position deletes applied).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_carry_column_bounds_and_a_filtered_scan_plans_fewer_files() {
    let Some(ext) = readers() else { return };
    let mut lake = Lake::local().iceberg();
    lake.config.table_buckets.insert("opp".into(), 4);
    let ids: Vec<String> = (0..400).map(|i| format!("opp-{i:04}")).collect();
    let mut s = lake.sink();
    s.open(&specs()).await.unwrap();
    let all: Vec<(&str, &str, i64)> = ids.iter().map(|i| (i.as_str(), "old", 1)).collect();
    s.write(stamp(opp_rows("opp", &all), T1)).await.unwrap();
    s.commit(&state(1)).await.unwrap();
    let some: Vec<(&str, &str, i64)> = ids
        .iter()
        .step_by(40)
        .map(|i| (i.as_str(), "new", 2))
        .collect();
    s.write(stamp(opp_rows("opp", &some), T2)).await.unwrap();
    s.commit(&state(2)).await.unwrap();
    s.close().await.unwrap();
    let meta = newest_metadata(&lake, "opp").await;
    let script = format!(
        r#"
import duckdb, json
from pyiceberg.table import StaticTable
from pyiceberg.expressions import EqualTo
t = StaticTable.from_metadata("file://{meta}")
everything = len(list(t.scan().plan_files()))
scan = t.scan(row_filter=EqualTo("name", "new"))
planned = len(list(scan.plan_files()))
py = sorted(r["id"] for r in scan.to_arrow().to_pylist() if r["name"] == "new")
con = duckdb.connect()
con.execute("LOAD '{ext}/avro.duckdb_extension'")
con.execute("LOAD '{ext}/iceberg.duckdb_extension'")
dd = sorted(r[0] for r in con.execute("select id from iceberg_scan('{meta}') where name = 'new'").fetchall())
print(json.dumps({{"everything": everything, "planned": planned, "pyiceberg": py, "duckdb": dd}}))
"#
    );
    let v = python_json("an Iceberg reader", &script);
    let want: Vec<String> = ids.iter().step_by(40).cloned().collect();
    assert_eq!(v["pyiceberg"], serde_json::json!(want), "{v}");
    assert_eq!(v["duckdb"], serde_json::json!(want), "{v}");
    let (everything, planned) = (v["everything"].as_u64(), v["planned"].as_u64());
    assert!(planned < everything && planned > Some(0), "{v}");
}

/// Metadata of versions older than the retention (0 here) goes: after four commits,
/// `metadata/` holds the newest version and the one before it (metadata file, manifest
/// list, manifests) and the version hint, nothing older.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_older_than_the_retention_is_removed() {
    let lake = Lake::local().iceberg();
    let mut s = lake.sink();
    s.open(&specs()).await.unwrap();
    for (n, at) in [T1, T2, T3, T4].into_iter().enumerate() {
        let id = format!("o{n}");
        s.write(stamp(opp_rows("opp", &[(id.as_str(), "a", 1)]), at))
            .await
            .unwrap();
        s.commit(&state(n as i64 + 1)).await.unwrap();
    }
    s.close().await.unwrap();
    let names: Vec<String> = lake
        .objects("opp")
        .await
        .iter()
        .filter(|o| o.contains("/metadata/"))
        .map(|o| o.rsplit('/').next().unwrap().to_owned())
        .collect();
    let version = |n: &str| -> Option<u64> {
        let stem = n
            .strip_suffix(".metadata.json")
            .or(n.strip_suffix(".avro"))?;
        let v = stem
            .rsplit_once("-v")
            .map_or(stem.strip_prefix('v'), |(_, v)| Some(v))?;
        v.split("-m").next()?.parse().ok()
    };
    let mut versions: Vec<u64> = names.iter().filter_map(|n| version(n)).collect();
    versions.sort_unstable();
    versions.dedup();
    assert_eq!(versions, vec![3, 4], "{names:?}");
    assert!(names.contains(&"version-hint.text".to_owned()), "{names:?}");
    assert!(names.contains(&"v4.metadata.json".to_owned()), "{names:?}");
    assert_eq!(
        names.iter().filter(|n| n.starts_with("snap-")).count(),
        2,
        "{names:?}"
    );
}

/// Each metadata version lists the earlier snapshots made within the retention, so readers
/// travel in time: pyiceberg lists three snapshots after three commits and reads each as it
/// was committed; DuckDB reads the first by its id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_within_the_retention_can_be_read_in_time() {
    let Some(ext) = readers() else { return };
    let mut lake = Lake::local().iceberg();
    lake.iceberg_retention_hours = 168;
    let mut s = lake.sink();
    s.open(&specs()).await.unwrap();
    for (n, (rows, at)) in [
        (vec![("o0", "a", 1)], T1),
        (vec![("o1", "a", 1)], T2),
        (vec![("o0", "b", 2)], T3),
    ]
    .into_iter()
    .enumerate()
    {
        s.write(stamp(opp_rows("opp", &rows), at)).await.unwrap();
        s.commit(&state(n as i64 + 1)).await.unwrap();
    }
    s.close().await.unwrap();
    let meta = newest_metadata(&lake, "opp").await;
    let script = format!(
        r#"
import duckdb, json
from pyiceberg.table import StaticTable
t = StaticTable.from_metadata("file://{meta}")
snaps = [s.snapshot_id for s in t.metadata.snapshots]
def rows(**kw):
    return sorted([r["id"], r["name"]] for r in t.scan(**kw).to_arrow().to_pylist())
py = [rows(snapshot_id=i) for i in snaps]
con = duckdb.connect()
con.execute("LOAD '{ext}/avro.duckdb_extension'")
con.execute("LOAD '{ext}/iceberg.duckdb_extension'")
first = sorted(list(r) for r in con.execute(
    "select id, name from iceberg_scan('{meta}', snapshot_from_id = " + str(snaps[0]) + ")").fetchall())
print(json.dumps({{"history": len(t.history()), "pyiceberg": py, "duckdb_first": first}}))
"#
    );
    let v = python_json("an Iceberg reader", &script);
    assert_eq!(v["history"], 3, "{v}");
    assert_eq!(
        v["pyiceberg"],
        serde_json::json!([
            [["o0", "a"]],
            [["o0", "a"], ["o1", "a"]],
            [["o0", "b"], ["o1", "a"]]
        ]),
        "{v}"
    );
    assert_eq!(v["duckdb_first"], serde_json::json!([["o0", "a"]]), "{v}");
}

/// Turning `position_deletes` off on a table that has position deletes: the next commits
/// rewrite the files they touch, the files they do not touch keep their delete files, and
/// both readers read the sink's rows after each step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn position_deletes_turned_off_later_keep_the_tables_readable() {
    let Some(ext) = readers() else { return };
    let mut lake = Lake::local().iceberg();
    lake.config.table_buckets.insert("opp".into(), 4);
    let ids: Vec<String> = (0..400).map(|i| format!("opp-{i:04}")).collect();
    let rows = |value: &'static str, skip: usize| -> Vec<(&str, &str, i64)> {
        ids.iter()
            .skip(skip)
            .step_by(40)
            .map(|i| (i.as_str(), value, 2))
            .collect()
    };
    let mut s = lake.sink();
    s.open(&specs()).await.unwrap();
    let all: Vec<(&str, &str, i64)> = ids.iter().map(|i| (i.as_str(), "v1", 1)).collect();
    s.write(stamp(opp_rows("opp", &all), T1)).await.unwrap();
    s.commit(&state(1)).await.unwrap();
    s.write(stamp(opp_rows("opp", &rows("v2", 0)), T2))
        .await
        .unwrap();
    s.commit(&state(2)).await.unwrap();
    s.close().await.unwrap();
    let with = snapshot_summary(&lake, "opp").await;
    assert_ne!(with["total-delete-files"], "0", "{with}");
    both_read_the_sinks_rows(&lake, &ext, &opp(), "position deletes").await;

    lake.iceberg_position_deletes = false;
    let mut s = lake.sink();
    s.open(&specs()).await.unwrap();
    s.write(stamp(opp_rows("opp", &rows("v3", 7)), T3))
        .await
        .unwrap();
    let t = s.commit(&state(3)).await.unwrap().tables["opp"];
    s.close().await.unwrap();
    assert!(t.bytes_rewritten > 0, "copy-on-write now: {t:?}");
    both_read_the_sinks_rows(&lake, &ext, &opp(), "copy-on-write after").await;
    lake.assert_no_orphans(&["opp"]).await;
}
