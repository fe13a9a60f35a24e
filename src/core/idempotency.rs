//! The idempotency table: for each live client key, the fingerprint of its
//! payload, when it was first seen, its remembered answer (once durable) and
//! the attempt currently working on it. Bounded: when full of unexpired keys
//! a new key is refused, never an old one forgotten early.

use crate::core::ids::{AssignmentId, AttemptId, Fingerprint, KeyHash, PrehashedMap};
use crate::core::record::{KeyEntry, Remembered};
use crate::core::request::FieldError;
use crate::core::time::Timestamp;
use std::collections::BTreeSet;

/// A remembered answer, by reference: the assignment's id, not its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredAnswer {
    Assigned(AssignmentId),
    NoAvailability,
    Invalid(Box<[FieldError]>),
}

impl StoredAnswer {
    pub fn from_remembered(r: &Remembered) -> Self {
        match r {
            Remembered::NoAvailability => StoredAnswer::NoAvailability,
            Remembered::Invalid(errors) => StoredAnswer::Invalid(errors.clone().into()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub fingerprint: Fingerprint,
    pub created_at: Timestamp,
    /// The durable answer, once there is one.
    pub answer: Option<StoredAnswer>,
    /// The attempt working on this key right now.
    pub attempt: Option<AttemptId>,
}

/// The table is full of unexpired keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableFull;

#[derive(Debug, Clone)]
pub struct IdempotencyTable {
    entries: PrehashedMap<KeyHash, Entry>,
    /// (expiry, key) of every entry, so expiry is an ordered walk.
    by_expiry: BTreeSet<(Timestamp, KeyHash)>,
    ttl_ms: u64,
    capacity: usize,
}

impl IdempotencyTable {
    pub fn new(ttl_ms: u64, capacity: u32) -> Self {
        IdempotencyTable {
            entries: PrehashedMap::default(),
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
        self.insert(
            key,
            Entry {
                fingerprint,
                created_at: now,
                answer: None,
                attempt: Some(attempt),
            },
        );
        Ok(())
    }

    /// Hands `key` to another attempt (a rerun after an undo).
    pub fn reassign(&mut self, key: &KeyHash, attempt: AttemptId) {
        if let Some(e) = self.entries.get_mut(key) {
            e.attempt = Some(attempt);
        }
    }

    /// The attempt on `key` ended with a durable `answer`.
    pub fn settle(&mut self, key: &KeyHash, answer: StoredAnswer) {
        if let Some(e) = self.entries.get_mut(key) {
            e.answer = Some(answer);
            e.attempt = None;
        }
    }

    /// The attempt on `key` stopped working on it; the durable answer, if
    /// any, stays.
    pub fn detach(&mut self, key: &KeyHash) {
        if let Some(e) = self.entries.get_mut(key) {
            e.attempt = None;
        }
    }

    /// Forgets `key` (its attempt left nothing to remember).
    pub fn release(&mut self, key: &KeyHash) -> Option<Entry> {
        let e = self.entries.remove(key)?;
        self.by_expiry
            .remove(&(e.created_at.plus_ms(self.ttl_ms), *key));
        Some(e)
    }

    /// Rebuilds the table from the journal's live keys (an empty table
    /// only). More keys than the capacity are kept: none is forgotten
    /// before its TTL, and new keys are refused until there is room.
    pub fn restore_all(&mut self, mut entries: PrehashedMap<KeyHash, Entry>, now: Timestamp) {
        debug_assert!(self.entries.is_empty());
        let ttl = self.ttl_ms;
        entries.retain(|_, e| e.created_at.plus_ms(ttl) > now);
        let mut by_expiry: Vec<(Timestamp, KeyHash)> = entries
            .iter()
            .map(|(k, e)| (e.created_at.plus_ms(ttl), *k))
            .collect();
        by_expiry.sort_unstable();
        self.by_expiry = by_expiry.into_iter().collect();
        self.entries = entries;
    }

    /// Forgets every key whose TTL has run out and that no attempt holds
    /// (a held key expires once its attempt lets go of it).
    pub fn expire(&mut self, now: Timestamp) {
        let due: Vec<(Timestamp, KeyHash)> = self
            .by_expiry
            .range(..=(now, KeyHash(u128::MAX)))
            .filter(|(_, key)| self.entries.get(key).is_some_and(|e| e.attempt.is_none()))
            .copied()
            .collect();
        for (at, key) in due {
            self.by_expiry.remove(&(at, key));
            self.entries.remove(&key);
        }
    }

    /// When `key` expires, if it is remembered.
    pub fn expires_at(&self, key: &KeyHash) -> Option<Timestamp> {
        self.entries
            .get(key)
            .map(|e| e.created_at.plus_ms(self.ttl_ms))
    }

    /// Every key with a durable answer, oldest first (for snapshots).
    pub fn durable(&self) -> impl Iterator<Item = (KeyEntry, &StoredAnswer)> + '_ {
        self.by_expiry.iter().filter_map(|(_, key)| {
            let e = self.entries.get(key)?;
            let answer = e.answer.as_ref()?;
            Some((
                KeyEntry {
                    key: *key,
                    fingerprint: e.fingerprint,
                    created_at: e.created_at,
                },
                answer,
            ))
        })
    }

    fn insert(&mut self, key: KeyHash, entry: Entry) {
        self.by_expiry
            .insert((entry.created_at.plus_ms(self.ttl_ms), key));
        self.entries.insert(key, entry);
        debug_assert!(self.entries.len() <= self.capacity.max(self.entries.len()));
    }
}
