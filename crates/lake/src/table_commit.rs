//! One table's part of a commit: bucket growth, the probe of stored rows, then each group of
//! buckets appended to, compacted, rewritten or (with deletion vectors) patched.

use crate::bucketed::BucketedChanges;
use crate::deletion_vector::{self, Descriptor};
use crate::error::{LakeError, Result};
use crate::format::DeletedRows;
use crate::group_writer::GroupWriter;
use crate::manifest::{DeleteFile, FileEntry, TableEntry};
use crate::parquet_files;
use crate::probe::{self, Findings, Probe};
use crate::sink::{LakeSink, dv_files, with_companions};
use crate::written_keys::Proof;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use roaring::RoaringTreemap;
use rustc_hash::FxHashMap;
use sluice_core::{Change, SinkChange, SyncKind, TableCommitStats, TableSpec};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// Passes over a table's append-path buckets per commit (see `commit_table`).
const APPEND_PASSES: usize = 2;

/// Most buckets a table sized by its rows grows to (4^6).
const MAX_SIZED_BUCKETS: u32 = 4096;

/// Deletion vectors: what the probe found in one stored file.
pub(crate) struct Hit {
    /// Positions of the affected rows.
    pub(crate) rows: RoaringTreemap,
    /// The file's deleted rows once the affected ones are added.
    pub(crate) deleted: RoaringTreemap,
}

impl LakeSink {
    /// Merges `changes` into the touched buckets of one table and writes the new files.
    /// Returns the new entry, stats and the superseded files.
    pub(crate) async fn commit_table(
        &self,
        spec: &TableSpec,
        base: Option<&TableEntry>,
        changes: &[SinkChange],
        new_files: &mut Vec<Path>,
    ) -> Result<(TableEntry, TableCommitStats, Vec<Path>)> {
        let mut entry = base
            .cloned()
            .unwrap_or_else(|| TableEntry::new(spec, self.buckets_for(spec)));
        entry.check(spec)?;
        entry.absorb(spec);
        let schema = spec.arrow_schema();
        let bcol = entry.bucket_column.clone();
        if schema.field_with_name(&bcol).is_err() {
            return Err(LakeError::Core(sluice_core::Error::destination(format!(
                "table `{}`: its files are bucketed by column `{bcol}`, which is no longer \
                 declared; re-sync the table into a new destination",
                spec.name
            ))));
        }
        let key_in_bucket = spec.primary_key.contains(&bcol);
        let vectors = matches!(self.format.deleted_rows(), DeletedRows::Vectors { .. });

        // 0. A table sized by its rows that would outgrow its buckets is re-bucketed first
        //    (a new table just starts with enough buckets). The new files take the old ones'
        //    place for the rest of the commit.
        let incoming: u64 = changes
            .iter()
            .map(|c| match &c.change {
                Change::Upsert { batch, .. } => batch.num_rows() as u64,
                _ => 0,
            })
            .sum();
        let mut split = (TableCommitStats::default(), Vec::new());
        if let Some(to) = self.grown_buckets(spec, &entry, incoming) {
            if entry.files.is_empty() {
                entry.buckets = to;
            } else {
                let mut w = GroupWriter {
                    sink: self,
                    spec,
                    bcol: &bcol,
                    n: to,
                    props: parquet_files::writer_properties(spec, self.config.row_group_rows),
                    keys_distinct: false,
                    stats: TableCommitStats::default(),
                    written: Vec::new(),
                    new_files,
                };
                let replaced = self.split_buckets(&mut w, &mut entry).await?;
                tracing::debug!(table = %spec.name, buckets = to, files = replaced.len(), "buckets split");
                entry.files = std::mem::take(&mut w.written);
                for f in &replaced {
                    w.stats.bytes_rewritten += f.size;
                }
                split = (w.stats, replaced);
            }
        }
        let n = entry.buckets;

        // 1. Index the staged changes, then check the stored rows they can reach, reading
        //    only the columns the check needs (key, scope and flag columns). A table that
        //    started empty in this run: its index of written keys can prove that nothing
        //    stored is affected, without reading any file; if no key is upserted twice either
        //    (or keys cannot move between buckets), the probe only counts new rows per bucket.
        let parts = BucketedChanges::new(changes, &bcol, n)?;
        let proof = {
            let mut index = self.written.lock().expect("written-keys index lock");
            index.prove(spec, &bcol, changes, base.map_or(0, |e| e.files.len()))
        };
        let untouched = matches!(proof, Proof::Untouched { .. });
        let probe = match proof {
            Proof::Untouched { unique_keys } if unique_keys || n == 1 || key_in_bucket => {
                Probe::targets_only(spec, &bcol, changes, &parts)?
            }
            _ => Probe::new(spec, n, &bcol, changes, &parts)?,
        };
        let mut stored: BTreeMap<u32, Vec<FileEntry>> = BTreeMap::new();
        for f in &entry.files {
            stored.entry(f.bucket).or_default().push(f.clone());
        }
        let mut found = Findings::default();
        // Deletion vectors: the affected rows of each stored file, with its deleted rows after them.
        let mut hits: FxHashMap<String, Hit> = FxHashMap::default();
        let columns = probe.columns();
        for (&bucket, files) in &stored {
            if untouched || !probe.must_check(bucket) {
                continue;
            }
            for f in files {
                let path = self.file_path(&spec.name, &f.name);
                let batches =
                    parquet_files::read_file(&self.dest.store, &path, f.size, Some(&columns), None)
                        .await?;
                if vectors {
                    let deleted = self.deleted_rows(&spec.name, f).await?;
                    let (mut first, mut rows) = (0, RoaringTreemap::new());
                    for b in &batches {
                        probe.check_rows(
                            bucket,
                            b,
                            &mut found,
                            first,
                            deleted.as_ref(),
                            &mut rows,
                        )?;
                        first += b.num_rows() as u64;
                    }
                    if !rows.is_empty() {
                        let mut after = deleted.unwrap_or_default();
                        after |= &rows;
                        hits.insert(
                            f.name.clone(),
                            Hit {
                                rows,
                                deleted: after,
                            },
                        );
                    }
                    continue;
                }
                for b in &batches {
                    probe.check(bucket, b, &mut found)?;
                }
                if key_in_bucket && found.affected.contains(&bucket) {
                    break;
                }
            }
        }

        // 2. The buckets to write (new rows or affected rows), grouped so that the old and new
        //    rows of every changed key are merged together (a key moving to another parent
        //    joins two buckets; usually every group is one bucket). A group with an affected
        //    row is rewritten from all its files; a bucket that would exceed
        //    `max_files_per_bucket` merges some of its files with its new rows; any other
        //    group gets the merged new rows as additional files.
        let mut work: BTreeSet<u32> = probe.targets.keys().copied().collect();
        work.extend(found.affected.iter().copied());
        let mut links = std::mem::take(&mut found.links);
        links.extend(probe.own_links());
        let groups = probe::groups(&work, &links);
        let mut out = GroupWriter {
            sink: self,
            spec,
            bcol: &bcol,
            n,
            props: parquet_files::writer_properties(spec, self.config.row_group_rows),
            keys_distinct: matches!(proof, Proof::Untouched { unique_keys: true }),
            stats: TableCommitStats::default(),
            written: Vec::new(),
            new_files,
        };
        // Files replaced by this commit's rewrites and compactions.
        let mut replaced: HashSet<String> = HashSet::new();
        // Deletion vectors: the new deletion vectors of files that stay.
        let mut deletions: Vec<(String, RoaringTreemap)> = Vec::new();
        let mut appended: Vec<BTreeSet<u32>> = Vec::new();
        for group in groups {
            let affected = group.iter().any(|b| found.affected.contains(b));
            let files_of = |b: &u32| stored.get(b).into_iter().flatten().cloned();
            if affected && vectors {
                // Deletion vectors: the affected rows are merged and written to a new file, and
                // marked deleted where they were; files mostly deleted are folded in.
                let files: Vec<FileEntry> = group.iter().flat_map(files_of).collect();
                let group_changes: Cow<'_, [SinkChange]> = if n > 1 {
                    Cow::Owned(parts.restrict(&group)?)
                } else {
                    Cow::Borrowed(changes)
                };
                let folded = out
                    .patch(&group, &files, &hits, &group_changes, &mut deletions)
                    .await?;
                replaced.extend(folded);
                continue;
            }
            // A group with an affected row is rewritten from all its files. Otherwise only
            // buckets about to exceed `max_files_per_bucket` merge some of their files with
            // the new rows (size-tiered, see `compaction_set`); the rest append.
            let to_read: Vec<FileEntry> = if affected {
                group.iter().flat_map(files_of).collect()
            } else {
                group
                    .iter()
                    .flat_map(|b| {
                        let files: Vec<FileEntry> = files_of(b).collect();
                        let new_rows = probe.targets.get(b).copied().unwrap_or(0);
                        self.compaction_set(&files, new_rows)
                    })
                    .collect()
            };
            if !affected && to_read.is_empty() {
                appended.push(group);
                continue;
            }
            replaced.extend(to_read.iter().map(|f| f.name.clone()));
            let group_changes: Cow<'_, [SinkChange]> = if n > 1 {
                Cow::Owned(parts.restrict(&group)?)
            } else {
                Cow::Borrowed(changes)
            };
            // A compaction of one bucket (no stored row affected) copies the stored rows as
            // they are, batch by batch; anything else (a rewrite, or a compaction of buckets
            // joined by a key staged under two parents) merges the group's rows.
            let one_bucket = group.first().filter(|_| group.len() == 1).copied();
            if let (false, Some(bucket)) = (affected, one_bucket) {
                out.compact(bucket, &to_read, &group_changes).await?;
                continue;
            }
            out.rewrite(&group, &to_read, &group_changes).await?;
        }
        // Groups on the append fast path merge against no stored rows, so several are merged
        // together: their keys are disjoint, so this equals merging each alone, and spares a
        // pass over every change per group. They are packed into `APPEND_PASSES` passes (not
        // one) to bound the memory a pass holds: its merged rows and their per-bucket copies.
        let per_pass = (n as usize).div_ceil(APPEND_PASSES).max(1);
        let mut pass: BTreeSet<u32> = BTreeSet::new();
        let mut passes = Vec::new();
        for group in appended {
            pass.extend(group);
            if pass.len() >= per_pass {
                passes.push(std::mem::take(&mut pass));
            }
        }
        passes.push(pass);
        for buckets in passes.into_iter().filter(|p| !p.is_empty()) {
            let group_changes: Cow<'_, [SinkChange]> = if n > 1 {
                Cow::Owned(parts.restrict(&buckets)?)
            } else {
                Cow::Borrowed(changes)
            };
            out.append(&buckets, &group_changes).await?;
        }
        let GroupWriter {
            mut stats, written, ..
        } = out;
        let (split_stats, split_replaced) = split;
        stats.add(&split_stats);

        // Deletion vectors: this commit's deletion vectors, all in one new vector file.
        // A format that keeps deleted rows in a file of its own gets one beside it.
        let mut vectors: FxHashMap<String, Descriptor> = FxHashMap::default();
        let mut delete_file = None;
        if !deletions.is_empty() {
            let mut file = deletion_vector::FileBuilder::new();
            for (name, rows) in &deletions {
                vectors.insert(name.clone(), file.push(rows));
            }
            let mut puts = vec![(file.name(), file.into_bytes())];
            if let Some(ext) = self.format.dv_companion_extension() {
                let name = deletion_vector::companion_name(&puts[0].0, ext);
                let bytes = self.format.encode_deleted_rows(&spec.name, &deletions)?;
                delete_file = Some(DeleteFile {
                    name: name.clone(),
                    size: bytes.len() as u64,
                    rows: deletions.iter().map(|(_, rows)| rows.len()).sum(),
                });
                puts.push((name, bytes));
            }
            for (name, bytes) in puts {
                let path = self.file_path(&spec.name, &name);
                new_files.push(path.clone());
                stats.bytes_written += bytes.len() as u64;
                stats.files_written += 1;
                self.dest
                    .store
                    .put(&path, PutPayload::from(bytes))
                    .await
                    .map_err(|e| LakeError::store("writing", &path, e))?;
            }
        }
        let vectors_before = base.map(|e| dv_files(&e.files)).unwrap_or_default();

        // 3. The new file list: replaced files go, every other file stays as it was.
        let mut superseded: Vec<Path> = split_replaced
            .iter()
            .map(|f| self.file_path(&spec.name, &f.name))
            .collect();
        let mut files = Vec::new();
        for mut f in entry.files.drain(..) {
            if replaced.contains(&f.name) {
                stats.bytes_rewritten += f.size;
                superseded.push(self.file_path(&spec.name, &f.name));
            } else {
                if let Some(d) = vectors.remove(&f.name) {
                    f.dv = Some(d);
                    f.delete_file.clone_from(&delete_file);
                }
                files.push(f);
            }
        }
        files.extend(written);
        files.sort_by(|a, b| (a.bucket, &a.name).cmp(&(b.bucket, &b.name)));
        entry.files = files;
        // Vector files no live file refers to any more.
        let vectors_after = dv_files(&entry.files);
        let gone = vectors_before.difference(&vectors_after);
        superseded.extend(
            with_companions(self.format.as_ref(), gone)
                .iter()
                .map(|name| self.file_path(&spec.name, name)),
        );
        Ok((entry, stats, superseded))
    }

    /// The files of a bucket to merge with `new_rows` appended rows so that the bucket keeps
    /// at most `max_files_per_bucket` files; empty when appending a file keeps it within.
    ///
    /// Size-tiered: the smallest files are taken first, and beyond what the limit needs, a
    /// file is absorbed only while it is no larger than the rows merged so far; no merged
    /// file exceeds `max_rows_per_file`. Over a first sync of equal commits this rewrites
    /// each row O(log commits) times, where rewriting the whole bucket at the limit rewrote
    /// it O(commits / max_files_per_bucket) times.
    pub(crate) fn compaction_set(&self, files: &[FileEntry], new_rows: u64) -> Vec<FileEntry> {
        let max = self.config.max_files_per_bucket.max(1);
        if files.len() < max {
            return Vec::new();
        }
        let cap = self.config.max_rows_per_file as u64;
        let mut by_size: Vec<&FileEntry> = files.iter().collect();
        by_size.sort_by(|a, b| (a.rows, &a.name).cmp(&(b.rows, &b.name)));
        let mut merged = new_rows;
        let mut chosen = Vec::new();
        for f in by_size {
            // Files the bucket holds after merging `chosen` and the new rows into one.
            let after = files.len() - chosen.len() + 1;
            if (after <= max && f.rows > merged) || merged + f.rows > cap {
                break;
            }
            merged += f.rows;
            chosen.push(f.clone());
        }
        chosen
    }

    /// The bucket count of a new table: fixed by config, 1 for re-imported tables, else 1
    /// to start with (see [`Self::grown_buckets`]).
    pub(crate) fn buckets_for(&self, spec: &TableSpec) -> u32 {
        if let Some(&n) = self.config.table_buckets.get(&spec.name) {
            return n;
        }
        match spec.sync {
            SyncKind::Reimport => 1,
            _ => self.config.buckets.unwrap_or(1),
        }
    }

    /// Whether the table's bucket count follows its size (no fixed count configured).
    pub(crate) fn sized_by_rows(&self, spec: &TableSpec) -> bool {
        self.config.buckets.is_none()
            && !self.config.table_buckets.contains_key(&spec.name)
            && spec.sync != SyncKind::Reimport
    }

    /// The bucket count a table sized by its rows needs once `incoming` more rows arrive:
    /// the current count times a power of 4, so that at most `bucket_rows` rows fall in a
    /// bucket; `None` when the current count suffices. Splitting by 4 rather than 2 rewrites
    /// the table fewer times as it grows (each split rewrites it once).
    pub(crate) fn grown_buckets(
        &self,
        spec: &TableSpec,
        entry: &TableEntry,
        incoming: u64,
    ) -> Option<u32> {
        if !self.sized_by_rows(spec) {
            return None;
        }
        let rows = entry.files.iter().map(FileEntry::live_rows).sum::<u64>() + incoming;
        let mut n = entry.buckets.max(1);
        while rows > u64::from(n) * self.config.bucket_rows && n < MAX_SIZED_BUCKETS {
            n *= 4;
        }
        (n != entry.buckets).then_some(n)
    }

    /// Re-buckets every stored file of `entry` into `to` buckets (a multiple of the current
    /// count, so each old bucket's rows spread over the new buckets congruent to it), one old
    /// bucket at a time. Rows are copied as they are; the replaced files are returned.
    pub(crate) async fn split_buckets(
        &self,
        out: &mut GroupWriter<'_>,
        entry: &mut TableEntry,
    ) -> Result<Vec<FileEntry>> {
        let mut by_bucket: BTreeMap<u32, Vec<FileEntry>> = BTreeMap::new();
        for f in entry.files.drain(..) {
            by_bucket.entry(f.bucket).or_default().push(f);
        }
        let from = entry.buckets;
        let mut replaced = Vec::new();
        for (bucket, files) in by_bucket {
            let targets: BTreeSet<u32> = (bucket..out.n).step_by(from as usize).collect();
            out.redistribute(&files, &targets).await?;
            replaced.extend(files);
        }
        entry.buckets = out.n;
        Ok(replaced)
    }
}
