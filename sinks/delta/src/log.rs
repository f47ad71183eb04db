//! The Delta log: every table folder is also a Delta Lake table (`<table>/_delta_log/`).
//!
//! The manifest stays the destination's single commit point. Each manifest commit that
//! changes a table's files also computes that table's next Delta log version (its actions:
//! files removed and added, deletion vectors replaced, schema changes) and stores it in the
//! table's entry ([`TableLog`]). After the manifest commit, the version is published as
//! `_delta_log/<version:020>.json` with put-if-not-exists. A run killed in between leaves the
//! version in the manifest only: the next `open`, and every commit before its manifest write,
//! publishes what is missing first. So the Delta log is never ahead of the manifest (the
//! state), and version `v + 1` is never published before version `v`.
//!
//! Protocol: reader version 3 / writer version 7 with the `deletionVectors` feature; no
//! partition columns; statistics give `numRecords` (physical rows). Every
//! [`CHECKPOINT_INTERVAL`]th version gets a Parquet checkpoint and `_last_checkpoint`.

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use parquet::arrow::ArrowWriter;
use serde_json::{Value, json};
use sluice_core::ColumnType;
use sluice_lake::{Descriptor, FileEntry, LakeError, Result, TableEntry, TableLog};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The folder of a table's Delta log.
pub(crate) const LOG_DIR: &str = "_delta_log";

/// The Delta type of a column type.
fn delta_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::String | ColumnType::Json => "string",
        ColumnType::Boolean => "boolean",
        ColumnType::Int64 => "long",
        ColumnType::Float64 => "double",
        ColumnType::Timestamp => "timestamp",
    }
}

/// The Delta schema string of a table entry (every stored column, nullable).
fn schema_string(entry: &TableEntry) -> String {
    let fields: Vec<Value> = entry
        .columns
        .iter()
        .map(
            |c| json!({"name": c.name, "type": delta_type(c.ty), "nullable": true, "metadata": {}}),
        )
        .collect();
    json!({"type": "struct", "fields": fields}).to_string()
}

/// How a table's log is written (from the `[sink]` keys of the `delta` sink).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LogOptions {
    /// Deletion vectors on: protocol reader 3 / writer 7 with the `deletionVectors` feature;
    /// off: reader 1 / writer 2 (copy-on-write, every Delta reader).
    pub deletion_vectors: bool,
    /// `delta.deletedFileRetentionDuration`, in hours.
    pub retention_hours: u64,
}

/// The protocol action: reader 3 / writer 7 with deletion vectors, else reader 1 / writer 2.
fn protocol(deletion_vectors: bool) -> Value {
    if deletion_vectors {
        json!({"protocol": {
            "minReaderVersion": 3,
            "minWriterVersion": 7,
            "readerFeatures": ["deletionVectors"],
            "writerFeatures": ["deletionVectors"],
        }})
    } else {
        json!({"protocol": {"minReaderVersion": 1, "minWriterVersion": 2}})
    }
}

/// The metaData action of a table.
fn metadata(table_id: &str, schema: &str, created_ms: i64, options: LogOptions) -> Value {
    let mut configuration = json!({
        "delta.deletedFileRetentionDuration": format!("interval {} hours", options.retention_hours),
    });
    if options.deletion_vectors {
        configuration["delta.enableDeletionVectors"] = json!("true");
    }
    json!({"metaData": {
        "id": table_id,
        "format": {"provider": "parquet", "options": {}},
        "schemaString": schema,
        "partitionColumns": [],
        "configuration": configuration,
        "createdTime": created_ms,
    }})
}

/// A bound of the file statistics as Delta writes it: timestamps as ISO 8601 in UTC with
/// milliseconds (a maximum rounded up to the next millisecond, so that it stays an upper
/// bound); other values as they are.
fn delta_bound(ty: ColumnType, v: &Value, upper: bool) -> Option<Value> {
    match ty {
        ColumnType::Timestamp => {
            let us = v.as_i64()?;
            let ms = if upper {
                us.div_euclid(1000) + i64::from(us.rem_euclid(1000) != 0)
            } else {
                us.div_euclid(1000)
            };
            let t = std::time::UNIX_EPOCH
                .checked_add(std::time::Duration::from_millis(u64::try_from(ms).ok()?))?;
            Some(Value::from(humantime::format_rfc3339_millis(t).to_string()))
        }
        _ => Some(v.clone()),
    }
}

/// The `stats` text of an add action: `numRecords` (physical rows) and, when the file's
/// statistics are known, `minValues`, `maxValues` and `nullCount` for its columns
/// (`tightBounds: false` once a deletion vector hides some rows).
fn stats(f: &FileEntry, types: &BTreeMap<&str, ColumnType>) -> String {
    let mut stats = json!({"numRecords": f.rows});
    if let Some(file) = &f.stats {
        let (mut min, mut max, mut nulls) = (json!({}), json!({}), json!({}));
        for (name, c) in &file.columns {
            let Some(&ty) = types.get(name.as_str()) else {
                continue;
            };
            if let Some(v) = c.min.as_ref().and_then(|v| delta_bound(ty, v, false)) {
                min[name] = v;
            }
            if let Some(v) = c.max.as_ref().and_then(|v| delta_bound(ty, v, true)) {
                max[name] = v;
            }
            nulls[name] = json!(c.nulls);
        }
        stats["minValues"] = min;
        stats["maxValues"] = max;
        stats["nullCount"] = nulls;
        if f.dv.is_some() {
            stats["tightBounds"] = json!(false);
        }
    }
    stats.to_string()
}

/// Column types by name.
fn types(entry: &TableEntry) -> BTreeMap<&str, ColumnType> {
    entry
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.ty))
        .collect()
}

fn add(f: &FileEntry, now_ms: i64, types: &BTreeMap<&str, ColumnType>) -> Value {
    add_action(f, now_ms, true, types)
}

fn add_action(
    f: &FileEntry,
    now_ms: i64,
    data_change: bool,
    types: &BTreeMap<&str, ColumnType>,
) -> Value {
    let mut add = json!({
        "path": f.name,
        "partitionValues": {},
        "size": f.size,
        "modificationTime": now_ms,
        "dataChange": data_change,
        "stats": stats(f, types),
    });
    if let Some(dv) = &f.dv {
        add["deletionVector"] = json!(dv);
    }
    json!({ "add": add })
}

fn remove(name: &str, size: u64, dv: Option<&Descriptor>, now_ms: i64) -> Value {
    let mut remove = json!({
        "path": name,
        "deletionTimestamp": now_ms,
        "dataChange": true,
        "extendedFileMetadata": true,
        "partitionValues": {},
        "size": size,
    });
    if let Some(dv) = dv {
        remove["deletionVector"] = json!(dv);
    }
    json!({ "remove": remove })
}

/// The table's Delta state after a manifest commit turned `old` into `new`: `new.delta` as it
/// was when nothing changed, else the next version with its actions. `old` is the entry of the
/// previous manifest (`None` for a new table). A table without a log yet (new, or written
/// before Delta mode) starts at version 0 with every live file.
pub(crate) fn next_state(
    old: Option<&TableEntry>,
    new: &TableEntry,
    now_ms: i64,
    options: LogOptions,
) -> Option<TableLog> {
    let schema = schema_string(new);
    let types = types(new);
    let prev = new.log.as_ref();
    let before: BTreeMap<&str, &FileEntry> = match prev {
        Some(_) => old
            .into_iter()
            .flat_map(|e| &e.files)
            .map(|f| (f.name.as_str(), f))
            .collect(),
        None => BTreeMap::new(),
    };
    let after: BTreeMap<&str, &FileEntry> =
        new.files.iter().map(|f| (f.name.as_str(), f)).collect();
    let mut actions = Vec::new();
    for (name, f) in &before {
        match after.get(name) {
            None => actions.push(remove(name, f.size, f.dv.as_ref(), now_ms)),
            Some(g) if g.dv != f.dv => {
                actions.push(remove(name, f.size, f.dv.as_ref(), now_ms));
                actions.push(add(g, now_ms, &types));
            }
            Some(_) => {}
        }
    }
    for (name, f) in &after {
        if !before.contains_key(name) {
            actions.push(add(f, now_ms, &types));
        }
    }
    let schema_changed = prev.is_none_or(|p| p.schema != schema);
    if actions.is_empty() && !schema_changed {
        return prev.cloned();
    }
    let (table_id, version, created_ms) = match prev {
        Some(p) => (p.table_id.clone(), p.version + 1, p.created_ms),
        None => (uuid::Uuid::new_v4().to_string(), 0, now_ms),
    };
    let mut lines = vec![json!({"commitInfo": {
        "timestamp": now_ms,
        "operation": "WRITE",
        "operationParameters": {"mode": "Append"},
        "engineInfo": concat!("sluice/", env!("CARGO_PKG_VERSION")),
        "isBlindAppend": false,
    }})];
    let vectors = |e: &TableEntry| e.files.iter().any(|f| f.dv.is_some());
    if prev.is_none() {
        lines.push(protocol(options.deletion_vectors));
    } else if vectors(new) && !old.is_some_and(vectors) {
        // The first deletion vector of a table that may have been created without them
        // (`deletion_vectors = false` then): the protocol that allows them (again).
        lines.push(protocol(true));
    }
    if schema_changed {
        lines.push(metadata(&table_id, &schema, created_ms, options));
    }
    lines.extend(actions);
    let mut commit = String::new();
    for l in &lines {
        commit.push_str(&l.to_string());
        commit.push('\n');
    }
    Some(TableLog {
        table_id,
        version,
        schema,
        commit,
        created_ms,
        format: Some("delta".to_owned()),
        versions: Vec::new(),
    })
}

/// The log object of `version` in the table folder `dir`.
pub(crate) fn log_path(dir: &Path, version: u64) -> Path {
    dir.clone()
        .join(LOG_DIR)
        .join(format!("{version:020}.json"))
}

/// Publishes `state`'s version in the table folder `dir` unless it is there already (ours,
/// from an earlier attempt: the same text); returns whether this call created it. Another
/// text under that version means another writer changed the log, which sluice does not
/// support.
pub(crate) async fn publish(store: &dyn ObjectStore, dir: &Path, state: &TableLog) -> Result<bool> {
    let path = log_path(dir, state.version);
    let put = store
        .put_opts(
            &path,
            PutPayload::from(state.commit.clone().into_bytes()),
            PutOptions::from(PutMode::Create),
        )
        .await;
    match put {
        Ok(_) => Ok(true),
        Err(object_store::Error::AlreadyExists { .. }) => {
            let theirs = sluice_lake::get_all(store, &path).await?;
            if theirs.as_ref() == state.commit.as_bytes() {
                Ok(false)
            } else {
                Err(LakeError::Damaged {
                    path: path.to_string(),
                    detail: "this Delta log version was written by another writer; sluice must \
                             be the only writer of its tables"
                        .to_owned(),
                })
            }
        }
        Err(e) => Err(LakeError::store("writing", &path, e)),
    }
}

/// Versions between checkpoints (Delta's usual default).
pub(crate) const CHECKPOINT_INTERVAL: u64 = 10;

/// Whether version `version` gets a checkpoint.
pub(crate) fn checkpoint_due(version: u64) -> bool {
    version > 0 && version.is_multiple_of(CHECKPOINT_INTERVAL)
}

/// The schema of a checkpoint file: one nullable struct column per action type (every field
/// nullable, as Delta writers do, since each row holds one action).
fn checkpoint_schema() -> SchemaRef {
    let text = |n: &str| Field::new(n, DataType::Utf8, true);
    let long = |n: &str| Field::new(n, DataType::Int64, true);
    let int = |n: &str| Field::new(n, DataType::Int32, true);
    let map = |n: &str| {
        Field::new_map(
            n,
            "key_value",
            Field::new("key", DataType::Utf8, false),
            Field::new("value", DataType::Utf8, true),
            false,
            true,
        )
    };
    let list = |n: &str| Field::new_list(n, Field::new("element", DataType::Utf8, true), true);
    let object = |n: &str, fields: Vec<Field>| Field::new_struct(n, fields, true);
    Arc::new(Schema::new(vec![
        object(
            "protocol",
            vec![
                int("minReaderVersion"),
                int("minWriterVersion"),
                list("readerFeatures"),
                list("writerFeatures"),
            ],
        ),
        object(
            "metaData",
            vec![
                text("id"),
                text("name"),
                text("description"),
                object("format", vec![text("provider"), map("options")]),
                text("schemaString"),
                list("partitionColumns"),
                map("configuration"),
                long("createdTime"),
            ],
        ),
        object(
            "add",
            vec![
                text("path"),
                map("partitionValues"),
                long("size"),
                long("modificationTime"),
                Field::new("dataChange", DataType::Boolean, true),
                text("stats"),
                map("tags"),
                object(
                    "deletionVector",
                    vec![
                        text("storageType"),
                        text("pathOrInlineDv"),
                        int("offset"),
                        int("sizeInBytes"),
                        long("cardinality"),
                    ],
                ),
            ],
        ),
        object(
            "remove",
            vec![
                text("path"),
                long("deletionTimestamp"),
                Field::new("dataChange", DataType::Boolean, true),
            ],
        ),
        object(
            "txn",
            vec![text("appId"), long("version"), long("lastUpdated")],
        ),
    ]))
}

/// The checkpoint of the table at `state.version`, whose live files are `entry.files`: the
/// protocol, the metaData and one `add` per live file, as a Parquet file.
pub(crate) fn checkpoint(
    entry: &TableEntry,
    state: &TableLog,
    now_ms: i64,
    options: LogOptions,
) -> Result<Vec<u8>> {
    // Deletion vectors in use keep their protocol whatever the setting says now.
    let vectors = options.deletion_vectors || entry.files.iter().any(|f| f.dv.is_some());
    let mut lines = vec![
        protocol(vectors),
        metadata(&state.table_id, &state.schema, state.created_ms, options),
    ];
    let types = types(entry);
    lines.extend(
        entry
            .files
            .iter()
            .map(|f| add_action(f, now_ms, false, &types)),
    );
    let mut text = String::new();
    for l in &lines {
        text.push_str(&l.to_string());
        text.push('\n');
    }
    let schema = checkpoint_schema();
    let err = |e: arrow::error::ArrowError| {
        LakeError::Core(sluice_core::Error::internal(format!(
            "building a Delta checkpoint: {e}"
        )))
    };
    let mut decoder = arrow_json::ReaderBuilder::new(Arc::clone(&schema))
        .with_batch_size(lines.len())
        .build_decoder()
        .map_err(err)?;
    decoder.decode(text.as_bytes()).map_err(err)?;
    let batch = decoder
        .flush()
        .map_err(err)?
        .unwrap_or_else(|| RecordBatch::new_empty(Arc::clone(&schema)));
    let mut out = Vec::new();
    let perr = |e| LakeError::parquet("writing", "a Delta checkpoint", e);
    let mut w = ArrowWriter::try_new(&mut out, schema, None).map_err(perr)?;
    w.write(&batch).map_err(perr)?;
    w.close().map_err(perr)?;
    Ok(out)
}

/// Writes the checkpoint of `state.version` and points `_last_checkpoint` at it. Readers
/// then start from it instead of replaying every version.
pub(crate) async fn write_checkpoint(
    store: &dyn ObjectStore,
    dir: &Path,
    entry: &TableEntry,
    state: &TableLog,
    options: LogOptions,
) -> Result<()> {
    let bytes = checkpoint(entry, state, sluice_core::now_ms(), options)?;
    let log = dir.clone().join(LOG_DIR);
    let path = log
        .clone()
        .join(format!("{:020}.checkpoint.parquet", state.version));
    let size = bytes.len();
    store
        .put(&path, PutPayload::from(bytes))
        .await
        .map_err(|e| LakeError::store("writing", &path, e))?;
    let last = log.join("_last_checkpoint");
    let pointer =
        json!({"version": state.version, "size": entry.files.len() + 2, "sizeInBytes": size});
    store
        .put(&last, PutPayload::from(pointer.to_string().into_bytes()))
        .await
        .map_err(|e| LakeError::store("writing", &last, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_lake::StoredColumn;

    const OPTIONS: LogOptions = LogOptions {
        deletion_vectors: true,
        retention_hours: 168,
    };

    fn file(name: &str, rows: u64, dv: Option<u64>) -> FileEntry {
        FileEntry {
            name: name.to_owned(),
            bucket: 0,
            size: rows * 10,
            rows,
            dv: dv.map(|c| Descriptor {
                storage_type: "u".into(),
                path_or_inline_dv: "0000000000000000000a".into(),
                offset: 1,
                size_in_bytes: 20,
                cardinality: c,
            }),
            stats: None,
            delete_file: None,
        }
    }

    fn entry(files: Vec<FileEntry>, columns: &[(&str, ColumnType)]) -> TableEntry {
        TableEntry {
            buckets: 1,
            bucket_column: "id".into(),
            columns: columns
                .iter()
                .map(|(n, t)| StoredColumn {
                    name: (*n).into(),
                    ty: *t,
                })
                .collect(),
            files,
            log: None,
            retired: Vec::new(),
        }
    }

    fn actions(state: &TableLog) -> Vec<Value> {
        state
            .commit
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn checkpoints_hold_protocol_metadata_and_live_files() {
        use arrow::array::{Array, AsArray};
        use arrow::datatypes::Int64Type;
        let cols = [("id", ColumnType::String)];
        let e = entry(vec![file("a", 10, Some(3)), file("b", 5, None)], &cols);
        let state = next_state(None, &e, 7, OPTIONS).unwrap();
        assert!(!checkpoint_due(0) && checkpoint_due(10) && !checkpoint_due(11));
        let bytes = checkpoint(&e, &state, 9, OPTIONS).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            bytes::Bytes::from(bytes),
        )
        .unwrap()
        .build()
        .unwrap();
        let batch = reader.map(Result::unwrap).next().unwrap();
        assert_eq!(batch.num_rows(), 4);
        let protocol = batch.column_by_name("protocol").unwrap().as_struct();
        assert!(protocol.is_valid(0) && !protocol.is_valid(1));
        let meta = batch.column_by_name("metaData").unwrap().as_struct();
        let id = meta.column_by_name("id").unwrap().as_string::<i32>();
        assert_eq!(id.value(1), state.table_id);
        let add = batch.column_by_name("add").unwrap().as_struct();
        let path = add.column_by_name("path").unwrap().as_string::<i32>();
        assert_eq!((path.value(2), path.value(3)), ("a", "b"));
        let dv = add.column_by_name("deletionVector").unwrap().as_struct();
        assert!(dv.is_valid(2) && !dv.is_valid(3));
        let card = dv.column_by_name("cardinality").unwrap();
        assert_eq!(card.as_primitive::<Int64Type>().value(2), 3);
    }

    #[test]
    fn versions_record_adds_removes_and_vector_changes() {
        let cols = [("id", ColumnType::String), ("n", ColumnType::Int64)];
        let v0_entry = entry(vec![file("a", 10, None), file("b", 5, None)], &cols);
        let v0 = next_state(None, &v0_entry, 1, OPTIONS).unwrap();
        assert_eq!(v0.version, 0);
        let a = actions(&v0);
        assert!(a[0].get("commitInfo").is_some());
        assert_eq!(a[1]["protocol"]["readerFeatures"][0], "deletionVectors");
        let schema: Value =
            serde_json::from_str(a[2]["metaData"]["schemaString"].as_str().unwrap()).unwrap();
        assert_eq!(schema["fields"][1]["type"], "long");
        assert_eq!(a.iter().filter(|x| x.get("add").is_some()).count(), 2);

        // Unchanged: the same state, no new version.
        let mut same = v0_entry.clone();
        same.log = Some(v0.clone());
        assert_eq!(next_state(Some(&same), &same, 2, OPTIONS), Some(v0.clone()));

        // `a` gets a deletion vector, `b` goes, `c` comes, a column is added.
        let cols2 = [
            ("id", ColumnType::String),
            ("n", ColumnType::Int64),
            ("t", ColumnType::Timestamp),
        ];
        let mut v1_entry = entry(vec![file("a", 10, Some(2)), file("c", 3, None)], &cols2);
        v1_entry.log = Some(v0.clone());
        let v1 = next_state(Some(&same), &v1_entry, 3, OPTIONS).unwrap();
        assert_eq!((v1.version, &v1.table_id), (1, &v0.table_id));
        let a = actions(&v1);
        // The first deletion vector restates the protocol that allows them.
        let protocols: Vec<&Value> = a.iter().filter_map(|x| x.get("protocol")).collect();
        assert_eq!(protocols.len(), 1);
        assert_eq!(protocols[0]["readerFeatures"][0], "deletionVectors");
        assert_eq!(a.iter().filter(|x| x.get("metaData").is_some()).count(), 1);
        let removed: Vec<&str> = a
            .iter()
            .filter_map(|x| x.get("remove"))
            .map(|r| r["path"].as_str().unwrap())
            .collect();
        assert_eq!(removed, ["a", "b"]);
        let added: Vec<(&str, bool)> = a
            .iter()
            .filter_map(|x| x.get("add"))
            .map(|r| {
                (
                    r["path"].as_str().unwrap(),
                    r.get("deletionVector").is_some(),
                )
            })
            .collect();
        assert_eq!(added, [("a", true), ("c", false)]);
    }
}
