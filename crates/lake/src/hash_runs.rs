//! [`HashRuns`]: a set of 64-bit hashes in about 4 bytes per member.
//!
//! The written-keys index holds one hash per parent or row key a first sync writes (tens of
//! millions for a large account), so its cost per member is most of the memory that grows
//! with the sync. A
//! `HashSet<u64>` costs 14–18 bytes per member (control bytes, free slots after a doubling);
//! a sorted `Vec<u64>` 8. Here a large set keeps each member's top 48 bits only: a fixed
//! directory of the top 16 bits (where each prefix's members start) and, per member, the next
//! 32 bits in one sorted `Vec<u32>`, sized exactly. Members that share their top 48 bits
//! count as one, so a probe that is not a member is reported as one with probability about
//! n/2⁴⁸ (2·10⁻⁸ for five million members): the index then checks the files, which costs a
//! read, never correctness.
//!
//! New members wait in a hash set and are merged in batches of a sixteenth of the set (at
//! least [`PENDING_MIN`]), so each member is copied a bounded number of times and the waiting
//! set adds about one byte per member at its peak. A set of fewer than [`PENDING_MIN`]
//! members never leaves the hash set.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

/// Members waiting to be merged at most, for a small set; a set this small stays a hash set.
const PENDING_MIN: usize = 1 << 16;

/// For a larger set, members wait until they are this fraction of the merged ones.
const PENDING_SHARE: usize = 16;

/// Bits of a member's hash the directory resolves.
const DIR_BITS: u32 = 16;

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

/// The directory slot of a hash: its top [`DIR_BITS`] bits.
fn slot(h: u64) -> usize {
    (h >> (64 - DIR_BITS)) as usize
}

/// The 32 bits of a hash below its directory slot.
fn rest(h: u64) -> u32 {
    (h >> (32 - DIR_BITS)) as u32
}

/// A compact set of uniformly distributed 64-bit hashes (see the module docs).
#[derive(Default)]
pub(crate) struct HashRuns {
    /// Merged members' bits below the directory slot, sorted by (slot, rest), without
    /// duplicates, allocated to their exact length.
    merged: Vec<u32>,
    /// `dir[p]` is the index in `merged` of the first member of slot `p` or above; empty
    /// while nothing is merged.
    dir: Vec<u32>,
    /// Members not merged yet.
    pending: HashSet64,
}

impl HashRuns {
    /// Whether the set has no member.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.merged.is_empty() && self.pending.is_empty()
    }

    /// Number of members (members that share their top 48 bits count once once merged).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.merged.len() + self.pending.iter().filter(|h| !self.in_merged(**h)).count()
    }

    /// Whether `h` is a member (or shares its top 48 bits with a merged one).
    pub(crate) fn contains(&self, h: u64) -> bool {
        self.pending.contains(&h) || self.in_merged(h)
    }

    fn in_merged(&self, h: u64) -> bool {
        if self.dir.is_empty() {
            return false;
        }
        let p = slot(h);
        let (from, to) = (self.dir[p] as usize, self.dir[p + 1] as usize);
        self.merged[from..to].binary_search(&rest(h)).is_ok()
    }

    /// Adds every hash of `hashes`.
    pub(crate) fn extend(&mut self, hashes: impl IntoIterator<Item = u64>) {
        for h in hashes {
            self.pending.insert(h);
            // Merging copies the whole merged vector, so the batch grows with it: each member
            // is copied a bounded number of times, not once per fixed-size batch.
            if self.pending.len() >= PENDING_MIN.max(self.merged.len() / PENDING_SHARE) {
                self.merge_pending();
            }
        }
    }

    /// Merges the pending members into the merged vector (one exact-size allocation) and
    /// rebuilds the directory.
    fn merge_pending(&mut self) {
        let mut new: Vec<u64> = self.pending.drain().map(|h| h >> (32 - DIR_BITS)).collect();
        self.pending.shrink_to_fit();
        new.sort_unstable();
        // Both sides as 48-bit values (slot, rest), merged in order without duplicates.
        let mut merged = Vec::with_capacity(self.merged.len() + new.len());
        let mut dir = vec![0u32; (1 << DIR_BITS) + 1];
        let mut last = None;
        let (mut a, mut b) = (self.old_members().peekable(), new.into_iter().peekable());
        loop {
            let v = match (a.peek(), b.peek()) {
                (Some(&x), Some(&y)) if x <= y => {
                    a.next();
                    x
                }
                (_, Some(&y)) => {
                    b.next();
                    y
                }
                (Some(&x), None) => {
                    a.next();
                    x
                }
                (None, None) => break,
            };
            if last == Some(v) {
                continue;
            }
            last = Some(v);
            merged.push(v as u32);
            // For now the end of the member's slot; empty slots are filled in below.
            dir[(v >> 32) as usize + 1] = merged.len() as u32;
        }
        drop(a);
        // `dir[p + 1]` is the end of slot p where p has members; carry ends over empty slots.
        for p in 1..dir.len() {
            dir[p] = dir[p].max(dir[p - 1]);
        }
        merged.shrink_to_fit();
        self.merged = merged;
        self.dir = dir;
    }

    /// The merged members as 48-bit values (slot, rest), in order.
    fn old_members(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.dir.len().saturating_sub(1)).flat_map(move |p| {
            let (from, to) = (self.dir[p] as usize, self.dir[p + 1] as usize);
            self.merged[from..to]
                .iter()
                .map(move |&r| ((p as u64) << 32) | u64::from(r))
        })
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
        let n = 20 * PENDING_MIN as u64 + 1234;
        s.extend((0..n).map(splitmix));
        // Duplicates across merged and pending members are stored once.
        s.extend((0..1000).map(splitmix));
        assert_eq!(s.len(), n as usize);
        assert!(!s.dir.is_empty(), "a set of this size is merged");
        assert!(
            s.pending.len() < s.merged.len() / 4,
            "most members are merged"
        );
        assert!((0..n).all(|i| s.contains(splitmix(i))));
        assert!((n..n + 100_000).all(|i| !s.contains(splitmix(i))));
        // Extreme values fall in the first and last directory entries.
        s.extend([0, u64::MAX]);
        s.merge_pending();
        assert!(s.contains(0) && s.contains(u64::MAX));
        assert!(!s.contains(1 << 16) && !s.contains(u64::MAX - (1 << 16)));
        // A merged member is known by its top 48 bits: a hash that differs below them is
        // reported as a member (the index then checks the files).
        assert!(s.contains(1) && s.contains(u64::MAX - 1));
    }

    #[test]
    fn sets_that_stay_small_are_exact() {
        let mut s = HashRuns::default();
        s.extend([0, 5, u64::MAX]);
        assert!(s.dir.is_empty() && s.merged.is_empty());
        assert!(s.contains(5) && !s.contains(4) && !s.contains(6) && !s.contains(1));
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
                    // Members that differ only in bits the directory and the kept 32 bits hold.
                    _ => (1 << 40) + ((splitmix(i) % 1000) << 16),
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
