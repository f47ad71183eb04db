//! Iceberg table metadata (format 2) for one table of the lake, and its publication.
//!
//! Each manifest commit that changes a table makes metadata version `N` of it: one snapshot
//! (sequence number `N`) whose manifest list names one manifest listing every live data
//! file and, when rows were deleted by position, a delete manifest listing every live
//! position-delete file. [`next_version`] computes the text of `metadata/vN.metadata.json` before the
//! manifest commit (kept in the manifest until published); [`publish`] writes the manifest,
//! the manifest list, then that text, then `metadata/version-hint.text`, after it. Every
//! name and byte is derived from the version and the manifest entry, so a publication
//! repeated after a crash writes the same objects.
//!
//! ```text
//! <table>/part-b00003-<uuid>.parquet                  data files (the lake's)
//! <table>/metadata/v7.metadata.json                   table metadata version 7
//! <table>/metadata/version-hint.text                  "7": the newest version
//! <table>/metadata/snap-<snapshot id>-v7.avro         its manifest list
//! <table>/metadata/<table uuid>-v7-m0.avro            its data manifest
//! <table>/metadata/<table uuid>-v7-m1.avro            its delete manifest (if any)
//! <table>/deletion_vector_<uuid>.parquet              position-delete files (the lake's)
//! ```

use crate::avro::{self, Datum};
use crate::schema::Schema;
use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sluice_lake::{DeleteFile, FileEntry, LakeError, LogVersion, Result, TableEntry, TableLog};
use std::collections::{BTreeMap, BTreeSet};

/// The folder of a table's metadata, under its folder.
const METADATA_DIR: &str = "metadata";
/// The file naming the newest metadata version (the filesystem catalog's pointer).
const VERSION_HINT: &str = "version-hint.text";

/// A snapshot id for `version` of table `table_id`: positive, the same every time.
pub(crate) fn snapshot_id(table_id: &str, version: u64) -> i64 {
    let d = Sha256::digest(format!("{table_id}/{version}"));
    let n = i64::from_be_bytes(d[..8].try_into().expect("8 bytes")) & i64::MAX;
    n.max(1)
}

fn manifest_list_name(table_id: &str, version: u64) -> String {
    format!("snap-{}-v{version}.avro", snapshot_id(table_id, version))
}

/// The name of manifest `index` of a version: 0 lists the data files, 1 the delete files.
fn manifest_name(table_id: &str, version: u64, index: u8) -> String {
    format!("{table_id}-v{version}-m{index}.avro")
}

/// The live position-delete files of `entry` (several data files share one), by name.
fn delete_files(entry: &TableEntry) -> BTreeMap<&str, &DeleteFile> {
    entry
        .files
        .iter()
        .filter_map(|f| f.delete_file.as_ref())
        .map(|d| (d.name.as_str(), d))
        .collect()
}

/// The object of metadata version `version` in the table folder `dir`.
pub(crate) fn metadata_path(dir: &Path, version: u64) -> Path {
    dir.clone()
        .join(METADATA_DIR)
        .join(format!("v{version}.metadata.json"))
}

/// The version hint of the table folder `dir`.
pub(crate) fn version_hint_path(dir: &Path) -> Path {
    dir.clone().join(METADATA_DIR).join(VERSION_HINT)
}

/// Whether version `version` of the table in `dir` is fully published: its metadata file
/// is there and the version hint (written after it) names it.
pub(crate) async fn is_published(
    store: &dyn ObjectStore,
    dir: &Path,
    version: u64,
) -> Result<bool> {
    if store.head(&metadata_path(dir, version)).await.is_err() {
        return Ok(false);
    }
    let hint = match sluice_lake::get_all(store, &version_hint_path(dir)).await {
        Ok(bytes) => bytes,
        Err(_) => return Ok(false),
    };
    Ok(std::str::from_utf8(&hint).map(str::trim) == Ok(version.to_string().as_str()))
}

/// The metadata after a manifest commit turned `old` into `new`: `new.log` when neither the
/// live files nor the schema changed, else version `N + 1` (1 for a new table). `location`
/// is the table folder as readers address it (`file:///…/opportunity`, `s3://…`), `key` the
/// table's stored key (see [`Schema::of`]).
pub(crate) fn next_version(
    location: &str,
    key: &[String],
    old: Option<&TableEntry>,
    new: &TableEntry,
    now_ms: i64,
    retention: std::time::Duration,
) -> Option<TableLog> {
    let prev = new.log.as_ref();
    let prev_schema = prev.and_then(|p| Schema::from_stored(&p.schema));
    let schema = Schema::of(&new.columns, prev_schema.as_ref(), key);
    // A file's deleted rows change its vector, not its name.
    let files = |e: &TableEntry| -> BTreeSet<(String, Option<String>)> {
        e.files
            .iter()
            .map(|f| {
                (
                    f.name.clone(),
                    f.delete_file.as_ref().map(|d| d.name.clone()),
                )
            })
            .collect()
    };
    let unchanged = prev.is_some()
        && prev_schema.as_ref() == Some(&schema)
        && old.map(files) == Some(files(new));
    if unchanged {
        return prev.cloned();
    }
    let (table_id, version, created_ms) = match prev {
        Some(p) => (p.table_id.clone(), p.version + 1, p.created_ms),
        None => (uuid::Uuid::new_v4().to_string(), 1, now_ms),
    };
    let snapshot = snapshot_id(&table_id, version);
    let seq = version as i64;
    let versions = readable_versions(prev, version, now_ms, retention);
    let list_of = |v: u64| {
        format!(
            "{location}/{METADATA_DIR}/{}",
            manifest_list_name(&table_id, v)
        )
    };
    // Earlier snapshots still readable: their manifest lists and files are kept while they
    // are listed here. They name the current schema (only it is kept; sluice's schema
    // changes only add columns, which read as NULL in older files): a snapshot without a
    // schema id crashes DuckDB 1.4.4's iceberg extension.
    let mut snapshots: Vec<Value> = versions
        .iter()
        .filter(|lv| lv.version < version)
        .map(|lv| {
            let mut s = json!({
                "snapshot-id": snapshot_id(&table_id, lv.version),
                "sequence-number": lv.version,
                "timestamp-ms": lv.at_ms,
                "manifest-list": list_of(lv.version),
                "summary": {"operation": "overwrite"},
                "schema-id": schema.schema_id,
            });
            if lv.version > 1 {
                s["parent-snapshot-id"] = json!(snapshot_id(&table_id, lv.version - 1));
            }
            s
        })
        .collect();
    let snapshot_log: Vec<Value> = versions
        .iter()
        .map(|lv| json!({"timestamp-ms": lv.at_ms, "snapshot-id": snapshot_id(&table_id, lv.version)}))
        .collect();
    let records: u64 = new.files.iter().map(|f| f.rows).sum();
    let deletes = delete_files(new);
    let position_deletes: u64 = deletes.values().map(|d| d.rows).sum();
    let metadata = json!({
        "format-version": 2,
        "table-uuid": table_id,
        "location": location,
        "last-sequence-number": seq,
        "last-updated-ms": now_ms,
        "last-column-id": schema.last_column_id,
        "current-schema-id": schema.schema_id,
        "schemas": [schema.to_json()],
        "default-spec-id": 0,
        "partition-specs": [{"spec-id": 0, "fields": []}],
        "last-partition-id": 999,
        "default-sort-order-id": 0,
        "sort-orders": [{"order-id": 0, "fields": []}],
        "properties": {
            "schema.name-mapping.default": schema.name_mapping(),
            "write.parquet.compression-codec": "zstd",
            "created-by": concat!("sluice ", env!("CARGO_PKG_VERSION")),
        },
        "current-snapshot-id": snapshot,
        "refs": {"main": {"snapshot-id": snapshot, "type": "branch"}},
        "snapshots": [],
        "snapshot-log": snapshot_log,
        "metadata-log": [],
    });
    let mut current = json!({
            "snapshot-id": snapshot,
            "sequence-number": seq,
            "timestamp-ms": now_ms,
            "manifest-list": list_of(version),
            "summary": {
                "operation": "overwrite",
                "total-data-files": new.files.len().to_string(),
                "total-records": records.to_string(),
                "total-delete-files": deletes.len().to_string(),
                "total-position-deletes": position_deletes.to_string(),
                "total-equality-deletes": "0",
            },
            "schema-id": schema.schema_id,
    });
    if version > 1 {
        current["parent-snapshot-id"] = json!(snapshot_id(&table_id, version - 1));
    }
    snapshots.push(current);
    let mut metadata = metadata;
    metadata["snapshots"] = Value::Array(snapshots);
    Some(TableLog {
        table_id,
        version,
        schema: schema.to_stored(),
        commit: metadata.to_string(),
        created_ms,
        format: Some("iceberg".to_owned()),
        versions,
    })
}

/// Most snapshots one metadata version lists (its own included), as Iceberg's own writers
/// bound their metadata log (`write.metadata.previous-versions-max`, 100): a first sync
/// makes a version per commit, and each lists the others.
const MAX_LISTED_SNAPSHOTS: usize = 100;

/// The versions a new version `version` made at `now_ms` lists as its snapshots: those of
/// `prev` made within `retention` (their files are still kept: a file superseded at or after
/// a version is retired no earlier than that version's commit), at most the newest
/// [`MAX_LISTED_SNAPSHOTS`] with `version` itself last.
fn readable_versions(
    prev: Option<&TableLog>,
    version: u64,
    now_ms: i64,
    retention: std::time::Duration,
) -> Vec<LogVersion> {
    let keep_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let cutoff = now_ms.saturating_sub(keep_ms);
    let mut versions: Vec<LogVersion> = prev
        .map(|p| p.versions.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|lv| lv.at_ms > cutoff && lv.version < version)
        .collect();
    versions.push(LogVersion {
        version,
        at_ms: now_ms,
    });
    let over = versions.len().saturating_sub(MAX_LISTED_SNAPSHOTS);
    versions.drain(..over);
    versions
}

/// Publishes `entry.log`'s version in the table folder `dir`: its manifest and manifest
/// list, then the metadata file (created only if absent: one there with the same text is
/// ours from an earlier attempt, another text means another writer), then the version hint.
pub(crate) async fn publish(store: &dyn ObjectStore, dir: &Path, entry: &TableEntry) -> Result<()> {
    let Some(log) = &entry.log else {
        return Ok(());
    };
    let meta_path = metadata_path(dir, log.version);
    let metadata: Value = serde_json::from_str(&log.commit).map_err(|e| LakeError::Damaged {
        path: meta_path.to_string(),
        detail: format!("the metadata kept in the manifest is not JSON: {e}"),
    })?;
    let location = metadata["location"].as_str().unwrap_or_default().to_owned();
    let schema = metadata["schemas"][0].to_string();
    let schema_id = metadata["current-schema-id"].as_i64().unwrap_or_default();
    let snapshot = snapshot_id(&log.table_id, log.version);
    let seq = log.version as i64;
    let sync = sync_marker(&log.table_id, log.version);

    // The data manifest lists every live data file, the delete manifest every live
    // position-delete file, all added by this snapshot (their snapshot id and sequence
    // number inherited from the manifest list, so every delete file applies to every data
    // file: position deletes apply to data files of the same or a lower sequence number).
    let fields = field_ids(&metadata["schemas"][0]);
    let entry_of = |content: i32, name: &str, rows: u64, size: u64, metrics: [Datum; 4]| {
        let mut file = vec![
            Datum::Int(content),
            Datum::Str(format!("{location}/{name}")),
            Datum::Str("PARQUET".into()),
            Datum::Record(Vec::new()),
            Datum::Long(rows as i64),
            Datum::Long(size as i64),
        ];
        file.extend(metrics);
        Datum::Record(vec![
            Datum::Int(1),
            Datum::Null,
            Datum::Null,
            Datum::Null,
            Datum::Record(file),
        ])
    };
    let data: Vec<Datum> = entry
        .files
        .iter()
        .map(|f| entry_of(0, &f.name, f.rows, f.size, metrics(f, &fields)))
        .collect();
    let delete_files = delete_files(entry);
    let deletes: Vec<Datum> = delete_files
        .values()
        .map(|d| entry_of(1, &d.name, d.rows, d.size, no_metrics()))
        .collect();
    let manifest = |content: &str, entries: &[Datum]| {
        avro::container(
            avro::MANIFEST_ENTRY_SCHEMA,
            &[
                ("schema", schema.clone()),
                ("schema-id", schema_id.to_string()),
                ("partition-spec", "[]".into()),
                ("partition-spec-id", "0".into()),
                ("format-version", "2".into()),
                ("content", content.into()),
            ],
            sync,
            entries,
        )
    };
    let mut manifests = vec![(
        0,
        manifest("data", &data),
        entry.files.iter().map(|f| f.rows).sum::<u64>(),
        data.len(),
    )];
    if !deletes.is_empty() {
        let rows = delete_files.values().map(|d| d.rows).sum::<u64>();
        manifests.push((1, manifest("deletes", &deletes), rows, deletes.len()));
    }
    let list_entries: Vec<Datum> = manifests
        .iter()
        .map(|(content, bytes, rows, files)| {
            let name = manifest_name(&log.table_id, log.version, *content as u8);
            Datum::Record(vec![
                Datum::Str(format!("{location}/{METADATA_DIR}/{name}")),
                Datum::Long(bytes.len() as i64),
                Datum::Int(0),
                Datum::Int(*content),
                Datum::Long(seq),
                Datum::Long(seq),
                Datum::Long(snapshot),
                Datum::Int(*files as i32),
                Datum::Int(0),
                Datum::Int(0),
                Datum::Long(*rows as i64),
                Datum::Long(0),
                Datum::Long(0),
            ])
        })
        .collect();
    let list = avro::container(
        avro::MANIFEST_FILE_SCHEMA,
        &[
            ("snapshot-id", snapshot.to_string()),
            ("sequence-number", seq.to_string()),
            ("format-version", "2".into()),
        ],
        sync,
        &list_entries,
    );
    let meta_dir = dir.clone().join(METADATA_DIR);
    for (content, bytes, _, _) in manifests {
        let name = manifest_name(&log.table_id, log.version, content as u8);
        put(store, &meta_dir.clone().join(name.as_str()), bytes).await?;
    }
    put(
        store,
        &meta_dir
            .clone()
            .join(manifest_list_name(&log.table_id, log.version).as_str()),
        list,
    )
    .await?;

    let created = store
        .put_opts(
            &meta_path,
            PutPayload::from(log.commit.clone().into_bytes()),
            PutOptions::from(PutMode::Create),
        )
        .await;
    match created {
        Ok(_) => {}
        Err(object_store::Error::AlreadyExists { .. }) => {
            let theirs = sluice_lake::get_all(store, &meta_path).await?;
            if theirs.as_ref() != log.commit.as_bytes() {
                return Err(LakeError::Damaged {
                    path: meta_path.to_string(),
                    detail: "this Iceberg metadata version was written by another writer; \
                             sluice must be the only writer of its tables"
                        .to_owned(),
                });
            }
        }
        Err(e) => return Err(LakeError::store("writing", &meta_path, e)),
    }
    put(
        store,
        &meta_dir.join(VERSION_HINT),
        log.version.to_string().into_bytes(),
    )
    .await
}

async fn put(store: &dyn ObjectStore, path: &Path, bytes: Vec<u8>) -> Result<()> {
    store
        .put(path, PutPayload::from(Bytes::from(bytes)))
        .await
        .map(|_| ())
        .map_err(|e| LakeError::store("writing", path, e))
}

/// Removes the metadata (metadata file, manifest list, manifests) of versions of the table
/// in `dir` that `log` no longer lists as snapshots once they are older than `retention`, so
/// that `metadata/` does not grow with every commit while readers holding an older metadata
/// file within the retention keep working. Listed versions, and the one before the current
/// (the SQL catalog's previous location), always stay. Best effort: a failure is logged,
/// and the next publication tries again.
pub(crate) async fn expire(
    store: &dyn ObjectStore,
    dir: &Path,
    log: &TableLog,
    retention: std::time::Duration,
) {
    let previous = log.version.saturating_sub(1);
    let keep_from = log
        .versions
        .first()
        .map_or(previous, |lv| lv.version.min(previous));
    use futures::TryStreamExt;
    let meta_dir = dir.clone().join(METADATA_DIR);
    let listed: Vec<_> = match store.list(Some(&meta_dir)).try_collect().await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, dir = %meta_dir, "cannot list Iceberg metadata to expire");
            return;
        }
    };
    let keep_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let cutoff = sluice_core::now_ms().saturating_sub(keep_ms);
    for meta in listed {
        let Some(version) = meta.location.filename().and_then(metadata_version) else {
            continue;
        };
        let expired = version < keep_from && meta.last_modified.timestamp_millis() <= cutoff;
        if expired && let Err(e) = store.delete(&meta.location).await {
            tracing::warn!(error = %e, file = %meta.location, "cannot remove expired Iceberg metadata");
        }
    }
}

/// The version whose metadata `name` belongs to (`vN.metadata.json`, `snap-<id>-vN.avro`,
/// `<uuid>-vN-m<k>.avro`); `None` for any other name (the version hint).
fn metadata_version(name: &str) -> Option<u64> {
    let digits = |s: &str| s.parse::<u64>().ok().filter(|_| !s.starts_with('+'));
    if let Some(v) = name
        .strip_prefix('v')
        .and_then(|n| n.strip_suffix(".metadata.json"))
    {
        return digits(v);
    }
    let stem = name.strip_suffix(".avro")?;
    if stem.starts_with("snap-") {
        return digits(stem.rsplit_once("-v")?.1);
    }
    let (head, _manifest) = stem.rsplit_once("-m")?;
    digits(head.rsplit_once("-v")?.1)
}

/// Each field of an Iceberg schema (JSON) by name: its id and type.
fn field_ids(schema: &Value) -> BTreeMap<String, (i32, String)> {
    schema["fields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| {
            let id = i32::try_from(f["id"].as_i64()?).ok()?;
            Some((
                f["name"].as_str()?.to_owned(),
                (id, f["type"].as_str()?.to_owned()),
            ))
        })
        .collect()
}

/// The column metrics of a file without statistics: all four maps null.
fn no_metrics() -> [Datum; 4] {
    [Datum::Null, Datum::Null, Datum::Null, Datum::Null]
}

/// A data file's `value_counts`, `null_value_counts`, `lower_bounds` and `upper_bounds`
/// from its statistics (kept by the engine from the Parquet footer), by field id; bounds in
/// Iceberg's single-value binary form. A column without statistics, or a bound the engine
/// left out (an all-NULL column, a text maximum too long to keep), is left out of its map.
fn metrics(file: &FileEntry, fields: &BTreeMap<String, (i32, String)>) -> [Datum; 4] {
    let Some(stats) = &file.stats else {
        return no_metrics();
    };
    let (mut counts, mut nulls, mut lower, mut upper) = (vec![], vec![], vec![], vec![]);
    for (name, c) in &stats.columns {
        let Some((id, ty)) = fields.get(name) else {
            continue;
        };
        let pair = |v: Datum| Datum::Record(vec![Datum::Int(*id), v]);
        counts.push(pair(Datum::Long(file.rows as i64)));
        nulls.push(pair(Datum::Long(c.nulls as i64)));
        if let Some(b) = c.min.as_ref().and_then(|v| single_value(ty, v)) {
            lower.push(pair(Datum::Bytes(b)));
        }
        if let Some(b) = c.max.as_ref().and_then(|v| single_value(ty, v)) {
            upper.push(pair(Datum::Bytes(b)));
        }
    }
    [counts, nulls, lower, upper].map(|m| Datum::Some(Box::new(Datum::Array(m))))
}

/// A bound in Iceberg's single-value binary serialization: `long` and `timestamptz`
/// (microseconds) as 8 bytes little-endian, `double` as its IEEE 754 bits little-endian,
/// `boolean` as one byte, `string` as its UTF-8 bytes; `None` for a value of another kind.
fn single_value(ty: &str, v: &Value) -> Option<Vec<u8>> {
    match ty {
        "long" | "timestamptz" => Some(v.as_i64()?.to_le_bytes().to_vec()),
        "double" => Some(v.as_f64()?.to_le_bytes().to_vec()),
        "boolean" => Some(vec![u8::from(v.as_bool()?)]),
        "string" => Some(v.as_str()?.as_bytes().to_vec()),
        _ => None,
    }
}

/// The Avro sync marker of a version's files: derived, so that they are the same bytes
/// every time they are written.
fn sync_marker(table_id: &str, version: u64) -> [u8; 16] {
    let d = Sha256::digest(format!("sync/{table_id}/{version}"));
    d[..16].try_into().expect("16 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_made_within_the_retention_are_listed() {
        let hour = std::time::Duration::from_secs(3600);
        let log = |versions: Vec<LogVersion>| TableLog {
            table_id: "t".into(),
            version: versions.last().map_or(0, |v| v.version),
            schema: String::new(),
            commit: String::new(),
            created_ms: 0,
            format: Some("iceberg".into()),
            versions,
        };
        let at = |version, at_ms| LogVersion { version, at_ms };
        let h = 3_600_000;
        let prev = log(vec![at(1, 0), at(2, 5 * h), at(3, 9 * h)]);
        // At 10 h with a 6 h retention: version 1 (made at 0 h) is out, 2 and 3 stay.
        let v = readable_versions(Some(&prev), 4, 10 * h, 6 * hour);
        assert_eq!(v, vec![at(2, 5 * h), at(3, 9 * h), at(4, 10 * h)]);
        // No retention: only the new version.
        assert_eq!(
            readable_versions(Some(&prev), 4, 10 * h, std::time::Duration::ZERO),
            vec![at(4, 10 * h)]
        );
        // At most the newest MAX_LISTED_SNAPSHOTS.
        let many = log((1..=150).map(|v| at(v, v as i64)).collect());
        let v = readable_versions(Some(&many), 151, 200, hour);
        assert_eq!(v.len(), MAX_LISTED_SNAPSHOTS);
        assert_eq!((v[0].version, v[99].version), (52, 151));
        // A log written without a history starts one.
        assert_eq!(
            readable_versions(Some(&log(Vec::new())), 8, 1, hour),
            vec![at(8, 1)]
        );
    }

    #[test]
    fn metadata_names_give_their_version() {
        let id = "5e0c8ad2-0f6f-4f4e-9d0b-54b3c4bd2a11";
        assert_eq!(metadata_version("v12.metadata.json"), Some(12));
        assert_eq!(metadata_version(&manifest_list_name(id, 7)), Some(7));
        assert_eq!(metadata_version(&manifest_name(id, 7, 0)), Some(7));
        assert_eq!(metadata_version(&manifest_name(id, 7, 1)), Some(7));
        assert_eq!(metadata_version(VERSION_HINT), None);
        assert_eq!(metadata_version("v+1.metadata.json"), None);
        assert_eq!(metadata_version("notes.avro"), None);
    }
}
