//! The simulated world around one real `Dispatcher`: a discrete-event loop
//! whose clock jumps to the next due event or to the core's `poll_timeout`,
//! whichever comes first; clients; availability and rules with faults; the
//! journal; crashes and restarts. Every decision comes from one [`Choices`].
//!
//! A run has two phases. In the safety phase clients arrive and faults are
//! injected. Then faults heal, no new client arrives, and the world must
//! become quiet — every ticket answered, every call ended, every write
//! settled — within [`LIVENESS_BUDGET_MS`] of simulated time.

use crate::checker::{Check, Checker, Params};
use crate::choices::{Choices, ChoicesExt};
use crate::coverage::{Coverage, Mark};
use crate::invariant::{liveness, safety, Invariant, Violation};
use crate::journal::{draw_fault, SimJournal};
use crate::scenario::{Faults, Scenario};
use crate::trace::{Event as TraceEvent, OutputHash, Trace, FORMAT};
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use tour_dispatcher::core::time::{MS_PER_DAY, MS_PER_MINUTE};
use tour_dispatcher::core::{
    AssignmentId, CallId, DependencyError, Dispatcher, Input, Output, RawRequest, RawWindow,
    Record, Response, Slot, Ticket, Timestamp, Window,
};
use tour_dispatcher::journal::{Op, Settled, SnapshotReason};

/// How long after the faults heal the world must be quiet.
pub const LIVENESS_BUDGET_MS: u64 = 120_000;
/// A run that takes more steps than this is stuck (a liveness failure).
const MAX_STEPS: u64 = 5_000_000;
/// The most slots one streamed batch carries.
const MAX_CHUNK: usize = 256;

/// A test-only filter on the core's output stream, to build faulty variants
/// of the core without planting bugs in it (see the seed suite's tests).
pub trait Tap {
    /// Sees each input before the core does.
    fn input(&mut self, _now: Timestamp, _input: &Input) {}
    /// Passes `out` on (or not, or changed) by pushing onto `emit`.
    fn output(&mut self, now: Timestamp, out: Output, emit: &mut Vec<Output>);
    /// Time passed: emit what was held back and is now due.
    fn tick(&mut self, _now: Timestamp, _emit: &mut Vec<Output>) {}
    /// When something held back falls due.
    fn next_due(&self) -> Option<Timestamp> {
        None
    }
    /// Whether the outputs reach the world as the core emitted them, so
    /// that the core's own counts of its answers can be held to them.
    fn passes_outputs_unchanged(&self) -> bool {
        false
    }
}

/// The core as it is.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoTap;

impl Tap for NoTap {
    #[inline]
    fn output(&mut self, _now: Timestamp, out: Output, emit: &mut Vec<Output>) {
        emit.push(out);
    }
    fn passes_outputs_unchanged(&self) -> bool {
        true
    }
}

/// Faults the world injected, and other counts for the summary.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunStats {
    pub inputs: u64,
    pub requests: u64,
    pub cancels: u64,
    pub simulated_ms: u64,
    pub latency_spikes: u64,
    pub stream_errors: u64,
    pub stream_stalls: u64,
    #[serde(default)]
    pub malformed_slots: u64,
    pub duplicates: u64,
    pub late_deliveries: u64,
    pub rules_errors: u64,
    pub rules_timeouts: u64,
    pub rules_stalls: u64,
    pub rules_malformed: u64,
    pub journal_failures: u64,
    pub journal_spikes: u64,
    pub crashes: u64,
    pub compactions: u64,
    pub give_ups: u64,
    pub retries: u64,
    pub altered: u64,
    pub invalid_bodies: u64,
}

impl RunStats {
    pub fn add(&mut self, o: &RunStats) {
        macro_rules! sum { ($($f:ident),*) => { $(self.$f += o.$f;)* } }
        sum!(
            inputs,
            requests,
            cancels,
            simulated_ms,
            latency_spikes,
            stream_errors,
            stream_stalls,
            malformed_slots,
            duplicates,
            late_deliveries,
            rules_errors,
            rules_timeouts,
            rules_stalls,
            rules_malformed,
            journal_failures,
            journal_spikes,
            crashes,
            compactions,
            give_ups,
            retries,
            altered,
            invalid_bodies
        );
    }

    /// (label, count) of every injected fault and client behaviour.
    pub fn faults(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("latency spikes", self.latency_spikes),
            ("stream errors", self.stream_errors),
            ("stream stalls", self.stream_stalls),
            ("malformed slots streamed", self.malformed_slots),
            ("duplicate deliveries", self.duplicates),
            ("late deliveries after cancel", self.late_deliveries),
            ("rules errors", self.rules_errors),
            ("rules timeouts", self.rules_timeouts),
            ("rules stalls", self.rules_stalls),
            ("rules malformed", self.rules_malformed),
            ("journal failures", self.journal_failures),
            ("journal latency spikes", self.journal_spikes),
            ("crashes", self.crashes),
            ("compactions", self.compactions),
            ("client give-ups", self.give_ups),
            ("client retries", self.retries),
            ("altered payloads", self.altered),
            ("invalid bodies", self.invalid_bodies),
        ]
    }
}

/// What a run produced.
pub struct RunResult {
    pub violation: Option<Violation>,
    pub stats: RunStats,
    pub coverage: Coverage,
    pub outputs_hash: String,
    /// The trace, when recording.
    pub trace: Option<Trace>,
}

#[derive(Clone, Debug)]
enum Event {
    Arrival,
    Send {
        client: usize,
    },
    GiveUp {
        ticket: Ticket,
    },
    GiveUpCancel {
        ticket: Ticket,
        id: AssignmentId,
    },
    Cancel {
        client: usize,
    },
    StrayCancel,
    Stream {
        epoch: u32,
        call: CallId,
    },
    Deliver {
        epoch: u32,
        call: CallId,
        input: Input,
    },
    JournalSync {
        epoch: u32,
    },
    JournalAck {
        epoch: u32,
        input: Input,
    },
    RetrySnapshot {
        epoch: u32,
    },
    /// The core's snapshot for a compaction the journal asked for.
    Compact {
        epoch: u32,
    },
    Crash,
    Restart,
    Heal,
    Drain,
}

struct Scheduled {
    at: Timestamp,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// A client: one request it keeps trying.
struct Client {
    body: RawRequest,
    key: Option<String>,
    timeout_ms: u64,
    tries: u32,
    repeats: u32,
    assignment: Option<AssignmentId>,
}

/// An availability stream the world is serving.
struct Stream {
    params: Params,
    cursor: Option<Slot>,
    index: u32,
    last: Option<(u32, Vec<Slot>)>,
}

/// An outbound call of the current process, as the world sees it.
struct Call {
    cancelled: bool,
    /// Deliveries still arrive after a cancel.
    late: bool,
    stream: Option<Stream>,
}

/// The world around one core.
pub struct World<'c, T: Tap = NoTap> {
    scenario: Scenario,
    faults: Faults,
    choices: &'c mut dyn Choices,
    core: Option<Dispatcher>,
    tap: T,
    checker: Checker,
    journal: Option<SimJournal>,
    /// What the journal recovered after a crash, for the restart.
    recovered: Option<Result<Vec<Record>, String>>,
    now: Timestamp,
    events: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    epoch: u32,
    healed_at: Option<Timestamp>,
    /// The journal asked to compact and the snapshot has not come yet.
    compaction_asked: bool,
    safety_end: Timestamp,
    calls: BTreeMap<CallId, Call>,
    clients: Vec<Client>,
    tickets: BTreeMap<Ticket, usize>,
    next_ticket: u64,
    known_ids: Vec<AssignmentId>,
    next_ack: Timestamp,
    outputs: Vec<Output>,
    hash: OutputHash,
    stats: RunStats,
    trace: Option<Vec<TraceEvent>>,
    steps: u64,
}

impl<'c> World<'c, NoTap> {
    /// A world drawn from `choices`, around the core as it is.
    pub fn new(choices: &'c mut dyn Choices) -> Self {
        World::with_tap(choices, NoTap)
    }
}

impl<'c, T: Tap> World<'c, T> {
    /// A world drawn from `choices`, with `tap` between the core and it.
    pub fn with_tap(choices: &'c mut dyn Choices, tap: T) -> Self {
        let scenario = Scenario::draw(choices);
        let start = scenario.start;
        let core = Dispatcher::new(scenario.config.clone()).ok();
        let journal = SimJournal::new(scenario.faults.compact_after_bytes).ok();
        let mut checker = Checker::new(scenario.config.clone(), Some(scenario.services.clone()));
        checker.counts_follow_outputs = tap.passes_outputs_unchanged();
        World {
            faults: scenario.faults.clone(),
            safety_end: start.plus_ms(scenario.safety_ms),
            scenario,
            choices,
            core,
            tap,
            checker,
            journal,
            recovered: None,
            now: start,
            events: BinaryHeap::new(),
            seq: 0,
            epoch: 0,
            healed_at: None,
            compaction_asked: false,
            calls: BTreeMap::new(),
            clients: Vec::new(),
            tickets: BTreeMap::new(),
            next_ticket: 1,
            known_ids: Vec::new(),
            next_ack: start,
            outputs: Vec::new(),
            hash: OutputHash::default(),
            stats: RunStats::default(),
            trace: None,
            steps: 0,
        }
    }

    /// Keeps a trace of the run.
    pub fn record(mut self) -> Self {
        self.trace = Some(Vec::new());
        self
    }

    /// Adds a per-test check.
    pub fn check(mut self, check: Box<dyn Check>) -> Self {
        self.checker.add_check(check);
        self
    }

    /// The scenario this world drew.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// Runs both phases to the end or the first violation.
    pub fn run(mut self, seed: Option<u64>) -> RunResult {
        let violation = self.run_phases().err();
        self.stats.simulated_ms = self.now.since(self.scenario.start);
        let outputs_hash = self.hash.hex();
        let trace = self.trace.take().map(|events| Trace {
            format: FORMAT,
            seed,
            config: self.scenario.config.clone(),
            scenario: Some(self.scenario.clone()),
            initial: Vec::new(),
            start: Some(self.scenario.start),
            events,
            outputs_hash: Some(outputs_hash.clone()),
            choices: self.choices.recorded().map(<[u64]>::to_vec),
            failure: violation.clone(),
        });
        RunResult {
            violation,
            stats: self.stats,
            coverage: std::mem::take(&mut self.checker.coverage),
            outputs_hash,
            trace,
        }
    }

    fn run_phases(&mut self) -> Result<(), Violation> {
        let Some(core) = &self.core else {
            return Err(safety(
                Invariant::Bounded,
                "the drawn configuration is invalid",
            ));
        };
        self.checker.start(self.now, &[], core)?;
        self.schedule(self.now, Event::Arrival);
        self.schedule(self.safety_end, Event::Heal);
        for at in self.faults.crashes.clone() {
            self.schedule(self.scenario.start.plus_ms(at), Event::Crash);
        }
        loop {
            self.steps += 1;
            if self.steps > MAX_STEPS {
                return Err(liveness(
                    Invariant::ExactlyOneAnswer,
                    "the run does not end",
                ));
            }
            if let Some(healed) = self.healed_at {
                if self.now.since(healed) > LIVENESS_BUDGET_MS {
                    return Err(self.not_quiet());
                }
            }
            let timer = self
                .core
                .as_ref()
                .and_then(|c| c.poll_timeout())
                .map(|(t, _)| t);
            let timer = match (timer, self.tap.next_due()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let next = self.events.peek().map(|Reverse(s)| s.at);
            match (next, timer) {
                (None, None) => break,
                (Some(at), Some(t)) if t < at => self.tick(t)?,
                (None, Some(t)) => self.tick(t)?,
                _ => {
                    let Some(Reverse(s)) = self.events.pop() else {
                        break;
                    };
                    self.now = self.now.max(s.at);
                    self.on_event(s.event)?;
                }
            }
        }
        if let Some(t) = &mut self.trace {
            t.push(TraceEvent::Quiet { now: self.now });
        }
        if let Some(core) = &self.core {
            self.checker.finish(self.now, core)?;
        }
        self.final_crash()
    }

    /// Every run ends with a crash and a recovery: what the journal holds
    /// must be what the core was told is durable.
    fn final_crash(&mut self) -> Result<(), Violation> {
        if self.core.is_none() {
            return Ok(());
        }
        self.crash_journal();
        self.restart()
    }

    fn not_quiet(&self) -> Violation {
        let waiting = self.checker.waiting_tickets();
        liveness(
            Invariant::ExactlyOneAnswer,
            format!(
                "not quiet {LIVENESS_BUDGET_MS} ms after the faults healed: {waiting} tickets wait, {} events pending",
                self.events.len()
            ),
        )
    }

    fn tick(&mut self, t: Timestamp) -> Result<(), Violation> {
        self.now = self.now.max(t);
        self.feed(Input::Tick)
    }

    fn schedule(&mut self, at: Timestamp, event: Event) {
        self.seq += 1;
        self.events.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            event,
        }));
    }

    fn after(&mut self, ms: u64, event: Event) {
        self.schedule(self.now.plus_ms(ms), event);
    }

    // ----- feeding the core ------------------------------------------------

    /// Feeds one input to the core and reacts to its outputs.
    fn feed(&mut self, input: Input) -> Result<(), Violation> {
        let Some(core) = self.core.as_mut() else {
            return Ok(());
        };
        let now = self.now;
        self.stats.inputs += 1;
        if let Some(t) = &mut self.trace {
            t.push(TraceEvent::Input {
                now,
                input: input.clone(),
                outputs_hash: None,
            });
        }
        let journal_failed = matches!(input, Input::PersistFailed { .. });
        self.checker.before(now, &input)?;
        self.tap.input(now, &input);
        let handled = catch_unwind(AssertUnwindSafe(|| {
            core.handle(now, input);
            let mut outputs = std::mem::take(&mut self.outputs);
            outputs.clear();
            self.tap.tick(now, &mut outputs);
            while let Some(out) = core.poll_output() {
                self.tap.output(now, out, &mut outputs);
            }
            outputs
        }));
        let outputs = handled.map_err(|panic| Violation::from_panic(&*panic))?;
        for out in &outputs {
            self.hash.add(now, out);
        }
        self.checker.after(now, &outputs, core)?;
        // Every other slot the world streams is well formed (the embedded
        // availability streams in order, within the window): a core that
        // drops more than the world malformed throws good slots away.
        let dropped = core.stats().slots_malformed;
        if dropped > self.stats.malformed_slots {
            return Err(safety(
                Invariant::AssignmentsHonourTheRequest,
                format!(
                    "the core dropped {dropped} slots as malformed; the world streamed {}",
                    self.stats.malformed_slots
                ),
            ));
        }
        if journal_failed {
            if let Some(j) = &mut self.journal {
                j.failure_handled();
            }
            // The fresh file first: this step's writes belong in it.
            self.snapshot_journal();
        }
        for out in &outputs {
            self.react(out);
        }
        self.outputs = outputs;
        self.maybe_sync();
        Ok(())
    }

    fn react(&mut self, out: &Output) {
        match out {
            Output::FetchAvailability {
                call,
                zipcode,
                window,
                duration_min,
                after,
                ..
            } => {
                let params = Params {
                    zipcode: zipcode.clone(),
                    window: *window,
                    duration_min: *duration_min,
                };
                self.open_stream(*call, params, after.clone());
            }
            Output::CheckRules {
                call,
                request,
                candidates,
                deadline,
            } => self.answer_rules(*call, request, candidates, *deadline),
            Output::CancelCall { call, .. } => {
                if let Some(c) = self.calls.get_mut(call) {
                    c.cancelled = true;
                }
            }
            Output::Persist { seq, record } => {
                if let Some(j) = &mut self.journal {
                    j.append(*seq, record);
                }
            }
            Output::Respond {
                ticket, response, ..
            } => self.on_answer(*ticket, response),
        }
    }

    // ----- availability ----------------------------------------------------

    fn open_stream(&mut self, call: CallId, params: Params, after: Option<Slot>) {
        let late = self.choices.chance(self.faults.late_pm);
        self.calls.insert(
            call,
            Call {
                cancelled: false,
                late,
                stream: Some(Stream {
                    params,
                    cursor: after,
                    index: 0,
                    last: None,
                }),
            },
        );
        let delay = self.latency(self.faults.avail_latency_ms);
        let epoch = self.epoch;
        self.after(delay, Event::Stream { epoch, call });
    }

    /// A latency around `base` ms, with a spike now and then (always ≥ 1 ms).
    fn latency(&mut self, base: u64) -> u64 {
        let mut ms = 1 + self.choices.below(base.max(1) * 2);
        if self.choices.chance(self.faults.spike_pm) {
            self.stats.latency_spikes += 1;
            ms += self.choices.between(1, self.faults.spike_ms);
        }
        ms
    }

    fn on_stream(&mut self, epoch: u32, call: CallId) -> Result<(), Violation> {
        if epoch != self.epoch {
            return Ok(());
        }
        let Some(c) = self.calls.get_mut(&call) else {
            return Ok(());
        };
        if c.cancelled {
            if !c.late {
                c.stream = None;
                return Ok(());
            }
            c.late = false;
            self.stats.late_deliveries += 1;
        }
        let Some(mut stream) = c.stream.take() else {
            return Ok(());
        };
        if self.choices.chance(self.faults.stream_error_pm) {
            self.stats.stream_errors += 1;
            let count = stream.index;
            return self.feed(Input::StreamEnded {
                call,
                count,
                result: Err(DependencyError::Unavailable),
            });
        }
        if self.choices.chance(self.faults.stream_stall_pm) {
            self.stats.stream_stalls += 1;
            return Ok(());
        }
        if stream.index > 0 && self.choices.chance(self.faults.duplicate_pm) {
            if let Some((first_index, slots)) = stream.last.clone() {
                self.stats.duplicates += 1;
                let input = Input::SlotsStreamed {
                    call,
                    first_index,
                    slots,
                };
                let at = self.choices.between(0, 5);
                self.after(at, Event::Deliver { epoch, call, input });
            }
        }
        // A `0` choice sends the whole rest at once: the fewest inputs.
        let size = match self.choices.below(self.faults.chunk_max + 1) {
            0 => MAX_CHUNK,
            n => n as usize,
        };
        let p = &stream.params;
        let mut chunk: Vec<Slot> = self
            .scenario
            .services
            .slots(&p.zipcode, p.window, p.duration_min, stream.cursor.as_ref())
            .take(size)
            .collect();
        if chunk.is_empty() {
            let count = stream.index;
            return self.feed(Input::StreamEnded {
                call,
                count,
                result: Ok(()),
            });
        }
        if self.choices.chance(self.faults.stream_malformed_pm) {
            self.malform(&mut chunk, p.window);
        }
        let first_index = stream.index;
        stream.index += chunk.len() as u32;
        stream.cursor = chunk.last().cloned();
        stream.last = Some((first_index, chunk.clone()));
        if let Some(c) = self.calls.get_mut(&call) {
            c.stream = Some(stream);
        }
        let gap = self.choices.below(self.faults.avail_interval_ms + 1);
        self.after(gap, Event::Stream { epoch, call });
        self.feed(Input::SlotsStreamed {
            call,
            first_index,
            slots: chunk,
        })
    }

    /// Slips a slot outside the window into `chunk`, anywhere but last (the
    /// last slot is the stream's cursor): a day before the window (out of
    /// order too) or a day after it (in order), so the core must drop it
    /// and keep the rest.
    fn malform(&mut self, chunk: &mut Vec<Slot>, window: Window) {
        let Some(first) = chunk.first() else {
            return;
        };
        let at = self.choices.below(chunk.len() as u64) as usize;
        // The place picks the kind too: one draw keeps the seeds' worlds.
        let start = if at.is_multiple_of(2) {
            window.start.minus_ms(MS_PER_DAY)
        } else {
            window.end.plus_ms(MS_PER_DAY)
        };
        let bad = Slot {
            start,
            agent: first.agent.clone(),
        };
        chunk.insert(at, bad);
        self.stats.malformed_slots += 1;
    }

    // ----- rules -------------------------------------------------------------

    fn answer_rules(
        &mut self,
        call: CallId,
        request: &tour_dispatcher::core::RuleRequest,
        candidates: &[tour_dispatcher::core::Candidate],
        deadline: Timestamp,
    ) {
        let late = self.choices.chance(self.faults.late_pm);
        self.calls.insert(
            call,
            Call {
                cancelled: false,
                late,
                stream: None,
            },
        );
        let f = self.faults.clone();
        let mut delay = self.latency(f.rules_latency_ms);
        let result = if self.choices.chance(f.rules_stall_pm) {
            self.stats.rules_stalls += 1;
            return;
        } else if self.choices.chance(f.rules_error_pm) {
            self.stats.rules_errors += 1;
            Err(DependencyError::Unavailable)
        } else if self.choices.chance(f.rules_timeout_pm) {
            self.stats.rules_timeouts += 1;
            delay += deadline.since(self.now).min(3_000);
            Err(DependencyError::Timeout)
        } else if self.choices.chance(f.rules_malformed_pm) {
            self.stats.rules_malformed += 1;
            Ok(vec![true; candidates.len() + 1])
        } else {
            Ok(self
                .scenario
                .services
                .verdicts(self.now, request, candidates))
        };
        let epoch = self.epoch;
        let input = Input::RuleVerdicts { call, result };
        if self.choices.chance(f.duplicate_pm) {
            self.stats.duplicates += 1;
            let again = delay + self.choices.between(0, 5);
            self.after(
                again,
                Event::Deliver {
                    epoch,
                    call,
                    input: input.clone(),
                },
            );
        }
        self.after(delay, Event::Deliver { epoch, call, input });
    }

    fn on_deliver(&mut self, epoch: u32, call: CallId, input: Input) -> Result<(), Violation> {
        if epoch != self.epoch {
            return Ok(());
        }
        match self.calls.get_mut(&call) {
            Some(c) if c.cancelled && !c.late => Ok(()),
            Some(c) => {
                if c.cancelled {
                    self.stats.late_deliveries += 1;
                }
                self.feed(input)
            }
            None => Ok(()),
        }
    }

    // ----- the journal -------------------------------------------------------

    fn maybe_sync(&mut self) {
        let Some(j) = &mut self.journal else {
            return;
        };
        if self.core.is_none() || !j.start_sync() {
            return;
        }
        let mut delay = 1 + self.choices.below(self.faults.journal_latency_ms * 2);
        if self.choices.chance(self.faults.journal_spike_pm) {
            self.stats.journal_spikes += 1;
            delay += self.choices.between(1, 3_000);
        }
        let epoch = self.epoch;
        self.after(delay, Event::JournalSync { epoch });
    }

    fn on_journal_sync(&mut self, epoch: u32) -> Result<(), Violation> {
        if epoch != self.epoch {
            return Ok(());
        }
        let fault = draw_fault(self.choices, self.faults.journal_fail_pm);
        if fault.is_some() {
            self.stats.journal_failures += 1;
        }
        let settled = match &mut self.journal {
            Some(j) => j.commit(fault),
            None => Vec::new(),
        };
        self.deliver_settled(settled);
        self.maybe_sync();
        self.maybe_compact()
    }

    /// Completions reach the core in order, each after its own delay.
    fn deliver_settled(&mut self, settled: Vec<Settled>) {
        let epoch = self.epoch;
        for s in settled {
            let input = match s {
                Settled::Persisted { upto } => Input::Persisted { upto },
                Settled::Failed { from } => Input::PersistFailed { from },
            };
            let delay = self.choices.below(self.faults.journal_latency_ms + 1);
            let at = self.now.plus_ms(delay).max(self.next_ack);
            self.next_ack = at;
            self.schedule(at, Event::JournalAck { epoch, input });
        }
    }

    /// When the journal asks to compact, the core's snapshot comes a little
    /// later, as the driver's does: records may be staged by then, and a
    /// commit may even have failed without the core hearing of it yet.
    fn maybe_compact(&mut self) -> Result<(), Violation> {
        let wants = self.journal.as_ref().and_then(SimJournal::wants_snapshot);
        if wants != Some(SnapshotReason::Compact) || self.core.is_none() || self.compaction_asked {
            return Ok(());
        }
        self.compaction_asked = true;
        let delay = self.choices.below(self.faults.journal_latency_ms * 2 + 1);
        let epoch = self.epoch;
        self.after(delay, Event::Compact { epoch });
        Ok(())
    }

    /// The snapshot for a compaction arrives and is installed, whatever the
    /// journal's state now (as the driver does); now and then the process
    /// dies in the middle of it.
    fn on_compact(&mut self, epoch: u32) -> Result<(), Violation> {
        if epoch != self.epoch || self.core.is_none() {
            return Ok(());
        }
        self.compaction_asked = false;
        let dies = self.healed_at.is_none() && self.choices.chance(self.faults.compaction_crash_pm);
        let halt = dies.then(|| self.choices.below(8));
        // The commit of what is staged, which comes first, may fail too.
        let staged = self.journal.as_ref().is_some_and(SimJournal::has_staged);
        let fault = if staged {
            draw_fault(self.choices, self.faults.journal_fail_pm)
        } else {
            None
        };
        if fault.is_some() {
            self.stats.journal_failures += 1;
        }
        self.install_snapshot(halt, fault);
        if dies {
            self.checker.coverage.hit(Mark::CrashMidCompaction);
            self.crash();
        } else {
            self.maybe_sync();
        }
        Ok(())
    }

    /// Installs the core's snapshot as the journal's fresh file if the
    /// journal wants one (after a failure the core heard of, or a failed
    /// install).
    fn snapshot_journal(&mut self) {
        if self
            .journal
            .as_ref()
            .and_then(SimJournal::wants_snapshot)
            .is_some()
        {
            self.install_snapshot(None, None);
        }
    }

    /// Installs the core's snapshot as the journal's fresh file; retried
    /// later on failure.
    fn install_snapshot(&mut self, halt_after: Option<u64>, fault: Option<Op>) {
        let (Some(core), Some(j)) = (&self.core, &mut self.journal) else {
            return;
        };
        let (settled, installed) =
            j.install_snapshot(core.durable_seq(), &core.snapshot(), halt_after, fault);
        self.deliver_settled(settled);
        match installed {
            Ok(()) => {
                self.stats.compactions += 1;
                self.checker.coverage.hit(Mark::Compaction);
            }
            Err(_) if halt_after.is_none() => {
                let epoch = self.epoch;
                let wait = self.choices.between(1, 100);
                self.after(wait, Event::RetrySnapshot { epoch });
            }
            Err(_) => {}
        }
    }

    // ----- crash and restart -------------------------------------------------

    fn crash(&mut self) {
        if self.core.is_none() || self.healed_at.is_some() {
            return;
        }
        self.stats.crashes += 1;
        self.crash_journal();
        self.epoch += 1;
        self.compaction_asked = false;
        self.calls.clear();
        let lost: Vec<(Ticket, usize)> = std::mem::take(&mut self.tickets).into_iter().collect();
        for (_, client) in lost {
            self.maybe_retry(client);
        }
        let downtime = self.choices.between(1, self.faults.restart_ms);
        self.after(downtime, Event::Restart);
    }

    /// The process dies: the journal's disk crashes and is recovered, for
    /// the restart to restore from.
    fn crash_journal(&mut self) {
        self.core = None;
        let Some(journal) = self.journal.as_mut() else {
            self.recovered = None;
            return;
        };
        self.recovered = Some(match journal.crash(self.choices) {
            Ok((records, report)) => {
                if report.zeros_cut > 0 {
                    self.checker.coverage.hit(Mark::ZerosCut);
                }
                if journal.showed_stale_blocks && report.torn_bytes > 0 {
                    self.checker.coverage.hit(Mark::StaleBlocksCut);
                }
                Ok(records)
            }
            Err(e) => Err(e.to_string()),
        });
    }

    fn restart(&mut self) -> Result<(), Violation> {
        let records = match self.recovered.take() {
            Some(Ok(records)) => records,
            Some(Err(e)) => {
                return Err(safety(
                    Invariant::DurableBeforeAcknowledged,
                    format!("the journal refused to recover after the crash: {e}"),
                ))
            }
            None => Vec::new(),
        };
        if let Some(t) = &mut self.trace {
            t.push(TraceEvent::Restart {
                now: self.now,
                records: records.clone(),
            });
        }
        let config = self.scenario.config.clone();
        let core = Dispatcher::restore(config, self.now, records.clone()).map_err(|e| {
            safety(
                Invariant::NoDoubleReservation,
                format!("restore refused the journal: {e}"),
            )
        })?;
        self.checker.restart(self.now, &records, &core)?;
        self.core = Some(core);
        self.next_ack = self.now;
        Ok(())
    }

    // ----- clients -----------------------------------------------------------

    fn on_arrival(&mut self) {
        let done = self.clients.len() as u64 >= self.scenario.clients.arrivals;
        if done || self.now >= self.safety_end || !self.choices.go_on() {
            return;
        }
        let mix = self.scenario.clients.clone();
        let burst = if self.choices.chance(mix.burst_pm) {
            self.choices.between(1, mix.burst_max)
        } else {
            0
        };
        for i in 0..=burst {
            let client = self.new_client();
            let at = if i == 0 { 0 } else { self.choices.below(3) };
            self.after(at, Event::Send { client });
        }
        if self.choices.chance(mix.stray_cancel_pm) {
            self.after(0, Event::StrayCancel);
        }
        let gap = self.choices.below(2 * mix.mean_gap_ms + 1);
        self.after(gap, Event::Arrival);
    }

    fn new_client(&mut self) -> usize {
        let mix = self.scenario.clients.clone();
        let n = self.clients.len();
        let body = self.request_body(n);
        let key = self.choices.chance(mix.key_pm).then(|| format!("key-{n}"));
        let timeout_ms = if self.choices.chance(mix.tight_pm) {
            self.choices.between(5, 300)
        } else {
            mix.timeout_ms
        };
        self.clients.push(Client {
            body,
            key,
            timeout_ms,
            tries: 0,
            repeats: 0,
            assignment: None,
        });
        n
    }

    /// A request body; now and then one with invalid values.
    fn request_body(&mut self, n: usize) -> RawRequest {
        let mix = &self.scenario.clients;
        let zips = &self.scenario.zipcodes;
        let (hot, language_pm, invalid_pm) = (mix.hot_zip_pm, mix.language_pm, mix.invalid_pm);
        let zipcode = if self.choices.chance(hot) {
            zips[0].to_string()
        } else {
            zips[self.choices.index(zips.len())].to_string()
        };
        let day = self.now.as_millis() - self.now.as_millis() % MS_PER_DAY;
        let start = Timestamp(day + self.choices.between(24 * 60, 3 * 24 * 60) * MS_PER_MINUTE);
        let durations = [30, 15, 45, 60, 90, 120, 240, 17];
        let duration = durations[self.choices.index(durations.len())];
        let len_min = if self.choices.chance(30_000) {
            self.choices.between(duration, 14 * 24 * 60)
        } else {
            self.choices.between(duration, 8 * 60)
        };
        let end = start.plus_ms(len_min * MS_PER_MINUTE);
        let language = self
            .choices
            .chance(language_pm)
            .then(|| ["fr", "es", "zh", "de"][self.choices.index(4)].to_string());
        let property_id = self.choices.chance(500_000).then(|| format!("p-{n}"));
        let mut body = RawRequest {
            customer_id: Some(format!("c-{}", n % 97)),
            duration_minutes: Some(duration as i64),
            language,
            property_id,
            window: Some(RawWindow {
                start: Some(start.to_rfc3339()),
                end: Some(end.to_rfc3339()),
            }),
            zipcode: Some(zipcode),
        };
        if self.choices.chance(invalid_pm) {
            self.stats.invalid_bodies += 1;
            self.spoil(&mut body);
        }
        body
    }

    fn spoil(&mut self, body: &mut RawRequest) {
        match self.choices.below(6) {
            0 => body.customer_id = None,
            1 => body.zipcode = Some("9410".into()),
            2 => body.duration_minutes = Some(5),
            3 => {
                if let Some(w) = &mut body.window {
                    std::mem::swap(&mut w.start, &mut w.end);
                }
            }
            4 => {
                if let Some(w) = &mut body.window {
                    w.start = Some("tomorrow".into());
                }
            }
            _ => {
                body.window = Some(RawWindow {
                    start: Some(self.now.minus_ms(2 * MS_PER_DAY).to_rfc3339()),
                    end: Some(self.now.minus_ms(MS_PER_DAY).to_rfc3339()),
                })
            }
        }
    }

    fn send(&mut self, client: usize) -> Result<(), Violation> {
        if self.core.is_none() {
            // Connection refused while the process is down: try again soon.
            let wait = self.choices.between(1, 100);
            self.after(wait, Event::Send { client });
            return Ok(());
        }
        let mix = self.scenario.clients.clone();
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        self.tickets.insert(ticket, client);
        self.stats.requests += 1;
        let c = &mut self.clients[client];
        c.tries += 1;
        let first = c.tries == 1;
        let deadline = self.now.plus_ms(c.timeout_ms);
        let timeout = c.timeout_ms;
        let input = Input::Submit {
            ticket,
            body: c.body.clone(),
            idempotency_key: c.key.clone(),
            deadline,
        };
        if self.choices.chance(mix.give_up_pm) {
            let patience = self.choices.below(timeout);
            self.after(patience, Event::GiveUp { ticket });
        }
        if first && self.clients[client].key.is_some() && self.choices.chance(mix.double_pm) {
            let again = self.choices.below(20);
            self.after(again, Event::Send { client });
        }
        self.feed(input)
    }

    fn give_up(&mut self, ticket: Ticket) -> Result<(), Violation> {
        let Some(client) = self.tickets.remove(&ticket) else {
            return Ok(());
        };
        self.stats.give_ups += 1;
        self.maybe_retry(client);
        self.feed(Input::ClientGone { ticket })
    }

    /// After a failure, a client may try again with the same key.
    fn maybe_retry(&mut self, client: usize) {
        let mix = self.scenario.clients.clone();
        let c = &self.clients[client];
        if c.tries > mix.max_retries || !self.choices.chance(mix.retry_pm) {
            return;
        }
        self.stats.retries += 1;
        if c.key.is_some() && self.choices.chance(mix.alter_pm) {
            self.alter(client);
        }
        let backoff = self.choices.between(1, 500);
        self.after(backoff, Event::Send { client });
    }

    /// The client's next try carries another payload under the same key.
    fn alter(&mut self, client: usize) {
        self.stats.altered += 1;
        let n = self.choices.below(1000);
        self.clients[client].body.property_id = Some(format!("altered-{n}"));
    }

    fn on_answer(&mut self, ticket: Ticket, response: &Response) {
        let Some(client) = self.tickets.remove(&ticket) else {
            return;
        };
        let mix = self.scenario.clients.clone();
        match response {
            Response::Assigned(a) => {
                self.known_ids.push(a.id);
                self.clients[client].assignment = Some(a.id);
                if self.choices.chance(mix.cancel_pm) {
                    let at = self.choices.between(1, 2_000);
                    self.after(at, Event::Cancel { client });
                }
                let c = &mut self.clients[client];
                if c.repeats < 2 && self.choices.chance(mix.repeat_pm) {
                    c.repeats += 1;
                    // A client that reuses its key for another request.
                    if c.key.is_some() && self.choices.chance(mix.alter_pm) {
                        self.alter(client);
                    }
                    let at = self.choices.between(1, 3_000);
                    self.after(at, Event::Send { client });
                }
            }
            Response::Overloaded { .. }
            | Response::DependencyUnavailable { .. }
            | Response::DeadlineExceeded
            | Response::KeyInFlight => self.maybe_retry(client),
            Response::Cancelled(_) | Response::NotFound => {
                let c = &mut self.clients[client];
                if c.repeats < 2 && self.choices.chance(mix.repeat_pm) {
                    c.repeats += 1;
                    let at = self.choices.between(0, 50);
                    self.after(at, Event::Cancel { client });
                }
            }
            _ => {}
        }
    }

    fn cancel(&mut self, client: Option<usize>) -> Result<(), Violation> {
        let id = match client.and_then(|c| self.clients[c].assignment) {
            Some(id) => id,
            None if !self.known_ids.is_empty() && self.choices.chance(500_000) => {
                self.known_ids[self.choices.index(self.known_ids.len())]
            }
            None => AssignmentId(self.choices.below(u64::MAX)),
        };
        self.send_cancel(client, id)
    }

    /// Sends a DELETE of `id` for `client` (a new one if `None`).
    fn send_cancel(&mut self, client: Option<usize>, id: AssignmentId) -> Result<(), Violation> {
        if self.core.is_none() {
            return Ok(());
        }
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        self.stats.cancels += 1;
        // A DELETE's client reacts to the answer like a dispatch client.
        let client = client.unwrap_or_else(|| {
            self.clients.push(Client {
                body: RawRequest::default(),
                key: None,
                timeout_ms: 0,
                tries: u32::MAX,
                repeats: 2,
                assignment: Some(id),
            });
            self.clients.len() - 1
        });
        self.tickets.insert(ticket, client);
        if self.choices.chance(self.scenario.clients.give_up_pm) {
            let patience = self.choices.below(50);
            self.after(patience, Event::GiveUpCancel { ticket, id });
        }
        self.feed(Input::CancelAssignment { ticket, id })
    }

    /// A DELETE's client stops waiting: it sends the same DELETE again
    /// (which joins the cancel in flight), then drops its first connection.
    fn give_up_cancel(&mut self, ticket: Ticket, id: AssignmentId) -> Result<(), Violation> {
        let Some(client) = self.tickets.remove(&ticket) else {
            return Ok(());
        };
        self.stats.give_ups += 1;
        self.send_cancel(Some(client), id)?;
        self.feed(Input::ClientGone { ticket })
    }

    // ----- events --------------------------------------------------------------

    fn on_event(&mut self, event: Event) -> Result<(), Violation> {
        match event {
            Event::Arrival => {
                self.on_arrival();
                Ok(())
            }
            Event::Send { client } => self.send(client),
            Event::GiveUp { ticket } => self.give_up(ticket),
            Event::GiveUpCancel { ticket, id } => self.give_up_cancel(ticket, id),
            Event::Cancel { client } => self.cancel(Some(client)),
            Event::StrayCancel => self.cancel(None),
            Event::Stream { epoch, call } => self.on_stream(epoch, call),
            Event::Deliver { epoch, call, input } => self.on_deliver(epoch, call, input),
            Event::JournalSync { epoch } => self.on_journal_sync(epoch),
            Event::JournalAck { epoch, input } => {
                if epoch == self.epoch && self.core.is_some() {
                    self.feed(input)?;
                    self.maybe_compact()?;
                }
                Ok(())
            }
            Event::Compact { epoch } => self.on_compact(epoch),
            Event::RetrySnapshot { epoch } => {
                if epoch == self.epoch {
                    self.snapshot_journal();
                    self.maybe_sync();
                }
                Ok(())
            }
            Event::Crash => {
                self.crash();
                Ok(())
            }
            Event::Restart => self.restart(),
            Event::Heal => {
                self.faults = self.faults.healed();
                self.healed_at = Some(self.now);
                if self.choices.chance(self.scenario.clients.drain_pm) {
                    let at = self.choices.below(2_000);
                    self.after(at, Event::Drain);
                }
                Ok(())
            }
            Event::Drain => {
                let deadline = self.now.plus_ms(self.choices.below(3_000));
                self.feed(Input::Drain { deadline })
            }
        }
    }
}

/// Runs the world a fuzzer's bytes describe (the scenario fuzz target).
pub fn run_bytes(bytes: &[u8]) -> RunResult {
    let mut choices = crate::choices::Bytes::new(bytes);
    World::new(&mut choices).run(None)
}

/// Runs one seed.
pub fn run_seed(seed: u64, record: bool) -> RunResult {
    let mut choices = if record {
        crate::choices::Seeded::recording(seed)
    } else {
        crate::choices::Seeded::new(seed)
    };
    let world = World::new(&mut choices);
    let world = if record { world.record() } else { world };
    world.run(Some(seed))
}
