//! Shrinking a failure to a minimal one, by delta debugging.
//!
//! A simulator trace shrinks through its choice list: delete chunks (halves,
//! quarters, … single choices), then lower values (to zero, then halving),
//! re-simulating each candidate — so every shrunk run is a coherent world
//! with no dangling call ids — and keeping it while the same invariant still
//! fails. A production trace has no choices; it shrinks by deleting inputs
//! and replaying what is left, renumbered.

use crate::checker::Check;
use crate::choices::Recorded;
use crate::invariant::Violation;
use crate::replay::replay;
use crate::trace::{Event, Trace};
use crate::world::{RunResult, World};
use compact_str::CompactString;
use std::collections::BTreeMap;
use tour_dispatcher::core::{
    AssignmentId, CallId, Dispatcher, Input, KeyHash, Output, Record, Slot, Timestamp,
};

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
/// still fails with `target`. Deleting an input shifts the ids the core
/// allocates after it (calls, journal sequence numbers, assignment ids), so
/// every candidate is renumbered against what the core makes of it.
pub fn shrink_inputs(
    trace: &Trace,
    target: &Violation,
    checks: Checks<'_>,
    budget: usize,
) -> Trace {
    let mut runs = 0usize;
    // Deleting inputs changes the outputs: recorded hashes no longer apply.
    let mut best = trace.clone();
    best.outputs_hash = None;
    for e in &mut best.events {
        if let Event::Input { outputs_hash, .. } = e {
            *outputs_hash = None;
        }
    }
    let made = Made::of(&best);
    let fails = |t: &Trace| {
        let renumbered = made.renumber(t);
        let failed = replay(&renumbered, false, checks())
            .violation
            .is_some_and(|v| v.same_failure(target));
        failed.then_some(renumbered)
    };
    // Passes of halves down to single inputs, until one removes nothing.
    loop {
        let before = best.events.len();
        let mut size = before.div_ceil(2).max(1);
        loop {
            let mut i = best.events.len();
            while i > 0 && runs < budget {
                let start = i.saturating_sub(size);
                let mut candidate = best.clone();
                let mut k = 0;
                // Restarts and the quiet mark stay: only inputs go.
                candidate.events.retain(|e| {
                    k += 1;
                    !((start..i).contains(&(k - 1)) && matches!(e, Event::Input { .. }))
                });
                runs += 1;
                if candidate.events.len() < best.events.len() && fails(&candidate).is_some() {
                    best = candidate;
                }
                i = start;
            }
            if size == 1 || runs >= budget {
                break;
            }
            size /= 2;
        }
        if best.events.len() == before || runs >= budget {
            break;
        }
    }
    let mut small = fails(&best).unwrap_or_else(|| made.renumber(&best));
    small.failure = replay(&small, false, checks()).violation;
    small
}

/// What made a call or a write, to find it again in a shorter run.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Key {
    Fetch(Output),
    Rules(Vec<Slot>),
    Booked(CompactString, Timestamp, CompactString),
    Answered(KeyHash),
    Undone(Option<KeyHash>),
    Cancelled,
    Sequence,
}

/// What the original run made, per process, in order.
struct Made {
    calls: Vec<Vec<(u64, Key)>>,
    writes: Vec<Vec<(u64, Key, Option<AssignmentId>)>>,
}

/// Which original ids a shorter run maps to which of its own.
#[derive(Default)]
struct Renumbering {
    calls: BTreeMap<u64, u64>,
    writes: BTreeMap<u64, u64>,
    used_calls: Vec<bool>,
    used_writes: Vec<bool>,
}

impl Made {
    fn of(trace: &Trace) -> Made {
        let outputs = replay(trace, true, Vec::new()).outputs;
        let mut made = Made {
            calls: vec![Vec::new()],
            writes: vec![Vec::new()],
        };
        for (e, outs) in trace.events.iter().zip(&outputs) {
            if matches!(e, Event::Restart { .. }) {
                made.calls.push(Vec::new());
                made.writes.push(Vec::new());
            }
            for o in outs {
                if let Some((call, key)) = call_key(o) {
                    if let Some(c) = made.calls.last_mut() {
                        c.push((call, key));
                    }
                }
                if let Output::Persist { seq, record } = o {
                    let (key, id) = write_key(record);
                    if let Some(w) = made.writes.last_mut() {
                        w.push((*seq, key, id));
                    }
                }
            }
        }
        made
    }

    /// `trace` with its inputs' ids rewritten to what a core makes of it;
    /// inputs about calls or writes that no longer happen are dropped.
    fn renumber(&self, trace: &Trace) -> Trace {
        let mut out = trace.clone();
        out.events.clear();
        let Ok(mut core) = Dispatcher::restore(
            trace.config.clone(),
            trace.start.unwrap_or(Timestamp::ZERO),
            trace.initial.clone(),
        ) else {
            return trace.clone();
        };
        let mut process = 0usize;
        let mut map = Renumbering::default();
        let mut ids: BTreeMap<AssignmentId, AssignmentId> = BTreeMap::new();
        for e in &trace.events {
            match e {
                Event::Input { now, input, .. } => {
                    let Some(input) = map.input(input, &ids) else {
                        continue;
                    };
                    core.handle(*now, input.clone());
                    while let Some(o) = core.poll_output() {
                        self.note(process, &o, &mut map, &mut ids);
                    }
                    out.events.push(Event::Input {
                        now: *now,
                        input,
                        outputs_hash: None,
                    });
                }
                Event::Restart { now, records } => {
                    if let Ok(c) = Dispatcher::restore(trace.config.clone(), *now, records.clone())
                    {
                        core = c;
                    }
                    process += 1;
                    map = Renumbering::default();
                    out.events.push(e.clone());
                }
                Event::Quiet { .. } => out.events.push(e.clone()),
            }
        }
        out
    }

    /// Maps what output `o` made to the first unmapped original maker like it.
    fn note(
        &self,
        process: usize,
        o: &Output,
        map: &mut Renumbering,
        ids: &mut BTreeMap<AssignmentId, AssignmentId>,
    ) {
        let calls = self.calls.get(process).map_or(&[][..], Vec::as_slice);
        let writes = self.writes.get(process).map_or(&[][..], Vec::as_slice);
        map.used_calls.resize(calls.len(), false);
        map.used_writes.resize(writes.len(), false);
        if let Some((call, key)) = call_key(o) {
            if let Some(i) = (0..calls.len()).find(|&i| !map.used_calls[i] && calls[i].1 == key) {
                map.used_calls[i] = true;
                map.calls.insert(calls[i].0, call);
            }
        }
        if let Output::Persist { seq, record } = o {
            let (key, id) = write_key(record);
            if let Some(i) = (0..writes.len()).find(|&i| !map.used_writes[i] && writes[i].1 == key)
            {
                map.used_writes[i] = true;
                map.writes.insert(writes[i].0, *seq);
                if let (Some(old), Some(new)) = (writes[i].2, id) {
                    ids.insert(old, new);
                }
            }
        }
    }
}

impl Renumbering {
    fn call(&self, call: CallId) -> Option<CallId> {
        self.calls.get(&call.0).map(|&c| CallId(c))
    }

    /// `input` in the shorter run's ids, or `None` if it no longer applies.
    fn input(&self, input: &Input, ids: &BTreeMap<AssignmentId, AssignmentId>) -> Option<Input> {
        let mut input = input.clone();
        match &mut input {
            Input::SlotsStreamed { call, .. }
            | Input::StreamEnded { call, .. }
            | Input::RuleVerdicts { call, .. } => *call = self.call(*call)?,
            Input::Persisted { upto } => {
                *upto = self.writes.range(..=*upto).map(|(_, &n)| n).max()?;
            }
            Input::PersistFailed { from } => {
                *from = self.writes.range(*from..).map(|(_, &n)| n).min()?;
            }
            Input::CancelAssignment { id, .. } => {
                if let Some(&new) = ids.get(id) {
                    *id = new;
                }
            }
            Input::Submit { .. } | Input::ClientGone { .. } | Input::Drain { .. } | Input::Tick => {
            }
        }
        Some(input)
    }
}

fn call_key(o: &Output) -> Option<(u64, Key)> {
    match o {
        Output::FetchAvailability { call, .. } => {
            let mut anonymous = o.clone();
            if let Output::FetchAvailability { call, deadline, .. } = &mut anonymous {
                *call = CallId(0);
                *deadline = Timestamp::ZERO;
            }
            Some((call.0, Key::Fetch(anonymous)))
        }
        Output::CheckRules {
            call, candidates, ..
        } => Some((
            call.0,
            Key::Rules(candidates.iter().map(|c| c.slot.clone()).collect()),
        )),
        _ => None,
    }
}

fn write_key(record: &Record) -> (Key, Option<AssignmentId>) {
    match record {
        Record::Booked { assignment: a, .. } => (
            Key::Booked(a.agent_id.clone(), a.start, a.customer_id.clone()),
            Some(a.id),
        ),
        Record::Answered { key, .. } => (Key::Answered(key.key), None),
        Record::Undone { key, .. } => (Key::Undone(*key), None),
        Record::Cancelled { .. } => (Key::Cancelled, None),
        Record::Sequence { .. } => (Key::Sequence, None),
    }
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
