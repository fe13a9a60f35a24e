//! Counters and gauges the core keeps for metrics and for the simulator's
//! coverage report.

use crate::core::io::{Dependency, Outcome};
use serde::{Deserialize, Serialize};

/// Results of a dependency call, as the metrics label them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum CallResult {
    Ok,
    Error,
    Cancelled,
}

impl CallResult {
    pub const ALL: [CallResult; 3] = [CallResult::Ok, CallResult::Error, CallResult::Cancelled];

    pub fn label(self) -> &'static str {
        match self {
            CallResult::Ok => "ok",
            CallResult::Error => "error",
            CallResult::Cancelled => "cancelled",
        }
    }
}

impl Dependency {
    pub const ALL: [Dependency; 3] = [
        Dependency::Availability,
        Dependency::Rules,
        Dependency::Journal,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Dependency::Availability => "availability",
            Dependency::Rules => "rules",
            Dependency::Journal => "journal",
        }
    }
}

/// A snapshot of the core's counters and gauges.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Answers sent, by outcome (indexed like [`Outcome::ALL`]).
    pub answers: [u64; 9],
    /// Answers that replayed an earlier one.
    pub replays: u64,
    /// Requests waiting in each shard's queue.
    pub queue_depths: Vec<u32>,
    /// Requests waiting for room in each shard's full queue.
    pub waiting: Vec<u32>,
    /// Requests running in each shard.
    pub running: Vec<u32>,
    /// Confirmed assignments held in memory (durable, not cancelled).
    pub reservations_active: u64,
    /// Bookings in the book, in flight ones included.
    pub bookings_held: u64,
    /// Idempotency keys remembered or in flight.
    pub idempotency_keys: u64,
    /// Dependency calls by dependency and result (indexed like the `ALL`s).
    pub dependency_calls: [[u64; 3]; 3],
    /// Inputs ignored as late, duplicated, unknown or nonsensical.
    pub ignored_inputs: u64,
    /// Slots dropped because they conflicted with the book.
    pub slots_conflicting: u64,
    /// Slots dropped as malformed: out of the stream's order, or not
    /// fitting the requested window (an availability service's fault).
    pub slots_malformed: u64,
    /// Candidates skipped at booking because their facts changed since the rules saw them.
    pub stale_verdicts: u64,
    /// Requests that found their shard queue full and waited for room.
    pub queue_full_waits: u64,
    /// Waiting requests refused when their enqueue timeout passed.
    pub enqueue_timeouts: u64,
    /// Tickets joined to a running attempt with the same key.
    pub joins: u64,
    /// Bookings undone because every ticket left while their write was in flight.
    pub undos: u64,
    /// Attempts alive now.
    pub attempts: u64,
    /// Tickets waiting for an answer now.
    pub tickets: u64,
    /// Journal writes emitted and not yet settled.
    pub pending_writes: u64,
    /// The highest journal sequence number known to be durable.
    pub durable_seq: u64,
}

impl Stats {
    pub fn answers_for(&self, outcome: Outcome) -> u64 {
        self.answers[outcome_index(outcome)]
    }

    pub fn calls(&self, dependency: Dependency, result: CallResult) -> u64 {
        self.dependency_calls[dependency as usize][result as usize]
    }

    pub(crate) fn count_answer(&mut self, outcome: Outcome, replayed: bool) {
        self.answers[outcome_index(outcome)] += 1;
        self.replays += u64::from(replayed);
    }

    pub(crate) fn count_call(&mut self, dependency: Dependency, result: CallResult) {
        self.dependency_calls[dependency as usize][result as usize] += 1;
    }
}

fn outcome_index(outcome: Outcome) -> usize {
    Outcome::ALL.iter().position(|&o| o == outcome).unwrap_or(0)
}
