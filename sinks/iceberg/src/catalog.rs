//! The SQL catalog: the tables pyiceberg's `SqlCatalog` and iceberg-rust's SQL catalog keep
//! (`iceberg_tables`, `iceberg_namespace_properties`), on an SQLite file or in a PostgreSQL
//! database ([`crate::postgres`]), so that engines load the tables by name
//! (`<namespace>.<table>`) instead of by metadata path.
//!
//! After a table's metadata version is published, its row points at the new metadata file
//! (the previous one moves to `previous_metadata_location`). Registering the same location
//! again changes nothing, so a publication repeated after a crash is harmless.

use crate::postgres::PostgresCatalog;
use rusqlite::{Connection, OptionalExtension, params};
use sluice_lake::{LakeError, Result};
use std::path::{Path, PathBuf};

/// An SQL catalog.
#[derive(Debug, Clone)]
pub(crate) struct SqlCatalog {
    /// Where its tables are.
    pub(crate) db: Db,
    /// The catalog's name (`catalog_name`, the name readers give it).
    pub(crate) name: String,
    /// The namespace of every table.
    pub(crate) namespace: String,
}

/// The database of an SQL catalog.
#[derive(Debug, Clone)]
pub(crate) enum Db {
    /// An SQLite file (its calls block: they run on the blocking pool).
    Sqlite(PathBuf),
    /// A PostgreSQL database.
    Postgres(PostgresCatalog),
}

/// The catalog's tables, as pyiceberg's `SqlCatalog` creates them (the same text runs on
/// SQLite and PostgreSQL).
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS iceberg_tables (
    catalog_name VARCHAR(255) NOT NULL,
    table_namespace VARCHAR(255) NOT NULL,
    table_name VARCHAR(255) NOT NULL,
    metadata_location VARCHAR(1000),
    previous_metadata_location VARCHAR(1000),
    iceberg_type VARCHAR(5),
    PRIMARY KEY (catalog_name, table_namespace, table_name)
);
CREATE TABLE IF NOT EXISTS iceberg_namespace_properties (
    catalog_name VARCHAR(255) NOT NULL,
    namespace VARCHAR(255) NOT NULL,
    property_key VARCHAR(255) NOT NULL,
    property_value VARCHAR(1000) NOT NULL,
    PRIMARY KEY (catalog_name, namespace, property_key)
);";

fn err(path: &Path, e: impl std::fmt::Display) -> LakeError {
    LakeError::Config(format!("Iceberg SQL catalog {}: {e}", path.display()))
}

impl SqlCatalog {
    /// Points `table` at `metadata_location` (creating the catalog tables, the namespace and
    /// the table's row as needed).
    pub(crate) async fn register(&self, table: &str, metadata_location: &str) -> Result<()> {
        match &self.db {
            Db::Sqlite(path) => {
                let sqlite = self.sqlite(path);
                let (table, at) = (table.to_owned(), metadata_location.to_owned());
                blocking(move || sqlite.register(&table, &at)).await
            }
            Db::Postgres(pg) => {
                pg.register(&self.name, &self.namespace, table, metadata_location)
                    .await
            }
        }
    }

    /// The metadata location `table` points at, if it is registered.
    pub(crate) async fn location(&self, table: &str) -> Result<Option<String>> {
        match &self.db {
            Db::Sqlite(path) => {
                let sqlite = self.sqlite(path);
                let table = table.to_owned();
                blocking(move || sqlite.location(&table)).await
            }
            Db::Postgres(pg) => pg.location(&self.name, &self.namespace, table).await,
        }
    }
}

impl SqlCatalog {
    fn sqlite(&self, path: &Path) -> Sqlite {
        Sqlite {
            path: path.to_owned(),
            name: self.name.clone(),
            namespace: self.namespace.clone(),
        }
    }
}

/// Runs `f` on the blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LakeError::Config(format!("Iceberg SQL catalog: {e}")))?
}

/// An SQL catalog on an SQLite file.
#[derive(Debug, Clone)]
struct Sqlite {
    path: PathBuf,
    name: String,
    namespace: String,
}

impl Sqlite {
    fn open(&self) -> Result<Connection> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| err(&self.path, e))?;
        }
        let conn = Connection::open(&self.path).map_err(|e| err(&self.path, e))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| err(&self.path, e))?;
        conn.execute_batch(SCHEMA).map_err(|e| err(&self.path, e))?;
        Ok(conn)
    }

    fn register(&self, table: &str, metadata_location: &str) -> Result<()> {
        let conn = self.open()?;
        conn.execute(
            "INSERT OR IGNORE INTO iceberg_namespace_properties VALUES (?1, ?2, 'exists', 'true')",
            params![self.name, self.namespace],
        )
        .map_err(|e| err(&self.path, e))?;
        conn.execute(
            "INSERT INTO iceberg_tables (catalog_name, table_namespace, table_name, \
                 metadata_location, previous_metadata_location, iceberg_type) \
             VALUES (?1, ?2, ?3, ?4, NULL, 'TABLE') \
             ON CONFLICT (catalog_name, table_namespace, table_name) DO UPDATE SET \
                 previous_metadata_location = metadata_location, \
                 metadata_location = excluded.metadata_location \
             WHERE metadata_location IS NOT excluded.metadata_location",
            params![self.name, self.namespace, table, metadata_location],
        )
        .map_err(|e| err(&self.path, e))?;
        Ok(())
    }

    fn location(&self, table: &str) -> Result<Option<String>> {
        if !self.path.exists() {
            return Ok(None);
        }
        let conn = self.open()?;
        conn.query_row(
            "SELECT metadata_location FROM iceberg_tables \
             WHERE catalog_name = ?1 AND table_namespace = ?2 AND table_name = ?3",
            params![self.name, self.namespace, table],
            |r| r.get::<_, Option<String>>(0),
        )
        .optional()
        .map(Option::flatten)
        .map_err(|e| err(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registering_moves_the_previous_location_once() {
        let dir = tempfile::tempdir().unwrap();
        let c = Sqlite {
            path: dir.path().join("cat/catalog.db"),
            name: "sluice".into(),
            namespace: "lever".into(),
        };
        assert_eq!(c.location("opp").unwrap(), None);
        c.register("opp", "file:///l/opp/metadata/v1.metadata.json")
            .unwrap();
        c.register("opp", "file:///l/opp/metadata/v2.metadata.json")
            .unwrap();
        c.register("opp", "file:///l/opp/metadata/v2.metadata.json")
            .unwrap();
        assert_eq!(
            c.location("opp").unwrap().as_deref(),
            Some("file:///l/opp/metadata/v2.metadata.json")
        );
        let conn = Connection::open(&c.path).unwrap();
        let prev: Option<String> = conn
            .query_row(
                "SELECT previous_metadata_location FROM iceberg_tables",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            prev.as_deref(),
            Some("file:///l/opp/metadata/v1.metadata.json")
        );
        let ns: i64 = conn
            .query_row(
                "SELECT count(*) FROM iceberg_namespace_properties WHERE namespace = 'lever'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(ns, 1);
    }
}
