//! [`HashRuns`]: a set of 64-bit hashes in about 8.5 bytes per member.
//!
//! The written-keys index holds one hash per row a first sync writes (millions for a large
//! account). In a `HashSet<u64>` that costs 14–18 bytes per member (hashbrown's control
//! bytes and the free slots left after each doubling), which was the largest part of the
//! memory that grows with the account. Here members live in one sorted vector, sized
//! exactly, with a directory of where each run of equal leading bits starts; new members
//! wait in a hash set and are merged into the vector in batches of [`PENDING_MAX`] or an
//! eighth of the vector, whichever is larger (so merging stays linear in total: 5,000,000
//! members inserted and looked up in batches of 25,000 took 2.5 s with fixed batches, 1.3 s
//! with growing ones). The waiting set adds up to ~2 bytes per member before a merge.
//! Lookups read the directory, then a handful of neighbouring members.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

/// Members waiting to be merged into the sorted vector at most, for a small set.
const PENDING_MAX: usize = 1 << 16;

/// For a larger set, members wait until they are this fraction of the merged ones: about
/// two more bytes per member at the peak (the pending hash set), for merges that copy each
/// member ~9 times in all instead of once per [`PENDING_MAX`] inserts (quadratic).
const PENDING_SHARE: usize = 8;

/// A hasher for values that are already hashes.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// A `HashSet` of values that are already uniformly distributed hashes.
type HashSet64 = HashSet<u64, BuildHasherDefault<Prehashed>>;

/// A compact set of uniformly distributed 64-bit hashes (see the module docs).
#[derive(Default)]
pub(crate) struct HashRuns {
    /// Merged members, sorted, without duplicates, allocated to their exact length.
    sorted: Vec<u64>,
    /// `dir[p]` is the index of the first member of `sorted` whose top `bits` bits are ≥ `p`.
    dir: Vec<u32>,
    bits: u32,
    /// Members not merged yet.
    pending: HashSet64,
}

impl HashRuns {
    /// Whether the set has no member.
    pub(crate) fn is_empty(&self) -> bool {
        self.sorted.is_empty() && self.pending.is_empty()
    }

    /// Number of members.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.sorted.len() + self.pending.iter().filter(|h| !self.in_sorted(**h)).count()
    }

    /// Whether `h` is a member.
    pub(crate) fn contains(&self, h: u64) -> bool {
        self.pending.contains(&h) || self.in_sorted(h)
    }

    fn in_sorted(&self, h: u64) -> bool {
        if self.sorted.is_empty() {
            return false;
        }
        let (from, to) = if self.bits == 0 {
            (0, self.sorted.len())
        } else {
            let p = (h >> (64 - self.bits)) as usize;
            (self.dir[p] as usize, self.dir[p + 1] as usize)
        };
        self.sorted[from..to].binary_search(&h).is_ok()
    }

    /// Adds every hash of `hashes`.
    pub(crate) fn extend(&mut self, hashes: impl IntoIterator<Item = u64>) {
        for h in hashes {
            self.pending.insert(h);
            // Merging copies the whole sorted vector, so the batch grows with it (an eighth):
            // each member is copied a bounded number of times, not once per 65,536 inserts.
            if self.pending.len() >= PENDING_MAX.max(self.sorted.len() / PENDING_SHARE) {
                self.merge_pending();
            }
        }
    }

    /// Merges the pending members into the sorted vector (one exact-size allocation).
    fn merge_pending(&mut self) {
        let mut new: Vec<u64> = self.pending.drain().collect();
        new.sort_unstable();
        let mut merged = Vec::with_capacity(self.sorted.len() + new.len());
        let (mut a, mut b) = (self.sorted.iter().peekable(), new.iter().peekable());
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(&&x), Some(&&y)) if x <= y => {
                    a.next();
                    if x == y {
                        b.next();
                    }
                    x
                }
                (_, Some(&&y)) => {
                    b.next();
                    y
                }
                (Some(&&x), None) => {
                    a.next();
                    x
                }
                (None, None) => break,
            };
            merged.push(next);
        }
        merged.shrink_to_fit();
        self.sorted = merged;
        self.index();
    }

    /// Rebuilds the directory: about eight members per entry.
    fn index(&mut self) {
        let n = self.sorted.len();
        self.bits = if n < 64 {
            0
        } else {
            (usize::BITS - 1 - n.leading_zeros())
                .saturating_sub(3)
                .min(24)
        };
        if self.bits == 0 {
            self.dir = Vec::new();
            return;
        }
        let slots = 1usize << self.bits;
        let mut dir = Vec::with_capacity(slots + 1);
        let mut i = 0usize;
        for p in 0..slots as u64 {
            while i < n && (self.sorted[i] >> (64 - self.bits)) < p {
                i += 1;
            }
            dir.push(i as u32);
        }
        dir.push(n as u32);
        self.dir = dir;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn splitmix(mut x: u64) -> u64 {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    }

    #[test]
    fn members_survive_many_merges_and_others_are_absent() {
        let mut s = HashRuns::default();
        assert!(s.is_empty());
        let n = 3 * PENDING_MAX as u64 + 1234;
        s.extend((0..n).map(splitmix));
        // Duplicates across merged and pending members are stored once.
        s.extend((0..1000).map(splitmix));
        assert_eq!(s.len(), n as usize);
        assert!(s.bits > 0, "a merged set of this size has a directory");
        assert!((0..n).all(|i| s.contains(splitmix(i))));
        assert!((n..n + 100_000).all(|i| !s.contains(splitmix(i))));
        // Extreme values fall in the first and last directory entries.
        s.extend([0, u64::MAX]);
        s.merge_pending();
        assert!(s.contains(0) && s.contains(u64::MAX));
        assert!(!s.contains(1) && !s.contains(u64::MAX - 1));
    }

    #[test]
    fn agrees_with_a_hash_set() {
        // Sets of several sizes, merged at several points, with members that repeat and
        // values clustered in a narrow range (many share a directory entry).
        for case in 0..40u64 {
            let n = (splitmix(case) % 5000) as usize;
            let merge_at = (splitmix(case + 1000) % (n as u64 + 1)) as usize;
            let members: Vec<u64> = (0..n as u64)
                .map(|i| match i % 3 {
                    0 => splitmix(case * 10_000 + i),
                    1 => splitmix(case * 10_000 + i / 2),
                    _ => (1 << 40) + splitmix(i) % 1000,
                })
                .collect();
            let mut s = HashRuns::default();
            s.extend(members[..merge_at].iter().copied());
            s.merge_pending();
            s.extend(members[merge_at..].iter().copied());
            let truth: HashSet<u64> = members.iter().copied().collect();
            assert_eq!(s.len(), truth.len(), "case {case}");
            let probes = (0..300).map(|i| splitmix(i + 77_777 * (case + 1)));
            for h in members.iter().copied().chain(probes) {
                assert_eq!(s.contains(h), truth.contains(&h), "case {case}, value {h}");
            }
        }
    }
}
