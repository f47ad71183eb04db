//! Deletion vectors: which rows of an immutable data file are no longer live.
//!
//! In Delta mode (`table_format = "delta"`, see `docs/delta-sink.md`) a commit that changes a
//! few stored rows does not rewrite their files: it writes the new rows to a new file and
//! marks the old positions deleted in the old files' deletion vectors. The encoding is Delta
//! Lake's (protocol, *Deletion Vector Format*), so Delta readers apply them too:
//!
//! * a vector is a 64-bit roaring bitmap of row positions (`roaring::RoaringTreemap`, whose
//!   serialization is the "portable" 64-bit format), preceded by the magic number
//!   1681511377 (little-endian u32);
//! * a vector file (`deletion_vector_<uuid>.bin` in the table folder) is a version byte (1),
//!   then per vector: its size (big-endian u32), the vector, and the CRC-32 of the vector
//!   (big-endian u32);
//! * a descriptor names the file by its uuid (Z85, storage type `u`) and gives the offset of
//!   the vector's size field and the vector's size and cardinality.

use crate::error::{LakeError, Result};
use arrow::array::BooleanArray;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use roaring::RoaringTreemap;
use serde::{Deserialize, Serialize};

/// The magic number in front of every serialized vector.
const MAGIC: u32 = 1_681_511_377;
/// The version byte a vector file starts with.
const FILE_VERSION: u8 = 1;
/// File names of vector files start with this.
pub(crate) const DV_PREFIX: &str = "deletion_vector_";

/// Where a file's deletion vector is stored, as Delta's `DeletionVectorDescriptor` (field
/// names as in the Delta log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(deny_unknown_fields)]
pub struct Descriptor {
    /// Always `u`: a file in the table folder named by a uuid.
    pub storage_type: String,
    /// The uuid of the vector file, Z85-encoded (20 characters).
    pub path_or_inline_dv: String,
    /// Offset of the vector's size field in the file.
    pub offset: u64,
    /// Size of the serialized vector (magic included).
    pub size_in_bytes: u32,
    /// Number of deleted rows.
    pub cardinality: u64,
}

impl Descriptor {
    /// The vector file's name inside the table folder.
    pub fn file_name(&self) -> Result<String> {
        let bytes = z85::decode(&self.path_or_inline_dv).map_err(|_| self.corrupt("path"))?;
        let id = uuid::Uuid::from_slice(&bytes).map_err(|_| self.corrupt("path"))?;
        Ok(file_name(id))
    }

    fn corrupt(&self, what: &str) -> LakeError {
        LakeError::Damaged {
            path: format!("deletion vector {}", self.path_or_inline_dv),
            detail: format!("invalid {what}"),
        }
    }
}

fn file_name(id: uuid::Uuid) -> String {
    format!("{DV_PREFIX}{}.bin", id.as_hyphenated())
}

/// Whether `name` is a deletion vector file this sink writes.
pub(crate) fn is_dv_file(name: &str) -> bool {
    name.starts_with(DV_PREFIX) && name.ends_with(".bin")
}

/// The name of the file a format derives from the vector file `dv_file` (see
/// [`TableFormat::dv_companion_extension`](crate::TableFormat::dv_companion_extension)): the
/// same name with `extension` in place of `bin`.
pub(crate) fn companion_name(dv_file: &str, extension: &str) -> String {
    let stem = dv_file.strip_suffix(".bin").unwrap_or(dv_file);
    format!("{stem}.{extension}")
}

/// Whether `name` is a file derived from a vector file under `extension`.
pub(crate) fn is_companion(name: &str, extension: &str) -> bool {
    name.starts_with(DV_PREFIX)
        && name
            .strip_suffix(extension)
            .is_some_and(|rest| rest.ends_with('.'))
}

/// Whether `name` is a vector file or a file derived from one, under any extension.
pub(crate) fn is_dv_or_companion(name: &str) -> bool {
    name.starts_with(DV_PREFIX)
}

/// Serializes one vector: magic, then the portable 64-bit roaring format.
fn encode(rows: &RoaringTreemap) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + rows.serialized_size());
    out.extend_from_slice(&MAGIC.to_le_bytes());
    rows.serialize_into(&mut out)
        .expect("writing to a Vec cannot fail");
    out
}

/// A vector file being built: every vector one commit writes for one table.
pub(crate) struct FileBuilder {
    id: uuid::Uuid,
    bytes: Vec<u8>,
}

impl FileBuilder {
    /// An empty vector file under a new uuid.
    pub(crate) fn new() -> FileBuilder {
        FileBuilder {
            id: uuid::Uuid::new_v4(),
            bytes: vec![FILE_VERSION],
        }
    }

    /// The file's name inside the table folder.
    pub(crate) fn name(&self) -> String {
        file_name(self.id)
    }

    /// Appends `rows` and returns its descriptor.
    pub(crate) fn push(&mut self, rows: &RoaringTreemap) -> Descriptor {
        let data = encode(rows);
        let offset = self.bytes.len() as u64;
        let size = u32::try_from(data.len()).expect("a deletion vector under 4 GiB");
        self.bytes.extend_from_slice(&size.to_be_bytes());
        self.bytes.extend_from_slice(&data);
        self.bytes
            .extend_from_slice(&crc32fast::hash(&data).to_be_bytes());
        Descriptor {
            storage_type: "u".to_owned(),
            path_or_inline_dv: z85::encode(self.id.as_bytes()),
            offset,
            size_in_bytes: size,
            cardinality: rows.len(),
        }
    }

    /// The file's bytes.
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// The positions of the deleted rows that `d` describes, in ascending order, read from the
/// table folder `dir` (checked as [`read`] checks them). For formats that publish deleted
/// rows in their own files (Iceberg's position deletes).
pub async fn deleted_positions(
    store: &dyn ObjectStore,
    dir: &Path,
    d: &Descriptor,
) -> Result<Vec<u64>> {
    Ok(read(store, dir, d).await?.iter().collect())
}

/// Reads the vector `d` describes from the folder `dir`, checking its size, checksum and
/// magic number.
pub(crate) async fn read(
    store: &dyn ObjectStore,
    dir: &Path,
    d: &Descriptor,
) -> Result<RoaringTreemap> {
    if d.storage_type != "u" {
        return Err(d.corrupt("storage type"));
    }
    let path = dir.clone().join(d.file_name()?);
    let len = u64::from(d.size_in_bytes);
    let range = d.offset..d.offset + 4 + len + 4;
    let bytes = store
        .get_range(&path, range)
        .await
        .map_err(|e| LakeError::store("reading", &path, e))?;
    let corrupt = |what: &str| LakeError::Damaged {
        path: format!("{path} at offset {}", d.offset),
        detail: what.to_owned(),
    };
    let size = u32::from_be_bytes(bytes[..4].try_into().expect("4 bytes"));
    if size != d.size_in_bytes {
        return Err(corrupt("size differs from the descriptor"));
    }
    let data = &bytes[4..4 + len as usize];
    let crc = u32::from_be_bytes(bytes[4 + len as usize..].try_into().expect("4 bytes"));
    if crc != crc32fast::hash(data) {
        return Err(corrupt("checksum mismatch"));
    }
    if data.len() < 4 || u32::from_le_bytes(data[..4].try_into().expect("4 bytes")) != MAGIC {
        return Err(corrupt("bad magic number"));
    }
    let rows = RoaringTreemap::deserialize_from(&data[4..])
        .map_err(|e| corrupt(&format!("undecodable bitmap ({e})")))?;
    if rows.len() != d.cardinality {
        return Err(corrupt("cardinality differs from the descriptor"));
    }
    Ok(rows)
}

/// Which of the `len` rows starting at position `first` are live (not in `deleted`); `None`
/// when all are.
pub(crate) fn live_mask(deleted: &RoaringTreemap, first: u64, len: usize) -> Option<BooleanArray> {
    let end = first + len as u64;
    if deleted.range_cardinality(first..end) == 0 {
        return None;
    }
    Some(BooleanArray::from_iter(
        (first..end).map(|p| Some(!deleted.contains(p))),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::PutPayload;
    use object_store::memory::InMemory;
    use std::sync::Arc;

    #[test]
    fn companions_are_named_after_their_vector_file() {
        let dv = file_name(uuid::Uuid::nil());
        let c = companion_name(&dv, "parquet");
        assert_eq!(
            c,
            "deletion_vector_00000000-0000-0000-0000-000000000000.parquet"
        );
        assert!(is_companion(&c, "parquet") && is_dv_or_companion(&c));
        assert!(!is_companion(&dv, "parquet") && !is_companion("part-x.parquet", "parquet"));
        assert!(!is_companion("deletion_vector_xparquet", "parquet"));
    }

    #[tokio::test]
    async fn vectors_round_trip_through_a_file_and_are_checked() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let dir = Path::from("t");
        let a: RoaringTreemap = [0u64, 7, 65_536, 5_000_000_000].into_iter().collect();
        let b: RoaringTreemap = (100u64..5_000).collect();
        let mut file = FileBuilder::new();
        let (da, db) = (file.push(&a), file.push(&b));
        assert_eq!(da.offset, 1, "the first vector follows the version byte");
        assert_eq!(db.offset, 1 + 4 + u64::from(da.size_in_bytes) + 4);
        assert_eq!((da.cardinality, db.cardinality), (4, 4_900));
        assert_eq!(da.path_or_inline_dv.len(), 20);
        let name = file.name();
        assert_eq!(da.file_name().unwrap(), name);
        let bytes = file.into_bytes();
        assert_eq!(bytes[0], 1);
        let at = da.offset as usize + 4;
        assert_eq!(&bytes[at..at + 4], &MAGIC.to_le_bytes());
        store
            .put(
                &dir.clone().join(name.as_str()),
                PutPayload::from(bytes.clone()),
            )
            .await
            .unwrap();
        assert_eq!(read(&store, &dir, &da).await.unwrap(), a);
        assert_eq!(read(&store, &dir, &db).await.unwrap(), b);

        // A flipped bit in the bitmap fails the checksum.
        let mut bad = bytes;
        bad[at + 6] ^= 1;
        store
            .put(&dir.clone().join(name.as_str()), PutPayload::from(bad))
            .await
            .unwrap();
        let e = read(&store, &dir, &da).await.unwrap_err().to_string();
        assert!(e.contains("checksum mismatch"), "{e}");
    }

    #[test]
    fn live_mask_marks_deleted_positions() {
        let deleted: RoaringTreemap = [3u64, 5, 10].into_iter().collect();
        assert!(live_mask(&deleted, 6, 4).is_none());
        let m = live_mask(&deleted, 2, 4).unwrap();
        let v: Vec<bool> = m.iter().map(|b| b.unwrap()).collect();
        assert_eq!(v, [true, false, true, false]);
    }
}
