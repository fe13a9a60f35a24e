//! [`SlabMap`]: a hash map for a large table of large entries (the
//! idempotency keys), whose keys are already uniformly distributed.
//!
//! A hash map that holds its entries in its buckets pays an entry's whole
//! size for every bucket, and a map that doubles is between 7/16 and 7/8
//! full: an entry of 64 bytes (and its control byte) costs 74 to 149. Here
//! the entries sit in slots, in chunks of [`CHUNK`] that never move, and
//! the hash index holds only 4-byte slot numbers: an entry costs its size
//! plus 6 to 12 bytes.
//! Growing copies no entry, and the index is split in [`PARTS`] like
//! [`PrehashedMap`](crate::core::prehashed_map::PrehashedMap), so a growth
//! rehashes at most 1/[`PARTS`] of it.
//!
//! A [`Slot`] stays an entry's handle until the entry is removed, so other
//! tables can refer to an entry by its 4-byte slot instead of its key.
//! Slots are handed out in a deterministic order (a freed slot is reused
//! first), but never let slot order reach an output where key order is
//! expected: the same entries restored from a journal sit in other slots.

use crate::core::prehashed_map::{hash_of, part_of_hash, PARTS};
use hashbrown::HashTable;
use std::hash::Hash;

/// Slots per chunk: the most memory a table holds beyond its entries
/// (one chunk not yet filled), small beside a table worth splitting.
pub const CHUNK: usize = 4096;

/// Where an entry sits; valid until the entry is removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot(u32);

impl Slot {
    /// Orders after every slot (for ranges).
    pub const LAST: Slot = Slot(u32::MAX);

    fn chunk(self) -> usize {
        self.0 as usize / CHUNK
    }
    fn offset(self) -> usize {
        self.0 as usize % CHUNK
    }
}

/// A hash map over already-random keys, with entries in stable slots.
#[derive(Debug, Clone)]
pub struct SlabMap<K, V> {
    /// Each chunk holds at most [`CHUNK`] slots (allocated at that size);
    /// `None` is a free slot.
    chunks: Vec<Vec<Option<(K, V)>>>,
    /// Free slots, reused last-freed first.
    free: Vec<Slot>,
    /// The slot of each key, in [`PARTS`] parts chosen by the key's hash.
    index: Box<[HashTable<Slot>]>,
    len: usize,
}

impl<K, V> Default for SlabMap<K, V> {
    fn default() -> Self {
        SlabMap {
            chunks: Vec::new(),
            free: Vec::new(),
            index: (0..PARTS).map(|_| HashTable::new()).collect(),
            len: 0,
        }
    }
}

impl<K: Hash + Eq, V> SlabMap<K, V> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.slot_of(key)
            .and_then(|slot| self.at(slot))
            .map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let slot = self.slot_of(key)?;
        entry_mut(&mut self.chunks, slot).as_mut().map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &K) -> bool {
        self.slot_of(key).is_some()
    }

    /// The slot holding `key`.
    pub fn slot_of(&self, key: &K) -> Option<Slot> {
        let hash = hash_of(key);
        let chunks = &self.chunks;
        self.index[part_of_hash(hash)]
            .find(hash, |&slot| holds(chunks, slot, key))
            .copied()
    }

    /// The entry in `slot`, if the slot is taken.
    pub fn at(&self, slot: Slot) -> Option<(&K, &V)> {
        let entry = self.chunks.get(slot.chunk())?.get(slot.offset())?;
        entry.as_ref().map(|(k, v)| (k, v))
    }

    /// Inserts `key` (in place if it is there already), returning its slot
    /// and the value it had.
    pub fn insert(&mut self, key: K, value: V) -> (Slot, Option<V>) {
        if let Some(slot) = self.slot_of(&key) {
            let old = entry_mut(&mut self.chunks, slot).replace((key, value));
            return (slot, old.map(|(_, v)| v));
        }
        let hash = hash_of(&key);
        let slot = self.take_slot((key, value));
        let chunks = &self.chunks;
        self.index[part_of_hash(hash)].insert_unique(hash, slot, |&s| hash_at(chunks, s));
        self.len += 1;
        (slot, None)
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let slot = self.slot_of(key)?;
        self.remove_at(slot).map(|(_, v)| v)
    }

    /// Removes the entry in `slot`, if the slot is taken.
    pub fn remove_at(&mut self, slot: Slot) -> Option<(K, V)> {
        let (key, value) = self
            .chunks
            .get_mut(slot.chunk())?
            .get_mut(slot.offset())?
            .take()?;
        let hash = hash_of(&key);
        if let Ok(found) = self.index[part_of_hash(hash)].find_entry(hash, |&s| s == slot) {
            found.remove();
        }
        self.free.push(slot);
        self.len -= 1;
        Some((key, value))
    }

    /// Keeps the entries for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        let mut gone = Vec::new();
        for (slot, entry) in self.slots_mut() {
            if let Some((k, v)) = entry {
                if !keep(k, v) {
                    gone.push(slot);
                }
            }
        }
        for slot in gone {
            self.remove_at(slot);
        }
    }

    /// Every entry with its slot, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (Slot, &K, &V)> {
        self.chunks.iter().enumerate().flat_map(|(c, chunk)| {
            chunk.iter().enumerate().filter_map(move |(o, entry)| {
                let (k, v) = entry.as_ref()?;
                Some((slot_at(c, o), k, v))
            })
        })
    }

    fn slots_mut(&mut self) -> impl Iterator<Item = (Slot, &mut Option<(K, V)>)> {
        self.chunks.iter_mut().enumerate().flat_map(|(c, chunk)| {
            chunk
                .iter_mut()
                .enumerate()
                .map(move |(o, entry)| (slot_at(c, o), entry))
        })
    }

    /// Puts `entry` in a free slot, or in a new one at the end.
    fn take_slot(&mut self, entry: (K, V)) -> Slot {
        if let Some(slot) = self.free.pop() {
            *entry_mut(&mut self.chunks, slot) = Some(entry);
            return slot;
        }
        if self.chunks.last().is_none_or(|chunk| chunk.len() == CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        let c = self.chunks.len() - 1;
        let chunk = &mut self.chunks[c];
        chunk.push(Some(entry));
        slot_at(c, chunk.len() - 1)
    }
}

fn slot_at(chunk: usize, offset: usize) -> Slot {
    let n = chunk * CHUNK + offset;
    // 2^32 entries of the smallest table here would need hundreds of GiB.
    Slot(u32::try_from(n).expect("fewer than 2^32 slots"))
}

fn entry_mut<K, V>(chunks: &mut [Vec<Option<(K, V)>>], slot: Slot) -> &mut Option<(K, V)> {
    &mut chunks[slot.chunk()][slot.offset()]
}

fn holds<K: Eq, V>(chunks: &[Vec<Option<(K, V)>>], slot: Slot, key: &K) -> bool {
    chunks[slot.chunk()][slot.offset()]
        .as_ref()
        .is_some_and(|(k, _)| k == key)
}

/// The hash of the key in `slot`, for the index when it grows (an indexed
/// slot is always taken).
fn hash_at<K: Hash, V>(chunks: &[Vec<Option<(K, V)>>], slot: Slot) -> u64 {
    chunks[slot.chunk()][slot.offset()]
        .as_ref()
        .map_or(0, |(k, _)| hash_of(k))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ids::KeyHash;
    use std::collections::BTreeMap;

    // Multiplying by an odd constant spreads the keys like a hash would.
    fn key(i: u128) -> KeyHash {
        KeyHash(i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835))
    }

    #[test]
    fn behaves_as_one_map() {
        let mut map = SlabMap::default();
        let mut model = BTreeMap::new();
        for i in 0..3 * CHUNK as u128 {
            assert_eq!(map.insert(key(i), i).1, model.insert(key(i), i));
            if i % 3 == 0 {
                assert_eq!(map.remove(&key(i / 2)), model.remove(&key(i / 2)));
            }
        }
        assert_eq!(map.insert(key(7), 70).1, model.insert(key(7), 70));
        if let Some(v) = map.get_mut(&key(8)) {
            *v = 80;
        }
        if let Some(v) = model.get_mut(&key(8)) {
            *v = 80;
        }
        assert_eq!(map.len(), model.len());
        for i in 0..3 * CHUNK as u128 {
            assert_eq!(map.get(&key(i)), model.get(&key(i)));
            assert_eq!(map.contains_key(&key(i)), model.contains_key(&key(i)));
        }
        map.retain(|_, v| *v % 2 == 0);
        model.retain(|_, v| *v % 2 == 0);
        assert_eq!(map.len(), model.len());
        let mut entries: Vec<(KeyHash, u128)> = map.iter().map(|(_, k, v)| (*k, *v)).collect();
        entries.sort();
        assert_eq!(entries, model.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn a_slot_names_its_entry_until_it_is_removed_and_is_then_reused() {
        let mut map = SlabMap::default();
        let slots: Vec<Slot> = (0..10).map(|i| map.insert(key(i), i).0).collect();
        assert_eq!(map.slot_of(&key(4)), Some(slots[4]));
        assert_eq!(map.at(slots[4]), Some((&key(4), &4)));
        assert_eq!(map.insert(key(4), 40), (slots[4], Some(4)), "in place");
        assert_eq!(map.remove_at(slots[4]), Some((key(4), 40)));
        assert_eq!(map.at(slots[4]), None);
        assert_eq!(map.get(&key(4)), None);
        assert_eq!(map.remove_at(slots[4]), None, "already free");
        assert_eq!(map.insert(key(11), 11).0, slots[4], "the freed slot first");
        assert_eq!(map.get(&key(11)), Some(&11));
        assert_eq!(map.len(), 10);
    }

    #[test]
    fn entries_fill_chunks_that_never_move() {
        let mut map = SlabMap::default();
        for i in 0..CHUNK as u128 + 1 {
            map.insert(key(i), [i; 2]);
        }
        let first = map.get(&key(0)).expect("present") as *const [u128; 2];
        for i in CHUNK as u128 + 1..4 * CHUNK as u128 {
            map.insert(key(i), [i; 2]);
        }
        assert_eq!(map.chunks.len(), 4);
        assert!(map.chunks.iter().all(|c| c.capacity() == CHUNK));
        let still = map.get(&key(0)).expect("present") as *const [u128; 2];
        assert_eq!(first, still, "an entry never moves");
    }
}
