//! DuckDB reads a table folder directly (glob + union_by_name) after schema evolution.

use crate::common::*;
use sluice_core::{ColumnSpec, ColumnType, Sink};

/// Whether python3 with duckdb is there (see [`python_modules_available`]).
fn duckdb_available() -> bool {
    python_modules_available("duckdb", "duckdb")
}

/// Runs a python script with duckdb and parses the JSON it prints.
fn duckdb_json(script: &str) -> serde_json::Value {
    python_json("duckdb", script)
}

#[tokio::test]
async fn duckdb_reads_the_table_folder() {
    if !duckdb_available() {
        return;
    }
    let mut lake = Lake::local();
    lake.config.table_buckets.insert("opp".into(), 8);
    let mut s = lake.sink();
    s.open(&specs()).await.unwrap();
    let rows: Vec<(String, String, i64)> = (0..200)
        .map(|i| (format!("id{i}"), "n".into(), i))
        .collect();
    let rows: Vec<(&str, &str, i64)> = rows
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), *c))
        .collect();
    s.write(stamp(opp_rows("opp", &rows), T1)).await.unwrap();
    s.commit(&state(1)).await.unwrap();
    // Evolve: a new column, and updates of existing keys in a few buckets.
    let mut evolved = opp();
    evolved
        .columns
        .push(ColumnSpec::new("extra", ColumnType::Int64));
    let tables = vec![evolved.clone(), note(), hist()];
    s.update_table(&evolved).await.unwrap();
    let change = opp_rows_spec(
        &evolved,
        &[("id1", "m", 1), ("id2", "m", 2), ("new", "m", 3)],
        Some(vec![Some(1), Some(2), Some(3)]),
    );
    s.write(stamp_with(&tables, change, T2)).await.unwrap();
    s.commit(&state(2)).await.unwrap();
    s.close().await.unwrap();

    let dir = lake.tmp.as_ref().unwrap().path().join("lake/opp");
    let script = format!(
        r#"
import duckdb, json
con = duckdb.connect()
src = "read_parquet('{dir}/*.parquet', union_by_name=true)"
total, distinct = con.execute(f"select count(*), count(distinct id) from {{src}}").fetchone()
types = {{r[0]: r[1] for r in con.execute(f"describe select * from {{src}}").fetchall()}}
extra = con.execute(f"select count(extra) from {{src}}").fetchone()[0]
print(json.dumps({{"total": total, "distinct": distinct, "types": types, "extra": extra}}))
"#,
        dir = dir.display()
    );
    let v = duckdb_json(&script);
    assert_eq!(v["total"], 201, "{v}");
    assert_eq!(v["distinct"], 201, "exactly one row per key: {v}");
    assert_eq!(v["extra"], 3, "{v}");
    assert_eq!(
        v["types"]["_fivetran_synced"], "TIMESTAMP WITH TIME ZONE",
        "{v}"
    );
    assert_eq!(v["types"]["updated_at"], "TIMESTAMP WITH TIME ZONE", "{v}");
    assert_eq!(v["types"]["extra"], "BIGINT", "{v}");
    let _ = lake.sink().read_state().await.unwrap();
}

/// Compactions splice stored row groups into the new file as encoded (large ones) or
/// re-encode them (small ones): DuckDB reads the result, with its statistics and page
/// indexes, and finds every row once with its values.
#[tokio::test]
async fn duckdb_reads_compacted_files_with_spliced_row_groups() {
    if !duckdb_available() {
        return;
    }
    let mut lake = Lake::local();
    lake.config.row_group_rows = 40;
    lake.config.max_files_per_bucket = 3;
    let mut s = lake.sink();
    s.open(&specs()).await.unwrap();
    // Commits of 100, then 5 rows: row groups of 40, 40 and 20 (spliced), and of 5 (merged).
    let mut next = 0;
    for (commit, n) in [100, 5, 100, 5, 100, 5, 100].into_iter().enumerate() {
        let rows: Vec<(String, String, i64)> = (next..next + n)
            .map(|i| (format!("id{i:04}"), format!("name {i}"), i))
            .collect();
        next += n;
        let rows: Vec<(&str, &str, i64)> = rows
            .iter()
            .map(|(a, b, c)| (a.as_str(), b.as_str(), *c))
            .collect();
        s.write(stamp(opp_rows("opp", &rows), T1)).await.unwrap();
        s.commit(&state(commit as i64 + 1)).await.unwrap();
    }
    s.close().await.unwrap();

    let dir = lake.tmp.as_ref().unwrap().path().join("lake/opp");
    let files = std::fs::read_dir(&dir).unwrap().count();
    assert!(files < 7, "compactions ran: {files} files");
    let script = format!(
        r#"
import duckdb, json
con = duckdb.connect()
src = "read_parquet('{dir}/*.parquet')"
total, distinct, sum_n = con.execute(f"select count(*), count(distinct id), sum(len(name)) from {{src}}").fetchone()
picked = con.execute(f"select id, name from {{src}} where id between 'id0150' and 'id0152' order by id").fetchall()
short = con.execute(f"select max(n) from (select count(*) as n from parquet_metadata('{dir}/*.parquet') where column_id = 0 and row_group_num_rows < 40 group by file_name)").fetchone()[0]
print(json.dumps({{"total": total, "distinct": distinct, "name_bytes": sum_n, "picked": picked, "short": short}}))
"#,
        dir = dir.display()
    );
    let v = duckdb_json(&script);
    assert_eq!(v["total"], next, "{v}");
    assert_eq!(v["distinct"], next, "exactly one row per key: {v}");
    let name_bytes: usize = (0..next).map(|i| format!("name {i}").len()).sum();
    assert_eq!(v["name_bytes"], name_bytes, "{v}");
    assert_eq!(
        v["picked"],
        serde_json::json!([
            ["id0150", "name 150"],
            ["id0151", "name 151"],
            ["id0152", "name 152"]
        ]),
        "{v}"
    );
    // Spliced row groups keep their size: a file holds several short ones (20 rows each),
    // where a file written row by row has at most one (its last).
    assert!(v["short"].as_u64().unwrap() >= 2, "{v}");
}
