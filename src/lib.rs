//! tour-dispatcher: assigns field agents to property tours.
//!
//! - [`core`]: the pure, deterministic dispatcher state machine;
//! - [`embedded`]: the pure embedded availability service and rules engine;
//! - [`journal`]: the pure journal logic (framing, recovery, compaction);
//! - [`server`]: the hyper/tokio adapter that executes the core's outputs.

pub mod core;
pub mod embedded;
pub mod journal;
pub mod server;
