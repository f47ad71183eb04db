//! DuckDB reads a table folder directly (glob + union_by_name) after schema evolution.

use crate::common::*;
use sluice_core::{ColumnSpec, ColumnType, Sink};
use std::process::Command;

#[tokio::test]
async fn duckdb_reads_the_table_folder() {
    let skip = std::env::var("SLUICE_SKIP_DUCKDB_TESTS").is_ok_and(|v| v == "1");
    let probe = Command::new("python3")
        .args(["-c", "import duckdb"])
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        other => {
            if skip {
                eprintln!("skipping: python3 with duckdb is not available ({other:?})");
                return;
            }
            panic!(
                "this test needs python3 with duckdb (pip install duckdb): {other:?}; set \
                 SLUICE_SKIP_DUCKDB_TESTS=1 to skip it"
            );
        }
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
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "duckdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json from duckdb");
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
