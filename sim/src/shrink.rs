//! Shrinking a failure to a minimal one, by delta debugging.
//!
//! A simulator trace shrinks through its choice list: delete chunks (halves,
//! quarters, … single choices), then lower values (to zero, then halving),
//! re-simulating each candidate — so every shrunk run is a coherent world
//! with no dangling call ids — and keeping it while the same invariant still
//! fails. A production trace has no choices; it shrinks by deleting inputs
//! and replaying what is left.

use crate::checker::Check;
use crate::choices::Recorded;
use crate::invariant::Violation;
use crate::replay::replay;
use crate::trace::{Event, Trace};
use crate::world::{RunResult, World};

/// Makes the per-test checks afresh for each re-simulation.
pub type Checks<'a> = &'a dyn Fn() -> Vec<Box<dyn Check>>;

/// No extra checks.
pub fn no_checks() -> Vec<Box<dyn Check>> {
    Vec::new()
}

/// How many re-simulations a shrink may spend.
pub const DEFAULT_BUDGET: usize = 10_000;

/// Re-simulates a choice list, recording the trace.
pub fn simulate(list: Vec<u64>, checks: Checks<'_>) -> RunResult {
    let mut choices = Recorded::new(list);
    let mut world = World::new(&mut choices).record();
    for c in checks() {
        world = world.check(c);
    }
    world.run(None)
}

/// The smallest failing run found from `list`, which fails with `target`.
pub fn shrink_choices(
    list: Vec<u64>,
    target: &Violation,
    checks: Checks<'_>,
    budget: usize,
) -> RunResult {
    let runs = std::cell::Cell::new(0usize);
    let mut fails = |candidate: &[u64]| -> Option<RunResult> {
        runs.set(runs.get() + 1);
        if runs.get() > budget {
            return None;
        }
        let r = simulate(candidate.to_vec(), checks);
        r.violation
            .as_ref()
            .is_some_and(|v| v.same_failure(target))
            .then_some(r)
    };
    let mut best = match fails(&list) {
        Some(r) => r,
        None => return simulate(list, checks),
    };
    let mut current = used_choices(&best);
    // The scenario's choices come first and shape everything after them:
    // lowering them (fewer clients, no faults) shrinks most per run.
    current = lower_values(current, SCENARIO_CHOICES, &mut best, &mut fails);
    loop {
        let before = current.clone();
        current = delete_chunks(current, &mut best, &mut fails);
        current = lower_values(current, usize::MAX, &mut best, &mut fails);
        if current == before || runs.get() > budget {
            return best;
        }
    }
}

/// About how many choices the scenario draw takes.
const SCENARIO_CHOICES: usize = 400;

fn used_choices(r: &RunResult) -> Vec<u64> {
    r.trace
        .as_ref()
        .and_then(|t| t.choices.clone())
        .unwrap_or_default()
}

fn delete_chunks(
    mut list: Vec<u64>,
    best: &mut RunResult,
    fails: &mut impl FnMut(&[u64]) -> Option<RunResult>,
) -> Vec<u64> {
    let mut size = list.len().div_ceil(2).max(1);
    loop {
        let mut i = list.len();
        while i > 0 {
            let start = i.saturating_sub(size);
            let mut candidate = list[..start].to_vec();
            candidate.extend_from_slice(&list[i..]);
            if let Some(r) = fails(&candidate) {
                list = used_choices(&r);
                *best = r;
                i = start.min(list.len());
            } else {
                i = start;
            }
        }
        if size == 1 {
            return list;
        }
        size /= 2;
    }
}

fn lower_values(
    mut list: Vec<u64>,
    prefix: usize,
    best: &mut RunResult,
    fails: &mut impl FnMut(&[u64]) -> Option<RunResult>,
) -> Vec<u64> {
    let mut i = 0;
    while i < list.len().min(prefix) {
        let v = list[i];
        for lower in [0, v / 2, v.saturating_sub(1)] {
            if lower >= v {
                continue;
            }
            let mut candidate = list.clone();
            candidate[i] = lower;
            if let Some(r) = fails(&candidate) {
                list = used_choices(&r);
                *best = r;
                break;
            }
        }
        i += 1;
    }
    list
}

/// The smallest sub-trace of a production trace (by deleting inputs) that
/// still fails with `target`.
pub fn shrink_inputs(
    trace: &Trace,
    target: &Violation,
    checks: Checks<'_>,
    budget: usize,
) -> Trace {
    let mut runs = 0usize;
    let mut best = trace.clone();
    best.outputs_hash = None;
    let mut size = best.events.len().div_ceil(2).max(1);
    loop {
        let mut i = best.events.len();
        while i > 0 && runs < budget {
            let start = i.saturating_sub(size);
            let mut candidate = best.clone();
            candidate.events.drain(start..i);
            runs += 1;
            let r = replay(&candidate, false, checks());
            if r.violation.is_some_and(|v| v.same_failure(target)) {
                best = candidate;
            }
            i = start;
        }
        if size == 1 || runs >= budget {
            break;
        }
        size /= 2;
    }
    best.failure = replay(&best, false, checks()).violation;
    best
}

/// Whether a trace is a simulator trace that shrinks by choices.
pub fn has_choices(trace: &Trace) -> bool {
    trace.choices.as_ref().is_some_and(|c| !c.is_empty())
}

/// Inputs left in a trace (restarts and the quiet mark not counted).
pub fn inputs(trace: &Trace) -> usize {
    trace
        .events
        .iter()
        .filter(|e| matches!(e, Event::Input { .. }))
        .count()
}
