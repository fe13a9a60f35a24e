//! The seed suite and the simulator's own tests: many seeds hold every
//! invariant and reach every hard path; a seed is deterministic; a trace
//! replays to the same outputs; a failure shrinks to a handful of inputs;
//! and the checker catches faulty variants of the core, built by tapping
//! its output stream (no bug is planted in the core itself).

use std::collections::BTreeMap;
use tour_dispatcher::core::{Input, Output, Response, Ticket, Timestamp};
use tour_sim::checker::{Check, Checker};
use tour_sim::choices::Seeded;
use tour_sim::invariant::Violation;
use tour_sim::replay::{render, replay};
use tour_sim::runner::run_seeds;
use tour_sim::shrink::{inputs, shrink_choices, shrink_inputs};
use tour_sim::trace::{Event, OutputHash, Trace};
use tour_sim::world::{run_seed, RunResult, Tap, World};

fn seed_count() -> u64 {
    std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256)
}

fn jobs() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Prints the end of a failing seed's trace, to debug from the test log.
fn explain(seed: u64, v: &Violation) -> String {
    let r = run_seed(seed, true);
    let text = r
        .trace
        .map(|t| {
            let outputs = replay(&t, true, Vec::new()).outputs;
            let text = render(&t, &outputs);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(60)..].join("\n")
        })
        .unwrap_or_default();
    format!("seed {seed}: {v}\n{text}")
}

#[test]
fn seeds_hold_every_invariant_and_reach_every_hard_path() {
    let n = seed_count();
    let summary = run_seeds(0, n, jobs(), false);
    println!("{}", summary.render());
    if let Some((seed, v)) = summary.failures.first() {
        panic!(
            "{} of {n} seeds failed; first:\n{}",
            summary.failures.len(),
            explain(*seed, v)
        );
    }
    assert!(
        summary.stats.requests > n * 10,
        "the seeds simulated almost nothing"
    );
    let missing = summary.coverage.missing();
    if n >= 256 {
        assert!(
            missing.is_empty(),
            "never reached over {n} seeds: {missing:?}"
        );
    }
}

/// The fuzz target's entry: any bytes describe a coherent world that ends.
#[test]
fn arbitrary_bytes_make_worlds_that_hold() {
    let mut bytes = Vec::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in 0..32 {
        for _ in 0..round * 16 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            bytes.push(x as u8);
        }
        let r = tour_sim::world::run_bytes(&bytes);
        assert!(r.violation.is_none(), "round {round}: {:?}", r.violation);
        assert_eq!(
            r.outputs_hash,
            tour_sim::world::run_bytes(&bytes).outputs_hash
        );
    }
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    for seed in [0, 1, 7, 42] {
        let (a, b) = (run_seed(seed, true), run_seed(seed, true));
        assert_eq!(a.outputs_hash, b.outputs_hash, "seed {seed}");
        let (ta, tb) = (a.trace.expect("trace"), b.trace.expect("trace"));
        let (ja, jb) = (
            serde_json::to_string(&ta).expect("json"),
            serde_json::to_string(&tb).expect("json"),
        );
        assert_eq!(ja, jb, "seed {seed}: traces differ byte for byte");
        assert_eq!(
            run_seed(seed, false).outputs_hash,
            a.outputs_hash,
            "recording changed the run"
        );
    }
    assert_ne!(
        run_seed(1, false).outputs_hash,
        run_seed(2, false).outputs_hash
    );
}

#[test]
fn a_trace_replays_to_the_same_outputs_through_a_file() {
    let r = run_seed(3, true);
    assert!(r.violation.is_none());
    let trace = r.trace.expect("trace");
    assert!(trace.input_count() > 50);
    let path = std::env::temp_dir().join(format!("tour-sim-test-{}.json", std::process::id()));
    let path = path.to_string_lossy().to_string();
    trace.save(&path).expect("save");
    let loaded = Trace::load(&path).expect("load");
    let _ = std::fs::remove_file(&path);
    assert!(loaded == trace, "the trace changed through its file");
    let replayed = replay(&loaded, false, Vec::new());
    assert!(replayed.violation.is_none(), "{:?}", replayed.violation);
    assert_eq!(replayed.outputs_hash, r.outputs_hash);
    // A replay notices a trace whose outputs no longer match it.
    let mut cut = loaded.clone();
    cut.events.truncate(cut.events.len() / 2);
    let v = replay(&cut, false, Vec::new())
        .violation
        .expect("a mismatch");
    assert_eq!(v.invariant, "10 determinism");
}

/// The server's `--record-trace` form of a simulated run: a header line,
/// then one input per line with the running hash of that process's
/// outputs, and a header again after each restart.
fn production_text(trace: &Trace) -> String {
    let outputs = replay(trace, true, Vec::new()).outputs;
    let header = |records: &[tour_dispatcher::core::Record], now| {
        serde_json::json!({"format": 1, "config": trace.config, "records": records,
            "now": now, "source": "server"})
        .to_string()
    };
    let mut lines = vec![header(&trace.initial, trace.start)];
    let mut hash = OutputHash::default();
    for (e, outs) in trace.events.iter().zip(&outputs) {
        match e {
            Event::Input { now, input, .. } => {
                for o in outs {
                    hash.add(*now, o);
                }
                lines.push(
                    serde_json::json!({"now": now, "input": input, "outputs_hash": hash.hex()})
                        .to_string(),
                );
            }
            Event::Restart { now, records } => {
                hash = OutputHash::default();
                lines.push(header(records, Some(*now)));
            }
            Event::Quiet { .. } => {}
        }
    }
    lines.join("\n") + "\n"
}

fn crashing_seed() -> u64 {
    (0..200)
        .find(|&s| {
            let r = run_seed(s, false);
            r.stats.crashes > 0 && r.violation.is_none()
        })
        .expect("some seed crashes")
}

#[test]
fn a_production_trace_replays_and_checks_its_hashes() {
    let seed = crashing_seed();
    let r = run_seed(seed, true);
    let trace = r.trace.expect("trace");
    let text = production_text(&trace);
    let production = Trace::parse("recorded", &text).expect("parses");
    assert!(production.choices.is_none() && production.seed.is_none());
    let replayed = replay(&production, false, Vec::new());
    assert!(replayed.violation.is_none(), "{:?}", replayed.violation);
    assert_eq!(replayed.outputs_hash, r.outputs_hash, "seed {seed}");
    // A line whose recorded hash does not match is a determinism failure.
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let i = lines.len() / 2;
    let mut line: serde_json::Value = serde_json::from_str(&lines[i]).expect("json");
    if line.get("outputs_hash").is_none() {
        line = serde_json::from_str(&lines[i + 1]).expect("json");
        lines.remove(i);
    }
    line["outputs_hash"] = serde_json::json!("0000000000000000");
    lines[i] = line.to_string();
    let tampered = Trace::parse("recorded", &lines.join("\n")).expect("parses");
    let v = replay(&tampered, false, Vec::new())
        .violation
        .expect("caught");
    assert_eq!(v.invariant, "10 determinism");
}

/// A per-test check: at most three assignments may be acknowledged.
struct AtMostThreeAssignments;

impl Check for AtMostThreeAssignments {
    fn name(&self) -> &str {
        "at most 3 assignments"
    }
    fn check(&mut self, model: &Checker) -> Result<(), String> {
        match model.acknowledged_assignments() {
            n if n > 3 => Err(format!("{n} assignments acknowledged")),
            _ => Ok(()),
        }
    }
}

fn at_most_three() -> Vec<Box<dyn Check>> {
    vec![Box::new(AtMostThreeAssignments)]
}

fn run_checked(seed: u64, checks: Vec<Box<dyn Check>>) -> RunResult {
    let mut choices = Seeded::recording(seed);
    let mut world = World::new(&mut choices).record();
    for c in checks {
        world = world.check(c);
    }
    world.run(Some(seed))
}

#[test]
fn a_long_failing_run_shrinks_to_a_handful_of_inputs() {
    let (seed, failing) = (0..50)
        .map(|s| (s, run_checked(s, at_most_three())))
        .find(|(_, r)| {
            r.violation.is_some() && r.trace.as_ref().is_some_and(|t| t.input_count() > 200)
        })
        .expect("a long run with more than 3 assignments");
    let v = failing.violation.clone().expect("violation");
    assert_eq!(v.invariant, "at most 3 assignments");
    let trace = failing.trace.expect("trace");
    let list = trace.choices.clone().expect("choices");
    let shrunk = shrink_choices(list, &v, &at_most_three, 3_000);
    let small = shrunk.trace.expect("trace");
    let outputs = replay(&small, true, at_most_three()).outputs;
    if let Ok(path) = std::env::var("SIM_SHRUNK_OUT") {
        let _ = small.save(&path);
    }
    println!(
        "seed {seed}: {} inputs shrunk to {}\n{}",
        trace.input_count(),
        inputs(&small),
        render(&small, &outputs)
    );
    let again = replay(&small, false, at_most_three());
    assert!(
        again.violation.is_some_and(|w| w.same_failure(&v)),
        "the shrunk trace still fails"
    );
    // Four bookings need four submits and their streams, verdicts and writes.
    assert!(inputs(&small) <= 30, "{} inputs left", inputs(&small));
}

#[test]
fn a_production_trace_shrinks_by_deleting_inputs() {
    let (seed, failing) = (0..50)
        .map(|s| (s, run_checked(s, at_most_three())))
        .find(|(_, r)| r.violation.is_some() && r.stats.crashes == 0)
        .expect("a run with more than 3 assignments");
    let v = failing.violation.expect("violation");
    let sim = failing.trace.expect("trace");
    let production = Trace::parse("recorded", &production_text(&sim)).expect("parses");
    let before = replay(&production, false, at_most_three()).violation;
    assert!(before.is_some_and(|w| w.same_failure(&v)), "seed {seed}");
    let small = shrink_inputs(&production, &v, &at_most_three, 2_000);
    let outputs = replay(&small, true, at_most_three()).outputs;
    println!(
        "seed {seed}: {} inputs shrunk to {}\n{}",
        inputs(&production),
        inputs(&small),
        render(&small, &outputs)
    );
    let after = replay(&small, false, at_most_three()).violation;
    assert!(after.is_some_and(|w| w.same_failure(&v)), "still fails");
    // Deleting a submit renumbers the calls after it, so a production trace
    // shrinks less than a simulated one; it still sheds most of its inputs.
    assert!(
        inputs(&small) * 2 < inputs(&production),
        "{} of {} inputs left",
        inputs(&small),
        inputs(&production)
    );
}

// ----- faulty variants of the core, through a tap on its outputs ------------

/// Runs seeds with a fresh tap each until one fails; the failure.
fn first_failure<T: Tap>(make: impl Fn() -> T) -> Option<(u64, Violation)> {
    (0..300).find_map(|seed| {
        let mut choices = Seeded::new(seed);
        let r = World::with_tap(&mut choices, make()).run(Some(seed));
        r.violation.map(|v| (seed, v))
    })
}

/// Books the second booking's agent over the first one's time.
#[derive(Default)]
struct DoubleBooking {
    first: Option<tour_dispatcher::core::Assignment>,
}

impl Tap for DoubleBooking {
    fn output(&mut self, _now: Timestamp, mut out: Output, emit: &mut Vec<Output>) {
        if let Output::Persist {
            record: tour_dispatcher::core::Record::Booked { assignment, .. },
            ..
        } = &mut out
        {
            match &self.first {
                None => self.first = Some(assignment.clone()),
                Some(f) if f.id != assignment.id => {
                    assignment.agent_id = f.agent_id.clone();
                    assignment.start = f.start;
                    assignment.end = f.end;
                }
                Some(_) => {}
            }
        }
        emit.push(out);
    }
}

#[test]
fn the_checker_catches_a_double_booking() {
    let (seed, v) = first_failure(DoubleBooking::default).expect("caught");
    assert_eq!(v.invariant, "1 no-double-reservation", "seed {seed}: {v}");
}

/// Loses the fifth DELETE answer: the cancel itself happens, only the
/// answer never comes (caught when the world is quiet).
#[derive(Default)]
struct LostAnswer {
    answers: u32,
}

impl Tap for LostAnswer {
    fn output(&mut self, _now: Timestamp, out: Output, emit: &mut Vec<Output>) {
        if let Output::Respond {
            response: Response::Cancelled(_),
            ..
        } = out
        {
            self.answers += 1;
            if self.answers == 5 {
                return;
            }
        }
        emit.push(out);
    }
}

#[test]
fn the_checker_catches_a_lost_answer() {
    let (seed, v) = first_failure(LostAnswer::default).expect("caught");
    assert_eq!(v.invariant, "2 exactly-one-answer", "seed {seed}: {v}");
}

/// Holds every 201 back until its ticket's deadline.
#[derive(Default)]
struct LateSuccess {
    deadlines: BTreeMap<Ticket, Timestamp>,
    held: Vec<(Timestamp, Output)>,
}

impl Tap for LateSuccess {
    fn input(&mut self, _now: Timestamp, input: &Input) {
        if let Input::Submit {
            ticket, deadline, ..
        } = input
        {
            self.deadlines.insert(*ticket, *deadline);
        }
    }
    fn output(&mut self, now: Timestamp, out: Output, emit: &mut Vec<Output>) {
        if let Output::Respond {
            ticket,
            response: Response::Assigned(_),
            ..
        } = &out
        {
            let due = self.deadlines.get(ticket).copied().unwrap_or(now);
            // Only answers close to their deadline are held, so that few
            // tickets wait on the tap at once.
            if due.since(now) <= 50 {
                self.held.push((due, out));
                return;
            }
        }
        emit.push(out);
    }
    fn tick(&mut self, now: Timestamp, emit: &mut Vec<Output>) {
        let (due, later): (Vec<_>, Vec<_>) = self.held.drain(..).partition(|(at, _)| *at <= now);
        self.held = later;
        emit.extend(due.into_iter().map(|(_, o)| o));
    }
    fn next_due(&self) -> Option<Timestamp> {
        self.held.iter().map(|(at, _)| *at).min()
    }
}

#[test]
fn the_checker_catches_a_201_after_the_deadline() {
    let (seed, v) = first_failure(LateSuccess::default).expect("caught");
    assert_eq!(
        v.invariant, "3 no-success-after-deadline",
        "seed {seed}: {v}"
    );
}

/// Leaves the last candidate out of every batch of two or more: a slot
/// that was free is never offered.
struct DroppedCandidate;

impl Tap for DroppedCandidate {
    fn output(&mut self, _now: Timestamp, mut out: Output, emit: &mut Vec<Output>) {
        if let Output::CheckRules { candidates, .. } = &mut out {
            if candidates.len() >= 2 {
                candidates.pop();
            }
        }
        emit.push(out);
    }
}

#[test]
fn the_checker_catches_a_free_slot_left_out() {
    let (seed, v) = first_failure(|| DroppedCandidate).expect("caught");
    assert_eq!(v.invariant, "9 cancelling-frees-time", "seed {seed}: {v}");
}

/// Never refuses as overloaded: the request waits (unboundedly) and gets a
/// 504 at its deadline instead.
#[derive(Default)]
struct UnboundedQueue {
    deadlines: BTreeMap<Ticket, Timestamp>,
    held: Vec<(Timestamp, Ticket)>,
}

impl Tap for UnboundedQueue {
    fn input(&mut self, _now: Timestamp, input: &Input) {
        match input {
            Input::Submit {
                ticket, deadline, ..
            } => {
                self.deadlines.insert(*ticket, *deadline);
            }
            // A request held in the queue forgets a client that left.
            Input::ClientGone { ticket } => self.held.retain(|(_, t)| t != ticket),
            _ => {}
        }
    }
    fn output(&mut self, now: Timestamp, out: Output, emit: &mut Vec<Output>) {
        if let Output::Respond {
            ticket,
            response: Response::Overloaded { .. },
            ..
        } = &out
        {
            let due = self.deadlines.get(ticket).copied().unwrap_or(now);
            self.held.push((due, *ticket));
            return;
        }
        emit.push(out);
    }
    fn tick(&mut self, now: Timestamp, emit: &mut Vec<Output>) {
        let (due, later): (Vec<_>, Vec<_>) = self.held.drain(..).partition(|(at, _)| *at <= now);
        self.held = later;
        emit.extend(due.into_iter().map(|(_, ticket)| Output::Respond {
            ticket,
            response: Response::DeadlineExceeded,
            replayed: false,
        }));
    }
    fn next_due(&self) -> Option<Timestamp> {
        self.held.iter().map(|(at, _)| *at).min()
    }
}

#[test]
fn the_checker_catches_an_unbounded_queue() {
    let (seed, v) = first_failure(UnboundedQueue::default).expect("caught");
    assert_eq!(v.invariant, "6 bounded", "seed {seed}: {v}");
}
