//! The sync steps the independent-reader tests run on a lake (a full sync, incremental syncs
//! with updates, soft and hard deletes, a re-sync and a schema change), and where a reader
//! finds a table (a local folder, or an S3 URL on the test's moto server).

use crate::common::*;
use sluice_core::{Change, ColumnSpec, ColumnType, Scope, Sink, TableSpec};

/// Where a reader finds a table.
pub enum TableAt {
    /// A local folder.
    Local(String),
    /// An `s3://` URL on moto: `endpoint` is `host:port`.
    S3 { url: String, endpoint: String },
}

impl TableAt {
    /// The table's location as the reader opens it.
    pub fn location(&self) -> &str {
        match self {
            TableAt::Local(p) => p,
            TableAt::S3 { url, .. } => url,
        }
    }

    /// Python statements that let the DuckDB connection `con` read from this location
    /// (an S3 secret for moto, with its `httpfs` extension from `ext_dir`).
    pub fn duckdb_setup(&self, ext_dir: &str) -> String {
        match self {
            TableAt::Local(_) => String::new(),
            TableAt::S3 { endpoint, .. } => format!(
                "con.execute(\"LOAD '{ext_dir}/httpfs.duckdb_extension'\")\n\
                 con.execute(\"CREATE SECRET moto (TYPE s3, KEY_ID '{MOTO_KEY_ID}', \
                 SECRET '{MOTO_SECRET}', REGION 'us-east-1', ENDPOINT '{endpoint}', \
                 URL_STYLE 'path', USE_SSL false)\")\n"
            ),
        }
    }
}

impl Lake {
    /// Where a reader finds `table` of this lake.
    pub fn table_at(&self, table: &str) -> TableAt {
        match &self.tmp {
            Some(tmp) => TableAt::Local(tmp.path().join("lake").join(table).display().to_string()),
            None => TableAt::S3 {
                url: format!(
                    "{}/{table}",
                    self.config.dest.as_deref().expect("a destination")
                ),
                endpoint: self
                    .config
                    .endpoint
                    .as_deref()
                    .expect("an S3 lake has moto's endpoint")
                    .trim_start_matches("http://")
                    .to_owned(),
            },
        }
    }
}

/// Runs the sync steps on `lake` (whose `opp` table should have several buckets), calling
/// `check(spec, step)` after each commit that changes the table `spec`; the sink is closed
/// after the last step.
pub async fn sync_steps(lake: &Lake, check: impl AsyncFn(&TableSpec, &'static str)) {
    let ids: Vec<String> = (0..400).map(|i| format!("opp-{i:04}")).collect();
    let mut s = lake.sink();
    s.open(&specs()).await.unwrap();

    let rows: Vec<(&str, &str, i64)> = ids.iter().map(|i| (i.as_str(), "v1", 1)).collect();
    s.write(stamp(opp_rows("opp", &rows), T1)).await.unwrap();
    s.commit(&state(1)).await.unwrap();
    check(&opp(), "full sync").await;

    // Incremental: 10 updates, 2 new keys, 3 soft deletes.
    let upd: Vec<(&str, &str, i64)> = ids
        .iter()
        .step_by(40)
        .map(|i| (i.as_str(), "v2", 2))
        .chain([("opp-new-1", "v2", 2), ("opp-new-2", "v2", 2)])
        .collect();
    s.write(stamp(opp_rows("opp", &upd), T2)).await.unwrap();
    s.write(stamp(
        Change::Delete {
            table: "opp".into(),
            keys: keys(&["opp-0001", "opp-0002", "opp-0399"]),
        },
        T2,
    ))
    .await
    .unwrap();
    s.commit(&state(2)).await.unwrap();
    check(&opp(), "incremental").await;

    // Hard deletes: notes gone from a re-read parent.
    let notes: Vec<(String, String)> = ids[..50]
        .iter()
        .flat_map(|o| (0..2).map(move |k| (format!("note-{o}-{k}"), o.clone())))
        .collect();
    let nrows: Vec<(&str, &str, &str)> = notes
        .iter()
        .map(|(n, o)| (n.as_str(), o.as_str(), "body"))
        .collect();
    s.write(stamp(note_rows(&nrows), T2)).await.unwrap();
    s.commit(&state(3)).await.unwrap();
    s.write(stamp(
        Change::DeleteMissing {
            table: "note".into(),
            scope: Scope::Where {
                column: "opp_id".into(),
                values: vec![ids[3].clone(), ids[4].clone()],
            },
            keep: keys(&["note-opp-0003-0"]),
        },
        T3,
    ))
    .await
    .unwrap();
    s.commit(&state(4)).await.unwrap();
    check(&note(), "hard deletes").await;

    // A re-sync: every key again.
    let again: Vec<(&str, &str, i64)> = ids.iter().map(|i| (i.as_str(), "v3", 3)).collect();
    s.write(stamp(opp_rows("opp", &again), T3)).await.unwrap();
    s.commit(&state(5)).await.unwrap();
    check(&opp(), "re-sync").await;

    // A schema change: a new column, and a few keys updated with it.
    let evolved = evolved_opp();
    let tables = vec![evolved.clone(), note(), hist()];
    s.update_table(&evolved).await.unwrap();
    let change = opp_rows_spec(
        &evolved,
        &[
            ("opp-0005", "v4", 4),
            ("opp-0300", "v4", 4),
            ("opp-new-3", "v4", 4),
        ],
        Some(vec![Some(1), Some(2), Some(3)]),
    );
    s.write(stamp_with(&tables, change, T4)).await.unwrap();
    s.commit(&state(6)).await.unwrap();
    s.close().await.unwrap();
    check(&evolved, "schema change").await;
}

/// `opp` with the column the schema-change step adds.
pub fn evolved_opp() -> TableSpec {
    let mut evolved = opp();
    evolved
        .columns
        .push(ColumnSpec::new("extra", ColumnType::Int64));
    evolved
}

/// The rows a reader must see of `spec` as `id -> (value, deleted)`: the sink's committed
/// rows, with the value column `name` (tables that capture deletes) or `body`.
pub async fn expected_rows(
    lake: &Lake,
    spec: &TableSpec,
) -> std::collections::BTreeMap<String, (String, bool)> {
    let value = value_column(spec);
    scan(&lake.sink(), spec)
        .await
        .into_iter()
        .map(|(id, r)| {
            let name = r[value].as_str().unwrap_or("").to_owned();
            let gone = r.get("_fivetran_deleted").and_then(|d| d.as_bool());
            (id, (name, gone.unwrap_or(false)))
        })
        .collect()
}

/// The value column the readers compare of `spec`, and its deleted flag as SQL.
pub fn value_column(spec: &TableSpec) -> &'static str {
    if spec.capture_deletes { "name" } else { "body" }
}

/// The deleted flag of `spec` as an SQL expression.
pub fn deleted_expr(spec: &TableSpec) -> &'static str {
    if spec.capture_deletes {
        "_fivetran_deleted"
    } else {
        "false"
    }
}
