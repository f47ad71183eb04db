//! The `iceberg` sink's SQL catalog on PostgreSQL (a server started per test, see
//! `pg_server.rs`): pyiceberg's `SqlCatalog` on the same database loads every table by name
//! and reads the sink's rows at every step; a lost registration is made again; connection
//! and authentication failures are one-line destination errors without the password.

use crate::common::*;
use crate::pg_server::{PG_PASSWORD, PgServer};
use crate::reader_steps::*;
use sluice_core::{Sink, TableSpec};
use sluice_sink_iceberg::{Catalog, PostgresCatalog};
use std::collections::BTreeMap;

/// A local iceberg lake whose SQL catalog is in `pg` (namespace `lever`).
fn lake_on(pg: &PgServer) -> Lake {
    let mut lake = Lake::local().iceberg();
    let catalog = PostgresCatalog::from_uri(&pg.url("postgresql", PG_PASSWORD)).unwrap();
    lake.iceberg_catalog = Catalog::Postgres(catalog);
    lake
}

/// Runs `code` (Python, with `catalog`: pyiceberg's `SqlCatalog` "sluice" on `pg` through
/// psycopg2) and parses the JSON it prints.
fn with_pyiceberg(pg: &PgServer, code: &str) -> serde_json::Value {
    let script = format!(
        r#"
import json
from pyiceberg.catalog.sql import SqlCatalog
catalog = SqlCatalog("sluice", uri={uri:?})
{code}
"#,
        uri = pg.url("postgresql+psycopg2", PG_PASSWORD)
    );
    python_json("pyiceberg's SqlCatalog on PostgreSQL", &script)
}

/// `lever.<table>` as pyiceberg's `SqlCatalog` loads it by name: its metadata location and
/// rows as `id -> (value, deleted)`.
fn load_by_name(pg: &PgServer, spec: &TableSpec) -> (String, BTreeMap<String, (String, bool)>) {
    let deleted = if spec.capture_deletes {
        "bool(r[\"_fivetran_deleted\"])"
    } else {
        "False"
    };
    let v = with_pyiceberg(
        pg,
        &format!(
            r#"
t = catalog.load_table("lever.{table}")
rows = [[r["id"], r["{value}"], {deleted}] for r in t.scan().to_arrow().to_pylist()]
print(json.dumps({{"location": t.metadata_location, "rows": rows}}))
"#,
            table = spec.name,
            value = value_column(spec),
        ),
    );
    let mut rows = BTreeMap::new();
    for r in v["rows"].as_array().unwrap() {
        let id = r[0].as_str().unwrap().to_owned();
        let value = r[1].as_str().unwrap_or("").to_owned();
        let prev = rows.insert(id.clone(), (value, r[2].as_bool().unwrap()));
        assert!(prev.is_none(), "pyiceberg reads {id} twice");
    }
    (v["location"].as_str().unwrap().to_owned(), rows)
}

/// The newest metadata file of `table` (named by its version hint), as a location ending.
fn newest_metadata(lake: &Lake, table: &str) -> String {
    let dir = lake.tmp.as_ref().unwrap().path().join("lake").join(table);
    let v = std::fs::read_to_string(dir.join("metadata/version-hint.text")).unwrap();
    format!("/{table}/metadata/v{}.metadata.json", v.trim())
}

/// With `catalog = "sql"` on PostgreSQL, after each sync step (full sync, incremental syncs
/// with updates, soft and hard deletes, a re-sync, a schema change) pyiceberg's `SqlCatalog`
/// (SQLAlchemy and psycopg2 on the same database) loads `lever.<table>` by name at its newest
/// version and reads exactly the sink's rows. A registration lost (the catalog rows deleted)
/// is made again by the next open, and the previous location moves to
/// `previous_metadata_location`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyiceberg_loads_every_step_by_name_from_the_postgres_catalog() {
    if !python_modules_available("pyiceberg, pyarrow, sqlalchemy, psycopg2", PIP) {
        return;
    }
    let Some(pg) = PgServer::start() else { return };
    let mut lake = lake_on(&pg);
    lake.config.table_buckets.insert("opp".into(), 4);
    sync_steps(&lake, async |spec: &TableSpec, step: &'static str| {
        let expected = expected_rows(&lake, spec).await;
        assert!(!expected.is_empty(), "{step}: the sink holds rows");
        let (location, rows) = load_by_name(&pg, spec);
        assert!(
            location.ends_with(&newest_metadata(&lake, &spec.name)),
            "{step}: {location}"
        );
        assert_eq!(rows, expected, "{step}: pyiceberg differs from the sink");
    })
    .await;

    let listed = with_pyiceberg(
        &pg,
        r#"print(json.dumps(sorted(".".join(t) for t in catalog.list_tables("lever"))))"#,
    );
    assert_eq!(listed, serde_json::json!(["lever.note", "lever.opp"]));
    let client = pg.client().await;
    let prev: String = client
        .query_one(
            "SELECT previous_metadata_location FROM iceberg_tables \
             WHERE catalog_name = 'sluice' AND table_namespace = 'lever' AND table_name = 'opp'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let newest = newest_metadata(&lake, "opp");
    let version: u64 = newest
        .trim_end_matches(".metadata.json")
        .rsplit_once("/v")
        .unwrap()
        .1
        .parse()
        .unwrap();
    assert!(
        prev.ends_with(&format!("/opp/metadata/v{}.metadata.json", version - 1)),
        "{prev}"
    );

    // The registrations lost: the next open makes them again.
    client
        .execute("DELETE FROM iceberg_tables", &[])
        .await
        .unwrap();
    let mut s = lake.sink();
    s.open(&specs()).await.unwrap();
    s.close().await.unwrap();
    // `note` last changed three commits before the newest manifest, which no longer holds
    // its metadata text: registering it needs only its location.
    for spec in [evolved_opp(), note()] {
        let (location, rows) = load_by_name(&pg, &spec);
        assert!(
            location.ends_with(&newest_metadata(&lake, &spec.name)),
            "{location}"
        );
        assert_eq!(rows, expected_rows(&lake, &spec).await, "{}", spec.name);
    }
}

const PIP: &str = "'pyiceberg[pyarrow,sql-postgres]' pyarrow psycopg2-binary";

/// Two commits to `lake` whose catalog cannot be reached: the first is committed (its
/// version is published by the next commit or run, as after a crash); the second, which
/// first publishes the versions left behind, fails. Returns its error.
async fn failing_commit(lake: &Lake) -> sluice_core::Error {
    let mut s = lake.sink();
    s.open(&specs()).await.unwrap();
    s.write(stamp(opp_rows("opp", &[("o1", "a", 1)]), T1))
        .await
        .unwrap();
    s.commit(&state(1)).await.unwrap();
    s.write(stamp(opp_rows("opp", &[("o2", "b", 1)]), T2))
        .await
        .unwrap();
    let e = s.commit(&state(2)).await.unwrap_err();
    s.close().await.unwrap();
    e
}

/// A wrong password: the commit fails with a one-line destination error (exit code 5)
/// naming the catalog without any password; the next run with the right one publishes the
/// committed version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_postgres_password_is_a_one_line_destination_error() {
    let Some(pg) = PgServer::start() else { return };
    let mut lake = lake_on(&pg);
    let wrong = "not-the-pw-Zx9";
    lake.iceberg_catalog =
        Catalog::Postgres(PostgresCatalog::from_uri(&pg.url("postgresql", wrong)).unwrap());
    let e = failing_commit(&lake).await;
    let text = e.to_string();
    assert_eq!(e.exit_code(), 5, "{text}");
    assert!(!text.contains('\n'), "{text}");
    assert!(
        !text.contains(wrong) && !text.contains(PG_PASSWORD),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "postgresql://sluice@127.0.0.1:{}/postgres",
            pg.port
        )) && text.contains("password authentication failed"),
        "{text}"
    );
    assert!(
        !format!("{:?}", lake.iceberg_catalog).contains(wrong),
        "{:?}",
        lake.iceberg_catalog
    );

    // The right password: the next open publishes the committed version.
    lake.iceberg_catalog =
        Catalog::Postgres(PostgresCatalog::from_uri(&pg.url("postgresql", PG_PASSWORD)).unwrap());
    let mut s = lake.sink();
    s.open(&specs()).await.unwrap();
    s.close().await.unwrap();
    let at: String = pg
        .client()
        .await
        .query_one(
            "SELECT metadata_location FROM iceberg_tables WHERE table_name = 'opp'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(at.ends_with(&newest_metadata(&lake, "opp")), "{at}");
}

/// No server at the catalog's address: a one-line destination error naming the catalog,
/// without the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_postgres_catalog_is_a_one_line_destination_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let mut lake = Lake::local().iceberg();
    let url = format!("postgresql://cat:pw-Q81@127.0.0.1:{port}/lake");
    lake.iceberg_catalog = Catalog::Postgres(PostgresCatalog::from_uri(&url).unwrap());
    let e = failing_commit(&lake).await;
    let text = e.to_string();
    assert_eq!(e.exit_code(), 5, "{text}");
    assert!(
        !text.contains('\n')
            && !text.contains("pw-Q81")
            && text.contains(&format!(
                "Iceberg SQL catalog postgresql://cat@127.0.0.1:{port}/lake: "
            ))
            && text.contains("error connecting to server"),
        "{text}"
    );
}

/// A server that accepts connections and never answers: each catalog call gives up after 6
/// connect timeouts (here `connect_timeout=1`: 6 s) with a one-line destination error, so a
/// run does not hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_postgres_catalog_times_out_with_a_destination_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Holds every accepted connection open, silent, until the test ends.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    let mut lake = Lake::local().iceberg();
    let url = format!("postgresql://cat:pw-T5@127.0.0.1:{port}/lake?connect_timeout=1");
    lake.iceberg_catalog = Catalog::Postgres(PostgresCatalog::from_uri(&url).unwrap());
    let e = failing_commit(&lake).await;
    let text = e.to_string();
    assert_eq!(e.exit_code(), 5, "{text}");
    assert!(
        !text.contains('\n') && !text.contains("pw-T5") && text.contains("no answer within 6 s"),
        "{text}"
    );
}
