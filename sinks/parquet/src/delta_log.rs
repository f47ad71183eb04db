//! Delta mode: every table folder is also a Delta Lake table (`<table>/_delta_log/`).
//!
//! The manifest stays the destination's single commit point. Each manifest commit that
//! changes a table's files also computes that table's next Delta log version (its actions:
//! files removed and added, deletion vectors replaced, schema changes) and stores it in the
//! table's entry ([`DeltaState`]). After the manifest commit, the version is published as
//! `_delta_log/<version:020>.json` with put-if-not-exists. A run killed in between leaves the
//! version in the manifest only: the next `open`, and every commit before its manifest write,
//! publishes what is missing first. So the Delta log is never ahead of the manifest (the
//! state), and version `v + 1` is never published before version `v`.
//!
//! Protocol: reader version 3 / writer version 7 with the `deletionVectors` feature; no
//! partition columns; statistics give `numRecords` (physical rows). No checkpoints are written
//! (readers replay the JSON commits).

use crate::dv::Descriptor;
use crate::error::{ParquetSinkError, Result};
use crate::manifest::{FileEntry, TableEntry};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sluice_core::ColumnType;
use std::collections::BTreeMap;

/// The folder of a table's Delta log.
pub(crate) const LOG_DIR: &str = "_delta_log";

/// A table's Delta log as of one manifest version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct DeltaState {
    /// The Delta table id (`metaData.id`), fixed at the table's first version.
    pub table_id: String,
    /// The newest log version this manifest accounts for.
    pub version: u64,
    /// The schema string of the last `metaData` action.
    pub schema: String,
    /// The text of version `version`'s log file, kept until a later version replaces it so
    /// that it can be published again if the run stopped before publishing it.
    pub commit: String,
}

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

fn add(f: &FileEntry, now_ms: i64) -> Value {
    let mut add = json!({
        "path": f.name,
        "partitionValues": {},
        "size": f.size,
        "modificationTime": now_ms,
        "dataChange": true,
        "stats": json!({"numRecords": f.rows}).to_string(),
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
) -> Option<DeltaState> {
    let schema = schema_string(new);
    let prev = new.delta.as_ref();
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
                actions.push(add(g, now_ms));
            }
            Some(_) => {}
        }
    }
    for (name, f) in &after {
        if !before.contains_key(name) {
            actions.push(add(f, now_ms));
        }
    }
    let schema_changed = prev.is_none_or(|p| p.schema != schema);
    if actions.is_empty() && !schema_changed {
        return prev.cloned();
    }
    let (table_id, version) = match prev {
        Some(p) => (p.table_id.clone(), p.version + 1),
        None => (uuid::Uuid::new_v4().to_string(), 0),
    };
    let mut lines = vec![json!({"commitInfo": {
        "timestamp": now_ms,
        "operation": "WRITE",
        "operationParameters": {"mode": "Append"},
        "engineInfo": concat!("sluice/", env!("CARGO_PKG_VERSION")),
        "isBlindAppend": false,
    }})];
    if prev.is_none() {
        lines.push(json!({"protocol": {
            "minReaderVersion": 3,
            "minWriterVersion": 7,
            "readerFeatures": ["deletionVectors"],
            "writerFeatures": ["deletionVectors"],
        }}));
    }
    if schema_changed {
        lines.push(json!({"metaData": {
            "id": table_id,
            "format": {"provider": "parquet", "options": {}},
            "schemaString": schema,
            "partitionColumns": [],
            "configuration": {"delta.enableDeletionVectors": "true"},
            "createdTime": now_ms,
        }}));
    }
    lines.extend(actions);
    let mut commit = String::new();
    for l in &lines {
        commit.push_str(&l.to_string());
        commit.push('\n');
    }
    Some(DeltaState {
        table_id,
        version,
        schema,
        commit,
    })
}

/// The log object of `version` in the table folder `dir`.
pub(crate) fn log_path(dir: &Path, version: u64) -> Path {
    dir.clone()
        .join(LOG_DIR)
        .join(format!("{version:020}.json"))
}

/// Publishes `state`'s version in the table folder `dir` unless it is there already (ours,
/// from an earlier attempt: the same text). Another text under that version means another
/// writer changed the log, which sluice does not support.
pub(crate) async fn publish(store: &dyn ObjectStore, dir: &Path, state: &DeltaState) -> Result<()> {
    let path = log_path(dir, state.version);
    let put = store
        .put_opts(
            &path,
            PutPayload::from(state.commit.clone().into_bytes()),
            PutOptions::from(PutMode::Create),
        )
        .await;
    match put {
        Ok(_) => Ok(()),
        Err(object_store::Error::AlreadyExists { .. }) => {
            let theirs = store
                .get(&path)
                .await
                .map_err(|e| ParquetSinkError::store("reading", &path, e))?
                .bytes()
                .await
                .map_err(|e| ParquetSinkError::store("reading", &path, e))?;
            if theirs.as_ref() == state.commit.as_bytes() {
                Ok(())
            } else {
                Err(ParquetSinkError::Damaged {
                    path: path.to_string(),
                    detail: "this Delta log version was written by another writer; sluice must \
                             be the only writer of its tables"
                        .to_owned(),
                })
            }
        }
        Err(e) => Err(ParquetSinkError::store("writing", &path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::StoredColumn;

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
            delta: None,
        }
    }

    fn actions(state: &DeltaState) -> Vec<Value> {
        state
            .commit
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn versions_record_adds_removes_and_vector_changes() {
        let cols = [("id", ColumnType::String), ("n", ColumnType::Int64)];
        let v0_entry = entry(vec![file("a", 10, None), file("b", 5, None)], &cols);
        let v0 = next_state(None, &v0_entry, 1).unwrap();
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
        same.delta = Some(v0.clone());
        assert_eq!(next_state(Some(&same), &same, 2), Some(v0.clone()));

        // `a` gets a deletion vector, `b` goes, `c` comes, a column is added.
        let cols2 = [
            ("id", ColumnType::String),
            ("n", ColumnType::Int64),
            ("t", ColumnType::Timestamp),
        ];
        let mut v1_entry = entry(vec![file("a", 10, Some(2)), file("c", 3, None)], &cols2);
        v1_entry.delta = Some(v0.clone());
        let v1 = next_state(Some(&same), &v1_entry, 3).unwrap();
        assert_eq!((v1.version, &v1.table_id), (1, &v0.table_id));
        let a = actions(&v1);
        assert!(a.iter().all(|x| x.get("protocol").is_none()));
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
