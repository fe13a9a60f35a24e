//! The invariants of DESIGN.md by name, and what a violation of one says.

use serde::{Deserialize, Serialize};
use std::fmt;
use tour_dispatcher::core::Timestamp;

/// DESIGN.md's invariants, numbered as there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Invariant {
    NoDoubleReservation,
    ExactlyOneAnswer,
    NoSuccessAfterDeadline,
    DurableBeforeAcknowledged,
    Idempotency,
    Bounded,
    AssignmentsHonourTheRequest,
    NoOrphanCalls,
    CancellingFreesTime,
    Determinism,
}

impl Invariant {
    pub const ALL: [Invariant; 10] = [
        Invariant::NoDoubleReservation,
        Invariant::ExactlyOneAnswer,
        Invariant::NoSuccessAfterDeadline,
        Invariant::DurableBeforeAcknowledged,
        Invariant::Idempotency,
        Invariant::Bounded,
        Invariant::AssignmentsHonourTheRequest,
        Invariant::NoOrphanCalls,
        Invariant::CancellingFreesTime,
        Invariant::Determinism,
    ];

    /// "3 no-success-after-deadline": the number in DESIGN.md and a name.
    pub fn name(self) -> &'static str {
        match self {
            Invariant::NoDoubleReservation => "1 no-double-reservation",
            Invariant::ExactlyOneAnswer => "2 exactly-one-answer",
            Invariant::NoSuccessAfterDeadline => "3 no-success-after-deadline",
            Invariant::DurableBeforeAcknowledged => "4 durable-before-acknowledged",
            Invariant::Idempotency => "5 idempotency",
            Invariant::Bounded => "6 bounded",
            Invariant::AssignmentsHonourTheRequest => "7 assignments-honour-the-request",
            Invariant::NoOrphanCalls => "8 no-orphan-calls",
            Invariant::CancellingFreesTime => "9 cancelling-frees-time",
            Invariant::Determinism => "10 determinism",
        }
    }
}

/// Which exit code a failure deserves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// Something bad happened (exit 129).
    Safety,
    /// Something good did not happen in time (exit 128).
    Liveness,
    /// The core panicked (exit 127).
    Crash,
}

impl Kind {
    pub fn exit_code(self) -> u8 {
        match self {
            Kind::Safety => 129,
            Kind::Liveness => 128,
            Kind::Crash => 127,
        }
    }
}

/// A broken invariant: which, where, and what exactly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// An [`Invariant::name`], the name of a per-test check, or `core-panic`.
    pub invariant: String,
    pub kind: Kind,
    pub message: String,
    /// Index of the trace event at which it was found.
    pub step: u64,
    pub now: Timestamp,
}

impl Violation {
    pub fn new(invariant: Invariant, kind: Kind, message: String) -> Self {
        Violation {
            invariant: invariant.name().to_string(),
            kind,
            message,
            step: 0,
            now: Timestamp::ZERO,
        }
    }

    /// A panic inside the core (exit 127).
    pub fn from_panic(panic: &(dyn std::any::Any + Send)) -> Self {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into());
        Violation {
            invariant: "core-panic".into(),
            kind: Kind::Crash,
            message,
            step: 0,
            now: Timestamp::ZERO,
        }
    }

    /// Whether this is the same failure as `other` (for shrinking).
    pub fn same_failure(&self, other: &Violation) -> bool {
        self.invariant == other.invariant && self.kind == other.kind
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} violated ({:?}) at step {} ({} ms): {}",
            self.invariant,
            self.kind,
            self.step,
            self.now.as_millis(),
            self.message
        )
    }
}

/// Shorthand for the checker: a safety violation of `inv`.
pub fn safety(inv: Invariant, message: impl Into<String>) -> Violation {
    Violation::new(inv, Kind::Safety, message.into())
}

/// Shorthand for the checker: a liveness violation of `inv`.
pub fn liveness(inv: Invariant, message: impl Into<String>) -> Violation {
    Violation::new(inv, Kind::Liveness, message.into())
}
