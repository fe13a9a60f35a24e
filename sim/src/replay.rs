//! Replay: feeds a trace to a fresh core, checks the same invariants as the
//! simulator, and proves it reproduced the outputs (same running hash).
//! Also renders a run as readable text, one line per input and output.

use crate::checker::{Check, Checker};
use crate::invariant::{safety, Invariant, Violation};
use crate::trace::{Event, OutputHash, Trace};
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use tour_dispatcher::core::render::{input_line, output_line};
use tour_dispatcher::core::{Dispatcher, Output, Timestamp};

/// What a replay found.
pub struct Replayed {
    pub violation: Option<Violation>,
    pub outputs_hash: String,
    /// Every event's outputs, when asked for.
    pub outputs: Vec<Vec<Output>>,
}

/// Replays `trace`; `keep_outputs` keeps every step's outputs for rendering.
pub fn replay(trace: &Trace, keep_outputs: bool, checks: Vec<Box<dyn Check>>) -> Replayed {
    let mut hash = OutputHash::default();
    let mut kept = Vec::new();
    let violation = run(trace, &mut hash, keep_outputs.then_some(&mut kept), checks).err();
    let outputs_hash = hash.hex();
    let violation = violation.or_else(|| match &trace.outputs_hash {
        Some(h) if *h != outputs_hash => {
            let mut v = safety(
                Invariant::Determinism,
                format!("replay produced outputs hash {outputs_hash}, the trace recorded {h}"),
            );
            v.step = trace.events.len() as u64;
            v.now = trace.events.last().map_or(Timestamp::ZERO, Event::now);
            Some(v)
        }
        _ => None,
    });
    Replayed {
        violation,
        outputs_hash,
        outputs: kept,
    }
}

fn run(
    trace: &Trace,
    hash: &mut OutputHash,
    mut kept: Option<&mut Vec<Vec<Output>>>,
    checks: Vec<Box<dyn Check>>,
) -> Result<(), Violation> {
    let services = trace.scenario.as_ref().map(|s| {
        let mut services = s.services.clone();
        services.index();
        services
    });
    let first = trace.events.first().map(Event::now);
    let start = trace.start.or(first).unwrap_or(Timestamp::ZERO);
    let mut checker = Checker::new(trace.config.clone(), services);
    for c in checks {
        checker.add_check(c);
    }
    let mut core = restore(trace, start, trace.initial.clone())?;
    checker.start(start, &trace.initial, &core)?;
    // A production trace hashes each process's outputs on its own.
    let mut process_hash = OutputHash::default();
    for event in &trace.events {
        let mut outputs = Vec::new();
        match event {
            Event::Input {
                now,
                input,
                outputs_hash,
            } => {
                checker.before(*now, input)?;
                let handled = catch_unwind(AssertUnwindSafe(|| {
                    core.handle(*now, input.clone());
                    let mut outs = Vec::new();
                    while let Some(o) = core.poll_output() {
                        outs.push(o);
                    }
                    outs
                }));
                outputs = handled.map_err(|p| Violation::from_panic(&*p))?;
                for o in &outputs {
                    hash.add(*now, o);
                    process_hash.add(*now, o);
                }
                if let Some(expected) = outputs_hash {
                    if *expected != process_hash.hex() {
                        return Err(safety(
                            Invariant::Determinism,
                            format!(
                                "replay produced outputs hash {} at {} ms, the trace recorded {expected}",
                                process_hash.hex(),
                                now.as_millis()
                            ),
                        ));
                    }
                }
                let judged = checker.after(*now, &outputs, &core);
                if let (Err(_), Some(k)) = (&judged, kept.as_deref_mut()) {
                    // Keep the failing step's outputs for the rendering.
                    k.push(std::mem::take(&mut outputs));
                }
                judged?;
            }
            Event::Restart { now, records } => {
                core = restore(trace, *now, records.clone())?;
                process_hash = OutputHash::default();
                checker.restart(*now, records, &core)?;
            }
            Event::Quiet { now } => checker.finish(*now, &core)?,
        }
        if let Some(k) = kept.as_deref_mut() {
            k.push(outputs);
        }
    }
    Ok(())
}

fn restore(
    trace: &Trace,
    now: Timestamp,
    records: Vec<tour_dispatcher::core::Record>,
) -> Result<Dispatcher, Violation> {
    Dispatcher::restore(trace.config.clone(), now, records).map_err(|e| {
        safety(
            Invariant::NoDoubleReservation,
            format!("restore refused: {e}"),
        )
    })
}

/// The trace as text: one line per input (`→`) and per output (`←`), with
/// simulated time relative to the first event; inputs and outputs in the
/// core's own renderings ([`tour_dispatcher::core::render`]).
pub fn render(trace: &Trace, outputs: &[Vec<Output>]) -> String {
    let mut text = String::new();
    let origin = trace
        .start
        .or_else(|| match trace.events.first() {
            Some(Event::Input { now, .. }) => Some(*now),
            _ => None,
        })
        .unwrap_or(Timestamp::ZERO);
    let t = |now: &Timestamp| format!("{:>9.3}s", now.since(origin) as f64 / 1000.0);
    for (i, event) in trace.events.iter().enumerate() {
        match event {
            Event::Input { now, input, .. } => {
                let _ = writeln!(text, "{} #{i:<5} → {}", t(now), input_line(input));
            }
            Event::Restart { now, records } => {
                let _ = writeln!(
                    text,
                    "{} #{i:<5} ✗ crash; restart from {} records",
                    t(now),
                    records.len()
                );
            }
            Event::Quiet { now } => {
                let _ = writeln!(text, "{} #{i:<5} · quiet: liveness checked", t(now));
            }
        }
        for o in outputs.get(i).into_iter().flatten() {
            let _ = writeln!(text, "{:>17}← {}", "", output_line(o));
        }
    }
    text
}
