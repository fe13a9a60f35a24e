//! The checker: an independent model of what the outside world saw — what
//! was submitted, streamed, allowed, written, made durable and answered —
//! and the invariants of DESIGN.md checked against it after every step.
//!
//! The model is built only from the `(now, input)` fed to the core and the
//! outputs it produced (plus the records a restart restored from), so the
//! same checker judges a simulated run, a replayed simulator trace and a
//! production trace. It never asks the core what it thinks happened; it
//! reads the core's durable state (`snapshot`, `assignment`, `book`, `stats`)
//! only to compare it with the model.

use crate::coverage::{Coverage, Mark};
use crate::invariant::{liveness, safety, Invariant as Inv, Violation};
use crate::services::Services;
use compact_str::CompactString;
use std::collections::{BTreeMap, BTreeSet};
use tour_dispatcher::core::ring::Ring;
use tour_dispatcher::core::stats::CallResult;
use tour_dispatcher::core::time::MS_PER_MINUTE;
use tour_dispatcher::core::{
    Assignment, AssignmentId, AssignmentStatus, CallId, CancelReason, Candidate, Config,
    Dependency, Dispatcher, Fingerprint, Input, KeyEntry, KeyHash, Outcome, Output, RawRequest,
    Record, Remembered, Response, Slot, Stats, Ticket, Timestamp, Window,
};

/// A check added by a test (for example "at most 3 assignments").
pub trait Check: Send {
    fn name(&self) -> &str;
    /// Called after every step; `Err` is a violation of this check.
    fn check(&mut self, model: &Checker) -> Result<(), String>;
}

/// What a dispatch request asks for, as the checker reads the body.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Params {
    pub zipcode: CompactString,
    pub window: Window,
    pub duration_min: u32,
}

impl Params {
    /// Reads the fields a dispatch needs; `None` if any is missing or
    /// unreadable (such a request can only be answered 422).
    pub fn of(body: &RawRequest) -> Option<Params> {
        let zipcode = body.zipcode.as_deref()?;
        let w = body.window.as_ref()?;
        let start = parse_ms(w.start.as_deref()?, true)?;
        let end = parse_ms(w.end.as_deref()?, false)?;
        let duration_min = u32::try_from(body.duration_minutes?).ok()?;
        (start < end).then(|| Params {
            zipcode: zipcode.into(),
            window: Window::new(Timestamp(start), Timestamp(end)),
            duration_min,
        })
    }
}

/// Milliseconds of an RFC 3339 date-time, rounded up or down.
fn parse_ms(text: &str, round_up: bool) -> Option<u64> {
    use time::format_description::well_known::Rfc3339;
    let nanos = time::OffsetDateTime::parse(text, &Rfc3339)
        .ok()?
        .unix_timestamp_nanos();
    let ms = if round_up {
        -((-nanos).div_euclid(1_000_000))
    } else {
        nanos.div_euclid(1_000_000)
    };
    u64::try_from(ms).ok()
}

#[derive(Clone, Debug)]
struct DispatchTicket {
    deadline: Timestamp,
    /// It arrived while the core was draining: only a refusal may answer it.
    draining: bool,
    key: Option<(KeyHash, Fingerprint)>,
    params: Option<Params>,
    customer_id: Option<String>,
    property_id: Option<String>,
}

#[derive(Clone, Debug)]
enum TicketKind {
    Dispatch(Box<DispatchTicket>),
    Cancel(AssignmentId),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TicketState {
    Waiting,
    /// The client went away before an answer; one may still come in the
    /// step it left (the core fires due timers first), none after.
    Gone,
    Answered,
    /// Its process crashed: the connection dropped.
    Lost,
}

#[derive(Clone, Debug)]
struct TicketModel {
    submitted: Timestamp,
    epoch: u32,
    kind: TicketKind,
    state: TicketState,
}

#[derive(Clone, Debug)]
enum CallKind {
    Fetch {
        params: Params,
        streamed: BTreeSet<Slot>,
        /// Slots of the window that were free in the book when they came, by
        /// stream index: the core must offer each to the rules unless its
        /// batch closed before it.
        free: BTreeMap<u32, Slot>,
        /// The start of every slot delivered, by stream index.
        starts: Vec<Timestamp>,
        next_index: u32,
        ended_at: Option<u32>,
    },
    Rules {
        params: Params,
        candidates: Vec<Candidate>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BookingState {
    InFlight,
    Durable,
    Cancelled,
}

#[derive(Clone, Debug)]
struct Booking {
    assignment: Assignment,
    key: Option<KeyEntry>,
    state: BookingState,
    /// A 201 with it went out.
    acked: bool,
    /// A crash or a failed undo intervened: it may survive unacknowledged.
    exempt: bool,
    /// What the request asked for, when the booking was made in view.
    params: Option<Params>,
    epoch: u32,
}

#[derive(Clone, Debug)]
enum Write {
    Booked(AssignmentId),
    Answered(KeyEntry, Remembered),
    Undone(Option<AssignmentId>, Option<KeyHash>),
    Cancelled(AssignmentId),
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Answer {
    Assigned(AssignmentId),
    Remembered(Remembered),
}

/// A durable remembered answer of a key.
#[derive(Clone, Debug)]
struct KeyModel {
    fingerprint: Fingerprint,
    created_at: Timestamp,
    answer: Answer,
    /// When the answer first went out, if it has.
    acked_at: Option<Timestamp>,
    epoch: u32,
}

/// The core's answer counts (the `/metrics` outcomes come from the same
/// place in the server) moved by exactly the answers of the step.
fn check_answers_counted(before: &Stats, after: &Stats, outputs: &[Output]) -> Checked {
    let mut answers = before.answers;
    let mut replays = before.replays;
    for out in outputs {
        if let Output::Respond {
            response, replayed, ..
        } = out
        {
            let i = Outcome::ALL
                .iter()
                .position(|o| *o == response.outcome())
                .unwrap_or_default();
            answers[i] += 1;
            replays += u64::from(*replayed);
        }
    }
    if (answers, replays) != (after.answers, after.replays) {
        return Err(safety(
            Inv::ExactlyOneAnswer,
            format!(
                "the core counts answers {:?} and {} replays; its outputs make {answers:?} and {replays}",
                after.answers, after.replays
            ),
        ));
    }
    Ok(())
}

/// A call whose deadline is due as it starts must be cancelled in the same
/// step. (One step may start such a call: a deadline that frees a run slot
/// starts the next queued attempt before the timer of that attempt's own
/// deadline, due as well, cancels it.)
fn check_calls_live(now: Timestamp, outputs: &[Output]) -> Checked {
    for out in outputs {
        let (call, deadline) = match out {
            Output::FetchAvailability { call, deadline, .. }
            | Output::CheckRules { call, deadline, .. } => (*call, *deadline),
            _ => continue,
        };
        let cancelled = || {
            outputs
                .iter()
                .any(|o| matches!(o, Output::CancelCall { call: c, .. } if *c == call))
        };
        if deadline <= now && !cancelled() {
            return Err(safety(
                Inv::NoOrphanCalls,
                format!(
                    "call {} starts with its deadline {} ms already due and runs on",
                    call.0,
                    deadline.as_millis()
                ),
            ));
        }
    }
    Ok(())
}

/// The model and the invariants.
pub struct Checker {
    config: Config,
    services: Option<Services>,
    epoch: u32,
    tickets: BTreeMap<Ticket, TicketModel>,
    /// (deadline, ticket) of every waiting dispatch ticket.
    deadlines: BTreeSet<(Timestamp, Ticket)>,
    /// Waiting (not gone) dispatch tickets by what they ask for.
    waiting_params: BTreeMap<Params, u32>,
    waiting_keyless: u64,
    waiting_keys: BTreeMap<KeyHash, u32>,
    fingerprints_seen: BTreeMap<KeyHash, BTreeSet<Fingerprint>>,
    calls: BTreeMap<CallId, CallKind>,
    max_call: u64,
    writes: BTreeMap<u64, Write>,
    last_seq: u64,
    /// The highest seq the journal said durable (this process).
    durable_seq: u64,
    bookings: BTreeMap<AssignmentId, Booking>,
    /// Held bookings (in flight or durable, confirmed): agent → start → (end, id).
    agenda: BTreeMap<CompactString, BTreeMap<Timestamp, (Timestamp, AssignmentId)>>,
    per_day: BTreeMap<(CompactString, u32), u32>,
    keys: BTreeMap<KeyHash, KeyModel>,
    /// Bookings removed by a durable undo.
    undone: BTreeSet<AssignmentId>,
    /// Bookings whose write the core was told failed (this process).
    failed_bookings: BTreeSet<AssignmentId>,
    draining: bool,
    /// When the drain (the first one) refuses whatever still runs.
    drain_deadline: Option<Timestamp>,
    acked: u64,
    changed_since_quiet: bool,
    // The step being checked.
    input_call: Option<CallId>,
    terminal: Option<CallId>,
    failed: Option<Dependency>,
    verdicts: Option<(CallId, Vec<bool>)>,
    answered_now: u32,
    gone_now: Option<Ticket>,
    /// The dispatch ticket this step submitted.
    submitted_now: Option<Ticket>,
    /// The core's shards, for judging a refusal (`None` for a configuration
    /// that has none, which `restore` refuses).
    ring: Option<Ring>,
    step: u64,
    last_stats: tour_dispatcher::core::Stats,
    /// How the call this step's input ended counts in the core's
    /// dependency results, if it ended.
    terminal_result: Option<(Dependency, CallResult)>,
    /// The dependency results this step must add (availability, rules and
    /// journal writes, indexed like `Dependency` and `CallResult`).
    call_results: [[u64; 3]; 3],
    /// The outputs judged are the core's own (no test tap changes them):
    /// the core's counts of its answers and calls must then match them.
    pub counts_follow_outputs: bool,
    /// This step's input must be ignored and counted by the core: a result
    /// of a call that is over, or a delivery that leaves a gap in a stream.
    ignored_input: bool,
    /// This step's outputs asked the rules about a batch.
    rules_asked_now: bool,
    extra: Vec<Box<dyn Check>>,
    pub coverage: Coverage,
}

type Checked = Result<(), Violation>;

/// Steps between two full comparisons of the core's book with the model's
/// (besides every quiet moment): often enough to catch a drift near where
/// it happened, rarely enough to stay cheap.
const BOOK_CHECK_EVERY: u64 = 64;

impl Checker {
    pub fn new(config: Config, services: Option<Services>) -> Self {
        Checker {
            ring: (config.shards > 0 && config.vnodes > 0)
                .then(|| Ring::new(config.shards, config.vnodes)),
            config,
            services,
            epoch: 0,
            tickets: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            waiting_params: BTreeMap::new(),
            waiting_keyless: 0,
            waiting_keys: BTreeMap::new(),
            fingerprints_seen: BTreeMap::new(),
            calls: BTreeMap::new(),
            max_call: 0,
            writes: BTreeMap::new(),
            last_seq: 0,
            durable_seq: 0,
            bookings: BTreeMap::new(),
            agenda: BTreeMap::new(),
            per_day: BTreeMap::new(),
            keys: BTreeMap::new(),
            undone: BTreeSet::new(),
            failed_bookings: BTreeSet::new(),
            draining: false,
            drain_deadline: None,
            acked: 0,
            changed_since_quiet: false,
            input_call: None,
            terminal: None,
            failed: None,
            verdicts: None,
            answered_now: 0,
            gone_now: None,
            submitted_now: None,
            step: 0,
            last_stats: Default::default(),
            ignored_input: false,
            rules_asked_now: false,
            counts_follow_outputs: true,
            terminal_result: None,
            call_results: [[0; 3]; 3],
            extra: Vec::new(),
            coverage: Coverage::default(),
        }
    }

    /// Adds a per-test check, run after every step.
    pub fn add_check(&mut self, check: Box<dyn Check>) {
        self.extra.push(check);
    }

    /// Assignments acknowledged with a first (not replayed) 201 so far.
    pub fn acknowledged_assignments(&self) -> u64 {
        self.acked
    }

    /// Tickets still waiting for an answer.
    pub fn waiting_tickets(&self) -> usize {
        self.tickets
            .values()
            .filter(|t| t.state == TicketState::Waiting)
            .count()
    }

    /// Starts from durable records (a trace's initial state).
    pub fn start(&mut self, now: Timestamp, records: &[Record], core: &Dispatcher) -> Checked {
        self.adopt_records(now, records);
        self.begin_process(now, core)
    }

    /// A process begins from `core`, restored from the adopted records: it
    /// holds what the model holds, was made with the model's configuration,
    /// and its first step starts from its counts.
    fn begin_process(&mut self, now: Timestamp, core: &Dispatcher) -> Checked {
        self.last_stats = core.stats();
        if core.config() != &self.config {
            return Err(safety(
                Inv::Bounded,
                "the core reports another configuration than it was made with".to_string(),
            ));
        }
        self.compare_restored(now, core)
    }

    /// Checks one step: `input` was fed at `now` and produced `outputs`.
    pub fn step(
        &mut self,
        now: Timestamp,
        input: &Input,
        outputs: &[Output],
        core: &Dispatcher,
    ) -> Checked {
        self.before(now, input)?;
        self.after(now, outputs, core)
    }

    /// Takes in the input of a step before the core sees it.
    pub fn before(&mut self, now: Timestamp, input: &Input) -> Checked {
        self.step += 1;
        self.input_call = None;
        self.terminal = None;
        self.failed = None;
        self.verdicts = None;
        self.answered_now = 0;
        self.gone_now = None;
        self.submitted_now = None;
        self.ignored_input = false;
        self.rules_asked_now = false;
        self.terminal_result = None;
        self.call_results = [[0; 3]; 3];
        match input {
            Input::Submit {
                ticket,
                body,
                idempotency_key,
                deadline,
            } => self.on_submit(now, *ticket, body, idempotency_key.as_deref(), *deadline),
            // The core fires due timers before it takes the input, so what
            // comes out of this step may still serve the ticket.
            Input::ClientGone { ticket } => self.gone_now = Some(*ticket),
            Input::SlotsStreamed {
                call,
                first_index,
                slots,
            } => self.on_slots(*call, *first_index, slots),
            Input::StreamEnded {
                call,
                count,
                result,
            } => self.on_stream_ended(*call, *count, result.is_ok()),
            Input::RuleVerdicts { call, result } => self.on_verdicts(now, *call, result),
            Input::Persisted { upto } => self.on_persisted(*upto)?,
            Input::PersistFailed { from } => self.on_persist_failed(*from),
            Input::CancelAssignment { ticket, id } => self.on_cancel_request(now, *ticket, *id),
            Input::Drain { deadline } => {
                self.draining = true;
                // The core keeps the first drain's deadline.
                self.drain_deadline.get_or_insert(*deadline);
                self.coverage.hit(Mark::Drain);
            }
            Input::Tick => {}
        }
        Ok(())
    }

    /// Judges the outputs of the step and the state after it.
    pub fn after(&mut self, now: Timestamp, outputs: &[Output], core: &Dispatcher) -> Checked {
        let r = self.judge(now, outputs, core);
        r.map_err(|mut v| {
            v.step = self.step;
            v.now = now;
            v
        })
    }

    fn judge(&mut self, now: Timestamp, outputs: &[Output], core: &Dispatcher) -> Checked {
        for out in outputs {
            self.on_output(now, out)?;
        }
        self.check_failure_answered(outputs)?;
        check_calls_live(now, outputs)?;
        if let Some(call) = self.terminal.take() {
            self.check_no_free_slot_refused(call)?;
            let ended = self.calls.remove(&call).is_some();
            if let (true, Some((dependency, result))) = (ended, self.terminal_result) {
                self.call_results[dependency as usize][result as usize] += 1;
            }
        }
        if let Some(ticket) = self.gone_now.take() {
            self.on_gone(ticket);
        }
        self.check_bounds(core)?;
        self.check_deadlines(now)?;
        self.check_core_state(core)?;
        if self.is_quiet() && self.changed_since_quiet {
            self.changed_since_quiet = false;
            self.check_quiet(now, core)?;
        } else if self.step.is_multiple_of(BOOK_CHECK_EVERY) {
            // In flight or not, the core's book holds what the model holds.
            self.compare_book(now, core)?;
        }
        self.count_stats(core, outputs)?;
        self.run_extra()
    }

    /// A crash: the process restarted from `records` into `core`.
    pub fn restart(&mut self, now: Timestamp, records: &[Record], core: &Dispatcher) -> Checked {
        self.step += 1;
        self.coverage.hit(Mark::Crash);
        let survived = self.check_survivors(now, records);
        self.forget_process();
        survived
            .and_then(|()| {
                self.adopt_records(now, records);
                self.begin_process(now, core)
            })
            .map_err(|mut v| {
                v.step = self.step;
                v.now = now;
                v
            })
    }

    /// The process died: its tickets' connections dropped, its calls and
    /// writes are gone, and numbering starts over.
    fn forget_process(&mut self) {
        self.epoch += 1;
        for (&t, m) in &mut self.tickets {
            if matches!(m.state, TicketState::Waiting | TicketState::Gone) {
                if let (TicketState::Waiting, TicketKind::Dispatch(d)) = (m.state, &m.kind) {
                    self.deadlines.remove(&(d.deadline, t));
                }
                m.state = TicketState::Lost;
            }
        }
        self.waiting_params.clear();
        self.waiting_keys.clear();
        self.waiting_keyless = 0;
        self.calls.clear();
        self.max_call = 0;
        self.writes.clear();
        self.failed_bookings.clear();
        self.last_seq = 0;
        self.durable_seq = 0;
        self.draining = false;
        self.drain_deadline = None;
        self.last_stats = Default::default();
    }

    /// The world is quiet at the end of the liveness phase: everything
    /// must have been answered, ended and settled.
    pub fn finish(&mut self, now: Timestamp, core: &Dispatcher) -> Checked {
        let r = self.check_finished(now, core);
        r.map_err(|mut v| {
            v.step = self.step;
            v.now = now;
            v
        })
    }

    fn check_finished(&mut self, now: Timestamp, core: &Dispatcher) -> Checked {
        if let Some((t, m)) = self
            .tickets
            .iter()
            .find(|(_, m)| m.state == TicketState::Waiting)
        {
            return Err(liveness(
                Inv::ExactlyOneAnswer,
                format!(
                    "ticket {} (submitted at {} ms) was never answered",
                    t.0,
                    m.submitted.as_millis()
                ),
            ));
        }
        if let Some(call) = self.calls.keys().next() {
            return Err(liveness(
                Inv::NoOrphanCalls,
                format!("call {} never got a result nor a CancelCall", call.0),
            ));
        }
        if let Some(seq) = self.writes.keys().next() {
            return Err(liveness(
                Inv::DurableBeforeAcknowledged,
                format!("journal write {seq} never settled"),
            ));
        }
        if !core.is_idle() {
            return Err(liveness(
                Inv::ExactlyOneAnswer,
                format!(
                    "the world is quiet but the core is not idle: {:?}",
                    core.stats()
                ),
            ));
        }
        self.check_quiet(now, core)
    }

    // ----- inputs ------------------------------------------------------------

    fn on_submit(
        &mut self,
        now: Timestamp,
        ticket: Ticket,
        body: &RawRequest,
        key: Option<&str>,
        deadline: Timestamp,
    ) {
        if self.tickets.contains_key(&ticket) {
            return;
        }
        self.submitted_now = Some(ticket);
        let key = key.map(|k| {
            let secret = &self.config.secret;
            (
                KeyHash::of(secret, k),
                Fingerprint::of(secret, &body.canonical_json()),
            )
        });
        if let Some((k, f)) = key {
            self.fingerprints_seen.entry(k).or_default().insert(f);
        }
        let d = DispatchTicket {
            deadline,
            draining: self.draining,
            key,
            params: Params::of(body),
            customer_id: body.customer_id.clone(),
            property_id: body.property_id.clone(),
        };
        let model = TicketModel {
            submitted: now,
            epoch: self.epoch,
            kind: TicketKind::Dispatch(Box::new(d)),
            state: TicketState::Waiting,
        };
        self.tickets.insert(ticket, model);
        self.count_waiting(ticket, 1);
    }

    fn on_cancel_request(&mut self, now: Timestamp, ticket: Ticket, id: AssignmentId) {
        if self.tickets.contains_key(&ticket) {
            return;
        }
        self.tickets.insert(
            ticket,
            TicketModel {
                submitted: now,
                epoch: self.epoch,
                kind: TicketKind::Cancel(id),
                state: TicketState::Waiting,
            },
        );
    }

    fn on_gone(&mut self, ticket: Ticket) {
        let Some(m) = self.tickets.get(&ticket) else {
            return;
        };
        if m.state != TicketState::Waiting {
            return;
        }
        self.count_waiting(ticket, -1);
        if let Some(m) = self.tickets.get_mut(&ticket) {
            m.state = TicketState::Gone;
        }
    }

    /// Adds (`+1`) or removes (`-1`) a waiting dispatch ticket from the
    /// indexes of waiting tickets.
    fn count_waiting(&mut self, ticket: Ticket, delta: i32) {
        let Some(TicketModel {
            kind: TicketKind::Dispatch(d),
            ..
        }) = self.tickets.get(&ticket)
        else {
            return;
        };
        let bump = |n: &mut u32| {
            *n = n.saturating_add_signed(delta);
            *n > 0
        };
        if delta > 0 {
            self.deadlines.insert((d.deadline, ticket));
        } else {
            self.deadlines.remove(&(d.deadline, ticket));
        }
        if let Some(p) = &d.params {
            let n = self.waiting_params.entry(p.clone()).or_default();
            if !bump(n) {
                self.waiting_params.remove(p);
            }
        }
        match d.key {
            Some((k, _)) => {
                let n = self.waiting_keys.entry(k).or_default();
                if !bump(n) {
                    self.waiting_keys.remove(&k);
                }
            }
            None => self.waiting_keyless = self.waiting_keyless.saturating_add_signed(delta.into()),
        }
    }

    fn on_slots(&mut self, call: CallId, first_index: u32, slots: &[Slot]) {
        self.input_call = Some(call);
        let new_free = self.free_among_new(call, first_index, slots);
        let Some(CallKind::Fetch {
            streamed,
            free,
            starts,
            next_index,
            ..
        }) = self.calls.get_mut(&call)
        else {
            self.on_late_input();
            return;
        };
        free.extend(new_free);
        if let Some(seen) = next_index.checked_sub(first_index) {
            starts.extend(slots.iter().skip(seen as usize).map(|slot| slot.start));
        }
        if first_index < *next_index {
            self.coverage.hit(Mark::DuplicateDelivery);
        }
        // A delivery that leaves a gap in the stream is ignored whole.
        self.ignored_input |= first_index > *next_index;
        streamed.extend(slots.iter().cloned());
        if first_index <= *next_index {
            *next_index = (*next_index).max(first_index + slots.len() as u32);
        }
        self.stream_maybe_complete(call);
    }

    /// The slots of a delivery that the stream had not delivered before,
    /// that lie in the request's window and are free in the book as it is
    /// when they come (the core judges them before anything else happens in
    /// the step), by stream index.
    fn free_among_new(&self, call: CallId, first_index: u32, slots: &[Slot]) -> Vec<(u32, Slot)> {
        let Some(CallKind::Fetch {
            params, next_index, ..
        }) = self.calls.get(&call)
        else {
            return Vec::new();
        };
        let Some(seen) = next_index.checked_sub(first_index) else {
            return Vec::new(); // a gap: ignored whole
        };
        let duration = u64::from(params.duration_min) * MS_PER_MINUTE;
        (*next_index..)
            .zip(slots.iter().skip(seen as usize))
            .filter(|(_, slot)| {
                let interval = Window::new(slot.start, slot.start.plus_ms(duration));
                params.window.contains(&interval)
                    && self.overlapping(&slot.agent, interval).is_none()
            })
            .map(|(index, slot)| (index, slot.clone()))
            .collect()
    }

    /// A stream that ends with free slots must lead to a rules call: the
    /// core may not answer 409 while a slot was free when it came.
    fn check_no_free_slot_refused(&self, call: CallId) -> Checked {
        let completed = self.terminal_result == Some((Dependency::Availability, CallResult::Ok));
        let Some(CallKind::Fetch { free, .. }) = self.calls.get(&call) else {
            return Ok(());
        };
        match free.values().next() {
            Some(slot) if completed && !self.rules_asked_now => Err(safety(
                Inv::CancellingFreesTime,
                format!(
                    "stream {} ended with {slot:?} free when it came, and no rules call",
                    call.0
                ),
            )),
            _ => Ok(()),
        }
    }

    /// A slot of `free` that the batch should hold and does not. A batch
    /// closes once it has `max_candidates` and a slot with a later start
    /// time comes (even one the core drops as malformed), so a full one
    /// holds every free slot that came before the first slot starting after
    /// its last candidate, and any other one every free slot.
    fn free_slot_left_out<'a>(
        &self,
        free: &'a BTreeMap<u32, Slot>,
        starts: &[Timestamp],
        candidates: &[Candidate],
    ) -> Option<&'a Slot> {
        let full = candidates.len() >= self.config.max_candidates as usize;
        let cut = match candidates.iter().map(|c| c.slot.start).max() {
            Some(last) if full => starts.iter().position(|&start| start > last),
            _ => None,
        };
        let before_cut = cut.map_or(u32::MAX, |cut| cut as u32);
        let offered: BTreeSet<&Slot> = candidates.iter().map(|c| &c.slot).collect();
        free.range(..before_cut)
            .map(|(_, slot)| slot)
            .find(|slot| !offered.contains(slot))
    }

    /// A result for a call that is over (cancelled, or ended already).
    fn on_late_input(&mut self) {
        self.coverage.hit(Mark::LateDelivery);
        self.ignored_input = true;
    }

    fn on_stream_ended(&mut self, call: CallId, count: u32, ok: bool) {
        self.input_call = Some(call);
        let Some(CallKind::Fetch { ended_at, .. }) = self.calls.get_mut(&call) else {
            self.on_late_input();
            return;
        };
        if !ok {
            self.failed = Some(Dependency::Availability);
            self.coverage.hit(Mark::StreamError);
            self.terminal = Some(call);
            self.terminal_result = Some((Dependency::Availability, CallResult::Error));
            return;
        }
        *ended_at = Some(count);
        self.stream_maybe_complete(call);
    }

    fn stream_maybe_complete(&mut self, call: CallId) {
        if let Some(CallKind::Fetch {
            next_index,
            ended_at: Some(n),
            ..
        }) = self.calls.get(&call)
        {
            if next_index >= n {
                self.terminal = Some(call);
                self.terminal_result = Some((Dependency::Availability, CallResult::Ok));
            }
        }
    }

    fn on_verdicts(
        &mut self,
        now: Timestamp,
        call: CallId,
        result: &Result<Vec<bool>, tour_dispatcher::core::DependencyError>,
    ) {
        self.input_call = Some(call);
        let Some(CallKind::Rules { candidates, .. }) = self.calls.get(&call) else {
            self.on_late_input();
            return;
        };
        self.terminal = Some(call);
        match result {
            Ok(v) if v.len() == candidates.len() => {
                let stale = candidates.iter().zip(v).any(|(c, &ok)| {
                    ok && self.tours_on(&c.slot.agent, c.slot.start.utc_day()) != c.tours_that_day
                });
                if stale {
                    self.coverage.hit(Mark::StaleVerdict);
                }
                self.verdicts = Some((call, v.clone()));
                self.terminal_result = Some((Dependency::Rules, CallResult::Ok));
            }
            _ => {
                self.failed = Some(Dependency::Rules);
                self.coverage.hit(Mark::RulesError);
                self.terminal_result = Some((Dependency::Rules, CallResult::Error));
            }
        }
        let _ = now;
    }

    fn on_persisted(&mut self, upto: u64) -> Checked {
        if upto > self.last_seq {
            return Ok(());
        }
        self.durable_seq = self.durable_seq.max(upto);
        self.settle(upto, true)
    }

    fn on_persist_failed(&mut self, from: u64) {
        if from > self.last_seq || from == 0 {
            return;
        }
        self.failed = Some(Dependency::Journal);
        if self.writes.range(from..).next().is_some() {
            self.coverage.hit(Mark::PersistFailed);
        }
        // Writes before `from` are durable; the settle cannot fail for them
        // (an undo of an acknowledged booking is caught when it is written).
        self.durable_seq = self.durable_seq.max(from - 1);
        let _ = self.settle(from - 1, true);
        let _ = self.settle(u64::MAX, false);
    }

    /// Settles every pending write up to `upto`, in order.
    fn settle(&mut self, upto: u64, ok: bool) -> Checked {
        while let Some(entry) = self.writes.first_entry() {
            if *entry.key() > upto {
                break;
            }
            let write = entry.remove();
            self.changed_since_quiet = true;
            let result = if ok {
                CallResult::Ok
            } else {
                CallResult::Error
            };
            self.call_results[Dependency::Journal as usize][result as usize] += 1;
            match (write, ok) {
                (Write::Booked(id), true) => {
                    if let Some(b) = self.bookings.get_mut(&id) {
                        b.state = BookingState::Durable;
                        if let Some(k) = b.key {
                            let answer = Answer::Assigned(id);
                            self.remember(k, answer);
                        }
                    }
                }
                (Write::Booked(id), false) => {
                    self.drop_booking(id);
                    self.failed_bookings.insert(id);
                }
                (Write::Answered(k, answer), true) => self.remember(k, Answer::Remembered(answer)),
                (Write::Undone(id, key), true) => {
                    self.coverage.hit(Mark::Undo);
                    if let Some(id) = id {
                        if self.bookings.get(&id).is_some_and(|b| b.acked) {
                            return Err(safety(
                                Inv::DurableBeforeAcknowledged,
                                format!("an undo removed acknowledged assignment {id}"),
                            ));
                        }
                        self.drop_booking(id);
                        self.undone.insert(id);
                    }
                    if let Some(k) = key {
                        self.keys.remove(&k);
                    }
                }
                (Write::Undone(id, _), false) => {
                    self.coverage.hit(Mark::UndoFailed);
                    if let Some(b) = id.and_then(|id| self.bookings.get_mut(&id)) {
                        b.exempt = true;
                    }
                }
                (Write::Cancelled(id), true) => self.cancel_booking(id),
                (Write::Cancelled(_), false) => self.coverage.hit(Mark::CancelJournalFailed),
                (Write::Answered(..), false) | (Write::Other, _) => {}
            }
        }
        Ok(())
    }

    fn remember(&mut self, k: KeyEntry, answer: Answer) {
        let ttl = self.config.idempotency_ttl_ms;
        if let Some(old) = self.keys.get(&k.key) {
            if old.created_at.plus_ms(ttl) <= k.created_at {
                self.coverage.hit(Mark::KeyExpired);
            }
        }
        self.keys.insert(
            k.key,
            KeyModel {
                fingerprint: k.fingerprint,
                created_at: k.created_at,
                answer,
                acked_at: None,
                epoch: self.epoch,
            },
        );
    }

    // ----- outputs -----------------------------------------------------------

    fn on_output(&mut self, now: Timestamp, out: &Output) -> Checked {
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
                if after.is_some() {
                    self.coverage.hit(Mark::Refetch);
                }
                self.on_call(*call)?;
                if !self.waiting_params.contains_key(&params) {
                    return Err(safety(
                        Inv::NoOrphanCalls,
                        format!(
                            "call {} fetches {params:?} for which no ticket waits",
                            call.0
                        ),
                    ));
                }
                self.calls.insert(
                    *call,
                    CallKind::Fetch {
                        params,
                        streamed: BTreeSet::new(),
                        free: BTreeMap::new(),
                        starts: Vec::new(),
                        next_index: 0,
                        ended_at: None,
                    },
                );
                Ok(())
            }
            Output::CheckRules {
                call,
                request,
                candidates,
                ..
            } => {
                self.on_call(*call)?;
                self.on_check_rules(*call, request, candidates)
            }
            Output::CancelCall { call, reason } => self.on_cancel_call(*call, *reason),
            Output::Persist { seq, record } => self.on_persist(*seq, record),
            Output::Respond {
                ticket,
                response,
                replayed,
            } => self.on_respond(now, *ticket, response, *replayed),
        }
    }

    fn on_call(&mut self, call: CallId) -> Checked {
        if call.0 <= self.max_call {
            return Err(safety(
                Inv::NoOrphanCalls,
                format!("call id {} reused (last was {})", call.0, self.max_call),
            ));
        }
        self.max_call = call.0;
        Ok(())
    }

    fn on_check_rules(
        &mut self,
        call: CallId,
        request: &tour_dispatcher::core::RuleRequest,
        candidates: &[Candidate],
    ) -> Checked {
        let fetch = self.input_call.and_then(|c| self.calls.get(&c));
        let Some(CallKind::Fetch {
            params,
            streamed,
            free,
            starts,
            ..
        }) = fetch
        else {
            return Err(safety(
                Inv::AssignmentsHonourTheRequest,
                format!("rules call {} asks about slots no stream delivered", call.0),
            ));
        };
        self.rules_asked_now = true;
        if let Some(slot) = self.free_slot_left_out(free, starts, candidates) {
            return Err(safety(
                Inv::CancellingFreesTime,
                format!(
                    "rules call {}: {slot:?} was free when it came, but is not a candidate",
                    call.0
                ),
            ));
        }
        let params = params.clone();
        if request.zipcode != params.zipcode || request.duration_min != params.duration_min {
            return Err(safety(
                Inv::AssignmentsHonourTheRequest,
                format!(
                    "rules call {} describes another request than its stream",
                    call.0
                ),
            ));
        }
        for c in candidates {
            if !streamed.contains(&c.slot) {
                return Err(safety(
                    Inv::AssignmentsHonourTheRequest,
                    format!(
                        "rules call {}: candidate {:?} was never streamed",
                        call.0, c.slot
                    ),
                ));
            }
            let truth = self.tours_on(&c.slot.agent, c.slot.start.utc_day());
            if c.tours_that_day != truth {
                return Err(safety(
                    Inv::AssignmentsHonourTheRequest,
                    format!(
                        "rules call {}: {} has {truth} tours that day, the rules were told {}",
                        call.0, c.slot.agent, c.tours_that_day
                    ),
                ));
            }
        }
        // The stream that fed this batch is over (cut or complete).
        if let Some(c) = self.input_call {
            if self.terminal != Some(c) {
                self.calls.remove(&c);
            }
        }
        self.calls.insert(
            call,
            CallKind::Rules {
                params,
                candidates: candidates.to_vec(),
            },
        );
        Ok(())
    }

    fn on_cancel_call(&mut self, call: CallId, reason: CancelReason) -> Checked {
        if call.0 > self.max_call {
            return Err(safety(
                Inv::NoOrphanCalls,
                format!("CancelCall for call {} that was never made", call.0),
            ));
        }
        let Some(kind) = self.calls.remove(&call) else {
            return if self.terminal == Some(call) {
                Ok(())
            } else {
                Err(safety(
                    Inv::NoOrphanCalls,
                    format!("CancelCall for call {} that had already ended", call.0),
                ))
            };
        };
        match (reason, &kind) {
            (CancelReason::BatchFull, _) => self.coverage.hit(Mark::BatchFull),
            (CancelReason::Abandoned, CallKind::Fetch { .. }) => {
                self.coverage.hit(Mark::DeadlineDuringStream)
            }
            (CancelReason::Abandoned, CallKind::Rules { .. }) => {
                self.coverage.hit(Mark::DeadlineDuringRules)
            }
        }
        if reason == CancelReason::Abandoned && self.answered_now == 0 {
            self.coverage.hit(Mark::ClientGoneDuringRun);
        }
        let dependency = match kind {
            CallKind::Fetch { .. } => Dependency::Availability,
            CallKind::Rules { .. } => Dependency::Rules,
        };
        let result = match reason {
            CancelReason::BatchFull => CallResult::Ok,
            CancelReason::Abandoned => CallResult::Cancelled,
        };
        self.call_results[dependency as usize][result as usize] += 1;
        // Keep a cut stream's slots: its batch goes to the rules next.
        if reason == CancelReason::BatchFull && self.input_call == Some(call) {
            self.calls.insert(call, kind);
            self.terminal = Some(call);
            // Counted above, as the core counts it.
            self.terminal_result = None;
        }
        Ok(())
    }

    fn on_persist(&mut self, seq: u64, record: &Record) -> Checked {
        if seq != self.last_seq + 1 {
            return Err(safety(
                Inv::DurableBeforeAcknowledged,
                format!(
                    "journal write {seq} follows {}: writes must be numbered in order",
                    self.last_seq
                ),
            ));
        }
        self.last_seq = seq;
        self.changed_since_quiet = true;
        let write = match record {
            Record::Booked { assignment, key } => {
                self.on_booked(assignment, *key)?;
                Write::Booked(assignment.id)
            }
            Record::Answered { key, answer } => Write::Answered(*key, answer.clone()),
            Record::Undone { id, key } => {
                if let Some(id) = id {
                    if self.bookings.get(id).is_some_and(|b| b.acked) {
                        return Err(safety(
                            Inv::DurableBeforeAcknowledged,
                            format!("undoing assignment {id}, which was acknowledged"),
                        ));
                    }
                }
                Write::Undone(*id, *key)
            }
            Record::Cancelled { id } => {
                let durable = self
                    .bookings
                    .get(id)
                    .is_some_and(|b| b.state == BookingState::Durable);
                if !durable {
                    return Err(safety(
                        Inv::CancellingFreesTime,
                        format!("cancelling {id}, which is not a durable confirmed assignment"),
                    ));
                }
                Write::Cancelled(*id)
            }
            Record::Sequence { .. } => Write::Other,
        };
        self.writes.insert(seq, write);
        Ok(())
    }

    /// A booking is written: it must be one the rules just allowed, with
    /// the facts as they are now, and must not overlap another.
    fn on_booked(&mut self, a: &Assignment, key: Option<KeyEntry>) -> Checked {
        if self
            .bookings
            .get(&a.id)
            .is_some_and(|b| b.state != BookingState::InFlight)
        {
            return Err(safety(
                Inv::NoDoubleReservation,
                format!("assignment id {} is booked a second time", a.id),
            ));
        }
        let interval = a.interval();
        if let Some(other) = self.overlapping(&a.agent_id, interval) {
            return Err(safety(
                Inv::NoDoubleReservation,
                format!(
                    "{} booked {} to {} ({}) over {other}, travel buffer {} min",
                    a.agent_id, a.start, a.end, a.id, self.config.travel_buffer_min
                ),
            ));
        }
        let params = self.check_allowed(a)?;
        self.hold(a);
        self.bookings.insert(
            a.id,
            Booking {
                assignment: a.clone(),
                key,
                state: BookingState::InFlight,
                acked: false,
                exempt: false,
                params: Some(params),
                epoch: self.epoch,
            },
        );
        Ok(())
    }

    /// The booked slot must be a candidate of the rules call whose verdicts
    /// are this step's input, allowed, with true facts.
    fn check_allowed(&self, a: &Assignment) -> Result<Params, Violation> {
        let honour = |m: String| safety(Inv::AssignmentsHonourTheRequest, m);
        let Some((call, verdicts)) = &self.verdicts else {
            return Err(honour(format!(
                "{} was booked without a rules verdict",
                a.id
            )));
        };
        let Some(CallKind::Rules { params, candidates }) = self.calls.get(call) else {
            return Err(honour(format!("{} booked on an unknown rules call", a.id)));
        };
        let slot = Slot {
            start: a.start,
            agent: a.agent_id.clone(),
        };
        let Some(i) = candidates.iter().position(|c| c.slot == slot) else {
            return Err(honour(format!("{} books {slot:?}, not a candidate", a.id)));
        };
        if !verdicts[i] {
            return Err(honour(format!(
                "{} books {slot:?}, which the rules denied",
                a.id
            )));
        }
        let truth = self.tours_on(&a.agent_id, a.start.utc_day());
        if candidates[i].tours_that_day != truth {
            return Err(honour(format!(
                "{} books {slot:?} allowed with {} tours that day, but it has {truth} now",
                a.id, candidates[i].tours_that_day
            )));
        }
        let wanted = params.window;
        let ends_right = a.end
            == a.start
                .plus_ms(u64::from(params.duration_min) * MS_PER_MINUTE);
        if !ends_right || !wanted.contains(&a.interval()) || a.zipcode != params.zipcode {
            return Err(honour(format!(
                "{} does not fit the request {params:?}",
                a.id
            )));
        }
        if let Some(s) = &self.services {
            if !s.covers(&a.agent_id, &a.zipcode) {
                return Err(honour(format!(
                    "{} does not cover {}",
                    a.agent_id, a.zipcode
                )));
            }
        }
        Ok(params.clone())
    }

    /// A live availability or rules call that failed ends its run at once:
    /// some ticket of it (one waits, or the call would be cancelled) gets
    /// the 503 now, not a 504 later — unless a deadline due at the same
    /// instant ended the run first (and cancelled the call).
    fn check_failure_answered(&self, outputs: &[Output]) -> Checked {
        let Some(dep @ (Dependency::Availability | Dependency::Rules)) = self.failed else {
            return Ok(());
        };
        let answered = outputs.iter().any(|o| match o {
            Output::Respond {
                response: Response::DependencyUnavailable { dependency, .. },
                ..
            } => *dependency == dep,
            Output::CancelCall { call, .. } => Some(*call) == self.input_call,
            _ => false,
        });
        if !answered {
            return Err(safety(
                Inv::ExactlyOneAnswer,
                format!("a {dep:?} call failed, but no ticket got its 503"),
            ));
        }
        Ok(())
    }

    /// Whether an attempt works on `key`: a ticket with it waits, or a
    /// write of its answer (or of its undo) is in flight.
    fn key_is_busy(&self, key: &KeyHash) -> bool {
        self.waiting_keys.contains_key(key) || self.writes.values().any(|w| self.writes_key(w, key))
    }

    /// Whether `write` records `key`'s answer or its undo.
    fn writes_key(&self, write: &Write, key: &KeyHash) -> bool {
        match write {
            Write::Booked(id) => self
                .bookings
                .get(id)
                .and_then(|b| b.key)
                .is_some_and(|e| e.key == *key),
            Write::Answered(e, _) => e.key == *key,
            Write::Undone(_, k) => k.as_ref() == Some(key),
            Write::Cancelled(_) | Write::Other => false,
        }
    }

    fn on_respond(
        &mut self,
        now: Timestamp,
        ticket: Ticket,
        response: &Response,
        replayed: bool,
    ) -> Checked {
        let Some(model) = self.tickets.get(&ticket).cloned() else {
            return Err(safety(
                Inv::NoOrphanCalls,
                format!("an answer to ticket {} that nobody submitted", ticket.0),
            ));
        };
        match model.state {
            TicketState::Waiting => self.count_waiting(ticket, -1),
            // Its client left in an earlier step (an answer in the step it
            // leaves finds it still waiting): the core has forgotten it.
            TicketState::Gone => {
                return Err(safety(
                    Inv::NoOrphanCalls,
                    format!("an answer to ticket {} after its client left", ticket.0),
                ))
            }
            TicketState::Answered => {
                return Err(safety(
                    Inv::ExactlyOneAnswer,
                    format!("ticket {} answered a second time: {response:?}", ticket.0),
                ))
            }
            TicketState::Lost => {
                return Err(safety(
                    Inv::ExactlyOneAnswer,
                    format!("ticket {} of a crashed process answered", ticket.0),
                ))
            }
        }
        if let Some(m) = self.tickets.get_mut(&ticket) {
            m.state = TicketState::Answered;
        }
        self.answered_now += 1;
        self.count_response(response, replayed);
        match &model.kind {
            TicketKind::Dispatch(d) => {
                self.on_dispatch_answer(now, ticket, &model, d, response, replayed)
            }
            TicketKind::Cancel(id) => self.on_cancel_answer(ticket, *id, response),
        }
    }

    fn count_response(&mut self, response: &Response, replayed: bool) {
        let mark = match response {
            Response::Assigned(_) => Mark::Assigned,
            Response::NoAvailability => Mark::NoAvailability,
            Response::Invalid(_) => Mark::Invalid,
            Response::KeyReused => Mark::KeyReused,
            Response::KeyInFlight => Mark::KeyInFlight,
            Response::Overloaded { .. } => Mark::Overloaded,
            Response::DependencyUnavailable { .. } => Mark::DependencyUnavailable,
            Response::DeadlineExceeded => Mark::DeadlineExceeded,
            Response::Cancelled(_) => Mark::CancelOk,
            Response::NotFound => Mark::CancelNotFound,
        };
        self.coverage.hit(mark);
        if replayed {
            self.coverage.hit(Mark::Replay);
        }
    }

    fn on_dispatch_answer(
        &mut self,
        now: Timestamp,
        ticket: Ticket,
        model: &TicketModel,
        d: &DispatchTicket,
        response: &Response,
        replayed: bool,
    ) -> Checked {
        let t = ticket.0;
        let overloaded = matches!(response, Response::Overloaded { .. });
        if overloaded && !d.draining && self.drain_deadline.is_some_and(|at| at <= now) {
            self.coverage.hit(Mark::DrainDeadline);
        }
        if overloaded && !d.draining && self.submitted_now == Some(ticket) {
            self.check_refusal_earned(ticket, d)?;
        }
        if d.draining && !overloaded && now < d.deadline {
            return Err(safety(
                Inv::ExactlyOneAnswer,
                format!("ticket {t} arrived while draining but got {response:?}, not 503"),
            ));
        }
        if replayed && d.key.is_none() {
            return Err(safety(
                Inv::Idempotency,
                format!("ticket {t} has no key but got a replayed answer"),
            ));
        }
        match response {
            Response::Assigned(a) => {
                if now >= d.deadline {
                    return Err(safety(
                        Inv::NoSuccessAfterDeadline,
                        format!(
                            "ticket {t} got 201 at {} ms, its deadline was {} ms",
                            now.as_millis(),
                            d.deadline.as_millis()
                        ),
                    ));
                }
                self.check_assigned(ticket, model, d, a)?;
                self.check_key_answer(now, model, d, Answer::Assigned(a.id), replayed)
            }
            Response::NoAvailability => {
                self.check_remembered(now, ticket, model, d, Remembered::NoAvailability, replayed)
            }
            Response::Invalid(errors) => {
                let answer = Remembered::Invalid(errors.clone());
                self.check_remembered(now, ticket, model, d, answer, replayed)
            }
            Response::KeyReused => {
                let other = d.key.is_some_and(|(k, f)| {
                    self.fingerprints_seen
                        .get(&k)
                        .is_some_and(|seen| seen.iter().any(|&g| g != f))
                });
                if !other {
                    return Err(safety(
                        Inv::Idempotency,
                        format!(
                            "ticket {t} refused as key reuse, but no other payload used its key"
                        ),
                    ));
                }
                Ok(())
            }
            Response::KeyInFlight => {
                let busy = d.key.is_some_and(|(k, _)| self.key_is_busy(&k));
                if !busy {
                    return Err(safety(
                        Inv::Idempotency,
                        format!("ticket {t} got 409 key in flight, but nothing works on its key"),
                    ));
                }
                Ok(())
            }
            Response::DeadlineExceeded => {
                if now < d.deadline {
                    return Err(safety(
                        Inv::NoSuccessAfterDeadline,
                        format!(
                            "ticket {t} got 504 at {} ms, before its deadline {} ms",
                            now.as_millis(),
                            d.deadline.as_millis()
                        ),
                    ));
                }
                self.check_not_refused_reuse(model, d, response)
            }
            Response::DependencyUnavailable { dependency, .. } => {
                if self.failed != Some(*dependency) {
                    return Err(safety(
                        Inv::ExactlyOneAnswer,
                        format!(
                            "ticket {t} got 503 {dependency:?} unavailable, but nothing failed now"
                        ),
                    ));
                }
                self.check_not_refused_reuse(model, d, response)
            }
            Response::Overloaded { .. } => self.check_not_refused_reuse(model, d, response),
            Response::Cancelled(_) | Response::NotFound => Err(safety(
                Inv::ExactlyOneAnswer,
                format!("dispatch ticket {t} got a DELETE answer {response:?}"),
            )),
        }
    }

    /// A 201: durable, as booked, and what the ticket asked for.
    fn check_assigned(
        &mut self,
        ticket: Ticket,
        model: &TicketModel,
        d: &DispatchTicket,
        a: &Assignment,
    ) -> Checked {
        let t = ticket.0;
        let Some(b) = self.bookings.get(&a.id) else {
            return Err(safety(
                Inv::DurableBeforeAcknowledged,
                format!(
                    "ticket {t} got 201 with {}, which was never booked durably",
                    a.id
                ),
            ));
        };
        let durable = matches!(b.state, BookingState::Durable | BookingState::Cancelled);
        if !durable || (!b.acked && b.state != BookingState::Durable) {
            return Err(safety(
                Inv::DurableBeforeAcknowledged,
                format!("ticket {t} got 201 with {} before it was durable", a.id),
            ));
        }
        let booked = Assignment {
            status: AssignmentStatus::Confirmed,
            ..b.assignment.clone()
        };
        if *a != booked {
            return Err(safety(
                Inv::DurableBeforeAcknowledged,
                format!("ticket {t} got {a:?} but the journal holds {booked:?}"),
            ));
        }
        let fits = d.customer_id.as_deref() == Some(a.customer_id.as_str())
            && d.property_id.as_deref() == a.property_id.as_deref()
            && d.params.as_ref().is_some_and(|p| {
                p.zipcode == a.zipcode
                    && p.window.contains(&a.interval())
                    && a.end == a.start.plus_ms(u64::from(p.duration_min) * MS_PER_MINUTE)
                    && b.params.as_ref().is_none_or(|bp| bp == p)
            });
        if !fits {
            return Err(safety(
                Inv::AssignmentsHonourTheRequest,
                format!("ticket {t} got {a:?}, which is not what it asked for"),
            ));
        }
        if b.key.map(|k| k.key) != d.key.map(|(k, _)| k) {
            return Err(safety(
                Inv::Idempotency,
                format!(
                    "ticket {t} got {}, booked under another idempotency key",
                    a.id
                ),
            ));
        }
        if !b.acked {
            self.acked += 1;
            self.changed_since_quiet = true;
        }
        if b.epoch < model.epoch {
            self.coverage.hit(Mark::ReplayAfterRestart);
        }
        if let Some(b) = self.bookings.get_mut(&a.id) {
            b.acked = true;
        }
        Ok(())
    }

    /// A 409 or 422 that a key remembers must be durable first.
    fn check_remembered(
        &mut self,
        now: Timestamp,
        ticket: Ticket,
        model: &TicketModel,
        d: &DispatchTicket,
        answer: Remembered,
        replayed: bool,
    ) -> Checked {
        let Some((k, _)) = d.key else {
            return Ok(());
        };
        let durable = self
            .keys
            .get(&k)
            .is_some_and(|m| m.answer == Answer::Remembered(answer.clone()));
        if !durable {
            return Err(safety(
                Inv::DurableBeforeAcknowledged,
                format!(
                    "ticket {} got {answer:?} before its key remembered it durably",
                    ticket.0
                ),
            ));
        }
        self.check_key_answer(now, model, d, Answer::Remembered(answer), replayed)
    }

    /// Within the TTL a key gives one answer; after it, none is replayed.
    fn check_key_answer(
        &mut self,
        now: Timestamp,
        model: &TicketModel,
        d: &DispatchTicket,
        answer: Answer,
        replayed: bool,
    ) -> Checked {
        let Some((k, f)) = d.key else {
            return Ok(());
        };
        let ttl = self.config.idempotency_ttl_ms;
        let Some(m) = self.keys.get_mut(&k) else {
            return Ok(());
        };
        let live_at_submit = m.created_at.plus_ms(ttl) > model.submitted;
        let answered_before = m.acked_at.is_some_and(|at| at < model.submitted);
        if answered_before && !live_at_submit && replayed {
            return Err(safety(
                Inv::Idempotency,
                format!(
                    "key replayed its answer at {} ms, after its TTL ended at {} ms",
                    now.as_millis(),
                    m.created_at.plus_ms(ttl).as_millis()
                ),
            ));
        }
        if m.fingerprint != f {
            return Err(safety(
                Inv::Idempotency,
                format!("a payload different from the key's got its answer {answer:?}"),
            ));
        }
        if m.answer != answer {
            return Err(safety(
                Inv::Idempotency,
                format!("key answered {answer:?}, but it remembers {:?}", m.answer),
            ));
        }
        if m.epoch < self.epoch && replayed {
            self.coverage.hit(Mark::ReplayAfterRestart);
        }
        m.acked_at.get_or_insert(now);
        Ok(())
    }

    /// A submit refused at once (not for a drain) met a bound as the step
    /// began: the attempt or key table full, or its shard's queue full with
    /// no waiting allowed (a zero enqueue timeout, or the waiting line full).
    /// The step's timers can only free room, never take it.
    fn check_refusal_earned(&self, ticket: Ticket, d: &DispatchTicket) -> Checked {
        let (c, s) = (&self.config, &self.last_stats);
        let attempts_full = s.attempts >= u64::from(c.max_attempts);
        let keys_full = d.key.is_some() && s.idempotency_keys >= u64::from(c.max_idempotency_keys);
        let shard_full = match (&d.params, &self.ring) {
            (Some(p), Some(ring)) => {
                let shard = ring.shard_of(&p.zipcode) as usize;
                let at = |v: &Vec<u32>| v.get(shard).copied().unwrap_or(0);
                at(&s.queue_depths) >= c.queue_capacity
                    && (c.enqueue_timeout_ms == 0 || at(&s.waiting) >= c.max_waiters)
            }
            _ => false,
        };
        if attempts_full || keys_full || shard_full {
            return Ok(());
        }
        Err(safety(
            Inv::Bounded,
            format!(
                "ticket {} was refused at once with room: {} attempts, {} keys, queues {:?}, waiting {:?}",
                ticket.0, s.attempts, s.idempotency_keys, s.queue_depths, s.waiting
            ),
        ))
    }

    /// A ticket whose key remembers an answer for another payload must be
    /// refused as key reuse, not answered otherwise.
    fn check_not_refused_reuse(
        &self,
        model: &TicketModel,
        d: &DispatchTicket,
        response: &Response,
    ) -> Checked {
        let Some((k, f)) = d.key else {
            return Ok(());
        };
        let ttl = self.config.idempotency_ttl_ms;
        match self.keys.get(&k) {
            Some(m)
                if m.fingerprint != f
                    && m.created_at.plus_ms(ttl) > model.submitted
                    && m.acked_at.is_some_and(|at| at <= model.submitted)
                    && !self.draining
                    && !matches!(response, Response::DeadlineExceeded) =>
            {
                Err(safety(
                    Inv::Idempotency,
                    format!(
                        "a payload different from the key's got {response:?} instead of 422 reuse"
                    ),
                ))
            }
            _ => Ok(()),
        }
    }

    fn on_cancel_answer(
        &mut self,
        ticket: Ticket,
        id: AssignmentId,
        response: &Response,
    ) -> Checked {
        let t = ticket.0;
        let b = self.bookings.get(&id);
        match response {
            Response::Cancelled(a) => match b {
                Some(b) if b.state == BookingState::Cancelled && a.id == id => Ok(()),
                _ => Err(safety(
                    Inv::CancellingFreesTime,
                    format!("ticket {t} got 200 cancelled for {id} before the cancel was durable"),
                )),
            },
            Response::NotFound => match b {
                Some(b) if b.state != BookingState::InFlight => Err(safety(
                    Inv::DurableBeforeAcknowledged,
                    format!("ticket {t}: DELETE of durable assignment {id} answered 404"),
                )),
                _ => Ok(()),
            },
            Response::DependencyUnavailable { .. } | Response::Overloaded { .. } => Ok(()),
            other => Err(safety(
                Inv::ExactlyOneAnswer,
                format!("DELETE ticket {t} got a dispatch answer {other:?}"),
            )),
        }
    }

    // ----- the book --------------------------------------------------------

    fn tours_on(&self, agent: &str, day: u32) -> u32 {
        self.per_day
            .get(&(CompactString::from(agent), day))
            .copied()
            .unwrap_or(0)
    }

    /// Another held booking of `agent` that `interval` overlaps (travel
    /// buffer included), by brute force over the neighbourhood.
    fn overlapping(&self, agent: &str, interval: Window) -> Option<AssignmentId> {
        let buffer = self.config.travel_buffer_ms();
        let tours = self.agenda.get(agent)?;
        let reach = 240 * MS_PER_MINUTE + buffer;
        tours
            .range(interval.start.minus_ms(reach)..interval.end.plus_ms(buffer))
            .find(|(start, (end, _))| {
                end.plus_ms(buffer) > interval.start && interval.end.plus_ms(buffer) > **start
            })
            .map(|(_, (_, id))| *id)
    }

    fn hold(&mut self, a: &Assignment) {
        self.agenda
            .entry(a.agent_id.clone())
            .or_default()
            .insert(a.start, (a.end, a.id));
        *self
            .per_day
            .entry((a.agent_id.clone(), a.start.utc_day()))
            .or_default() += 1;
    }

    fn release(&mut self, a: &Assignment) {
        if let Some(tours) = self.agenda.get_mut(&a.agent_id) {
            if tours.get(&a.start).is_some_and(|&(_, id)| id == a.id) {
                tours.remove(&a.start);
                let day = (a.agent_id.clone(), a.start.utc_day());
                if let Some(n) = self.per_day.get_mut(&day) {
                    *n -= 1;
                    if *n == 0 {
                        self.per_day.remove(&day);
                    }
                }
            }
            if tours.is_empty() {
                self.agenda.remove(&a.agent_id);
            }
        }
    }

    fn drop_booking(&mut self, id: AssignmentId) {
        if let Some(b) = self.bookings.remove(&id) {
            if b.state != BookingState::Cancelled {
                self.release(&b.assignment);
            }
        }
    }

    fn cancel_booking(&mut self, id: AssignmentId) {
        let Some(b) = self.bookings.get_mut(&id) else {
            return;
        };
        if b.state == BookingState::Durable {
            b.state = BookingState::Cancelled;
            b.assignment.status = AssignmentStatus::Cancelled;
            let a = b.assignment.clone();
            self.release(&a);
        }
    }

    // ----- after each step ---------------------------------------------------

    /// Invariant 6, against the core's own gauges and against the model's
    /// count of what waits.
    fn check_bounds(&self, core: &Dispatcher) -> Checked {
        let c = &self.config;
        let s = core.stats();
        let over = |what: &str, n: u64, bound: u64| -> Checked {
            if n > bound {
                Err(safety(Inv::Bounded, format!("{what}: {n} > bound {bound}")))
            } else {
                Ok(())
            }
        };
        for (i, &d) in s.queue_depths.iter().enumerate() {
            over(
                &format!("shard {i} queue"),
                d.into(),
                c.queue_capacity.into(),
            )?;
        }
        for (i, &w) in s.waiting.iter().enumerate() {
            over(
                &format!("shard {i} waiting line"),
                w.into(),
                c.max_waiters.into(),
            )?;
        }
        for (i, &r) in s.running.iter().enumerate() {
            over(
                &format!("shard {i} running"),
                r.into(),
                c.shard_concurrency.into(),
            )?;
        }
        over(
            "idempotency keys",
            s.idempotency_keys,
            c.max_idempotency_keys.into(),
        )?;
        over("attempts", s.attempts, c.max_attempts.into())?;
        // With an enqueue timeout of 0 nobody waits for room. (The model
        // reads the setting itself: a helper shared with the core would
        // share its mistakes.)
        if c.enqueue_timeout_ms == 0 {
            over("requests that waited for room", s.queue_full_waits, 0)?;
        }
        let groups = self.waiting_keyless + self.waiting_keys.len() as u64;
        let outcome_writes = self
            .writes
            .values()
            .filter(|w| !matches!(w, Write::Cancelled(_)))
            .count() as u64;
        let per_shard =
            u64::from(c.queue_capacity) + u64::from(c.max_waiters) + u64::from(c.shard_concurrency);
        over(
            "requests waiting for an answer (by key)",
            groups,
            u64::from(c.shards) * per_shard + outcome_writes,
        )?;
        over(
            "requests waiting for an answer (by key)",
            groups,
            c.max_attempts.into(),
        )?;
        if let Some((k, &n)) = self.waiting_keys.iter().max_by_key(|(_, &n)| n) {
            over(
                &format!("tickets waiting on key {k:?}"),
                n.into(),
                1 + u64::from(c.max_joiners),
            )?;
        }
        Ok(())
    }

    /// Invariant 2 in time: a waiting ticket is answered at its deadline,
    /// and every one at the drain's deadline (API.md: running requests
    /// finish for at most the drain timeout, then get 503).
    fn check_deadlines(&self, now: Timestamp) -> Checked {
        let unanswered = |t: Ticket, deadline: Timestamp, what: &str| {
            Err(safety(
                Inv::ExactlyOneAnswer,
                format!(
                    "ticket {} still unanswered at {} ms, {what} was {} ms",
                    t.0,
                    now.as_millis(),
                    deadline.as_millis()
                ),
            ))
        };
        match (self.deadlines.first(), self.drain_deadline) {
            (Some(&(deadline, t)), _) if deadline <= now => unanswered(t, deadline, "its deadline"),
            (Some(&(_, t)), Some(drain)) if drain <= now => {
                unanswered(t, drain, "the drain's deadline")
            }
            _ => Ok(()),
        }
    }

    /// What the core says of itself to the server agrees with the model:
    /// draining and idle (the driver exits on them once every ticket is
    /// answered), and how far the journal is durable (the seq a snapshot
    /// is labelled with).
    fn check_core_state(&self, core: &Dispatcher) -> Checked {
        let (draining, idle, durable) = (core.is_draining(), core.is_idle(), core.durable_seq());
        if draining != self.draining {
            return Err(safety(
                Inv::ExactlyOneAnswer,
                format!(
                    "the core says draining is {draining}, the model {}",
                    self.draining
                ),
            ));
        }
        if idle != self.is_quiet() {
            return Err(safety(
                Inv::ExactlyOneAnswer,
                format!(
                    "the core says idle is {idle}, the model {}",
                    self.is_quiet()
                ),
            ));
        }
        if durable != self.durable_seq {
            return Err(safety(
                Inv::DurableBeforeAcknowledged,
                format!(
                    "the core says writes up to {durable} are durable, the journal {}",
                    self.durable_seq
                ),
            ));
        }
        Ok(())
    }

    /// Nothing waits on the core: no journal write, no dispatch ticket.
    fn is_quiet(&self) -> bool {
        self.writes.is_empty() && self.deadlines.is_empty()
    }

    /// Nothing waits and every write settled: no booking is left behind a
    /// failure, the core's book is exactly the model's, and it remembers
    /// the model's live keys.
    fn check_quiet(&self, now: Timestamp, core: &Dispatcher) -> Checked {
        // At least every live key; at most every key the model ever
        // remembered (a key whose TTL ran out while its attempt held it
        // goes at the core's next input).
        let ttl = self.config.idempotency_ttl_ms;
        let live = self
            .keys
            .values()
            .filter(|m| m.created_at.plus_ms(ttl) > core.now())
            .count() as u64;
        let held = core.stats().idempotency_keys;
        if held < live || held > self.keys.len() as u64 {
            return Err(safety(
                Inv::Idempotency,
                format!(
                    "the core holds {held} idempotency keys; {live} are durable and live, {} were ever",
                    self.keys.len()
                ),
            ));
        }
        if let Some(b) = self
            .bookings
            .values()
            .find(|b| b.state == BookingState::Durable && !b.acked && !b.exempt)
        {
            return Err(safety(
                Inv::NoSuccessAfterDeadline,
                format!(
                    "assignment {} is durable but no ticket got its 201 (no crash, no failed undo)",
                    b.assignment.id
                ),
            ));
        }
        self.compare_assignments(core)?;
        self.compare_book(now, core)
    }

    /// What reads are served (`GET /assignments/{id}`) is what is durable:
    /// every durable booking in retention, with its status; none past it;
    /// none the model never saw; and the count of active reservations is
    /// the confirmed ones.
    fn compare_assignments(&self, core: &Dispatcher) -> Checked {
        let now = core.now();
        let served: BTreeMap<AssignmentId, AssignmentStatus> = core
            .assignments()
            .iter()
            .map(|a| (a.id, a.status))
            .collect();
        let wrong = |m: String| Err(safety(Inv::DurableBeforeAcknowledged, m));
        for (id, b) in &self.bookings {
            let status = match b.state {
                BookingState::Durable => AssignmentStatus::Confirmed,
                BookingState::Cancelled => AssignmentStatus::Cancelled,
                BookingState::InFlight => continue,
            };
            if self.in_retention(b.assignment.end, now) && served.get(id) != Some(&status) {
                return wrong(format!(
                    "reads serve {id} as {:?}; it is durably {status:?}",
                    served.get(id)
                ));
            }
        }
        for id in served.keys() {
            match self.bookings.get(id) {
                None => return wrong(format!("reads serve {id}, which was never booked")),
                Some(b) if !self.in_retention(b.assignment.end, now) => {
                    return wrong(format!("reads still serve {id} past its retention"))
                }
                Some(_) => {}
            }
        }
        let confirmed = served
            .values()
            .filter(|&&s| s == AssignmentStatus::Confirmed)
            .count() as u64;
        let active = core.stats().reservations_active;
        if active != confirmed {
            return wrong(format!(
                "the core counts {active} active reservations and serves {confirmed} confirmed"
            ));
        }
        Ok(())
    }

    /// Whether a booking that ends at `end` is still kept at `now` (the
    /// retention is at least the key TTL, so it outlives the key).
    fn in_retention(&self, end: Timestamp, now: Timestamp) -> bool {
        end.plus_ms(self.config.retention_ms()) > now
    }

    fn compare_book(&self, now: Timestamp, core: &Dispatcher) -> Checked {
        let model: BTreeSet<(&str, Window, AssignmentId)> = self
            .agenda
            .iter()
            .flat_map(|(agent, tours)| {
                tours
                    .iter()
                    .map(move |(&s, &(e, id))| (agent.as_str(), Window::new(s, e), id))
            })
            .filter(|(_, w, _)| self.in_retention(w.end, now))
            .collect();
        let held: BTreeSet<(&str, Window, AssignmentId)> = core.book().iter().collect();
        let counted = core.book().len();
        if counted != held.len() || core.book().is_empty() != held.is_empty() {
            return Err(safety(
                Inv::Bounded,
                format!(
                    "the book counts {counted} bookings but holds {}",
                    held.len()
                ),
            ));
        }
        if let Some(&(agent, w, id)) = held.difference(&model).next() {
            let inv = match self.bookings.get(&id).map(|b| b.state) {
                Some(BookingState::Cancelled) => Inv::CancellingFreesTime,
                _ => Inv::NoSuccessAfterDeadline,
            };
            return Err(safety(
                inv,
                format!(
                    "the core still holds {id} ({agent} {} to {}), which the journal freed",
                    w.start, w.end
                ),
            ));
        }
        if let Some(&(agent, w, id)) = model.difference(&held).next() {
            return Err(safety(
                Inv::DurableBeforeAcknowledged,
                format!("the core lost {id} ({agent} {} to {})", w.start, w.end),
            ));
        }
        Ok(())
    }

    /// The core's dependency results (`tour_dispatcher_dependency_calls_total`
    /// in the server) moved by the calls that ended in this step: a stream
    /// complete or cut at a full batch is `ok`, a failed one `error`, one
    /// stopped for a deadline, a drain or a client gone `cancelled`; a
    /// journal write counts once as it settles, `ok` or `error`.
    fn check_call_results(&self, after: &Stats) -> Checked {
        for dependency in Dependency::ALL {
            for result in CallResult::ALL {
                let before = self.last_stats.calls(dependency, result);
                let expected = before + self.call_results[dependency as usize][result as usize];
                let counted = after.calls(dependency, result);
                if counted != expected {
                    return Err(safety(
                        Inv::NoOrphanCalls,
                        format!(
                            "the core counts {counted} {} calls {}; the calls that ended make {expected}",
                            dependency.label(),
                            result.label()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn count_stats(&mut self, core: &Dispatcher, outputs: &[Output]) -> Checked {
        let s = core.stats();
        if self.counts_follow_outputs {
            check_answers_counted(&self.last_stats, &s, outputs)?;
            self.check_call_results(&s)?;
        }
        // "Nonsense is ignored and counted" (DESIGN.md): the count is what
        // an operator sees of a dependency that answers late or out of turn.
        if self.ignored_input && s.ignored_inputs <= self.last_stats.ignored_inputs {
            return Err(safety(
                Inv::NoOrphanCalls,
                "a late result or a delivery with a gap was not counted as ignored",
            ));
        }
        if s.queue_full_waits > self.last_stats.queue_full_waits {
            self.coverage.hit(Mark::QueueOverflow);
        }
        if s.enqueue_timeouts > self.last_stats.enqueue_timeouts {
            self.coverage.hit(Mark::EnqueueTimeout);
        }
        if s.joins > self.last_stats.joins {
            self.coverage.hit(Mark::JoinedTicket);
        }
        self.last_stats = s;
        Ok(())
    }

    fn run_extra(&mut self) -> Checked {
        let mut extra = std::mem::take(&mut self.extra);
        let mut result = Ok(());
        for check in &mut extra {
            if let Err(message) = check.check(self) {
                result = Err(Violation {
                    invariant: check.name().to_string(),
                    kind: crate::invariant::Kind::Safety,
                    message,
                    step: 0,
                    now: Timestamp::ZERO,
                });
                break;
            }
        }
        self.extra = extra;
        result
    }

    // ----- crash and restore -------------------------------------------------

    /// Invariant 4 across a crash: what the core was told is durable is in
    /// the records — every acknowledged or durable booking (cancelled if its
    /// cancel was durable), no durably undone one, every remembered answer
    /// still within its TTL. Writes still in flight may or may not be there.
    fn check_survivors(&self, now: Timestamp, records: &[Record]) -> Checked {
        let durable = DurableState::of(records);
        let lost = |m: String| Err(safety(Inv::DurableBeforeAcknowledged, m));
        let pending = |f: &dyn Fn(&Write) -> bool| self.writes.values().any(f);
        for (id, b) in &self.bookings {
            if !self.in_retention(b.assignment.end, now) {
                continue;
            }
            let kept = durable.assignments.get(id).map(|a| a.status);
            let ok = match b.state {
                BookingState::InFlight => true,
                BookingState::Cancelled => kept == Some(AssignmentStatus::Cancelled),
                BookingState::Durable => {
                    kept == Some(AssignmentStatus::Confirmed)
                        || (kept == Some(AssignmentStatus::Cancelled)
                            && pending(&|w| matches!(w, Write::Cancelled(c) if c == id)))
                        || (kept.is_none()
                            && pending(&|w| matches!(w, Write::Undone(Some(u), _) if u == id)))
                }
            };
            if !ok {
                return lost(format!(
                    "after the crash the journal holds {id} as {kept:?}, but it was durable as {:?}{}",
                    b.state,
                    if b.acked { " and acknowledged" } else { "" }
                ));
            }
        }
        if let Some(id) = self
            .undone
            .iter()
            .find(|id| durable.assignments.contains_key(id))
        {
            return lost(format!(
                "{id} was durably undone but the journal still books it"
            ));
        }
        if let Some(id) = self
            .failed_bookings
            .iter()
            .find(|id| durable.assignments.contains_key(id))
        {
            return lost(format!(
                "the core was told the write of {id} failed, but the journal recovered it"
            ));
        }
        let ttl = self.config.idempotency_ttl_ms;
        for (k, m) in &self.keys {
            if m.created_at.plus_ms(ttl) <= now {
                continue;
            }
            let rewritten = pending(&|w| self.writes_key(w, k));
            let kept = durable.keys.get(k).map(|(_, a)| a);
            if kept != Some(&m.answer) && !rewritten {
                return lost(format!(
                    "after the crash a key remembers {kept:?}, but {:?} was durable",
                    m.answer
                ));
            }
        }
        Ok(())
    }

    /// Replaces the model's durable state by `records`.
    fn adopt_records(&mut self, now: Timestamp, records: &[Record]) {
        let durable = DurableState::of(records);
        let old = std::mem::take(&mut self.bookings);
        self.agenda.clear();
        self.per_day.clear();
        for (id, a) in durable.assignments {
            let before = old.get(&id);
            let state = match a.status {
                AssignmentStatus::Confirmed => BookingState::Durable,
                AssignmentStatus::Cancelled => BookingState::Cancelled,
            };
            if state == BookingState::Durable {
                self.hold(&a);
            }
            let acked = before.is_some_and(|b| b.acked);
            self.bookings.insert(
                id,
                Booking {
                    key: durable.booking_keys.get(&id).copied(),
                    state,
                    acked,
                    exempt: !acked,
                    params: before.and_then(|b| b.params.clone()),
                    epoch: before.map_or(self.epoch, |b| b.epoch),
                    assignment: a,
                },
            );
        }
        let ttl = self.config.idempotency_ttl_ms;
        let old_keys = std::mem::take(&mut self.keys);
        for (k, (entry, answer)) in durable.keys {
            if entry.created_at.plus_ms(ttl) <= now {
                continue;
            }
            let before = old_keys.get(&k);
            self.keys.insert(
                k,
                KeyModel {
                    fingerprint: entry.fingerprint,
                    created_at: entry.created_at,
                    answer,
                    acked_at: before.and_then(|m| m.acked_at),
                    epoch: before.map_or(self.epoch, |m| m.epoch),
                },
            );
        }
        self.changed_since_quiet = true;
    }

    /// The restored core holds what the records hold.
    fn compare_restored(&self, now: Timestamp, core: &Dispatcher) -> Checked {
        let restored = DurableState::of(&core.snapshot());
        for (id, b) in &self.bookings {
            if !self.in_retention(b.assignment.end, now) {
                continue;
            }
            let got = core.assignment(id);
            if got != Some(&b.assignment) {
                return Err(safety(
                    Inv::DurableBeforeAcknowledged,
                    format!(
                        "after restore, {id} is {got:?}, the journal says {:?}",
                        b.assignment
                    ),
                ));
            }
        }
        for (k, m) in &self.keys {
            let got = restored.keys.get(k).map(|(_, a)| a);
            if got != Some(&m.answer) {
                return Err(safety(
                    Inv::DurableBeforeAcknowledged,
                    format!(
                        "after restore, a key remembers {got:?}, the journal says {:?}",
                        m.answer
                    ),
                ));
            }
        }
        self.compare_book(now, core)
    }
}

/// The durable facts a list of records adds up to, read independently of
/// the core's `restore`.
#[derive(Default)]
struct DurableState {
    assignments: BTreeMap<AssignmentId, Assignment>,
    booking_keys: BTreeMap<AssignmentId, KeyEntry>,
    keys: BTreeMap<KeyHash, (KeyEntry, Answer)>,
}

impl DurableState {
    fn of(records: &[Record]) -> Self {
        let mut s = DurableState::default();
        for r in records {
            match r {
                Record::Booked { assignment, key } => {
                    s.assignments.insert(assignment.id, assignment.clone());
                    if let Some(k) = key {
                        s.booking_keys.insert(assignment.id, *k);
                        s.keys.insert(k.key, (*k, Answer::Assigned(assignment.id)));
                    }
                }
                Record::Answered { key, answer } => {
                    s.keys
                        .insert(key.key, (*key, Answer::Remembered(answer.clone())));
                }
                Record::Cancelled { id } => {
                    if let Some(a) = s.assignments.get_mut(id) {
                        a.status = AssignmentStatus::Cancelled;
                    }
                }
                Record::Undone { id, key } => {
                    if let Some(id) = id {
                        s.assignments.remove(id);
                        s.booking_keys.remove(id);
                    }
                    if let Some(k) = key {
                        s.keys.remove(k);
                    }
                }
                Record::Sequence { .. } => {}
            }
        }
        s
    }
}
