//! The `[sink]` settings of the `iceberg` sink: the lake's keys plus Iceberg's own.

use serde::Deserialize;
use serde_json::{Map, Value};
use sluice_lake::LakeConfig;

/// Settings of the `iceberg` sink: every key of [`LakeConfig`] plus the ones below.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "Map<String, Value>")]
pub struct IcebergSinkConfig {
    /// The keys every lake sink shares (`dest`, S3, file sizes, buckets, lease, manifests).
    pub lake: LakeConfig,
    /// Hours a file superseded by a commit stays in the table folder (default 168), so that
    /// readers holding an older metadata file keep working; later commits delete it.
    pub retention_hours: u64,
    /// Whether a commit records replaced and deleted rows in position-delete files (merge on
    /// read, the default: an incremental sync writes about what changed) or rewrites the
    /// files holding them (copy-on-write, `false`: for readers without delete-file support).
    pub position_deletes: bool,
    /// With position deletes: the share of a data file's rows that may be deleted before the
    /// next commit touching it rewrites it without them (default 0.25).
    pub max_deleted_share: f64,
    /// Where tables are registered besides their folders (see [`Catalog`]).
    pub catalog: Catalog,
    /// The catalog's name, as readers name it (`catalog_name` in the SQL catalog; default
    /// `sluice`).
    pub catalog_name: String,
    /// The namespace of the tables in the catalog (default `default`).
    pub namespace: String,
}

/// Where the `iceberg` sink registers its tables.
#[derive(Debug, Clone, PartialEq)]
pub enum Catalog {
    /// Nowhere but the table folders: readers find a table by its path (its
    /// `metadata/version-hint.text`), as a filesystem catalog does. The default.
    Filesystem,
    /// The SQL catalog of pyiceberg and iceberg-rust, on this SQLite file.
    Sqlite(std::path::PathBuf),
    /// The same SQL catalog in this PostgreSQL database.
    Postgres(crate::PostgresCatalog),
}

/// Default of [`IcebergSinkConfig::retention_hours`] (7 days, as the `delta` sink).
pub const DEFAULT_RETENTION_HOURS: u64 = 168;

/// Default of [`IcebergSinkConfig::max_deleted_share`] (as the `delta` sink's).
pub const DEFAULT_MAX_DELETED_SHARE: f64 = 0.25;

impl Default for IcebergSinkConfig {
    fn default() -> Self {
        IcebergSinkConfig {
            lake: LakeConfig::default(),
            retention_hours: DEFAULT_RETENTION_HOURS,
            position_deletes: true,
            max_deleted_share: DEFAULT_MAX_DELETED_SHARE,
            catalog: Catalog::Filesystem,
            catalog_name: "sluice".to_owned(),
            namespace: "default".to_owned(),
        }
    }
}

impl IcebergSinkConfig {
    /// A config for `dest` with every other setting at its default.
    pub fn new(dest: impl Into<String>) -> Self {
        IcebergSinkConfig {
            lake: LakeConfig::new(dest),
            ..Default::default()
        }
    }
}

/// Takes the Iceberg keys out of the section, then reads the rest as the lake's keys (which
/// refuse unknown ones).
impl TryFrom<Map<String, Value>> for IcebergSinkConfig {
    type Error = String;
    fn try_from(mut map: Map<String, Value>) -> Result<Self, String> {
        let mut config = IcebergSinkConfig::default();
        if let Some(v) = map.remove("retention_hours") {
            config.retention_hours =
                serde_json::from_value(v).map_err(|e| format!("sink.retention_hours: {e}"))?;
        }
        if let Some(v) = map.remove("position_deletes") {
            config.position_deletes =
                serde_json::from_value(v).map_err(|e| format!("sink.position_deletes: {e}"))?;
        }
        if let Some(v) = map.remove("max_deleted_share") {
            let share: f64 =
                serde_json::from_value(v).map_err(|e| format!("sink.max_deleted_share: {e}"))?;
            if !(share > 0.0 && share <= 1.0) {
                return Err("sink.max_deleted_share must be above 0 and at most 1".to_owned());
            }
            config.max_deleted_share = share;
        }
        let kind = take_string(&mut map, "catalog")?;
        let uri = take_string(&mut map, "catalog_uri")?;
        if let Some(name) = take_string(&mut map, "catalog_name")? {
            config.catalog_name = name;
        }
        if let Some(ns) = take_string(&mut map, "namespace")? {
            if ns.is_empty() || ns.contains('.') {
                return Err(format!(
                    "sink.namespace `{ns}`: must be one non-empty name without dots"
                ));
            }
            config.namespace = ns;
        }
        config.catalog = match (kind.as_deref().unwrap_or("filesystem"), uri) {
            ("filesystem", None) => Catalog::Filesystem,
            ("filesystem", Some(_)) => {
                return Err("sink.catalog_uri needs sink.catalog = \"sql\"".to_owned());
            }
            ("sql", Some(uri)) if is_postgres(&uri) => {
                Catalog::Postgres(crate::PostgresCatalog::from_uri(&uri)?)
            }
            ("sql", uri) => Catalog::Sqlite(sqlite_path(uri.as_deref(), map.get("dest"))?),
            (other, _) => {
                return Err(format!(
                    "sink.catalog `{other}`: use \"filesystem\" (the default) or \"sql\""
                ));
            }
        };
        if map.contains_key("table_format") {
            return Err(sluice_lake::TABLE_FORMAT_GONE.to_owned());
        }
        config.lake = serde_json::from_value(Value::Object(map)).map_err(|e| e.to_string())?;
        Ok(config)
    }
}

/// Removes `key` from `map` as a string.
fn take_string(map: &mut Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match map.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(format!("sink.{key}: expected a string, found {other}")),
    }
}

/// Whether `uri` is a PostgreSQL URL (`postgresql://`, `postgres://`, with or without
/// SQLAlchemy's `+driver`).
fn is_postgres(uri: &str) -> bool {
    uri.split_once("://").is_some_and(|(scheme, _)| {
        let scheme = scheme.split_once('+').map_or(scheme, |(s, _)| s);
        scheme == "postgresql" || scheme == "postgres"
    })
}

/// The SQLite file of an SQL catalog: `sqlite:///abs/path.db`, `sqlite:///rel.db` or a
/// plain path; without a URI, `iceberg_catalog.db` in a local destination's folder.
fn sqlite_path(uri: Option<&str>, dest: Option<&Value>) -> Result<std::path::PathBuf, String> {
    let Some(uri) = uri else {
        let dest = dest
            .and_then(Value::as_str)
            .unwrap_or(sluice_lake::DEFAULT_DEST);
        if dest.contains("://") && !dest.starts_with("file://") {
            return Err(format!(
                "sink.catalog_uri: a `sql` catalog of the remote destination `{dest}` needs a \
                 local SQLite file (sink.catalog_uri = \"sqlite:///path/catalog.db\")"
            ));
        }
        let dir = dest.strip_prefix("file://").unwrap_or(dest);
        return Ok(std::path::Path::new(dir).join("iceberg_catalog.db"));
    };
    if let Some(path) = uri.strip_prefix("sqlite:///") {
        // SQLAlchemy's forms: `sqlite:////abs/path.db` and `sqlite:///relative.db`.
        return Ok(std::path::PathBuf::from(path));
    }
    if uri.contains("://") {
        return Err(format!(
            "sink.catalog_uri `{}`: use sqlite:///path/catalog.db, \
             postgresql://user@host:port/dbname or a file path",
            uri.split_once("://").map_or("", |(scheme, _)| scheme)
        ));
    }
    Ok(std::path::PathBuf::from(uri))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: serde_json::Value) -> Result<IcebergSinkConfig, String> {
        match v {
            Value::Object(m) => IcebergSinkConfig::try_from(m),
            _ => unreachable!(),
        }
    }

    #[test]
    fn catalogs_parse_and_bad_ones_say_why() {
        let c = parse(serde_json::json!({"dest": "/l"})).unwrap();
        assert_eq!(c.catalog, Catalog::Filesystem);
        let c = parse(serde_json::json!({"dest": "/l", "catalog": "sql"})).unwrap();
        assert_eq!(c.catalog, Catalog::Sqlite("/l/iceberg_catalog.db".into()));
        let c = parse(serde_json::json!({
            "dest": "s3://b/p", "catalog": "sql", "catalog_uri": "sqlite:////tmp/c.db",
            "namespace": "lever", "catalog_name": "lake"
        }))
        .unwrap();
        assert_eq!(c.catalog, Catalog::Sqlite("/tmp/c.db".into()));
        for uri in [
            "postgresql://cat:pw-x@db:5433/lake",
            "postgres://cat:pw-x@db:5433/lake",
            "postgresql+psycopg2://cat:pw-x@db:5433/lake?sslmode=disable",
        ] {
            let c = parse(serde_json::json!({
                "dest": "s3://b/p", "catalog": "sql", "catalog_uri": uri
            }))
            .unwrap();
            let Catalog::Postgres(pg) = &c.catalog else {
                panic!("{uri}: {:?}", c.catalog)
            };
            assert_eq!(pg.url(), "postgresql://cat@db:5433/lake");
            assert!(!format!("{c:?}").contains("pw-x"), "{c:?}");
        }
        assert_eq!(
            (c.namespace.as_str(), c.catalog_name.as_str()),
            ("lever", "lake")
        );
        for (bad, says) in [
            (
                serde_json::json!({"dest": "s3://b/p", "catalog": "sql"}),
                "needs a local SQLite",
            ),
            (
                serde_json::json!({"catalog": "sql", "catalog_uri": "mysql://u:pw-x@h/db"}),
                "postgresql://",
            ),
            (
                serde_json::json!({"catalog": "sql", "catalog_uri": "postgresql://u:pw-x@h/db?sslmode=require"}),
                "sslmode=require",
            ),
            (serde_json::json!({"catalog": "hive"}), "`hive`"),
            (
                serde_json::json!({"catalog_uri": "/x.db"}),
                "needs sink.catalog",
            ),
            (serde_json::json!({"namespace": "a.b"}), "without dots"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(
                e.contains(says) && !e.contains('\n') && !e.contains("pw-x"),
                "{e}"
            );
        }
    }
}
