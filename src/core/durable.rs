//! Folding journal records into the durable state they describe, for
//! `Dispatcher::restore`. Records are folded into the two hash maps the
//! dispatcher keeps (a cancel or an undo may follow its booking); the
//! ordered tables (book, retention, key expiry) are then built from the
//! result in bulk: sorting once is much cheaper than a million ordered
//! inserts.

use crate::core::book::{Assignment, AssignmentStatus};
use crate::core::idempotency::{Entry, StoredAnswer};
use crate::core::ids::{AssignmentId, KeyHash, PrehashedMap, Secret};
use crate::core::record::{KeyEntry, Record};
use crate::core::slab_map::SlabMap;
use crate::core::time::Timestamp;

/// A durable assignment and how long memory keeps it.
#[derive(Debug, Clone)]
pub struct Stored {
    pub assignment: Assignment,
    pub keep_until: Timestamp,
}

/// What a journal's records leave behind.
#[derive(Debug, Default)]
pub struct Durable {
    /// Boxed: the map stays small while it grows (half empty after each
    /// doubling), and an assignment does not move.
    pub assignments: PrehashedMap<AssignmentId, Box<Stored>>,
    pub keys: SlabMap<KeyHash, Entry>,
    /// The next assignment sequence number: never reuse an id.
    pub next_assignment: u64,
}

impl Durable {
    /// Folds `records` (in journal order). `keep_until` is left for the
    /// caller to set.
    pub fn fold(records: impl IntoIterator<Item = Record>, secret: &Secret) -> Self {
        let records = records.into_iter();
        let mut state = Durable::default();
        state.assignments.reserve(records.size_hint().0);
        for record in records {
            state.apply(record, secret);
        }
        state
    }

    fn apply(&mut self, record: Record, secret: &Secret) {
        match record {
            Record::Sequence { next } => self.next_assignment = self.next_assignment.max(next),
            Record::Booked { assignment, key } => {
                let next = assignment.id.seq(secret).saturating_add(1);
                self.next_assignment = self.next_assignment.max(next);
                if let Some(k) = key {
                    self.remember(k, StoredAnswer::Assigned(assignment.id));
                }
                let stored = Stored {
                    assignment,
                    keep_until: Timestamp::ZERO,
                };
                self.assignments
                    .insert(stored.assignment.id, Box::new(stored));
            }
            Record::Answered { key, answer } => {
                self.remember(key, StoredAnswer::from_remembered(&answer))
            }
            Record::Cancelled { id } => {
                if let Some(s) = self.assignments.get_mut(&id) {
                    s.assignment.status = AssignmentStatus::Cancelled;
                }
            }
            Record::Undone { id, key } => {
                if let Some(id) = id {
                    self.assignments.remove(&id);
                }
                if let Some(k) = key {
                    self.keys.remove(&k);
                }
            }
        }
    }

    fn remember(&mut self, key: KeyEntry, answer: StoredAnswer) {
        self.keys.insert(key.key, Entry::answered(&key, answer));
    }
}
