//! The embedded availability service and rules engine: pure logic that the
//! server runs in-process (behind its configured latencies) and the simulator
//! runs inside its simulated world, so both answer alike.
//!
//! - [`roster`]: the agents, their zipcodes, languages and hours; the JSON
//!   roster file and the built-in demo roster (which zipcodes it covers is
//!   listed there);
//! - [`availability`]: the slots of a zipcode in a window, streamed lazily in
//!   `(start, agent id)` order, resumable after any slot;
//! - [`rules`]: which candidates a request may take.
//!
//! Nothing here reads a clock, draws a random number or touches the outside
//! world: the evaluation time comes in as a [`Timestamp`](crate::core::Timestamp).

pub mod availability;
pub mod roster;
pub mod rules;

pub use availability::{slots, AvailabilityConfig, AvailabilityConfigError, Slots};
pub use roster::{Agent, AgentProblem, Hours, Roster, RosterError};
pub use rules::{evaluate, explain, Denial, RulesConfig, Verdict};
