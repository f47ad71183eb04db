//! The deletion-vector strategy of [`GroupWriter`]: a group with affected stored rows gets
//! their new versions in new files and their old positions in deletion vectors, instead of
//! rewriting the files (formats whose [`DeletedRows`](crate::format::DeletedRows) is
//! `Vectors`).

use crate::error::{LakeError, Result};
use crate::format::DeletedRows;
use crate::group_writer::{GroupWriter, OpenFiles};
use crate::manifest::FileEntry;
use crate::parquet_files;
use crate::table_commit::Hit;
use futures::TryStreamExt;
use roaring::RoaringTreemap;
use rustc_hash::FxHashMap;
use sluice_core::SinkChange;
use sluice_core::sink_support::align;
use std::collections::BTreeSet;

impl GroupWriter<'_> {
    /// Delta mode: merges `changes` into the buckets `buckets` (a group with an affected row)
    /// without rewriting their files. The affected rows of each file (`hits`, by position) are
    /// read, merged with the changes chunk by chunk (as [`ChunkedMerge`] would merge them with
    /// the whole group: unaffected rows are exactly those no change alters) and written, with
    /// the rows of new keys, to new files; their old positions join the files' deletion vectors
    /// (pushed to `deletions`). A file whose deleted share reaches `max_deleted_share`, or
    /// the smallest files of a bucket about to exceed `max_files_per_bucket`, are folded:
    /// their remaining live rows are copied into the new files and they go. Returns the
    /// folded files' names.
    pub(crate) async fn patch(
        &mut self,
        buckets: &BTreeSet<u32>,
        files: &[FileEntry],
        hits: &FxHashMap<String, Hit>,
        changes: &[SinkChange],
        deletions: &mut Vec<(String, RoaringTreemap)>,
    ) -> Result<Vec<String>> {
        let spec = self.spec;
        let schema = spec.arrow_schema();
        // 1. Each touched file's deleted rows once the affected ones are added (known from
        //    the probe, which read the file's vector already).
        let mut deleted: FxHashMap<&str, RoaringTreemap> = files
            .iter()
            .filter_map(|f| Some((f.name.as_str(), hits.get(&f.name)?.deleted.clone())))
            .collect();
        // 2. Which files to fold.
        let share = match self.sink.format.deleted_rows() {
            DeletedRows::Vectors { max_deleted_share } => max_deleted_share,
            _ => 1.0,
        };
        let dead = |f: &FileEntry| {
            deleted
                .get(f.name.as_str())
                .map_or_else(|| f.rows - f.live_rows(), RoaringTreemap::len)
        };
        let mut fold: BTreeSet<&str> = files
            .iter()
            .filter(|f| dead(f) as f64 >= share * f.rows as f64)
            .map(|f| f.name.as_str())
            .collect();
        let max = self.sink.config.max_files_per_bucket.max(1);
        for b in buckets {
            let mut kept: Vec<&FileEntry> = files
                .iter()
                .filter(|f| f.bucket == *b && !fold.contains(f.name.as_str()))
                .collect();
            // The new file of this commit comes on top of the kept ones.
            if kept.len() < max {
                continue;
            }
            kept.sort_by_key(|f| (f.rows - dead(f), f.name.as_str()));
            for f in &kept[..kept.len() + 1 - max] {
                fold.insert(f.name.as_str());
            }
        }
        // 3. The affected rows, read by position and merged `rewrite_chunk_rows` at a time
        //    (memory holds one chunk even when a change touches most of a table), then the
        //    rows of new keys, then the folded files' remaining live rows.
        let mut merge = self.chunked(changes)?;
        let mut open = OpenFiles::new();
        for f in files {
            let Some(hit) = hits.get(&f.name) else {
                continue;
            };
            let path = self.sink.file_path(&spec.name, &f.name);
            let store = &self.sink.dest.store;
            let mut batches =
                parquet_files::open_rows(store, &path, f.size, &hit.rows, Some(&schema)).await?;
            while let Some(b) = batches
                .try_next()
                .await
                .map_err(|e| LakeError::parquet("reading", &path, e))?
            {
                let b = align(&b, &schema, &spec.name)?;
                self.feed(&mut merge, &mut open, buckets, &b).await?;
            }
        }
        self.finish_merge(merge, &mut open, buckets).await?;
        for f in files.iter().filter(|f| fold.contains(f.name.as_str())) {
            let gone = match deleted.remove(f.name.as_str()) {
                Some(d) => Some(d),
                None => self.sink.deleted_rows(&spec.name, f).await?,
            };
            let mut batches = self.stored_batches_without(f, &schema, gone).await?;
            while let Some(batch) = batches.try_next().await? {
                self.write_open(&mut open, buckets, &batch).await?;
            }
        }
        self.finish_open(open).await?;
        // 4. The files that stay get their new deletion vectors.
        for (name, rows) in deleted {
            if !fold.contains(name) {
                deletions.push((name.to_owned(), rows));
            }
        }
        Ok(fold.into_iter().map(str::to_owned).collect())
    }
}
