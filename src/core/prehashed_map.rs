//! [`PrehashedMap`]: the hash map of the core's large tables (assignments;
//! the idempotency keys use its sibling [`SlabMap`](crate::core::slab_map)),
//! whose keys are already uniformly distributed (keyed hashes, permuted ids).
//!
//! It is split into [`PARTS`] independent maps chosen by bits of the key's
//! hash that the parts themselves do not use. A single map doubles all at
//! once: at a million entries that is tens of milliseconds during which the
//! core — and every request waiting on it — stands still. Each part grows
//! on its own, so a growth moves at most 1/[`PARTS`] of the entries; the
//! total work is the same.
//!
//! Never iterate it where the order could reach an output.

use crate::core::ids::PrehashedHasher;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash};

/// How many parts a map has (a power of two).
pub const PARTS: usize = 256;

type Part<K, V> = HashMap<K, V, BuildHasherDefault<PrehashedHasher>>;

/// A hash map over already-random keys, in [`PARTS`] parts.
#[derive(Debug, Clone)]
pub struct PrehashedMap<K, V> {
    parts: Box<[Part<K, V>]>,
    len: usize,
}

impl<K, V> Default for PrehashedMap<K, V> {
    fn default() -> Self {
        PrehashedMap {
            parts: (0..PARTS).map(|_| Part::default()).collect(),
            len: 0,
        }
    }
}

impl<K: Hash + Eq, V> PrehashedMap<K, V> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.parts[part_of(key)].get(key)
    }

    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.parts[part_of(key)].get_mut(key)
    }

    pub fn contains_key(&self, key: &K) -> bool {
        self.parts[part_of(key)].contains_key(key)
    }

    /// Inserts, returning the value `key` had.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let old = self.parts[part_of(&key)].insert(key, value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let old = self.parts[part_of(key)].remove(key);
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// Room for `additional` more entries, spread evenly over the parts.
    pub fn reserve(&mut self, additional: usize) {
        let each = additional.div_ceil(PARTS);
        for part in self.parts.iter_mut() {
            part.reserve(each);
        }
    }

    /// Gives back the room that no entry uses (after a reserve that was
    /// too generous, or a retain that dropped many).
    pub fn shrink_to_fit(&mut self) {
        for part in self.parts.iter_mut() {
            part.shrink_to_fit();
        }
    }

    /// Keeps the entries for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        for part in self.parts.iter_mut() {
            part.retain(&mut keep);
        }
        self.len = self.parts.iter().map(Part::len).sum();
    }

    /// Every entry, in no meaningful order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.parts.iter().flat_map(Part::iter)
    }

    /// Every value, in no meaningful order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.parts.iter().flat_map(Part::values)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.parts.iter_mut().flat_map(Part::values_mut)
    }
}

impl<K: Hash + Eq, V> FromIterator<(K, V)> for PrehashedMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(entries: I) -> Self {
        let mut map = PrehashedMap::default();
        for (key, value) in entries {
            map.insert(key, value);
        }
        map
    }
}

fn part_of<K: Hash>(key: &K) -> usize {
    part_of_hash(hash_of(key))
}

/// The hash of an already-random key (its low 64 bits).
pub fn hash_of<K: Hash>(key: &K) -> u64 {
    BuildHasherDefault::<PrehashedHasher>::default().hash_one(key)
}

/// The part of a key with `hash`: bits 48..56. A part with 2^k buckets
/// places a key by the low k bits and tags it with the top 7, so these
/// bits stay free for choosing the part until a part holds 2^48 entries.
pub fn part_of_hash(hash: u64) -> usize {
    (hash >> 48) as usize & (PARTS - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ids::KeyHash;
    use std::collections::BTreeMap;

    #[test]
    fn behaves_as_one_map() {
        let mut map = PrehashedMap::default();
        let mut model = BTreeMap::new();
        // Multiplying by an odd constant spreads the keys like a hash would.
        let key = |i: u128| KeyHash(i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835));
        for i in 0..5_000u128 {
            assert_eq!(map.insert(key(i), i), model.insert(key(i), i));
            if i % 3 == 0 {
                assert_eq!(map.remove(&key(i / 2)), model.remove(&key(i / 2)));
            }
        }
        assert_eq!(map.insert(key(7), 70), model.insert(key(7), 70));
        assert_eq!(map.len(), model.len());
        for i in 0..5_000u128 {
            assert_eq!(map.get(&key(i)), model.get(&key(i)));
            assert_eq!(map.contains_key(&key(i)), model.contains_key(&key(i)));
        }
        map.retain(|_, v| *v % 2 == 0);
        model.retain(|_, v| *v % 2 == 0);
        assert_eq!(map.len(), model.len());
        let mut entries: Vec<(KeyHash, u128)> = map.iter().map(|(k, v)| (*k, *v)).collect();
        entries.sort();
        assert_eq!(entries, model.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn keys_spread_over_every_part() {
        let map: PrehashedMap<KeyHash, ()> = (0..PARTS as u128 * 64)
            .map(|i| {
                (
                    KeyHash(i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)),
                    (),
                )
            })
            .collect();
        let sizes: Vec<usize> = map.parts.iter().map(Part::len).collect();
        assert!(
            sizes.iter().all(|&n| (16..=160).contains(&n)),
            "64 per part on average, none far off: {sizes:?}"
        );
    }
}
