//! The bodies of the fuzz targets in `fuzz/` (cargo-fuzz, libFuzzer).
//!
//! Each target is a plain function over the fuzzer's bytes that panics when
//! a property fails, so that `cargo test` on stable replays the committed
//! corpus through the very same code (see `tests/fuzz_corpus.rs`):
//!
//! - [`scenario`]: the bytes are the simulator's choice source; any
//!   invariant violation of the whole world is a crash;
//! - [`core_inputs`]: raw `Input` sequences with arbitrary times, straight
//!   into the `Dispatcher`;
//! - [`http_request`]: method, path, headers and body through the server's
//!   checks before the core and the core's validation;
//! - [`journal`]: the bytes as a journal file through recovery and restore;
//! - [`trace`] and [`roster`]: the bytes through their decoders.
//!
//! The structured targets read their input with `arbitrary`, through
//! mirrors of the core's types declared here (the core keeps no fuzzing
//! dependency).

pub mod core_inputs;
pub mod http_request;
pub mod journal;
pub mod roster;
pub mod scenario;
pub mod trace;

/// A target's body: panics when a property fails.
pub type Body = fn(&[u8]);

/// Every target, by the name of its `fuzz/fuzz_targets/<name>.rs` and its
/// corpus directory.
pub const TARGETS: [(&str, Body); 6] = [
    ("scenario", scenario::run),
    ("core_inputs", core_inputs::run),
    ("http_request", http_request::run),
    ("journal", journal::run),
    ("trace", trace::run),
    ("roster", roster::run),
];
