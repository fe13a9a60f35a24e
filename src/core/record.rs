//! What the journal stores. Replaying a journal's records through
//! `Dispatcher::restore` rebuilds every durable fact: the bookings, the
//! remembered answers of idempotency keys, and the id sequence.

use crate::core::book::Assignment;
use crate::core::ids::{AssignmentId, Fingerprint, KeyHash};
use crate::core::request::FieldError;
use crate::core::time::Timestamp;
use serde::{Deserialize, Serialize};

/// One journal record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// A booking and, when the request had an idempotency key, its entry:
    /// one record, so no torn write can split them.
    Booked {
        assignment: Assignment,
        key: Option<KeyEntry>,
    },
    /// A remembered answer that is not a booking (409 no availability, 422
    /// validation).
    Answered { key: KeyEntry, answer: Remembered },
    /// `DELETE`: the assignment is cancelled (and stays readable); its time
    /// is free again.
    Cancelled { id: AssignmentId },
    /// The undo of an attempt whose every ticket went away while its write
    /// was in flight: the booking and the key are gone as if never made.
    Undone {
        id: Option<AssignmentId>,
        key: Option<KeyHash>,
    },
    /// The next assignment sequence number (the head of a snapshot).
    Sequence { next: u64 },
}

/// An idempotency key as remembered: which key, which payload, since when.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEntry {
    pub key: KeyHash,
    pub fingerprint: Fingerprint,
    pub created_at: Timestamp,
}

/// The remembered answers that are not bookings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Remembered {
    NoAvailability,
    Invalid(Vec<FieldError>),
}
