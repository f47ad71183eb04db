//! A map from row-format keys to values that does not copy the keys: the keys stay in the
//! Arrow [`Rows`] they were encoded into, and a hash table holds (rows, row) references.
//! One allocation per batch of keys instead of one per key. Used by [`crate::merge`] (the
//! live row of each key) and by sinks that index staged keys (the Parquet sink's probe).

use arrow::row::Rows;
use hashbrown::HashTable;
use std::hash::BuildHasher;

fn hash(key: &[u8]) -> u64 {
    // FxHash: keys are the connector's data, not attacker-chosen hash-flooding input.
    rustc_hash::FxBuildHasher.hash_one(key)
}

/// Keys (from any number of [`Rows`]) with a value each.
#[derive(Debug)]
pub struct KeyIndex<V> {
    rows: Vec<Rows>,
    table: HashTable<(u32, u32, V)>,
}

impl<V> Default for KeyIndex<V> {
    fn default() -> Self {
        KeyIndex {
            rows: Vec::new(),
            table: HashTable::new(),
        }
    }
}

impl<V> KeyIndex<V> {
    /// An empty index with room for `keys` keys (spares the rehashing of a growing table).
    pub fn with_capacity(keys: usize) -> Self {
        KeyIndex {
            rows: Vec::new(),
            table: HashTable::with_capacity(keys),
        }
    }

    /// Adds a batch of keys; returns its number (0, 1, … in the order added), by which
    /// [`KeyIndex::entry`], [`KeyIndex::insert`] and [`KeyIndex::key`] name its rows.
    pub fn add_rows(&mut self, rows: Rows) -> u32 {
        self.rows.push(rows);
        (self.rows.len() - 1) as u32
    }

    fn key_in(rows: &[Rows], (set, row): (u32, u32)) -> &[u8] {
        rows[set as usize].row(row as usize).data()
    }

    /// The bytes of key `row` of batch `set`.
    pub fn key(&self, set: u32, row: u32) -> &[u8] {
        Self::key_in(&self.rows, (set, row))
    }

    /// The value of key `row` of batch `set`, inserted by `new` when the key is absent.
    fn slot(&mut self, set: u32, row: u32, new: impl FnOnce() -> V) -> &mut V {
        let rows = &self.rows;
        let key = Self::key_in(rows, (set, row));
        let entry = self.table.entry(
            hash(key),
            |e| Self::key_in(rows, (e.0, e.1)) == key,
            |e| hash(Self::key_in(rows, (e.0, e.1))),
        );
        &mut entry.or_insert_with(|| (set, row, new())).into_mut().2
    }

    /// The value of key `row` of batch `set`, inserted as `V::default()` when new.
    pub fn entry(&mut self, set: u32, row: u32) -> &mut V
    where
        V: Default,
    {
        self.slot(set, row, V::default)
    }

    /// Sets the value of key `row` of batch `set` (replacing any value of an equal key).
    pub fn insert(&mut self, set: u32, row: u32, value: V) {
        let mut value = Some(value);
        let slot = self.slot(set, row, || value.take().expect("inserted once"));
        if let Some(v) = value {
            *slot = v;
        }
    }

    /// Removes key `row` of batch `set`; returns its value.
    pub fn remove(&mut self, set: u32, row: u32) -> Option<V> {
        let rows = &self.rows;
        let key = Self::key_in(rows, (set, row));
        self.table
            .find_entry(hash(key), |e| Self::key_in(rows, (e.0, e.1)) == key)
            .ok()
            .map(|e| e.remove().0.2)
    }

    /// Removes `key` (bytes in the index's row format); returns its value.
    pub fn remove_key(&mut self, key: &[u8]) -> Option<V> {
        let rows = &self.rows;
        self.table
            .find_entry(hash(key), |e| Self::key_in(rows, (e.0, e.1)) == key)
            .ok()
            .map(|e| e.remove().0.2)
    }

    /// Takes every value out (in no particular order), leaving the index empty of keys.
    pub fn drain_values(&mut self) -> impl Iterator<Item = V> + '_ {
        self.table.drain().map(|e| e.2)
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &[u8]) -> Option<&V> {
        self.table
            .find(hash(key), |e| Self::key_in(&self.rows, (e.0, e.1)) == key)
            .map(|e| &e.2)
    }

    /// Whether `key` is present.
    pub fn contains(&self, key: &[u8]) -> bool {
        self.get(key).is_some()
    }

    /// Whether there is no key.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Every value (in no particular order).
    pub fn values(&self) -> impl Iterator<Item = &V> {
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
        // `insert` replaces the value of an equal key; `remove` takes it out.
        ix.insert(b, 0, 7);
        assert_eq!(ix.get(probe.row(1).data()), Some(&7));
        assert_eq!(ix.remove(a, 1), Some(7));
        assert_eq!(ix.get(probe.row(1).data()), None);
        assert_eq!(ix.key(b, 1), probe.row(2).data());
    }
}
