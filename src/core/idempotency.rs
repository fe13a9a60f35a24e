//! The idempotency table: for each live client key, the fingerprint of its
//! payload, when it was first seen, its remembered answer (once durable) and
//! the attempt currently working on it. Bounded: when full of unexpired keys
//! a new key is refused, never an old one forgotten early.

use crate::core::ids::{AssignmentId, AttemptId, Fingerprint, KeyHash};
use crate::core::record::{KeyEntry, Remembered};
use crate::core::request::FieldError;
use crate::core::slab_map::{SlabMap, Slot};
use crate::core::time::Timestamp;
use std::collections::BTreeSet;
use std::num::NonZeroU64;

/// A remembered answer, by reference: the assignment's id, not its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredAnswer {
    Assigned(AssignmentId),
    NoAvailability,
    /// Boxed twice: a thin pointer keeps the answer at 16 bytes with its
    /// tag, in every entry; invalid answers are the rare ones.
    Invalid(Box<Box<[FieldError]>>),
}

impl StoredAnswer {
    pub fn from_remembered(r: &Remembered) -> Self {
        match r {
            Remembered::NoAvailability => StoredAnswer::NoAvailability,
            Remembered::Invalid(errors) => {
                StoredAnswer::Invalid(Box::new(errors.clone().into_boxed_slice()))
            }
        }
    }
}

/// What the table knows of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    fingerprint: Fingerprint,
    created_at: Timestamp,
    answer: Option<StoredAnswer>,
    /// The working attempt's id plus one: `Option<NonZeroU64>` takes 8
    /// bytes where `Option<AttemptId>` takes 16.
    attempt: Option<NonZeroU64>,
}

// DESIGN.md's budget is 128 bytes per key; an entry with its key is half.
const _: () = assert!(std::mem::size_of::<Option<(KeyHash, Entry)>>() <= 64);

impl Entry {
    /// A key whose durable answer is `answer` (as restored).
    pub fn answered(key: &KeyEntry, answer: StoredAnswer) -> Self {
        Entry {
            fingerprint: key.fingerprint,
            created_at: key.created_at,
            answer: Some(answer),
            attempt: None,
        }
    }

    /// The fingerprint of the payload first sent with the key.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// When the key was first seen; it expires a TTL later.
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }

    /// The durable answer, once there is one.
    pub fn answer(&self) -> Option<&StoredAnswer> {
        self.answer.as_ref()
    }

    /// The attempt working on this key right now.
    pub fn attempt(&self) -> Option<AttemptId> {
        self.attempt.map(|n| AttemptId(n.get() - 1))
    }

    fn set_attempt(&mut self, attempt: Option<AttemptId>) {
        // Attempt ids count requests: they never come near u64::MAX.
        self.attempt = attempt.map(|a| NonZeroU64::MIN.saturating_add(a.0));
    }
}

/// The table is full of unexpired keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableFull;

/// The table itself. Per key it holds the entry with its key (64 bytes, in
/// a [`SlabMap`] slot), a 4-byte index bucket and a 16-byte expiry entry.
#[derive(Debug, Clone)]
pub struct IdempotencyTable {
    entries: SlabMap<KeyHash, Entry>,
    /// (expiry, slot) of every entry, so expiry is an ordered walk.
    by_expiry: BTreeSet<(Timestamp, Slot)>,
    ttl_ms: u64,
    capacity: usize,
}

impl IdempotencyTable {
    pub fn new(ttl_ms: u64, capacity: u32) -> Self {
        IdempotencyTable {
            entries: SlabMap::default(),
            by_expiry: BTreeSet::new(),
            ttl_ms,
            capacity: capacity as usize,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, key: &KeyHash) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// Starts remembering `key` for `attempt`, first seen at `now`.
    pub fn begin(
        &mut self,
        key: KeyHash,
        fingerprint: Fingerprint,
        now: Timestamp,
        attempt: AttemptId,
    ) -> Result<(), TableFull> {
        debug_assert!(!self.entries.contains_key(&key));
        if self.entries.len() >= self.capacity {
            return Err(TableFull);
        }
        let mut entry = Entry {
            fingerprint,
            created_at: now,
            answer: None,
            attempt: None,
        };
        entry.set_attempt(Some(attempt));
        let (slot, _) = self.entries.insert(key, entry);
        self.by_expiry.insert((self.expiry(now), slot));
        Ok(())
    }

    /// Hands `key` to another attempt (a rerun after an undo).
    pub fn reassign(&mut self, key: &KeyHash, attempt: AttemptId) {
        if let Some(e) = self.entries.get_mut(key) {
            e.set_attempt(Some(attempt));
        }
    }

    /// The attempt on `key` ended with a durable `answer`.
    pub fn settle(&mut self, key: &KeyHash, answer: StoredAnswer) {
        if let Some(e) = self.entries.get_mut(key) {
            e.answer = Some(answer);
            e.set_attempt(None);
        }
    }

    /// The attempt on `key` stopped working on it; the durable answer, if
    /// any, stays.
    pub fn detach(&mut self, key: &KeyHash) {
        if let Some(e) = self.entries.get_mut(key) {
            e.set_attempt(None);
        }
    }

    /// Forgets `key` (its attempt left nothing to remember).
    pub fn release(&mut self, key: &KeyHash) -> Option<Entry> {
        let slot = self.entries.slot_of(key)?;
        let (_, e) = self.entries.remove_at(slot)?;
        self.by_expiry.remove(&(self.expiry(e.created_at), slot));
        Some(e)
    }

    /// Rebuilds the table from the journal's live keys (an empty table
    /// only). More keys than the capacity are kept: none is forgotten
    /// before its TTL, and new keys are refused until there is room.
    pub fn restore_all(&mut self, mut entries: SlabMap<KeyHash, Entry>, now: Timestamp) {
        debug_assert!(self.entries.is_empty());
        let ttl = self.ttl_ms;
        entries.retain(|_, e| e.created_at.plus_ms(ttl) > now);
        let mut by_expiry: Vec<(Timestamp, Slot)> = entries
            .iter()
            .map(|(slot, _, e)| (self.expiry(e.created_at), slot))
            .collect();
        by_expiry.sort_unstable();
        self.by_expiry = by_expiry.into_iter().collect();
        self.entries = entries;
    }

    /// Forgets every key whose TTL has run out and that no attempt holds
    /// (a held key expires once its attempt lets go of it).
    pub fn expire(&mut self, now: Timestamp) {
        let due: Vec<(Timestamp, Slot)> = self
            .by_expiry
            .range(..=(now, Slot::LAST))
            .filter(|(_, slot)| {
                self.entries
                    .at(*slot)
                    .is_some_and(|(_, e)| e.attempt.is_none())
            })
            .copied()
            .collect();
        for (at, slot) in due {
            self.by_expiry.remove(&(at, slot));
            self.entries.remove_at(slot);
        }
    }

    /// When a `Tick` next forgets a key, as of `now`: at once (a time not
    /// after `now`) for a key past its TTL that its attempt has let go of
    /// since the last expiry, else when the next TTL runs out.
    pub fn next_expiry(&self, now: Timestamp) -> Option<Timestamp> {
        use std::ops::Bound::{Excluded, Unbounded};
        let held = |slot: &Slot| {
            self.entries
                .at(*slot)
                .is_some_and(|(_, e)| e.attempt.is_some())
        };
        // Past its TTL and still here: held by its attempt, or let go of
        // since. Few, as an attempt outlives its key's TTL only rarely.
        let let_go = self
            .by_expiry
            .range(..=(now, Slot::LAST))
            .find(|(_, slot)| !held(slot));
        let_go
            .or_else(|| {
                self.by_expiry
                    .range((Excluded((now, Slot::LAST)), Unbounded))
                    .next()
            })
            .map(|&(at, _)| at)
    }

    /// Every key with a durable answer, oldest first and keys of the same
    /// age in key order (for snapshots: the same keys restored into other
    /// slots give the same records).
    pub fn durable(&self) -> impl Iterator<Item = (KeyEntry, &StoredAnswer)> + '_ {
        let mut durable: Vec<(KeyEntry, &StoredAnswer)> = self
            .by_expiry
            .iter()
            .filter_map(|&(_, slot)| {
                let (key, e) = self.entries.at(slot)?;
                let answer = e.answer.as_ref()?;
                let entry = KeyEntry {
                    key: *key,
                    fingerprint: e.fingerprint,
                    created_at: e.created_at,
                };
                Some((entry, answer))
            })
            .collect();
        // Sorted by age already: a stable sort only orders each age's keys.
        durable.sort_by_key(|(k, _)| (k.created_at, k.key));
        durable.into_iter()
    }

    fn expiry(&self, created_at: Timestamp) -> Timestamp {
        created_at.plus_ms(self.ttl_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: u64 = 1_000;

    fn key(i: u128) -> KeyHash {
        KeyHash(i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835))
    }

    fn table() -> IdempotencyTable {
        IdempotencyTable::new(TTL, 100)
    }

    fn remember(t: &mut IdempotencyTable, k: KeyHash, at: u64) {
        t.begin(k, Fingerprint(7), Timestamp(at), AttemptId(0))
            .expect("room");
        t.settle(&k, StoredAnswer::NoAvailability);
    }

    #[test]
    fn a_key_expires_at_its_ttl_unless_an_attempt_holds_it() {
        let mut t = table();
        remember(&mut t, key(1), 0);
        t.begin(key(2), Fingerprint(7), Timestamp(5), AttemptId(9))
            .expect("room");
        assert_eq!(t.get(&key(2)).and_then(Entry::attempt), Some(AttemptId(9)));
        t.expire(Timestamp(TTL - 1));
        assert_eq!(t.len(), 2, "nothing is due before its TTL");
        t.expire(Timestamp(TTL));
        assert!(t.get(&key(1)).is_none(), "due at its TTL");
        t.expire(Timestamp(TTL + 5));
        assert!(t.get(&key(2)).is_some(), "held by its attempt");
        t.detach(&key(2));
        t.expire(Timestamp(TTL + 6));
        assert!(t.is_empty(), "let go, then forgotten");
    }

    #[test]
    fn the_next_expiry_skips_held_keys_and_is_due_at_once_once_they_are_let_go() {
        let mut t = table();
        assert_eq!(t.next_expiry(Timestamp(0)), None);
        t.begin(key(1), Fingerprint(7), Timestamp(0), AttemptId(9))
            .expect("room");
        remember(&mut t, key(2), 10);
        assert_eq!(t.next_expiry(Timestamp(0)), Some(Timestamp(TTL)));
        // Past key 1's TTL its attempt still holds it: key 2 comes next.
        t.expire(Timestamp(TTL + 1));
        assert_eq!(t.next_expiry(Timestamp(TTL + 1)), Some(Timestamp(TTL + 10)));
        // Let go after its TTL: due at once, not at a later TTL.
        t.detach(&key(1));
        assert_eq!(t.next_expiry(Timestamp(TTL + 2)), Some(Timestamp(TTL)));
        t.expire(Timestamp(TTL + 2));
        assert_eq!(t.next_expiry(Timestamp(TTL + 2)), Some(Timestamp(TTL + 10)));
    }

    #[test]
    fn a_released_key_takes_its_expiry_along_and_frees_its_slot_for_another() {
        let mut t = table();
        t.begin(key(1), Fingerprint(7), Timestamp(0), AttemptId(0))
            .expect("room");
        assert!(t.release(&key(1)).is_some());
        // The new key reuses the freed slot; the old expiry must not take it.
        remember(&mut t, key(2), 500);
        t.expire(Timestamp(TTL));
        t.expire(Timestamp(TTL + 499));
        assert!(t.get(&key(2)).is_some(), "expires at {}", TTL + 500);
        t.expire(Timestamp(TTL + 500));
        assert!(t.is_empty());
    }

    #[test]
    fn a_full_table_refuses_a_new_key() {
        let mut t = IdempotencyTable::new(TTL, 2);
        remember(&mut t, key(1), 0);
        remember(&mut t, key(2), 0);
        let third = t.begin(key(3), Fingerprint(7), Timestamp(1), AttemptId(1));
        assert_eq!(third, Err(TableFull));
        t.expire(Timestamp(TTL));
        assert_eq!(
            t.begin(key(3), Fingerprint(7), Timestamp(TTL), AttemptId(1)),
            Ok(())
        );
    }

    #[test]
    fn durable_keys_come_by_age_then_key_whichever_slots_they_sit_in() {
        let mut live = table();
        for i in (0..20).rev() {
            remember(&mut live, key(i), (i % 3) as u64);
        }
        // Freed slots are reused out of order.
        for i in [3, 11, 17] {
            live.release(&key(i));
            remember(&mut live, key(i), 2);
        }
        let listed: Vec<KeyEntry> = live.durable().map(|(k, _)| k).collect();
        let mut sorted = listed.clone();
        sorted.sort_by_key(|k| (k.created_at, k.key));
        assert_eq!(listed, sorted);
        assert_eq!(listed.len(), 20);

        let mut entries = SlabMap::default();
        for (k, answer) in live.durable() {
            entries.insert(k.key, Entry::answered(&k, answer.clone()));
        }
        let mut restored = table();
        restored.restore_all(entries, Timestamp(0));
        let again: Vec<KeyEntry> = restored.durable().map(|(k, _)| k).collect();
        assert_eq!(again, listed);
    }
}
