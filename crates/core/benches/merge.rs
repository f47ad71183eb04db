#![allow(missing_docs)] // criterion macros generate undocumented items
//! Criterion benchmark of the shared merge: a 100k-row table receiving a 1% upsert, a full
//! re-import of the same size, and one commit of a first sync (100 pages of 1,000 child rows
//! into an empty table, each page followed by its `DeleteMissing` scoped to its 100 parents).

use criterion::{Criterion, criterion_group, criterion_main};
use sluice_core::arrow::array::{
    ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use sluice_core::arrow::datatypes::{Field, Schema};
use sluice_core::sink_support::merge;
use sluice_core::{Change, ColumnSpec, ColumnType, Scope, SinkChange, SyncKind, TableSpec};
use std::hint::black_box;
use std::sync::Arc;

fn spec() -> TableSpec {
    let mut t = TableSpec::new("note", SyncKind::Reimport)
        .column(ColumnSpec::new("id", ColumnType::String))
        .column(ColumnSpec::new("opportunity_id", ColumnType::String))
        .column(ColumnSpec::new("text", ColumnType::String))
        .column(ColumnSpec::new("score", ColumnType::Int64))
        .key(["id"]);
    t.capture_deletes = true;
    t
}

fn batch(spec: &TableSpec, from: usize, n: usize, version: i64) -> RecordBatch {
    let mut fields: Vec<Field> = spec
        .source_schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(
        "_fivetran_synced",
        ColumnType::Timestamp.arrow_type(),
        false,
    ));
    let ids: Vec<String> = (from..from + n).map(|i| format!("note-{i:08}")).collect();
    let opps: Vec<String> = (from..from + n)
        .map(|i| format!("opp-{:08}", i / 10))
        .collect();
    let texts: Vec<String> = (from..from + n)
        .map(|i| format!("a note about candidate {i}, version {version}"))
        .collect();
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(ids)),
        Arc::new(StringArray::from_iter_values(opps)),
        Arc::new(StringArray::from_iter_values(texts)),
        Arc::new(Int64Array::from_iter_values((0..n as i64).map(|i| i % 4))),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values((0..n).map(|_| version))
                .with_timezone("UTC"),
        ),
    ];
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap()
}

fn bench(c: &mut Criterion) {
    let t = spec();
    let (existing, _) = merge(
        &t,
        &[],
        &[SinkChange {
            change: Change::Upsert {
                table: "note".into(),
                batch: batch(&t, 0, 100_000, 1),
            },
            synced_at_us: 1,
        }],
    )
    .unwrap();
    let small = SinkChange {
        change: Change::Upsert {
            table: "note".into(),
            batch: batch(&t, 50_000, 1_000, 2),
        },
        synced_at_us: 2,
    };
    let full = SinkChange {
        change: Change::Upsert {
            table: "note".into(),
            batch: batch(&t, 0, 100_000, 2),
        },
        synced_at_us: 2,
    };
    let mut g = c.benchmark_group("merge_100k");
    g.sample_size(10);
    g.bench_function("upsert_1pct", |b| {
        b.iter(|| {
            merge(
                &t,
                black_box(std::slice::from_ref(&existing)),
                std::slice::from_ref(&small),
            )
            .unwrap()
        })
    });
    g.bench_function("upsert_all", |b| {
        b.iter(|| {
            merge(
                &t,
                black_box(std::slice::from_ref(&existing)),
                std::slice::from_ref(&full),
            )
            .unwrap()
        })
    });
    // A first sync's commit: pages of children, each with the delete-missing of its parents.
    let mut pages = Vec::new();
    for p in 0..100 {
        let rows = batch(&t, p * 1_000, 1_000, 1);
        let keep = rows.project(&[0]).unwrap();
        let parents = (p * 100..(p + 1) * 100)
            .map(|i| format!("opp-{i:08}"))
            .collect();
        pages.push(SinkChange {
            change: Change::Upsert {
                table: "note".into(),
                batch: rows,
            },
            synced_at_us: 1,
        });
        pages.push(SinkChange {
            change: Change::DeleteMissing {
                table: "note".into(),
                scope: Scope::Where {
                    column: "opportunity_id".into(),
                    values: parents,
                },
                keep,
            },
            synced_at_us: 1,
        });
    }
    g.bench_function("first_sync_100_pages", |b| {
        b.iter(|| merge(&t, &[], black_box(&pages)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
