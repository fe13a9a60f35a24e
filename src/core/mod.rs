//! The dispatcher core: a pure, deterministic, sans-IO state machine.
//!
//! Inputs ([`Input`]) go in through [`Dispatcher::handle`] with the time they
//! were observed; outputs ([`Output`]) come out of [`Dispatcher::poll_output`];
//! [`Dispatcher::poll_timeout`] says when time alone will change something.
//! Nothing here reads a clock, draws a random number, touches a file or a
//! socket, or iterates a randomly seeded hash map: the same `(now, input)`
//! sequence gives the same outputs, byte for byte.
//!
//! The modules are named for what they hold:
//! - [`request`]: the request body, its canonical form and its validation;
//! - [`ring`]: zipcode → shard;
//! - [`queue`]: a shard's bounded queue, waiting line and run slots;
//! - [`idempotency`]: the table of client keys;
//! - [`prehashed_map`]: the hash map of the large tables, which grows in
//!   small steps;
//! - [`slab_map`]: the same for large entries, held in slots that never
//!   move, behind an index of slot numbers;
//! - [`book`]: the reservation book (per agent intervals and day counts);
//! - [`attempt`]: one attempt at answering a request, through its phases;
//! - [`record`]: what the journal stores;
//! - [`io`]: the `Input`, `Output` and `Response` vocabulary;
//! - [`dispatcher`]: the [`Dispatcher`] that wires them together.

pub mod attempt;
pub mod book;
pub mod config;
pub mod dispatcher;
pub mod durable;
pub mod idempotency;
pub mod ids;
pub mod io;
pub mod prehashed_map;
pub mod queue;
pub mod record;
pub mod render;
pub mod request;
pub mod ring;
pub mod slab_map;
pub mod stats;
pub mod time;
pub mod timers;

pub use book::{Assignment, AssignmentStatus, Book, Slot};
pub use config::{Config, ConfigError};
pub use dispatcher::{Dispatcher, RestoreError};
pub use ids::{AssignmentId, AttemptId, CallId, Fingerprint, KeyHash, Secret, Ticket};
pub use io::{
    CancelReason, Candidate, Dependency, DependencyError, Input, Outcome, Output, Response,
    RuleRequest, TimerReason,
};
pub use record::{KeyEntry, Record, Remembered};
pub use request::{validate, DispatchRequest, Field, FieldError, Problem, RawRequest, RawWindow};
pub use stats::Stats;
pub use time::{Timestamp, Window};
