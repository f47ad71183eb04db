//! The conformance suite every sink runs on itself: commit/reopen, abort, upsert by key, soft
//! and hard deletes, scoped and grand-child deletes, history mode, schema evolution, type
//! conflicts and the lease. Call [`run`] with a closure returning fresh sessions on one empty
//! destination.

use crate::rows::{Row, batch_rows, rows_by_key};
use crate::test_source::TestSource;
use sluice_core::arrow::array::{
    ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use sluice_core::{
    Change, ColumnSpec, ColumnType, Cursor, ErrorKind, Plan, Scope, Sink, SinkChange, State,
    SyncKind, SyncSettings, TableSpec,
};
use std::collections::BTreeMap;
use std::sync::Arc;

const T1: i64 = 1_700_000_000_000_000;
const T2: i64 = T1 + 60_000_000;
const T3: i64 = T2 + 60_000_000;

fn specs() -> Vec<TableSpec> {
    let mut tables = TestSource::tables();
    let mut history = tables[0].clone();
    history.name = "parent_history".into();
    history.history = true;
    let mut grandchild = TableSpec::new(
        "grandchild",
        SyncKind::Child {
            parent: "child".into(),
            parent_column: "child_id".into(),
        },
    )
    .column(ColumnSpec::new("id", ColumnType::String))
    .column(ColumnSpec::new("child_id", ColumnType::String))
    .key(["id"]);
    grandchild.bucket_column = Some("child_id".into());
    tables.push(history);
    tables.push(grandchild);
    tables
}

fn spec(name: &str) -> TableSpec {
    specs()
        .into_iter()
        .find(|t| t.name == name)
        .expect("known table")
}

fn s(v: &[&str]) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(v.iter().copied()))
}

fn parent_rows(table: &str, rows: &[(&str, &str, i64)]) -> Change {
    let spec = spec(table);
    let batch = RecordBatch::try_new(
        spec.source_schema(),
        vec![
            s(&rows.iter().map(|r| r.0).collect::<Vec<_>>()),
            s(&rows.iter().map(|r| r.1).collect::<Vec<_>>()),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.2 * 1000))
                    .with_timezone("UTC"),
            ),
        ],
    )
    .expect("valid batch");
    Change::Upsert {
        table: table.into(),
        batch,
    }
}

fn id_batch(column: &str, ids: &[&str]) -> RecordBatch {
    RecordBatch::try_from_iter(vec![(column, s(ids))]).expect("valid keys")
}

fn stamp(change: Change, at: i64) -> SinkChange {
    let plan = Plan::new(&specs(), &SyncSettings::default()).expect("plan");
    SinkChange {
        change: plan.apply(change, at).expect("transform").expect("enabled"),
        synced_at_us: at,
    }
}

fn state(cursor: i64) -> State {
    let mut s = State::new("conformance");
    s.table_mut("parent").cursor = Some(Cursor::Int(cursor));
    s
}

async fn scan(sink: &dyn Sink, table: &str) -> BTreeMap<String, Row> {
    let spec = spec(table);
    let batches = sink.scan(&spec).await.expect("scan");
    let rows: Vec<Row> = batches.iter().flat_map(batch_rows).collect();
    let owned = spec.storage_key();
    let key: Vec<&str> = owned.iter().map(String::as_str).collect();
    rows_by_key(&rows, &key)
}

fn val(rows: &BTreeMap<String, Row>, key: &str, col: &str) -> serde_json::Value {
    rows.get(key)
        .unwrap_or_else(|| panic!("row {key} missing"))
        .get(col)
        .unwrap_or_else(|| panic!("column {col} missing"))
        .clone()
}

/// Runs the whole suite. `make` must return a new session on the same destination each call;
/// the destination must be empty at the start.
pub async fn run<F>(make: F)
where
    F: Fn() -> Box<dyn Sink>,
{
    let tables = specs();

    // 1. An empty destination has no state.
    let mut sink = make();
    assert!(
        sink.read_state().await.expect("read_state").is_none(),
        "fresh destination has state"
    );
    assert!(sink.open(&tables).await.expect("open").is_none());

    // 2. Commit, then a new session sees data and state.
    sink.write(stamp(
        parent_rows("parent", &[("p1", "one", 1), ("p2", "two", 1)]),
        T1,
    ))
    .await
    .unwrap();
    sink.write(stamp(
        parent_rows("parent_history", &[("p1", "one", 1)]),
        T1,
    ))
    .await
    .unwrap();
    let child = RecordBatch::try_new(
        spec("child").source_schema(),
        vec![
            s(&["c1", "c2", "c3"]),
            s(&["p1", "p1", "p2"]),
            Arc::new(sluice_core::arrow::array::Float64Array::from(vec![
                1.0, 2.0, 3.0,
            ])),
        ],
    )
    .unwrap();
    sink.write(stamp(
        Change::Upsert {
            table: "child".into(),
            batch: child,
        },
        T1,
    ))
    .await
    .unwrap();
    let grandchild = RecordBatch::try_new(
        spec("grandchild").source_schema(),
        vec![s(&["g1", "g2", "g3"]), s(&["c1", "c2", "c3"])],
    )
    .unwrap();
    sink.write(stamp(
        Change::Upsert {
            table: "grandchild".into(),
            batch: grandchild,
        },
        T1,
    ))
    .await
    .unwrap();
    let lookup = RecordBatch::try_new(
        spec("lookup").source_schema(),
        vec![s(&["a", "b"]), s(&["A", "B"])],
    )
    .unwrap();
    sink.write(stamp(
        Change::Upsert {
            table: "lookup".into(),
            batch: lookup,
        },
        T1,
    ))
    .await
    .unwrap();
    let report = sink.commit(&state(1)).await.expect("commit");
    assert_eq!(
        report.tables["parent"].inserted, 2,
        "commit report counts inserts"
    );
    sink.close().await.expect("close");

    let mut sink = make();
    assert_eq!(
        sink.read_state().await.unwrap(),
        Some(state(1)),
        "state survives a new session"
    );
    let parent = scan(sink.as_ref(), "parent").await;
    assert_eq!(parent.len(), 2);
    assert_eq!(val(&parent, "p1", "name"), "one");
    assert_eq!(val(&parent, "p1", "_fivetran_synced"), T1);
    assert_eq!(val(&parent, "p1", "updated_at"), 1000);

    // 3. Abort discards staged changes and keeps the previous commit.
    assert_eq!(sink.open(&tables).await.unwrap(), Some(state(1)));
    sink.write(stamp(parent_rows("parent", &[("p3", "three", 2)]), T2))
        .await
        .unwrap();
    sink.abort().await.expect("abort");
    let sink2 = make();
    assert_eq!(
        scan(sink2.as_ref(), "parent").await.len(),
        2,
        "abort leaked data"
    );
    assert_eq!(
        sink2.read_state().await.unwrap(),
        Some(state(1)),
        "abort moved state"
    );
    drop(sink2);

    // 4. The lease excludes a second run.
    let mut a = make();
    a.open(&tables).await.expect("first open");
    let mut b = make();
    let err = b
        .open(&tables)
        .await
        .expect_err("second concurrent open must fail");
    assert_eq!(
        err.kind(),
        ErrorKind::Destination,
        "lease error kind: {err}"
    );
    a.close().await.unwrap();
    drop(a);

    // 5. Upserts replace by key; deletes are soft where captured, hard elsewhere; scoped and
    //    grand-child deletes; history keeps versions.
    b.open(&tables).await.expect("open after release");
    b.write(stamp(
        parent_rows("parent", &[("p1", "uno", 2), ("p3", "three", 2)]),
        T2,
    ))
    .await
    .unwrap();
    b.write(stamp(
        parent_rows("parent_history", &[("p1", "uno", 2)]),
        T2,
    ))
    .await
    .unwrap();
    b.write(stamp(
        Change::DeleteMissing {
            table: "lookup".into(),
            scope: Scope::All,
            keep: id_batch("id", &["b"]),
        },
        T2,
    ))
    .await
    .unwrap();
    // c2 vanished from p1: delete it and, via the child table, its grand-children.
    b.write(stamp(
        Change::DeleteMissing {
            table: "grandchild".into(),
            scope: Scope::Via {
                column: "child_id".into(),
                parent_table: "child".into(),
                parent_column: "id".into(),
                parent_scope: Box::new(Scope::Where {
                    column: "parent_id".into(),
                    values: vec!["p1".into()],
                }),
            },
            keep: id_batch("id", &["g1"]),
        },
        T2,
    ))
    .await
    .unwrap();
    b.write(stamp(
        Change::DeleteMissing {
            table: "child".into(),
            scope: Scope::Where {
                column: "parent_id".into(),
                values: vec!["p1".into()],
            },
            keep: id_batch("id", &["c1"]),
        },
        T2,
    ))
    .await
    .unwrap();
    b.write(stamp(
        Change::Delete {
            table: "parent".into(),
            keys: id_batch("id", &["p2"]),
        },
        T2,
    ))
    .await
    .unwrap();
    b.commit(&state(2)).await.expect("commit 2");
    b.close().await.unwrap();
    drop(b);

    let sink = make();
    let parent = scan(sink.as_ref(), "parent").await;
    assert_eq!(
        parent.len(),
        2,
        "parent has no delete flag: p2 hard-deleted, p3 added"
    );
    assert_eq!(val(&parent, "p1", "name"), "uno");
    assert_eq!(val(&parent, "p1", "_fivetran_synced"), T2);
    let lookup = scan(sink.as_ref(), "lookup").await;
    assert_eq!(
        val(&lookup, "a", "_fivetran_deleted"),
        true,
        "gone lookup row soft-deleted"
    );
    assert_eq!(val(&lookup, "a", "_fivetran_synced"), T2);
    assert_eq!(val(&lookup, "b", "_fivetran_deleted"), false);
    let child = scan(sink.as_ref(), "child").await;
    assert_eq!(
        child.keys().collect::<Vec<_>>(),
        ["c1", "c3"],
        "scoped delete removed only c2"
    );
    let grandchild = scan(sink.as_ref(), "grandchild").await;
    assert_eq!(
        grandchild.keys().collect::<Vec<_>>(),
        ["g1", "g3"],
        "Via scope removed g2 only"
    );
    let history = scan(sink.as_ref(), "parent_history").await;
    assert_eq!(history.len(), 2, "history keeps both versions");
    let versions: Vec<(&serde_json::Value, &serde_json::Value)> = history
        .values()
        .map(|r| (&r["name"], &r["_fivetran_active"]))
        .collect();
    assert!(versions.contains(&(&"one".into(), &false.into())));
    assert!(versions.contains(&(&"uno".into(), &true.into())));
    drop(sink);

    // 6. Schema evolution: a new column; older rows read NULL.
    let mut sink = make();
    let mut tables2 = tables.clone();
    sink.open(&tables2).await.unwrap();
    let mut evolved = spec("lookup");
    evolved
        .columns
        .push(ColumnSpec::new("extra", ColumnType::Int64));
    sink.update_table(&evolved)
        .await
        .expect("adding a column is allowed");
    let batch = RecordBatch::try_new(
        evolved.source_schema(),
        vec![s(&["c"]), s(&["C"]), Arc::new(Int64Array::from(vec![7]))],
    )
    .unwrap();
    let plan = Plan::new(&[evolved.clone()], &SyncSettings::default()).unwrap();
    let change = plan
        .apply(
            Change::Upsert {
                table: "lookup".into(),
                batch,
            },
            T3,
        )
        .unwrap()
        .unwrap();
    sink.write(SinkChange {
        change,
        synced_at_us: T3,
    })
    .await
    .unwrap();
    sink.commit(&state(3)).await.expect("commit evolved");
    sink.close().await.unwrap();
    drop(sink);
    let sink = make();
    let batches = sink.scan(&evolved).await.unwrap();
    let rows: Vec<Row> = batches.iter().flat_map(batch_rows).collect();
    let rows = rows_by_key(&rows, &["id"]);
    assert_eq!(rows["c"]["extra"], 7);
    assert_eq!(rows["b"]["extra"], serde_json::Value::Null);
    drop(sink);

    // 7. An incompatible type change is an error that leaves data intact.
    let mut sink = make();
    for t in &mut tables2 {
        if t.name == "lookup" {
            *t = evolved.clone();
            t.columns.last_mut().unwrap().ty = ColumnType::String;
        }
    }
    let err = sink
        .open(&tables2)
        .await
        .expect_err("type change must be rejected");
    assert!(
        matches!(err.kind(), ErrorKind::Destination | ErrorKind::Config),
        "{err}"
    );
    drop(sink);
    let sink = make();
    assert_eq!(sink.read_state().await.unwrap(), Some(state(3)));
    assert_eq!(scan(sink.as_ref(), "parent").await.len(), 2);
}
