//! The `trace` target: arbitrary text through the trace decoder (a
//! simulator trace or a server's `--record-trace` lines). A refused text is
//! fine; an accepted trace must survive a round trip through its JSON form,
//! render as text, and replay without a panic of the core or the checker
//! (violations are expected: the fuzzer's traces are not real runs).

use crate::invariant::Kind;
use crate::replay::{render, replay};
use crate::trace::Trace;

/// Traces with more events than this are decoded but not replayed.
const MAX_REPLAYED_EVENTS: usize = 256;
/// Neither are those whose ring is this large (shards × vnodes): building
/// it would take most of an execution.
const MAX_RING: u64 = 1 << 16;

pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(trace) = Trace::parse("fuzz", &text) else {
        return;
    };
    let json = serde_json::to_string(&trace).expect("a decoded trace encodes");
    let again = Trace::parse("fuzz", &json).expect("an encoded trace decodes");
    assert_eq!(again, trace, "the JSON round trip changed the trace");
    let _ = render(&trace, &[]);
    let ring = u64::from(trace.config.shards) * u64::from(trace.config.vnodes);
    if trace.events.len() > MAX_REPLAYED_EVENTS || ring > MAX_RING {
        return;
    }
    let replayed = replay(&trace, false, Vec::new());
    if let Some(v) = replayed.violation {
        assert!(v.kind != Kind::Crash, "{v}");
    }
}
