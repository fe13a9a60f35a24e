//! What goes in and out of the core: one [`Input`] enum, one [`Output`] enum,
//! and the [`Response`] a ticket gets. All of it is plain data (serde), so a
//! trace of a run is just a list of `(now, Input)`.

use crate::core::book::{Assignment, Slot};
use crate::core::ids::{AssignmentId, AttemptId, CallId, Ticket};
use crate::core::record::Record;
use crate::core::request::{FieldError, RawRequest};
use crate::core::time::{Timestamp, Window};
use compact_str::CompactString;
use serde::{Deserialize, Serialize};

/// Something the outside world tells the core.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Input {
    /// A `POST /dispatch` whose body parsed; `deadline` is absolute.
    Submit {
        ticket: Ticket,
        body: RawRequest,
        idempotency_key: Option<String>,
        deadline: Timestamp,
    },
    /// The client of `ticket` went away: it needs no answer any more.
    ClientGone { ticket: Ticket },
    /// A batch of an availability stream; `first_index` is the index of the
    /// first slot of the batch within the stream, so repeats are recognised.
    SlotsStreamed {
        call: CallId,
        first_index: u32,
        slots: Vec<Slot>,
    },
    /// The stream ended after `count` slots, or failed.
    StreamEnded {
        call: CallId,
        count: u32,
        result: Result<(), DependencyError>,
    },
    /// The rules engine's verdicts, one per candidate in the order sent.
    RuleVerdicts {
        call: CallId,
        result: Result<Vec<bool>, DependencyError>,
    },
    /// Every journal write with a sequence number up to `upto` is durable.
    Persisted { upto: u64 },
    /// Every journal write from `from` on failed (and everything before it
    /// is durable). The core acts as if those writes never happened; the
    /// journal makes that true by starting a fresh file from a snapshot.
    PersistFailed { from: u64 },
    /// `DELETE /assignments/{id}`.
    CancelAssignment { ticket: Ticket, id: AssignmentId },
    /// Shutdown: refuse new submits; at `deadline` refuse what still runs.
    Drain { deadline: Timestamp },
    /// Time passed; nothing else happened.
    Tick,
}

/// Something the core asks the outside world to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Output {
    /// Start an availability stream: slots in (start, agent) order, strictly
    /// after `after` when given.
    FetchAvailability {
        call: CallId,
        zipcode: CompactString,
        window: Window,
        duration_min: u32,
        after: Option<Slot>,
        deadline: Timestamp,
    },
    /// Ask the rules engine about a batch of candidates.
    CheckRules {
        call: CallId,
        request: RuleRequest,
        candidates: Vec<Candidate>,
        deadline: Timestamp,
    },
    /// Stop an outstanding call; its late results will be ignored.
    CancelCall { call: CallId, reason: CancelReason },
    /// Append `record` to the journal; answer with `Persisted`/`PersistFailed`.
    Persist { seq: u64, record: Record },
    /// Answer a ticket. `replayed` is set on every answer that repeats an
    /// earlier one (`Idempotent-Replayed: true`).
    Respond {
        ticket: Ticket,
        response: Response,
        replayed: bool,
    },
}

/// Why a call is cancelled (for the `dependency_calls_total` metric).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum CancelReason {
    /// The stream delivered a full batch; it ended well.
    BatchFull,
    /// Nobody waits for the answer any more (deadline, client gone, drain).
    Abandoned,
}

/// A dependency failed.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, thiserror::Error,
)]
pub enum DependencyError {
    #[error("the service could not be reached or answered with an error")]
    Unavailable,
    #[error("the service took too long")]
    Timeout,
    #[error("the service answered something that does not make sense: {0}")]
    Malformed(String),
}

/// Which outside service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Dependency {
    Availability,
    Rules,
    Journal,
}

/// The facts of the request that the rules need.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleRequest {
    pub zipcode: CompactString,
    pub language: Option<CompactString>,
    pub duration_min: u32,
}

/// A slot offered to the rules with the facts about its agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    pub slot: Slot,
    /// The agent's confirmed tours on the UTC day of the slot's start.
    pub tours_that_day: u32,
}

/// Every answer a ticket can get.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// 201 (dispatch).
    Assigned(Assignment),
    /// 409: no slot in the window is both free and allowed.
    NoAvailability,
    /// 422: invalid or missing values, all of them.
    Invalid(Vec<FieldError>),
    /// 422: the idempotency key was used with another payload.
    KeyReused,
    /// 409: the key's running attempt already has `max_joiners` waiting.
    KeyInFlight,
    /// 503: queue full past the enqueue timeout, key table full, or draining.
    Overloaded { retry_after_s: u32 },
    /// 503: availability, rules or the journal failed.
    DependencyUnavailable {
        dependency: Dependency,
        retry_after_s: u32,
    },
    /// 504: the deadline passed first.
    DeadlineExceeded,
    /// 200 (DELETE): the assignment, now cancelled.
    Cancelled(Assignment),
    /// 404 (DELETE): no such durable assignment.
    NotFound,
}

impl Response {
    /// The HTTP status this answer is sent with.
    pub fn status(&self) -> u16 {
        match self {
            Response::Assigned(_) => 201,
            Response::NoAvailability | Response::KeyInFlight => 409,
            Response::Invalid(_) | Response::KeyReused => 422,
            Response::Overloaded { .. } | Response::DependencyUnavailable { .. } => 503,
            Response::DeadlineExceeded => 504,
            Response::Cancelled(_) => 200,
            Response::NotFound => 404,
        }
    }

    /// The outcome label of `tour_dispatcher_dispatch_total`.
    pub fn outcome(&self) -> Outcome {
        match self {
            Response::Assigned(_) => Outcome::Assigned,
            Response::NoAvailability => Outcome::NoAvailability,
            Response::Invalid(_) => Outcome::Invalid,
            Response::KeyReused | Response::KeyInFlight => Outcome::IdempotencyConflict,
            Response::Overloaded { .. } => Outcome::Overloaded,
            Response::DependencyUnavailable { .. } => Outcome::DependencyUnavailable,
            Response::DeadlineExceeded => Outcome::DeadlineExceeded,
            Response::Cancelled(_) => Outcome::Cancelled,
            Response::NotFound => Outcome::NotFound,
        }
    }
}

/// Answer kinds, for counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Outcome {
    Assigned,
    NoAvailability,
    Invalid,
    IdempotencyConflict,
    Overloaded,
    DependencyUnavailable,
    DeadlineExceeded,
    Cancelled,
    NotFound,
}

impl Outcome {
    pub const ALL: [Outcome; 9] = [
        Outcome::Assigned,
        Outcome::NoAvailability,
        Outcome::Invalid,
        Outcome::IdempotencyConflict,
        Outcome::Overloaded,
        Outcome::DependencyUnavailable,
        Outcome::DeadlineExceeded,
        Outcome::Cancelled,
        Outcome::NotFound,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Assigned => "assigned",
            Outcome::NoAvailability => "no_availability",
            Outcome::Invalid => "invalid",
            Outcome::IdempotencyConflict => "idempotency_conflict",
            Outcome::Overloaded => "overloaded",
            Outcome::DependencyUnavailable => "dependency_unavailable",
            Outcome::DeadlineExceeded => "deadline_exceeded",
            Outcome::Cancelled => "cancelled",
            Outcome::NotFound => "not_found",
        }
    }
}

/// Why the driver must call `handle(now, Tick)` at the time `poll_timeout` gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TimerReason {
    /// A ticket's deadline.
    Deadline(Ticket),
    /// A request waiting for room in a full queue gives up.
    EnqueueTimeout(AttemptId),
    /// The drain's deadline.
    Drain,
}
