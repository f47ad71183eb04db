//! Deciding, before anything is read in full, which stored rows a commit changes.
//!
//! A [`Probe`] indexes the staged changes of one table (changed keys, the buckets their new
//! rows go to, `DeleteMissing` scopes). [`Probe::check`] then runs over a projection of a
//! bucket's stored files (key columns, scope columns, `_fivetran_active` /
//! `_fivetran_deleted`) and records whether the changes affect any stored row of that bucket,
//! and in which buckets changed keys live today. A bucket no stored row of which is affected
//! can take the merged new rows as an additional file; any other bucket is rewritten.
//!
//! The decision mirrors [`sluice_core::sink_support::merge`] exactly:
//! * an upsert affects a stored row with the same key (history tables: the active version);
//! * a `Delete` affects a stored row with the key that it would change (history: the active
//!   version; soft deletes: a row not yet deleted; hard deletes: any row);
//! * a `DeleteMissing` affects a stored row in its scope, not in `keep`, that it would change
//!   (same rule as `Delete`).
//!
//! If no change affects a stored row of a set of buckets, then merging the changes into those
//! buckets leaves every stored row as it was and adds exactly the rows that merging the
//! changes into an empty table gives, which is what the fast path writes.

use crate::bucketed::BucketedChanges;
use crate::error::Result;
use crate::layout;
use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use arrow::datatypes::DataType;
use arrow::row::{RowConverter, SortField};
use roaring::RoaringTreemap;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use sluice_core::sink_support::{ACTIVE, DELETED, KeyIndex};
use sluice_core::{Change, Scope, SinkChange, TableSpec};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

/// How the staged changes use one key.
#[derive(Debug, Default)]
struct KeyUse {
    upsert: bool,
    delete: bool,
    /// Buckets that receive new rows of this key in this commit.
    buckets: Buckets,
}

/// A short list of buckets: almost always one, so the first is stored inline.
#[derive(Debug, Default)]
struct Buckets {
    first: Option<u32>,
    more: Vec<u32>,
}

impl Buckets {
    fn insert(&mut self, b: u32) {
        match self.first {
            None => self.first = Some(b),
            Some(f) if f == b => {}
            Some(_) if self.more.contains(&b) => {}
            Some(_) => self.more.push(b),
        }
    }
    fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.first.into_iter().chain(self.more.iter().copied())
    }
}

/// A `DeleteMissing` of the commit, ready to test stored rows.
struct Missing {
    /// `None` for `Scope::All`; else the column and its values.
    scope: Option<(String, HashSet<String>)>,
    keep: KeyIndex<()>,
}

/// The staged changes of one table, indexed for [`Probe::check`].
pub(crate) struct Probe {
    conv: RowConverter,
    key: Vec<String>,
    history: bool,
    capture_deletes: bool,
    key_in_bucket: bool,
    keys: KeyIndex<KeyUse>,
    missing: Vec<Missing>,
    /// Buckets that receive new rows, with the number of upserted rows (an upper bound of
    /// the rows they gain).
    pub targets: BTreeMap<u32, u64>,
    /// Buckets whose `Delete` keys name them (only when the bucket column is in the key).
    delete_buckets: BTreeSet<u32>,
    /// Buckets a `DeleteMissing` can reach (`None`: every bucket).
    missing_buckets: Option<BTreeSet<u32>>,
}

/// What [`Probe::check`] found in the stored files.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    /// Buckets with a stored row that the changes modify.
    pub affected: BTreeSet<u32>,
    /// Pairs of buckets that must be merged together (a changed key lives in one and gets new
    /// rows in the other).
    pub links: Vec<(u32, u32)>,
}

fn key_columns(
    batch: &RecordBatch,
    key: &[String],
    what: &str,
) -> Result<Vec<arrow::array::ArrayRef>> {
    key.iter()
        .map(|k| {
            batch.column_by_name(k).cloned().ok_or_else(|| {
                crate::error::LakeError::Core(sluice_core::Error::internal(format!(
                    "{what} lacks key column `{k}`"
                )))
            })
        })
        .collect()
}

/// The bucket of each row of upsert `i` (`batch`); rows without the bucket column are
/// stored in bucket 0.
fn upsert_buckets<'p>(
    parts: &'p BucketedChanges<'_>,
    i: usize,
    batch: &RecordBatch,
) -> Cow<'p, [u32]> {
    parts
        .row_buckets(i)
        .map_or_else(|| Cow::Owned(vec![0; batch.num_rows()]), Cow::Borrowed)
}

/// A boolean system column, or `None` when absent or entirely NULL (as `merge` reads it).
fn flag(batch: &RecordBatch, name: &str) -> Option<BooleanArray> {
    batch
        .column_by_name(name)
        .filter(|c| c.null_count() < c.len())
        .map(|c| c.as_boolean().clone())
}

impl Probe {
    /// A probe of no change yet, for table `spec` bucketed by `bcol`.
    fn empty(spec: &TableSpec, bcol: &str) -> Result<Probe> {
        let schema = spec.arrow_schema();
        let fields = spec
            .primary_key
            .iter()
            .map(|k| {
                Ok(SortField::new(
                    schema.field_with_name(k)?.data_type().clone(),
                ))
            })
            .collect::<std::result::Result<Vec<_>, arrow::error::ArrowError>>()
            .map_err(sluice_core::Error::from)?;
        let conv = RowConverter::new(fields).map_err(sluice_core::Error::from)?;
        Ok(Probe {
            conv,
            key: spec.primary_key.clone(),
            history: spec.history,
            capture_deletes: spec.capture_deletes,
            key_in_bucket: spec.primary_key.iter().any(|k| k == bcol),
            keys: KeyIndex::default(),
            missing: Vec::new(),
            targets: BTreeMap::new(),
            delete_buckets: BTreeSet::new(),
            missing_buckets: Some(BTreeSet::new()),
        })
    }

    /// A probe of changes that the written-keys index proved touch no stored row and upsert no
    /// key twice (or whose keys cannot move between buckets): only where the new rows go
    /// matters, so no key is converted. Never [`Probe::check`]ed; [`Probe::own_links`] is
    /// empty, since no key gets new rows in two buckets.
    pub(crate) fn targets_only(
        spec: &TableSpec,
        bcol: &str,
        changes: &[SinkChange],
        parts: &BucketedChanges<'_>,
    ) -> Result<Probe> {
        let mut probe = Probe::empty(spec, bcol)?;
        for (i, c) in changes.iter().enumerate() {
            if let Change::Upsert { batch, .. } = &c.change {
                for &b in upsert_buckets(parts, i, batch).iter() {
                    *probe.targets.entry(b).or_default() += 1;
                }
            }
        }
        Ok(probe)
    }

    /// Indexes `changes` (with `Via` scopes already resolved) of table `spec`, stored in `n`
    /// buckets by `bcol`; `parts` are the same changes split by bucket (whose row buckets
    /// are reused, not hashed again).
    pub(crate) fn new(
        spec: &TableSpec,
        n: u32,
        bcol: &str,
        changes: &[SinkChange],
        parts: &BucketedChanges<'_>,
    ) -> Result<Probe> {
        let mut probe = Probe::empty(spec, bcol)?;
        for (i, c) in changes.iter().enumerate() {
            match &c.change {
                Change::Upsert { batch, .. } => {
                    let rows_bucket = upsert_buckets(parts, i, batch);
                    let rows = probe
                        .conv
                        .convert_columns(&key_columns(batch, &probe.key, "an upsert")?)
                        .map_err(sluice_core::Error::from)?;
                    let set = probe.keys.add_rows(rows);
                    for (row, &b) in rows_bucket.iter().enumerate() {
                        *probe.targets.entry(b).or_default() += 1;
                        let u = probe.keys.entry(set, row as u32);
                        u.upsert = true;
                        u.buckets.insert(b);
                    }
                }
                Change::Delete { keys, .. } => {
                    if probe.key_in_bucket
                        && let Some(buckets) = parts.row_buckets(i)
                    {
                        probe.delete_buckets.extend(buckets.iter().copied());
                    }
                    let rows = probe
                        .conv
                        .convert_columns(&key_columns(keys, &probe.key, "a delete")?)
                        .map_err(sluice_core::Error::from)?;
                    let set = probe.keys.add_rows(rows);
                    for row in 0..keys.num_rows() {
                        probe.keys.entry(set, row as u32).delete = true;
                    }
                }
                Change::DeleteMissing { scope, keep, .. } => {
                    let scope = match scope {
                        Scope::All => {
                            probe.missing_buckets = None;
                            None
                        }
                        Scope::Where { column, values } => {
                            if column == bcol {
                                if let Some(m) = probe.missing_buckets.as_mut() {
                                    m.extend(values.iter().map(|v| layout::bucket_of(v, n)));
                                }
                            } else {
                                probe.missing_buckets = None;
                            }
                            Some((column.clone(), values.iter().cloned().collect()))
                        }
                        Scope::Via { .. } => {
                            return Err(crate::error::LakeError::Core(
                                sluice_core::Error::internal(
                                    "a Via scope must be resolved before the commit",
                                ),
                            ));
                        }
                    };
                    let rows = probe
                        .conv
                        .convert_columns(&key_columns(keep, &probe.key, "a delete-missing")?)
                        .map_err(sluice_core::Error::from)?;
                    let n_keep = keep.num_rows();
                    let mut keep = KeyIndex::default();
                    let set = keep.add_rows(rows);
                    for row in 0..n_keep {
                        keep.entry(set, row as u32);
                    }
                    probe.missing.push(Missing { scope, keep });
                }
            }
        }
        Ok(probe)
    }

    /// The columns [`Probe::check`] reads from stored files.
    pub(crate) fn columns(&self) -> Vec<String> {
        let mut cols = self.key.clone();
        for m in &self.missing {
            if let Some((c, _)) = &m.scope
                && !cols.contains(c)
            {
                cols.push(c.clone());
            }
        }
        if self.history {
            cols.push(ACTIVE.to_owned());
        } else if self.capture_deletes {
            cols.push(DELETED.to_owned());
        }
        cols
    }

    /// Whether the stored files of `bucket` must be checked at all.
    pub(crate) fn must_check(&self, bucket: u32) -> bool {
        let by_key = if self.key_in_bucket {
            self.targets.contains_key(&bucket) || self.delete_buckets.contains(&bucket)
        } else {
            !self.keys.is_empty()
        };
        let by_scope = !self.missing.is_empty()
            && self
                .missing_buckets
                .as_ref()
                .is_none_or(|m| m.contains(&bucket));
        by_key || by_scope
    }

    /// Checks a projection ([`Probe::columns`]) of stored rows of `bucket`.
    pub(crate) fn check(
        &self,
        bucket: u32,
        batch: &RecordBatch,
        found: &mut Findings,
    ) -> Result<()> {
        self.scan(bucket, batch, found, None)
    }

    /// Like [`Probe::check`], and also records the position of every affected row in `hits`:
    /// row `i` of `batch` is position `first + i` of its file. Rows whose position is in
    /// `deleted` (the file's deletion vector) are not live and are skipped.
    pub(crate) fn check_rows(
        &self,
        bucket: u32,
        batch: &RecordBatch,
        found: &mut Findings,
        first: u64,
        deleted: Option<&RoaringTreemap>,
        hits: &mut RoaringTreemap,
    ) -> Result<()> {
        self.scan(bucket, batch, found, Some((first, deleted, hits)))
    }

    /// [`Probe::check`] and [`Probe::check_rows`]: with `rows`, every row is examined (no
    /// early exit once the bucket is known to be affected).
    fn scan(
        &self,
        bucket: u32,
        batch: &RecordBatch,
        found: &mut Findings,
        mut rows_out: Option<(u64, Option<&RoaringTreemap>, &mut RoaringTreemap)>,
    ) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let rows = self
            .conv
            .convert_columns(&key_columns(batch, &self.key, "a stored file")?)
            .map_err(sluice_core::Error::from)?;
        let active = flag(batch, ACTIVE);
        let deleted = flag(batch, DELETED);
        let scopes = self
            .missing
            .iter()
            .map(|m| match &m.scope {
                None => Ok(None),
                Some((col, _)) => match batch.column_by_name(col) {
                    None => Ok(Some(None)),
                    Some(c) => Ok(Some(Some(
                        arrow::compute::cast(c, &DataType::Utf8)
                            .map_err(sluice_core::Error::from)?,
                    ))),
                },
            })
            .collect::<Result<Vec<_>>>()?;
        let exhaustive = rows_out.is_some();
        for row in 0..batch.num_rows() {
            if !exhaustive && self.key_in_bucket && found.affected.contains(&bucket) {
                // Nothing more to learn: keys of this table cannot live in other buckets.
                break;
            }
            if let Some((first, Some(deleted), _)) = &rows_out
                && deleted.contains(first + row as u64)
            {
                continue;
            }
            let mut hit = false;
            let is_active = !self.history
                || active
                    .as_ref()
                    .is_none_or(|a| a.is_valid(row) && a.value(row));
            let is_deleted = deleted
                .as_ref()
                .is_some_and(|a| a.is_valid(row) && a.value(row));
            // Whether a delete would change this row (see `merge::delete_slot`).
            let deletable = if self.history {
                is_active
            } else if self.capture_deletes {
                !is_deleted
            } else {
                true
            };
            let key = rows.row(row);
            let key = key.as_ref();
            if let Some(u) = self.keys.get(key)
                && ((u.upsert && is_active) || (u.delete && deletable))
            {
                hit = true;
                for b in u.buckets.iter() {
                    if b != bucket {
                        found.links.push((bucket, b));
                    }
                }
            }
            let known = if exhaustive {
                hit
            } else {
                hit || found.affected.contains(&bucket)
            };
            if deletable && !known {
                for (m, scope) in self.missing.iter().zip(&scopes) {
                    let in_scope = match (scope, &m.scope) {
                        (None, _) => true,
                        (Some(Some(col)), Some((_, values))) => {
                            let s = col.as_string::<i32>();
                            s.is_valid(row) && values.contains(s.value(row))
                        }
                        _ => false,
                    };
                    if in_scope && !m.keep.contains(key) {
                        hit = true;
                        break;
                    }
                }
            }
            if hit {
                found.affected.insert(bucket);
                if let Some((first, _, hits)) = &mut rows_out {
                    hits.insert(*first + row as u64);
                }
            }
        }
        Ok(())
    }

    /// Pairs of buckets that receive new rows of the same key in this commit (a key that
    /// moves between parents within one commit).
    pub(crate) fn own_links(&self) -> Vec<(u32, u32)> {
        let mut links = Vec::new();
        for u in self.keys.values() {
            let mut buckets = u.buckets.iter();
            if let Some(first) = buckets.next() {
                links.extend(buckets.map(|b| (first, b)));
            }
        }
        links
    }
}

/// Groups `buckets` into sets that must be merged together: connected components of
/// `links` (a key moving from one bucket to another joins them).
pub(crate) fn groups(buckets: &BTreeSet<u32>, links: &[(u32, u32)]) -> Vec<BTreeSet<u32>> {
    let mut parent: HashMap<u32, u32> = buckets.iter().map(|&b| (b, b)).collect();
    fn find(parent: &mut HashMap<u32, u32>, b: u32) -> u32 {
        let p = *parent.entry(b).or_insert(b);
        if p == b {
            return b;
        }
        let root = find(parent, p);
        parent.insert(b, root);
        root
    }
    for &(a, b) in links {
        let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
        if ra != rb {
            parent.insert(ra.max(rb), ra.min(rb));
        }
    }
    let mut out: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
    let all: Vec<u32> = parent.keys().copied().collect();
    for b in all {
        let r = find(&mut parent, b);
        out.entry(r).or_default().insert(b);
    }
    out.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_join_linked_buckets() {
        let b: BTreeSet<u32> = [1, 2, 3, 5].into();
        let g = groups(&b, &[(3, 5), (5, 7)]);
        assert_eq!(
            g,
            vec![
                BTreeSet::from([1]),
                BTreeSet::from([2]),
                BTreeSet::from([3, 5, 7])
            ]
        );
    }
}
