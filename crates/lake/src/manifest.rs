//! The manifest: one JSON object per committed version, holding the sync state and the live
//! data files of every table. The highest version under `_sluice/manifest/` is the
//! destination's content; versions are created with put-if-not-exists, so two runs can never
//! both commit the same version.

use crate::deletion_vector::Descriptor;
use crate::error::{LakeError, Result};
use crate::file_stats::FileStats;
use crate::layout;
use arrow::datatypes::DataType;
use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::path::Path;
use serde::{Deserialize, Serialize};
use sluice_core::{ColumnType, State, TableSpec};
use std::collections::BTreeMap;

/// The newest manifest format this build reads (and writes, for Delta destinations).
///
/// * 1: tables, their columns and files.
/// * 2: also deletion vectors of files (`dv`) and tables' Delta log state (`delta`), which a
///   format-1 reader would silently ignore and so read deleted rows as live.
/// * 3: also files' column statistics (`stats`), which the Delta log is built from, and
///   superseded files kept for their retention (`retired`), which a format-2 reader would
///   delete as orphans.
/// * 4: tables' logs name the table format that keeps them (`format`), and leave out the
///   text of a version once it is published (`commit`); a format-3 reader would take an
///   Iceberg log for a Delta one and republish published versions from an empty text.
/// * 5: files' deleted rows are also kept in a file of the table format (`delete_file`,
///   Iceberg's position-delete files), which a format-4 reader would delete as an orphan,
///   and a log lists the versions readers may still read (`versions`, Iceberg's snapshot
///   history), whose files a format-4 reader would not keep.
///
/// Every change that an older reader would misread takes a new format; every struct read
/// from a manifest denies unknown fields, so a field added without one fails loudly here.
pub(crate) const MANIFEST_FORMAT: u32 = 5;

/// The format of manifests whose table logs name their format, without format delete files.
const NAMED_LOG_FORMAT: u32 = 4;

/// The format of manifests with file statistics or retired files whose table logs are all
/// unnamed and unpublished.
const STATS_FORMAT: u32 = 3;

/// The format of manifests with deletion vectors or table logs but no file statistics.
const LOG_FORMAT: u32 = 2;

/// The format of manifests without deletion vectors or Delta state (readable by older
/// builds, which read them right).
const PLAIN_FORMAT: u32 = 1;

/// One committed version of the destination.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Manifest {
    /// Format version; see [`MANIFEST_FORMAT`].
    pub format: u32,
    /// This manifest's version (its object name).
    pub version: u64,
    /// A unique id of the commit that wrote it (to recognise our own write after a retry).
    pub commit_id: String,
    /// When it was committed (epoch ms).
    pub committed_at_ms: i64,
    /// The sync state covered by the data below (`State::to_json`; a state of format 1 also
    /// held secrets).
    #[serde(default)]
    pub state: Option<serde_json::Value>,
    /// Tables by name.
    #[serde(default)]
    pub tables: BTreeMap<String, TableEntry>,
}

// A state of format 1 may hold secrets (a rotated OAuth token): never print it.
impl std::fmt::Debug for Manifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manifest")
            .field("version", &self.version)
            .field("tables", &self.tables)
            .finish_non_exhaustive()
    }
}

/// One table of a manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableEntry {
    /// Number of buckets (fixed at creation).
    pub buckets: u32,
    /// The column files are bucketed by (fixed at creation).
    pub bucket_column: String,
    /// Every column ever stored, with its type (declared columns plus system columns).
    pub columns: Vec<StoredColumn>,
    /// The live data files.
    pub files: Vec<FileEntry>,
    /// The table format's log as of this manifest (see [`TableLog`]). Stored under the key
    /// `delta` (manifest format 2, when Delta was the one format with a log).
    #[serde(default, rename = "delta", skip_serializing_if = "Option::is_none")]
    pub log: Option<TableLog>,
    /// Files (data and deletion vectors) that commits superseded and that stay for the
    /// format's readers until their retention is over (see
    /// [`TableFormat::retention`](crate::TableFormat::retention)); no longer live.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired: Vec<RetiredFile>,
}

/// A file a commit superseded, kept until its retention is over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetiredFile {
    /// File name inside the table folder.
    pub name: String,
    /// When the commit that superseded it was made (epoch ms).
    pub since_ms: i64,
}

/// A table's log, kept by its format (Delta's `_delta_log`), as of one manifest version:
/// computed before the manifest commit ([`TableFormat::next_log`](crate::TableFormat::next_log))
/// and published after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableLog {
    /// The format's table id (Delta's `metaData.id`), fixed at the table's first version.
    pub table_id: String,
    /// The newest log version this manifest accounts for.
    pub version: u64,
    /// The table's schema as the format writes it (Delta's `schemaString`).
    pub schema: String,
    /// The text of version `version` while it may still need publishing (a run that stopped
    /// between the manifest commit and the publication publishes it at its next open); empty
    /// once published, so that manifests do not carry every table's last version.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub commit: String,
    /// When version 0 was written (epoch ms).
    #[serde(default)]
    pub created_ms: i64,
    /// The table format that keeps this log (`delta`, `iceberg`), see
    /// [`TableLog::format_name`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// The versions readers may still read, oldest first, `version` last (formats that list
    /// earlier versions in each new one: Iceberg's snapshot history); empty for the others.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<LogVersion>,
}

/// A version of a table's log and when it was made (see [`TableLog::versions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogVersion {
    /// The version.
    pub version: u64,
    /// When its commit was made (epoch ms).
    pub at_ms: i64,
}

impl TableLog {
    /// The table format that keeps this log: logs of manifests written before a second
    /// format kept one name none, and are Delta's.
    pub fn format_name(&self) -> &str {
        self.format.as_deref().unwrap_or("delta")
    }
}

/// A stored column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredColumn {
    /// Column name.
    pub name: String,
    /// Logical type.
    #[serde(rename = "type")]
    pub ty: ColumnType,
}

/// A live data file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// File name inside the table folder.
    pub name: String,
    /// Bucket.
    pub bucket: u32,
    /// Size in bytes.
    pub size: u64,
    /// Rows in the file (deleted ones included).
    pub rows: u64,
    /// The rows of the file that are no longer live (formats recording deleted rows in
    /// deletion vectors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dv: Option<Descriptor>,
    /// Per-column bounds and NULL counts (formats that publish them, see
    /// [`TableFormat::records_file_stats`](crate::TableFormat::records_file_stats)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<FileStats>,
    /// The file of the table format that holds the rows of `dv` too (formats with
    /// [`TableFormat::dv_companion_extension`](crate::TableFormat::dv_companion_extension)):
    /// written beside the vector file, named like it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_file: Option<DeleteFile>,
}

/// A file of the table format holding deleted rows of data files (Iceberg's
/// position-delete file): the rows of every deletion vector one commit wrote for a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteFile {
    /// File name inside the table folder.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Rows in the file (deleted rows of all the data files it covers).
    pub rows: u64,
}

impl FileEntry {
    /// The live rows of the file.
    pub fn live_rows(&self) -> u64 {
        self.rows - self.dv.as_ref().map_or(0, |d| d.cardinality)
    }
}

/// The declared columns of `spec`, system columns included.
pub(crate) fn declared_columns(spec: &TableSpec) -> Vec<StoredColumn> {
    spec.columns
        .iter()
        .chain(spec.system_columns().iter())
        .map(|c| StoredColumn {
            name: c.name.clone(),
            ty: c.ty,
        })
        .collect()
}

fn type_name(t: &DataType, ty: ColumnType) -> String {
    format!("{} ({t})", ty.name())
}

impl TableEntry {
    /// A new table entry for `spec`.
    pub(crate) fn new(spec: &TableSpec, buckets: u32) -> TableEntry {
        TableEntry {
            buckets,
            bucket_column: spec.bucket_column().to_owned(),
            columns: declared_columns(spec),
            files: Vec::new(),
            log: None,
            retired: Vec::new(),
        }
    }

    /// Checks that every declared column has the stored physical type (new columns are fine).
    pub(crate) fn check(&self, spec: &TableSpec) -> Result<()> {
        for declared in declared_columns(spec) {
            if let Some(stored) = self.columns.iter().find(|c| c.name == declared.name) {
                let (s, d) = (stored.ty.arrow_type(), declared.ty.arrow_type());
                if s != d {
                    return Err(LakeError::TypeChange {
                        table: spec.name.clone(),
                        column: declared.name,
                        stored: type_name(&s, stored.ty),
                        declared: type_name(&d, declared.ty),
                    });
                }
            }
        }
        Ok(())
    }

    /// Adds the declared columns not stored yet (after [`TableEntry::check`]).
    pub(crate) fn absorb(&mut self, spec: &TableSpec) {
        for declared in declared_columns(spec) {
            match self.columns.iter_mut().find(|c| c.name == declared.name) {
                Some(stored) => stored.ty = declared.ty,
                None => self.columns.push(declared),
            }
        }
    }
}

impl Manifest {
    /// The state stored with this manifest.
    pub(crate) fn state(&self) -> sluice_core::Result<Option<State>> {
        match &self.state {
            None => Ok(None),
            Some(v) => {
                let bytes = serde_json::to_vec(v).map_err(|e| {
                    sluice_core::Error::internal(format!("state does not serialize: {e}"))
                })?;
                State::from_json(&bytes).map(Some)
            }
        }
    }

    /// The lowest format that holds this manifest: [`MANIFEST_FORMAT`] when a file's deleted
    /// rows are also in a format delete file or a log lists its readable versions, [`NAMED_LOG_FORMAT`] when a table's log
    /// names its format or leaves out a published version's text, [`STATS_FORMAT`] when a
    /// file has statistics or a table retired files, [`LOG_FORMAT`] when a table has a log or
    /// a file a deletion vector, else the plain format, which older builds read right.
    pub(crate) fn required_format(&self) -> u32 {
        let files = || self.tables.values().flat_map(|t| &t.files);
        let logs = || self.tables.values().filter_map(|t| t.log.as_ref());
        if files().any(|f| f.delete_file.is_some()) || logs().any(|l| !l.versions.is_empty()) {
            return MANIFEST_FORMAT;
        }
        if logs().any(|l| l.format.is_some() || l.commit.is_empty()) {
            return NAMED_LOG_FORMAT;
        }
        if files().any(|f| f.stats.is_some()) || self.tables.values().any(|t| !t.retired.is_empty())
        {
            return STATS_FORMAT;
        }
        let logged = self
            .tables
            .values()
            .any(|t| t.log.is_some() || t.files.iter().any(|f| f.dv.is_some()));
        if logged { LOG_FORMAT } else { PLAIN_FORMAT }
    }

    /// Serializes the manifest.
    pub(crate) fn to_json(&self) -> Vec<u8> {
        // Compact: a manifest is written at every commit and grows with the lake's files.
        let mut bytes = serde_json::to_vec(self).expect("manifest serializes");
        bytes.push(b'\n');
        bytes
    }

    fn from_json(bytes: &[u8], path: &Path) -> Result<Manifest> {
        let bad = |detail: String| LakeError::Manifest {
            path: path.to_string(),
            detail,
        };
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let format = v.get("format").and_then(|f| f.as_u64()).unwrap_or(0);
        if format > u64::from(MANIFEST_FORMAT) {
            return Err(bad(format!(
                "format {format} was written by a newer sluice (this build reads up to \
                 {MANIFEST_FORMAT}); upgrade sluice to write to this destination"
            )));
        }
        serde_json::from_value(v).map_err(|e| bad(format!("unexpected content: {e}")))
    }
}

/// Lists the manifest versions present, ascending.
pub(crate) async fn versions(store: &dyn ObjectStore, root: &Path) -> Result<Vec<u64>> {
    let dir = layout::manifest_dir(root);
    let metas: Vec<_> = match store.list(Some(&dir)).try_collect().await {
        Ok(m) => m,
        Err(object_store::Error::NotFound { .. }) => Vec::new(),
        Err(e) => return Err(LakeError::store("listing", &dir, e)),
    };
    let mut versions: Vec<u64> = metas
        .iter()
        .filter_map(|m| m.location.filename().and_then(layout::manifest_version))
        .collect();
    versions.sort_unstable();
    Ok(versions)
}

/// Reads manifest `version`.
pub(crate) async fn read(store: &dyn ObjectStore, root: &Path, version: u64) -> Result<Manifest> {
    let path = layout::manifest_path(root, version);
    let bytes = crate::parquet_files::get_all(store, &path).await?;
    Manifest::from_json(&bytes, &path)
}

/// Reads the live manifest; `None` for a destination never committed to.
pub(crate) async fn latest(store: &dyn ObjectStore, root: &Path) -> Result<Option<Manifest>> {
    Ok(live(store, root).await?.map(|l| l.manifest))
}

/// The live manifest, and the version of a torn newest manifest it stands in for.
#[derive(Debug)]
pub(crate) struct Live {
    /// The manifest in force.
    pub manifest: Manifest,
    /// A newest version cut short by a power loss (empty, zero-filled or truncated JSON),
    /// which [`live`] fell back from.
    pub torn: Option<u64>,
}

/// Reads the live manifest: the highest version, or, when that one is torn (a write cut
/// short by a power loss on a disk that did not keep it: empty, zeros, or a JSON text that
/// ends early), the one before it, with a warning. A torn manifest never committed
/// anything (its run did not get to see it written), so the previous version is the
/// destination's content. Anything else unreadable fails: a newest manifest that is
/// complete but invalid, a torn one with no version before it, or a previous version that
/// is unreadable too.
pub(crate) async fn live(store: &dyn ObjectStore, root: &Path) -> Result<Option<Live>> {
    let versions = versions(store, root).await?;
    let Some(&newest) = versions.last() else {
        return Ok(None);
    };
    let path = layout::manifest_path(root, newest);
    let bytes = crate::parquet_files::get_all(store, &path).await?;
    let failed = match Manifest::from_json(&bytes, &path) {
        Ok(manifest) => {
            return Ok(Some(Live {
                manifest,
                torn: None,
            }));
        }
        Err(e) => e,
    };
    let previous = versions.len().checked_sub(2).map(|i| versions[i]);
    let (true, Some(previous)) = (is_torn(&bytes), previous) else {
        return Err(failed);
    };
    let manifest = read(store, root, previous)
        .await
        .map_err(|e| LakeError::Manifest {
            path: path.to_string(),
            detail: format!(
                "cut short (a write interrupted by a power loss?), and the version before it is \
             unreadable too ({e})"
            ),
        })?;
    tracing::warn!(
        manifest = %path, previous,
        "the newest manifest is cut short (a write interrupted by a power loss?); using the \
         version before it"
    );
    Ok(Some(Live {
        manifest,
        torn: Some(newest),
    }))
}

/// Whether `bytes` look like a write cut short: nothing, zeros (blocks a file system
/// allocated but never wrote), or a JSON text that ends early (after trailing zeros go).
fn is_torn(bytes: &[u8]) -> bool {
    let end = bytes
        .iter()
        .rposition(|b| *b != 0 && !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    let text = &bytes[..end];
    text.is_empty() || serde_json::from_slice::<serde_json::Value>(text).is_err_and(|e| e.is_eof())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::{ColumnSpec, SyncKind};

    #[test]
    fn type_changes_are_detected() {
        let spec = TableSpec::new("t", SyncKind::Reimport)
            .column(ColumnSpec::new("id", ColumnType::String))
            .column(ColumnSpec::new("n", ColumnType::Int64))
            .key(["id"]);
        let mut entry = TableEntry::new(&spec, 4);
        let mut wider = spec.clone();
        wider
            .columns
            .push(ColumnSpec::new("extra", ColumnType::Json));
        entry.check(&wider).unwrap();
        entry.absorb(&wider);
        assert_eq!(entry.columns.len(), 4);
        let mut json = spec.clone();
        json.columns[0].ty = ColumnType::Json; // same physical type
        entry.check(&json).unwrap();
        let mut bad = spec.clone();
        bad.columns[1].ty = ColumnType::String;
        let e = entry.check(&bad).unwrap_err().to_string();
        assert!(
            e.contains("`t`") && e.contains("`n`") && e.contains("int64") && e.contains("string"),
            "{e}"
        );
    }

    #[test]
    fn torn_writes_are_told_from_other_damage() {
        for torn in [
            &b""[..],
            b"\0\0\0\0",
            b"  \n",
            b"{\"format\": 2, \"version\": 3, \"tables\": {\"t\": {\"buck",
            b"{\"format\": 2, \"ver\0\0\0\0",
        ] {
            assert!(is_torn(torn), "{:?}", String::from_utf8_lossy(torn));
        }
        for damaged in [
            &b"{\"format\": 2} tail"[..],
            b"garbage",
            b"{\"format\": 2, \"version\": \"x\"}",
            b"{\"format\": 2, \0\0 \"version\": 3}",
        ] {
            assert!(!is_torn(damaged), "{:?}", String::from_utf8_lossy(damaged));
        }
    }

    #[test]
    fn delta_fields_take_format_2_and_unknown_fields_are_refused() {
        let plain: Manifest = Manifest::from_json(
            br#"{"format": 1, "version": 1, "commit_id": "c", "committed_at_ms": 0,
                 "tables": {"t": {"buckets": 1, "bucket_column": "id", "columns": [],
                 "files": [{"name": "f", "bucket": 0, "size": 1, "rows": 4}]}}}"#,
            &Path::from("m"),
        )
        .unwrap();
        assert_eq!(plain.required_format(), 1);
        // Written by the build before format 2 (format 1 with a deletion vector): still read.
        let delta = Manifest::from_json(
            br#"{"format": 1, "version": 1, "commit_id": "c", "committed_at_ms": 0,
                 "tables": {"t": {"buckets": 1, "bucket_column": "id", "columns": [],
                 "files": [{"name": "f", "bucket": 0, "size": 1, "rows": 4,
                   "dv": {"storageType": "u", "pathOrInlineDv": "x", "offset": 1,
                          "sizeInBytes": 2, "cardinality": 1}}]}}}"#,
            &Path::from("m"),
        )
        .unwrap();
        assert_eq!(delta.required_format(), 2);
        assert_eq!(delta.tables["t"].files[0].live_rows(), 3);
        let e = Manifest::from_json(
            br#"{"format": 2, "version": 1, "commit_id": "c", "committed_at_ms": 0,
                 "tables": {"t": {"buckets": 1, "bucket_column": "id", "columns": [],
                 "files": [{"name": "f", "bucket": 0, "size": 1, "rows": 4, "new": 1}]}}}"#,
            &Path::from("m"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown field `new`"), "{e}");
    }

    #[test]
    fn named_or_published_logs_take_format_4() {
        let log = |extra: &str| {
            Manifest::from_json(
                format!(
                    r#"{{"format": 3, "version": 1, "commit_id": "c", "committed_at_ms": 0,
                         "tables": {{"t": {{"buckets": 1, "bucket_column": "id", "columns": [],
                         "files": [], "delta": {{"table_id": "i", "version": 2, "schema": "s"{extra}}}}}}}}}"#
                )
                .as_bytes(),
                &Path::from("m"),
            )
            .unwrap()
        };
        assert_eq!(log(r#", "commit": "text""#).required_format(), 2);
        assert_eq!(
            log(r#", "commit": "text", "format": "delta""#).required_format(),
            4
        );
        assert_eq!(
            log(r#", "commit": "text", "format": "iceberg""#).required_format(),
            4
        );
        assert_eq!(
            log("").required_format(),
            4,
            "a published version's text left out"
        );
    }

    #[test]
    fn format_delete_files_take_format_5() {
        let with = |file: &str| {
            Manifest::from_json(
                format!(
                    r#"{{"format": 5, "version": 1, "commit_id": "c", "committed_at_ms": 0,
                         "tables": {{"t": {{"buckets": 1, "bucket_column": "id", "columns": [],
                         "files": [{{"name": "f", "bucket": 0, "size": 1, "rows": 4{file}}}]}}}}}}"#
                )
                .as_bytes(),
                &Path::from("m"),
            )
            .unwrap()
        };
        assert_eq!(with("").required_format(), 1);
        let m =
            with(r#", "delete_file": {"name": "deletion_vector_x.parquet", "size": 9, "rows": 2}"#);
        assert_eq!(m.required_format(), 5);
        assert_eq!(
            m.tables["t"].files[0].delete_file.as_ref().map(|d| d.rows),
            Some(2)
        );
        let history = Manifest::from_json(
            br#"{"format": 5, "version": 1, "commit_id": "c", "committed_at_ms": 0,
                 "tables": {"t": {"buckets": 1, "bucket_column": "id", "columns": [],
                 "files": [], "delta": {"table_id": "i", "version": 2, "schema": "s",
                 "format": "iceberg", "versions": [{"version": 1, "at_ms": 5},
                 {"version": 2, "at_ms": 9}]}}}}"#,
            &Path::from("m"),
        )
        .unwrap();
        assert_eq!(history.required_format(), 5, "a log's readable versions");
    }

    #[test]
    fn newer_formats_are_rejected() {
        let e = Manifest::from_json(br#"{"format": 99}"#, &Path::from("m")).unwrap_err();
        assert!(e.to_string().contains("upgrade sluice"), "{e}");
        let m = Manifest {
            format: MANIFEST_FORMAT,
            version: 3,
            ..Default::default()
        };
        let back = Manifest::from_json(&m.to_json(), &Path::from("m")).unwrap();
        assert_eq!(back.version, 3);
    }
}
