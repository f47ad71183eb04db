//! Where things live under the destination root, and which bucket a row belongs to.
//!
//! ```text
//! <root>/<table>/part-b00003-<uuid>.parquet   data files (bucket 3 of the table)
//! <root>/_sluice/manifest/00000000000000000042.json   manifest version 42 (the highest is live)
//! <root>/_sluice/lease.json                  the lease of the run that writes
//! ```

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use object_store::path::Path;
use sluice_core::Result;

/// The folder of sluice's own objects.
pub(crate) const SLUICE_DIR: &str = "_sluice";
/// Prefix of data file names.
pub(crate) const DATA_PREFIX: &str = "part-b";

/// The folder of `table`.
pub(crate) fn table_dir(root: &Path, table: &str) -> Path {
    root.clone().join(table)
}

/// A new, unique data file name for `bucket`.
pub(crate) fn new_file_name(bucket: u32) -> String {
    format!(
        "{DATA_PREFIX}{bucket:05}-{}.parquet",
        uuid::Uuid::new_v4().simple()
    )
}

/// Whether `name` looks like a data file this sink writes.
pub(crate) fn is_data_file(name: &str) -> bool {
    name.starts_with(DATA_PREFIX) && name.ends_with(".parquet")
}

/// Whether `name` is a staging file that object_store's local store left behind when the
/// process died during a put (`<name>#<n>`, renamed into place on success) of an object
/// this sink writes: a data file, a deletion vector, a JSON object (a Delta log version,
/// an Iceberg metadata version, a manifest version, the lease), a Delta checkpoint, an
/// Iceberg manifest or manifest list (`.avro`) or Iceberg's version hint.
pub(crate) fn is_staging_leftover(name: &str) -> bool {
    name.rsplit_once('#').is_some_and(|(base, n)| {
        !n.is_empty()
            && n.bytes().all(|b| b.is_ascii_digit())
            && (is_data_file(base)
                || crate::deletion_vector::is_dv_or_companion(base)
                || base.ends_with(".json")
                || base.ends_with(".checkpoint.parquet")
                || base == "_last_checkpoint"
                || base.ends_with(".avro")
                || base == "version-hint.text")
    })
}

/// The folder of manifest versions.
pub(crate) fn manifest_dir(root: &Path) -> Path {
    root.clone().join(SLUICE_DIR).join("manifest")
}

/// The object of manifest `version`.
pub(crate) fn manifest_path(root: &Path, version: u64) -> Path {
    manifest_dir(root).join(format!("{version:020}.json"))
}

/// The version of a manifest object name, if it is one.
pub(crate) fn manifest_version(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".json")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The folder of the probes of conditional writes (see `store_check`).
pub(crate) fn probe_dir(root: &Path) -> Path {
    root.clone().join(SLUICE_DIR).join("probe")
}

/// The lease object.
pub(crate) fn lease_path(root: &Path) -> Path {
    root.clone().join(SLUICE_DIR).join("lease.json")
}

/// The bucket of one bucket-column value: xxHash64 (seed 0) of its UTF-8 text, modulo
/// `buckets`. Stable across versions and platforms.
pub(crate) fn bucket_of(value: &str, buckets: u32) -> u32 {
    (twox_hash::XxHash64::oneshot(0, value.as_bytes()) % u64::from(buckets)) as u32
}

/// The bucket of every row of `column` (NULL goes to bucket 0). Values are formatted as
/// text the same way [`sluice_core::sink_support::select_values`] does, so a `Scope::Where` value
/// maps to the bucket of the rows holding it.
pub(crate) fn buckets_of(column: &dyn Array, buckets: u32) -> Result<Vec<u32>> {
    if buckets == 1 {
        return Ok(vec![0; column.len()]);
    }
    if column.data_type() == &DataType::Utf8 {
        let s = column.as_string::<i32>();
        return Ok((0..s.len())
            .map(|i| {
                if s.is_valid(i) {
                    bucket_of(s.value(i), buckets)
                } else {
                    0
                }
            })
            .collect());
    }
    let f = ArrayFormatter::try_new(column, &FormatOptions::default())?;
    Ok((0..column.len())
        .map(|i| {
            if column.is_valid(i) {
                bucket_of(&f.value(i).to_string(), buckets)
            } else {
                0
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};

    #[test]
    fn staging_leftovers_are_recognised() {
        assert!(is_staging_leftover("00000000000000000003.json#1"));
        assert!(is_staging_leftover("part-b00001-abc.parquet#12"));
        assert!(is_staging_leftover("deletion_vector_x.bin#2"));
        assert!(is_staging_leftover("snap-12-v3.avro#4"));
        assert!(is_staging_leftover("version-hint.text#1"));
        assert!(!is_staging_leftover("part-b00001-abc.parquet"));
        assert!(!is_staging_leftover("notes.txt#1"));
        assert!(!is_staging_leftover("part-b00001-abc.parquet#"));
    }

    #[test]
    fn bucket_hash_is_stable() {
        // Fixed values: changing the hash would scatter every existing table.
        assert_eq!(
            bucket_of("abc", 1_000_003),
            (0x44bc2cf5ad770999u64 % 1_000_003) as u32
        );
        assert_eq!(bucket_of("x", 1), 0);
        let s = StringArray::from(vec![Some("7"), None]);
        let i = Int64Array::from(vec![Some(7), None]);
        assert_eq!(buckets_of(&s, 16).unwrap(), buckets_of(&i, 16).unwrap());
        assert_eq!(buckets_of(&s, 16).unwrap()[1], 0);
    }

    #[test]
    fn names() {
        let root = Path::from("lake");
        assert_eq!(
            manifest_path(&root, 42).as_ref(),
            "lake/_sluice/manifest/00000000000000000042.json"
        );
        assert_eq!(manifest_version("00000000000000000042.json"), Some(42));
        assert_eq!(manifest_version("42.json"), None);
        let n = new_file_name(3);
        assert!(n.starts_with("part-b00003-") && is_data_file(&n), "{n}");
        assert!(!is_data_file("notes.txt"));
    }
}
