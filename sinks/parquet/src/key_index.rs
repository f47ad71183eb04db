//! A map from row-format keys to values that does not copy the keys: the keys stay in the
//! Arrow [`Rows`] they were encoded into, and a hash table holds (rows, row) references.
//! One allocation per batch of keys instead of one per key (a commit indexes every staged
//! key, often twice: as an upsert and in a `DeleteMissing` keep set).

use arrow::row::Rows;
use hashbrown::HashTable;
use std::hash::BuildHasher;

fn hash(key: &[u8]) -> u64 {
    // FxHash: keys are the connector's data, not attacker-chosen hash-flooding input.
    rustc_hash::FxBuildHasher.hash_one(key)
}

/// Keys (from any number of [`Rows`]) with a value each.
#[derive(Default)]
pub(crate) struct KeyIndex<V> {
    rows: Vec<Rows>,
    table: HashTable<(u32, u32, V)>,
}

impl<V: Default> KeyIndex<V> {
    /// Adds a batch of keys; returns its number for [`KeyIndex::entry`].
    pub(crate) fn add_rows(&mut self, rows: Rows) -> u32 {
        self.rows.push(rows);
        (self.rows.len() - 1) as u32
    }

    fn key(rows: &[Rows], (set, row): (u32, u32)) -> &[u8] {
        rows[set as usize].row(row as usize).data()
    }

    /// The value of key `row` of batch `set`, inserted as `V::default()` when new.
    pub(crate) fn entry(&mut self, set: u32, row: u32) -> &mut V {
        let rows = &self.rows;
        let key = Self::key(rows, (set, row));
        let entry = self.table.entry(
            hash(key),
            |e| Self::key(rows, (e.0, e.1)) == key,
            |e| hash(Self::key(rows, (e.0, e.1))),
        );
        &mut entry.or_insert((set, row, V::default())).into_mut().2
    }

    /// The value of `key`, if present.
    pub(crate) fn get(&self, key: &[u8]) -> Option<&V> {
        self.table
            .find(hash(key), |e| Self::key(&self.rows, (e.0, e.1)) == key)
            .map(|e| &e.2)
    }

    /// Whether `key` is present.
    pub(crate) fn contains(&self, key: &[u8]) -> bool {
        self.get(key).is_some()
    }

    /// Whether there is no key.
    pub(crate) fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Every value.
    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.table.iter().map(|e| &e.2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, StringArray};
    use arrow::datatypes::DataType;
    use arrow::row::{RowConverter, SortField};
    use std::sync::Arc;

    #[test]
    fn keys_from_several_batches_share_one_entry() {
        let conv = RowConverter::new(vec![SortField::new(DataType::Utf8)]).unwrap();
        let rows = |v: &[&str]| {
            let a: ArrayRef = Arc::new(StringArray::from(v.to_vec()));
            conv.convert_columns(&[a]).unwrap()
        };
        let mut ix: KeyIndex<u32> = KeyIndex::default();
        let a = ix.add_rows(rows(&["x", "y", "x"]));
        let b = ix.add_rows(rows(&["y", "z"]));
        for (set, row) in [(a, 0), (a, 1), (a, 2), (b, 0), (b, 1)] {
            *ix.entry(set, row) += 1;
        }
        let probe = rows(&["x", "y", "z", "w"]);
        let got: Vec<Option<u32>> = (0..4)
            .map(|i| ix.get(probe.row(i).data()).copied())
            .collect();
        assert_eq!(got, [Some(2), Some(2), Some(1), None]);
        assert!(ix.contains(probe.row(2).data()) && !ix.contains(probe.row(3).data()));
        assert_eq!(ix.values().sum::<u32>(), 5);
        assert!(!ix.is_empty());
    }
}
