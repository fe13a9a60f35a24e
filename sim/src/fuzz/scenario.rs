//! The `scenario` target: the fuzzer's bytes are the world's choice source
//! ([`crate::choices::Bytes`]), so coverage guidance steers the
//! configuration, the roster, the clients, the faults and the crashes; the
//! checker judges the one real core after every step, as for a seed.

use crate::world::run_bytes;

/// Runs the world the bytes describe; any violation, a core panic included,
/// is a crash.
pub fn run(data: &[u8]) {
    if let Some(v) = run_bytes(data).violation {
        panic!("the world these bytes describe breaks an invariant: {v}");
    }
}
