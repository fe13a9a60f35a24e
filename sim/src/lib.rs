//! tour-sim: the deterministic simulator of tour-dispatcher.
//!
//! It puts the one real [`Dispatcher`](tour_dispatcher::core::Dispatcher)
//! into a seeded, simulated world — clients, availability, rules, a journal,
//! crashes — and checks DESIGN.md's invariants after every step against an
//! independent model. A failure is a trace: replayable, shrinkable, readable.
//!
//! - [`choices`]: the one source of every decision (seed, recorded list, bytes);
//! - [`scenario`]: the swarm draw of configuration, roster, clients and faults;
//! - [`services`]: simulated availability and rules;
//! - [`journal`]: the simulated journal (delays, failures, torn tails, compaction);
//! - [`world`]: the discrete-event loop around the core;
//! - [`checker`] and [`invariant`]: the model and the invariants;
//! - [`coverage`]: marks of the hard paths reached;
//! - [`fuzz`]: the bodies of the cargo-fuzz targets in `fuzz/`;
//! - [`trace`]: the trace format (simulator and production);
//! - [`replay`]: replaying a trace and rendering it as text;
//! - [`shrink`]: delta debugging of choice lists and of production traces;
//! - [`runner`]: many seeds, in parallel, with a summary.

pub mod checker;
pub mod choices;
pub mod coverage;
pub mod fuzz;
pub mod invariant;
pub mod journal;
pub mod replay;
pub mod runner;
pub mod scenario;
pub mod services;
pub mod shrink;
pub mod trace;
pub mod world;
