//! [`IdHash`]: a Lever id as its 128-bit hash, for what a run remembers per opportunity or
//! contact.
//!
//! A first sync of a large account remembers every opportunity it processed (to skip one a
//! restarted walk or a newer window already read) and every contact it wrote. Kept as
//! `String`s that costs ~130 bytes per id (a 24-byte header, a 36-byte UUID in a 48-byte
//! allocation, the map's slot); as a 16-byte hash in a map slot it costs ~30. Two different
//! ids share a hash with probability about n²/2¹²⁹ (10⁻²⁶ for a million ids), so the sets
//! behave as if they held the ids themselves.

use rustc_hash::{FxHashMap, FxHashSet};

/// A Lever id's 128-bit XXH3 hash, as two words (8-byte aligned: a map entry with an `i64`
/// value takes 24 bytes, not 32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct IdHash([u64; 2]);

impl IdHash {
    /// The hash of `id`.
    pub(crate) fn of(id: &str) -> Self {
        let h = twox_hash::XxHash3_128::oneshot(id.as_bytes());
        IdHash([h as u64, (h >> 64) as u64])
    }
}

/// Ids by hash, each with a value.
pub(crate) type IdMap<V> = FxHashMap<IdHash, V>;

/// A set of ids by hash.
pub(crate) type IdSet = FxHashSet<IdHash>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_ids_hash_equal_and_different_ids_differ() {
        let a = "250d8f03-738a-4bba-a671-8a3d73477145";
        let copy = String::from(a);
        assert_eq!(IdHash::of(a), IdHash::of(copy.as_str()));
        // Ids one character apart, and the empty id.
        let ids: Vec<String> = (0..10_000)
            .map(|i| format!("250d8f03-738a-4bba-a671-{i:012}"))
            .chain([String::new()])
            .collect();
        let set: IdSet = ids.iter().map(|i| IdHash::of(i)).collect();
        assert_eq!(set.len(), ids.len());
        assert!(ids.iter().all(|i| set.contains(&IdHash::of(i))));
        assert!(!set.contains(&IdHash::of("250d8f03-738a-4bba-a671-000000010000")));
    }
}
