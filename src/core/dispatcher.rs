//! The [`Dispatcher`]: wires the ring, the shard queues, the idempotency
//! table, the book and the attempts into one sans-IO state machine.
//!
//! Every `handle` first fires the timers that are due at `now` (so a
//! deadline always wins over a result that arrives at or after it), then
//! applies the input. Outputs queue up until `poll_output` drains them.

use crate::core::attempt::{Attempt, Batch, Fetch, Intake, Phase, SlotRules};
use crate::core::book::{Assignment, AssignmentStatus, Book, Slot};
use crate::core::config::{Config, ConfigError};
use crate::core::durable::{Durable, Stored};
use crate::core::idempotency::{IdempotencyTable, StoredAnswer};
use crate::core::ids::{
    AssignmentId, AttemptId, CallId, Fingerprint, KeyHash, PrehashedMap, Ticket,
};
use crate::core::io::{
    CancelReason, Candidate, Dependency, DependencyError, Input, Output, Response, RuleRequest,
    TimerReason,
};
use crate::core::queue::{Admission, ShardQueue};
use crate::core::record::{KeyEntry, Record, Remembered};
use crate::core::request::{validate, RawRequest};
use crate::core::ring::Ring;
use crate::core::stats::{CallResult, Stats};
use crate::core::time::{Timestamp, Window};
use crate::core::timers::Timers;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Why `restore` refused the records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("the journal books agent {agent} twice at overlapping times (assignment {id}); refusing to start on it")]
    DoubleBooking { agent: String, id: AssignmentId },
    #[error("the journal holds assignment {id}, whose end is not after its start; refusing to start on it")]
    EmptyInterval { id: AssignmentId },
}

/// A ticket waiting for an answer.
#[derive(Debug, Clone, Copy)]
enum Waiter {
    Dispatch {
        attempt: AttemptId,
        deadline: Timestamp,
    },
    Cancel {
        id: AssignmentId,
    },
}

/// A journal write in flight.
#[derive(Debug, Clone, Copy)]
enum Write {
    Outcome(AttemptId),
    Undo(AttemptId),
    Cancel(AssignmentId),
}

#[derive(Debug, Clone)]
struct PendingCancel {
    tickets: Vec<Ticket>,
}

/// The dispatcher state machine.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    config: Config,
    now: Timestamp,
    ring: Ring,
    shards: Vec<ShardQueue>,
    keys: IdempotencyTable,
    book: Book,
    /// Boxed: the map stays small while it grows (half empty after each
    /// doubling), and the assignment does not move.
    assignments: PrehashedMap<AssignmentId, Box<Stored>>,
    /// (keep_until, id) of every stored assignment.
    retention: BTreeSet<(Timestamp, AssignmentId)>,
    /// Boxed: an attempt is large and the map moves its values.
    attempts: BTreeMap<AttemptId, Box<Attempt>>,
    tickets: BTreeMap<Ticket, Waiter>,
    calls: BTreeMap<CallId, AttemptId>,
    writes: BTreeMap<u64, Write>,
    cancels: BTreeMap<AssignmentId, PendingCancel>,
    timers: Timers,
    outputs: VecDeque<Output>,
    next_call: u64,
    next_attempt: u64,
    next_seq: u64,
    next_assignment: u64,
    durable_seq: u64,
    /// Confirmed durable assignments held in memory.
    active: u64,
    draining: bool,
    stats: Stats,
}

impl Dispatcher {
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        config.validate()?;
        let shards = (0..config.shards)
            .map(|_| {
                ShardQueue::new(
                    config.queue_capacity,
                    config.max_waiters,
                    config.shard_concurrency,
                )
            })
            .collect();
        Ok(Dispatcher {
            ring: Ring::new(config.shards, config.vnodes),
            shards,
            keys: IdempotencyTable::new(config.idempotency_ttl_ms, config.max_idempotency_keys),
            book: Book::new(config.travel_buffer_ms()),
            config,
            now: Timestamp::ZERO,
            assignments: PrehashedMap::default(),
            retention: BTreeSet::new(),
            attempts: BTreeMap::new(),
            tickets: BTreeMap::new(),
            calls: BTreeMap::new(),
            writes: BTreeMap::new(),
            cancels: BTreeMap::new(),
            timers: Timers::default(),
            outputs: VecDeque::new(),
            next_call: 1,
            next_attempt: 1,
            next_seq: 1,
            next_assignment: 0,
            durable_seq: 0,
            active: 0,
            draining: false,
            stats: Stats::default(),
        })
    }

    /// Rebuilds the durable state from journal records (in journal order).
    pub fn restore(
        config: Config,
        now: Timestamp,
        records: impl IntoIterator<Item = Record>,
    ) -> Result<Self, RestoreError> {
        let mut d = Dispatcher::new(config)?;
        d.now = now;
        let durable = Durable::fold(records, &d.config.secret);
        d.install(durable)?;
        Ok(d)
    }

    /// Feeds one input observed at `now`. Never fails: nonsense is ignored
    /// and counted in [`Stats::ignored_inputs`].
    pub fn handle(&mut self, now: Timestamp, input: Input) {
        self.now = self.now.max(now);
        self.fire_due_timers();
        self.expire(self.now);
        match input {
            Input::Submit {
                ticket,
                body,
                idempotency_key,
                deadline,
            } => self.submit(ticket, body, idempotency_key, deadline),
            Input::ClientGone { ticket } => self.client_gone(ticket),
            Input::SlotsStreamed {
                call,
                first_index,
                slots,
            } => self.slots(call, first_index, slots),
            Input::StreamEnded {
                call,
                count,
                result,
            } => self.stream_ended(call, count, result),
            Input::RuleVerdicts { call, result } => self.verdicts(call, result),
            Input::Persisted { upto } => self.persisted(upto),
            Input::PersistFailed { from } => self.persist_failed(from),
            Input::CancelAssignment { ticket, id } => self.cancel_assignment(ticket, id),
            Input::Drain { deadline } => self.drain(deadline),
            Input::Tick => {}
        }
        self.check_bounds();
    }

    /// The next output, if any. Call until `None` after every `handle`.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When the driver must next call `handle(now, Input::Tick)`, and why.
    pub fn poll_timeout(&self) -> Option<(Timestamp, TimerReason)> {
        self.timers.next()
    }

    /// When a `Tick` next forgets an assignment past its retention or a key
    /// past its TTL, as of `now` (at once, for a key whose attempt let go
    /// of it after its TTL). The core keeps these times out of
    /// [`poll_timeout`](Self::poll_timeout), whose end says the core is
    /// quiet: a driver that wants their memory back while idle, or a
    /// reader that must not see them, feeds a `Tick` at this time.
    pub fn next_expiry(&self, now: Timestamp) -> Option<Timestamp> {
        // Every assignment past retention went at the last input.
        let assignment = self.retention.first().map(|&(at, _)| at);
        match (assignment, self.keys.next_expiry(now)) {
            (Some(a), Some(k)) => Some(a.min(k)),
            (a, k) => a.or(k),
        }
    }

    /// A durable assignment (confirmed or cancelled) still in retention.
    pub fn assignment(&self, id: &AssignmentId) -> Option<&Assignment> {
        self.assignments.get(id).map(|s| &s.assignment)
    }

    /// Every durable assignment in memory, in id order.
    pub fn assignments(&self) -> Vec<&Assignment> {
        let mut all: Vec<&Assignment> = self.assignments.values().map(|s| &s.assignment).collect();
        all.sort_unstable_by_key(|a| a.id);
        all
    }

    /// Every booking held in the book (durable and in flight), for checks.
    pub fn book(&self) -> &Book {
        &self.book
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The latest `now` seen.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// The highest journal sequence number known to be durable: a snapshot
    /// taken now covers every write up to it and none after.
    pub fn durable_seq(&self) -> u64 {
        self.durable_seq
    }

    /// The sequence number the next journal write will have.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The durable state as records: replaying them through `restore` gives
    /// the same durable state. Nothing provisional is included.
    pub fn snapshot(&self) -> Vec<Record> {
        let mut records = vec![Record::Sequence {
            next: self.next_assignment,
        }];
        // Which live key remembers which assignment.
        let mut keys_of: BTreeMap<AssignmentId, KeyEntry> = BTreeMap::new();
        for (entry, answer) in self.keys.durable() {
            if let StoredAnswer::Assigned(id) = answer {
                keys_of.insert(*id, entry);
            }
        }
        let mut stored: Vec<&Stored> = self.assignments.values().map(|s| &**s).collect();
        stored.sort_unstable_by_key(|s| s.assignment.id);
        for stored in stored {
            records.push(Record::Booked {
                assignment: stored.assignment.clone(),
                key: keys_of.get(&stored.assignment.id).copied(),
            });
        }
        for (entry, answer) in self.keys.durable() {
            let answer = match answer {
                StoredAnswer::Assigned(_) => continue,
                StoredAnswer::NoAvailability => Remembered::NoAvailability,
                StoredAnswer::Invalid(errors) => Remembered::Invalid(errors.to_vec()),
            };
            records.push(Record::Answered { key: entry, answer });
        }
        records
    }

    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.queue_depths = self.shards.iter().map(ShardQueue::depth).collect();
        s.waiting = self.shards.iter().map(ShardQueue::waiting).collect();
        s.running = self.shards.iter().map(ShardQueue::running).collect();
        s.reservations_active = self.active;
        s.bookings_held = self.book.len() as u64;
        s.idempotency_keys = self.keys.len() as u64;
        s.attempts = self.attempts.len() as u64;
        s.tickets = self.tickets.len() as u64;
        s.pending_writes = self.writes.len() as u64;
        s.durable_seq = self.durable_seq;
        s
    }

    /// Nothing waits: no ticket, no attempt, no journal write in flight.
    pub fn is_idle(&self) -> bool {
        self.tickets.is_empty() && self.attempts.is_empty() && self.writes.is_empty()
    }

    pub fn is_draining(&self) -> bool {
        self.draining
    }

    // ----- admission -------------------------------------------------------

    fn submit(
        &mut self,
        ticket: Ticket,
        body: RawRequest,
        key: Option<String>,
        deadline: Timestamp,
    ) {
        if self.tickets.contains_key(&ticket) {
            self.stats.ignored_inputs += 1;
            return;
        }
        if deadline <= self.now {
            return self.answer_new(ticket, Response::DeadlineExceeded, false);
        }
        if self.draining {
            return self.answer_new(ticket, self.overloaded(), false);
        }
        let key = key.map(|k| {
            let fingerprint = body.fingerprint(&self.config.secret);
            (KeyHash::of(&self.config.secret, &k), fingerprint)
        });
        if let Some((key, fingerprint)) = key {
            if let Some(entry) = self.keys.get(&key) {
                if entry.fingerprint() != fingerprint {
                    return self.answer_new(ticket, Response::KeyReused, false);
                }
                match (entry.attempt(), entry.answer().cloned()) {
                    (Some(attempt), _) => return self.join(ticket, attempt, deadline),
                    (None, Some(answer)) => return self.replay(ticket, &answer),
                    (None, None) => {}
                }
            }
        }
        self.admit(vec![(ticket, deadline)], body, key);
    }

    /// Starts a new attempt for `tickets` and their deadlines (the first
    /// ticket is the original).
    fn admit(
        &mut self,
        waiting: Vec<(Ticket, Timestamp)>,
        raw: RawRequest,
        key: Option<(KeyHash, Fingerprint)>,
    ) {
        let Some(&(original, _)) = waiting.first() else {
            return;
        };
        let tickets: Vec<Ticket> = waiting.iter().map(|&(t, _)| t).collect();
        let deadline = waiting.iter().map(|&(_, d)| d).max().unwrap_or(self.now);
        if self.attempts.len() >= self.config.max_attempts as usize {
            return self.answer_all_new(&tickets, self.overloaded());
        }
        let id = AttemptId(self.next_attempt);
        let key_entry = match key {
            Some((key, fingerprint)) => {
                let existing = self.keys.get(&key).map(|e| e.fingerprint());
                if existing.is_none() && self.keys.begin(key, fingerprint, self.now, id).is_err() {
                    return self.answer_all_new(&tickets, self.overloaded());
                }
                if existing.is_some() {
                    self.keys.reassign(&key, id);
                }
                let created_at = self.keys.get(&key).map_or(self.now, |e| e.created_at());
                Some(KeyEntry {
                    key,
                    fingerprint,
                    created_at,
                })
            }
            None => None,
        };
        self.next_attempt += 1;
        let validated = validate(&raw, self.now, &self.config);
        let shard = match &validated {
            Ok(req) => self.ring.shard_of(&req.zipcode),
            Err(_) => 0,
        };
        for &(t, deadline) in &waiting {
            self.tickets.insert(
                t,
                Waiter::Dispatch {
                    attempt: id,
                    deadline,
                },
            );
            self.timers.set(deadline, TimerReason::Deadline(t));
        }
        let attempt = Attempt {
            id,
            raw,
            request: validated.as_ref().ok().cloned(),
            key: key_entry,
            shard,
            tickets,
            original,
            rerun: Vec::new(),
            phase: Phase::Queued,
        };
        self.attempts.insert(id, Box::new(attempt));
        match validated {
            Err(errors) => self.conclude(id, Remembered::Invalid(errors)),
            Ok(_) => self.enqueue(id, deadline),
        }
    }

    fn enqueue(&mut self, id: AttemptId, deadline: Timestamp) {
        let shard = self.attempt(id).shard as usize;
        let may_wait = self.config.enqueue_timeout_ms > 0;
        match self.shards[shard].offer(id, may_wait) {
            Admission::Run => self.start_run(id),
            Admission::Queued => {}
            Admission::Waiting => {
                self.stats.queue_full_waits += 1;
                let until = self
                    .now
                    .plus_ms(self.config.enqueue_timeout_ms)
                    .min(deadline);
                self.timers.set(until, TimerReason::EnqueueTimeout(id));
                self.set_phase(id, Phase::Waiting { until });
            }
            Admission::Refused => {
                let response = self.overloaded();
                self.fail_attempt(id, response);
            }
        }
    }

    fn join(&mut self, ticket: Ticket, attempt: AttemptId, deadline: Timestamp) {
        let max = self.config.max_joiners as usize;
        let Some(a) = self.attempts.get_mut(&attempt) else {
            return self.answer_new(ticket, Response::KeyInFlight, false);
        };
        let abandoned = a.tickets.is_empty();
        let waiting = if abandoned {
            &mut a.rerun
        } else {
            &mut a.tickets
        };
        // The original ticket does not count as a joiner.
        let joiners = if abandoned {
            waiting.len()
        } else {
            waiting.len().saturating_sub(1)
        };
        if joiners >= max {
            return self.answer_new(ticket, Response::KeyInFlight, false);
        }
        waiting.push(ticket);
        self.stats.joins += 1;
        self.tickets
            .insert(ticket, Waiter::Dispatch { attempt, deadline });
        self.timers.set(deadline, TimerReason::Deadline(ticket));
    }

    fn replay(&mut self, ticket: Ticket, answer: &StoredAnswer) {
        let response = match answer {
            StoredAnswer::Assigned(id) => match self.assignments.get(id) {
                // The replay repeats the first answer, which confirmed it.
                Some(s) => Response::Assigned(Assignment {
                    status: AssignmentStatus::Confirmed,
                    ..s.assignment.clone()
                }),
                None => {
                    debug_assert!(false, "a live key refers to a forgotten assignment");
                    self.overloaded()
                }
            },
            StoredAnswer::NoAvailability => Response::NoAvailability,
            StoredAnswer::Invalid(errors) => Response::Invalid(errors.to_vec()),
        };
        self.answer_new(ticket, response, true);
    }

    // ----- running ---------------------------------------------------------

    fn start_run(&mut self, id: AttemptId) {
        self.fetch(id, None);
    }

    /// Opens an availability stream for `id`, after `after`.
    fn fetch(&mut self, id: AttemptId, after: Option<Slot>) {
        let deadline = self.attempt_deadline(id);
        let call = CallId(self.next_call);
        let a = self.attempt_mut(id);
        let Some(req) = a.request.as_ref() else {
            return;
        };
        let out = Output::FetchAvailability {
            call,
            zipcode: req.zipcode.clone(),
            window: req.window,
            duration_min: req.duration_min,
            after: after.clone(),
            deadline,
        };
        a.phase = Phase::Fetching(Fetch::new(call, after));
        self.new_call(id);
        self.outputs.push_back(out);
    }

    fn slots(&mut self, call: CallId, first_index: u32, slots: Vec<Slot>) {
        let Some((id, mut fetch)) = self.fetch_of(call) else {
            self.stats.ignored_inputs += 1;
            return;
        };
        let a = self.attempt(id);
        let Some(req) = a.request.as_ref() else {
            return;
        };
        let rules = SlotRules {
            book: &self.book,
            window: req.window,
            duration_ms: req.duration_ms(),
            max_candidates: self.config.max_candidates as usize,
        };
        let taken = fetch.take(first_index, slots, &rules);
        let Some((intake, counts)) = taken else {
            self.stats.ignored_inputs += 1;
            self.set_phase(id, Phase::Fetching(fetch));
            return;
        };
        self.stats.slots_conflicting += counts.conflicting;
        self.stats.slots_malformed += counts.malformed;
        if intake == Intake::BatchFull {
            self.cancel_call(call, CancelReason::BatchFull);
            return self.check_rules(id, fetch.batch);
        }
        if fetch.is_complete() {
            self.stream_complete(id, call, fetch);
        } else {
            self.set_phase(id, Phase::Fetching(fetch));
        }
    }

    fn stream_ended(&mut self, call: CallId, count: u32, result: Result<(), DependencyError>) {
        let Some((id, mut fetch)) = self.fetch_of(call) else {
            self.stats.ignored_inputs += 1;
            return;
        };
        if result.is_err() {
            self.calls.remove(&call);
            self.stats
                .count_call(Dependency::Availability, CallResult::Error);
            return self.fail_run(id, Dependency::Availability);
        }
        fetch.ended_at = Some(count);
        if fetch.is_complete() {
            self.stream_complete(id, call, fetch);
        } else {
            self.set_phase(id, Phase::Fetching(fetch));
        }
    }

    fn stream_complete(&mut self, id: AttemptId, call: CallId, fetch: Fetch) {
        self.calls.remove(&call);
        self.stats
            .count_call(Dependency::Availability, CallResult::Ok);
        if fetch.batch.candidates.is_empty() {
            self.release_run_slot(id);
            self.conclude(id, Remembered::NoAvailability);
        } else {
            self.check_rules(id, fetch.batch);
        }
    }

    fn check_rules(&mut self, id: AttemptId, mut batch: Batch) {
        let mut reader = self.book.reader();
        for c in &mut batch.candidates {
            c.tours_that_day = reader.tours_on(&c.slot.agent, c.slot.start.utc_day());
        }
        let deadline = self.attempt_deadline(id);
        let call = CallId(self.next_call);
        let a = self.attempt_mut(id);
        let Some(req) = a.request.as_ref() else {
            return;
        };
        let out = Output::CheckRules {
            call,
            request: RuleRequest {
                zipcode: req.zipcode.clone(),
                language: req.language.clone(),
                duration_min: req.duration_min,
            },
            candidates: batch.candidates.clone(),
            deadline,
        };
        a.phase = Phase::Checking { call, batch };
        self.new_call(id);
        self.outputs.push_back(out);
    }

    fn verdicts(&mut self, call: CallId, result: Result<Vec<bool>, DependencyError>) {
        let Some(id) = self.calls.get(&call).copied() else {
            self.stats.ignored_inputs += 1;
            return;
        };
        if !matches!(self.attempt(id).phase, Phase::Checking { call: c, .. } if c == call) {
            // A verdict for a stream: nonsense from the outside.
            self.stats.ignored_inputs += 1;
            return;
        }
        let Phase::Checking { batch, .. } = self.set_phase(id, Phase::Queued) else {
            return;
        };
        self.calls.remove(&call);
        let allowed = match result {
            Ok(v) if v.len() == batch.candidates.len() => v,
            _ => {
                self.stats.count_call(Dependency::Rules, CallResult::Error);
                return self.fail_run(id, Dependency::Rules);
            }
        };
        self.stats.count_call(Dependency::Rules, CallResult::Ok);
        let choices = || {
            batch
                .candidates
                .iter()
                .zip(&allowed)
                .filter_map(|(c, &ok)| ok.then_some(c))
        };
        let preference = |x: &&Candidate, y: &&Candidate| {
            (x.slot.start, x.tours_that_day, &x.slot.agent).cmp(&(
                y.slot.start,
                y.tours_that_day,
                &y.slot.agent,
            ))
        };
        // The first choice is nearly always bookable: find it alone, and
        // gather and sort the others only if it is not.
        let best = choices().min_by(preference);
        let others = || {
            let mut others: Vec<&Candidate> = choices()
                .filter(|c| best.is_some_and(|b| !std::ptr::eq(*c, b)))
                .collect();
            others.sort_by(preference);
            others
        };
        let duration = self
            .attempt(id)
            .request
            .as_ref()
            .map_or(0, |r| r.duration_ms());
        let in_order = best
            .into_iter()
            .chain(std::iter::once_with(others).flatten());
        let mut stale = false;
        for c in in_order {
            let interval = Window::new(c.slot.start, c.slot.start.plus_ms(duration));
            if self.book.tours_on(&c.slot.agent, c.slot.start.utc_day()) != c.tours_that_day {
                self.stats.stale_verdicts += 1;
                stale = true;
            } else if self.book.is_free(&c.slot.agent, interval) {
                let slot = c.slot.clone();
                return self.book_slot(id, slot, interval);
            }
        }
        if stale {
            // Facts changed under the verdicts: ask again about the same slots.
            self.fetch(id, batch.started_after);
        } else if batch.more {
            self.fetch(id, batch.consumed);
        } else {
            self.release_run_slot(id);
            self.conclude(id, Remembered::NoAvailability);
        }
    }

    fn book_slot(&mut self, id: AttemptId, slot: Slot, interval: Window) {
        let assignment_id = AssignmentId::from_seq(&self.config.secret, self.next_assignment);
        self.next_assignment += 1;
        let a = self.attempt(id);
        let Some(req) = a.request.as_ref() else {
            return;
        };
        let assignment = Assignment {
            id: assignment_id,
            status: AssignmentStatus::Confirmed,
            agent_id: slot.agent.clone(),
            customer_id: req.customer_id.clone(),
            property_id: req.property_id.clone(),
            zipcode: req.zipcode.clone(),
            start: interval.start,
            end: interval.end,
        };
        let record = Record::Booked {
            assignment,
            key: a.key,
        };
        self.book.insert(&slot.agent, interval, assignment_id);
        let seq = self.persist(record.clone(), Write::Outcome(id));
        self.set_phase(id, Phase::Writing { seq, record });
        // The run slot is free as soon as the booking is decided.
        self.release_run_slot(id);
    }

    /// Ends an attempt with a remembered answer: journaled first when a key
    /// remembers it, sent at once otherwise.
    fn conclude(&mut self, id: AttemptId, answer: Remembered) {
        match self.attempt(id).key {
            Some(key) => {
                let record = Record::Answered { key, answer };
                let seq = self.persist(record.clone(), Write::Outcome(id));
                self.set_phase(id, Phase::Writing { seq, record });
            }
            None => {
                let response = match answer {
                    Remembered::NoAvailability => Response::NoAvailability,
                    Remembered::Invalid(errors) => Response::Invalid(errors),
                };
                self.finish_attempt(id, response);
            }
        }
    }

    /// A dependency failed during the run: 503, nothing remembered.
    fn fail_run(&mut self, id: AttemptId, dependency: Dependency) {
        self.release_run_slot(id);
        let response = Response::DependencyUnavailable {
            dependency,
            retry_after_s: self.config.retry_after_s,
        };
        self.fail_attempt(id, response);
    }

    /// Ends an attempt with an answer that is not remembered: the key is
    /// released, and tickets waiting for a rerun start one.
    fn fail_attempt(&mut self, id: AttemptId, response: Response) {
        if let Some(key) = self.attempt(id).key {
            self.keys.release(&key.key);
        }
        self.finish_attempt(id, response);
    }

    /// Answers every ticket of `id` and forgets the attempt.
    fn finish_attempt(&mut self, id: AttemptId, response: Response) {
        let Some(a) = self.attempts.remove(&id) else {
            return;
        };
        if let Phase::Waiting { until } = a.phase {
            self.timers.clear(until, TimerReason::EnqueueTimeout(id));
        }
        for &t in &a.tickets {
            self.answer(t, response.clone(), t != a.original);
        }
        if let Some(key) = a.key {
            self.keys.detach(&key.key);
        }
        self.rerun(a);
    }

    /// Starts a new attempt for the tickets that waited on `a`'s undo (or
    /// replays the key's answer to them if the undo did not happen).
    fn rerun(&mut self, a: Box<Attempt>) {
        let waiting: Vec<(Ticket, Timestamp)> = a
            .rerun
            .iter()
            .filter_map(|&t| Some((t, self.deadline_of(t)?)))
            .collect();
        if waiting.is_empty() {
            return;
        }
        for &(t, _) in &waiting {
            self.clear_ticket(t);
        }
        let key = a.key.map(|k| (k.key, k.fingerprint));
        if let Some(answer) = key.and_then(|(k, _)| self.keys.get(&k)?.answer().cloned()) {
            for &(t, _) in &waiting {
                self.replay(t, &answer);
            }
            return;
        }
        self.admit(waiting, a.raw, key);
    }

    // ----- the journal -----------------------------------------------------

    fn persist(&mut self, record: Record, write: Write) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.writes.insert(seq, write);
        self.outputs.push_back(Output::Persist { seq, record });
        seq
    }

    fn persisted(&mut self, upto: u64) {
        if upto >= self.next_seq {
            self.stats.ignored_inputs += 1;
            return;
        }
        self.settle_writes(upto, true);
    }

    fn persist_failed(&mut self, from: u64) {
        if from >= self.next_seq || from == 0 {
            self.stats.ignored_inputs += 1;
            return;
        }
        // Writes emitted while the durable prefix settles (undos, reruns)
        // go to the journal's fresh file: they have not failed.
        let last = self.next_seq - 1;
        self.settle_writes(from - 1, true);
        self.settle_writes(last, false);
    }

    /// Settles every pending write up to `upto`, in order.
    fn settle_writes(&mut self, upto: u64, ok: bool) {
        // Writes emitted while settling (undos, reruns) are not covered.
        let upto = upto.min(self.next_seq - 1);
        if ok {
            self.durable_seq = self.durable_seq.max(upto);
        }
        while let Some((&seq, _)) = self.writes.first_key_value() {
            if seq > upto {
                break;
            }
            let Some((seq, write)) = self.writes.pop_first() else {
                break;
            };
            let result = if ok {
                CallResult::Ok
            } else {
                CallResult::Error
            };
            self.stats.count_call(Dependency::Journal, result);
            match write {
                Write::Outcome(id) => self.outcome_settled(id, seq, ok),
                Write::Undo(id) => self.undo_settled(id, ok),
                Write::Cancel(aid) => self.cancel_settled(aid, ok),
            }
        }
    }

    fn outcome_settled(&mut self, id: AttemptId, seq: u64, ok: bool) {
        let Some(Phase::Writing { record, .. }) = self.attempts.get(&id).map(|a| a.phase.clone())
        else {
            return;
        };
        if !ok {
            if let Record::Booked { assignment, .. } = &record {
                self.book
                    .remove(&assignment.agent_id, assignment.interval(), assignment.id);
            }
            let response = Response::DependencyUnavailable {
                dependency: Dependency::Journal,
                retry_after_s: self.config.retry_after_s,
            };
            return self.fail_attempt(id, response);
        }
        self.apply_settled(&record);
        if self.attempt(id).tickets.is_empty() {
            return self.undo(id, &record);
        }
        let response = match record {
            Record::Booked { assignment, .. } => Response::Assigned(assignment),
            Record::Answered {
                answer: Remembered::NoAvailability,
                ..
            } => Response::NoAvailability,
            Record::Answered {
                answer: Remembered::Invalid(errors),
                ..
            } => Response::Invalid(errors),
            _ => unreachable!("seq {seq}: an attempt writes only its outcome"),
        };
        self.finish_attempt(id, response);
    }

    /// Makes a settled outcome part of the durable state.
    fn apply_settled(&mut self, record: &Record) {
        match record {
            Record::Booked { assignment, key } => {
                self.store(assignment.clone(), *key);
                if let Some(k) = key {
                    self.keys
                        .settle(&k.key, StoredAnswer::Assigned(assignment.id));
                }
            }
            Record::Answered { key, answer } => {
                self.keys
                    .settle(&key.key, StoredAnswer::from_remembered(answer));
            }
            _ => {}
        }
    }

    /// Every ticket left while the outcome was being written: undo it.
    fn undo(&mut self, id: AttemptId, record: &Record) {
        let (assignment, key) = match record {
            Record::Booked { assignment, key } => (Some(assignment.id), key.map(|k| k.key)),
            Record::Answered { key, .. } => (None, Some(key.key)),
            _ => (None, None),
        };
        if let Some(k) = &key {
            // Reruns must wait for the undo, not replay what is being undone.
            self.keys.reassign(k, id);
        }
        self.stats.undos += 1;
        let seq = self.persist(
            Record::Undone {
                id: assignment,
                key,
            },
            Write::Undo(id),
        );
        self.set_phase(
            id,
            Phase::Undoing {
                seq,
                booked: assignment,
            },
        );
    }

    fn undo_settled(&mut self, id: AttemptId, ok: bool) {
        let Some(a) = self.attempts.remove(&id) else {
            return;
        };
        let Phase::Undoing { booked, .. } = a.phase else {
            return;
        };
        if ok {
            self.apply_undone(a.key.map(|k| k.key), booked);
        } else if let Some(key) = a.key {
            // The undo never happened: the booking and its key stay.
            self.keys.detach(&key.key);
        }
        self.rerun(a);
    }

    fn apply_undone(&mut self, key: Option<KeyHash>, id: Option<AssignmentId>) {
        if let Some(id) = id {
            self.unstore(id);
        }
        if let Some(k) = key {
            self.keys.release(&k);
        }
    }

    // ----- cancelling assignments -----------------------------------------

    fn cancel_assignment(&mut self, ticket: Ticket, id: AssignmentId) {
        if self.tickets.contains_key(&ticket) {
            self.stats.ignored_inputs += 1;
            return;
        }
        if let Some(pending) = self.cancels.get_mut(&id) {
            pending.tickets.push(ticket);
            self.tickets.insert(ticket, Waiter::Cancel { id });
            return;
        }
        let Some(stored) = self.assignments.get(&id) else {
            return self.answer_new(ticket, Response::NotFound, false);
        };
        if stored.assignment.status == AssignmentStatus::Cancelled {
            let response = Response::Cancelled(stored.assignment.clone());
            return self.answer_new(ticket, response, false);
        }
        if self.cancels.len() >= self.config.max_pending_cancels as usize {
            return self.answer_new(ticket, self.overloaded(), false);
        }
        self.persist(Record::Cancelled { id }, Write::Cancel(id));
        self.cancels.insert(
            id,
            PendingCancel {
                tickets: vec![ticket],
            },
        );
        self.tickets.insert(ticket, Waiter::Cancel { id });
    }

    fn cancel_settled(&mut self, id: AssignmentId, ok: bool) {
        let Some(pending) = self.cancels.remove(&id) else {
            return;
        };
        let response = if ok {
            self.apply_cancelled(id);
            match self.assignments.get(&id) {
                Some(s) => Response::Cancelled(s.assignment.clone()),
                None => Response::NotFound,
            }
        } else {
            Response::DependencyUnavailable {
                dependency: Dependency::Journal,
                retry_after_s: self.config.retry_after_s,
            }
        };
        for t in pending.tickets {
            if self.tickets.contains_key(&t) {
                self.answer(t, response.clone(), false);
            }
        }
    }

    // ----- leaving -----------------------------------------------------------

    fn client_gone(&mut self, ticket: Ticket) {
        match self.tickets.get(&ticket).copied() {
            None => self.stats.ignored_inputs += 1,
            Some(Waiter::Cancel { id }) => {
                self.clear_ticket(ticket);
                if let Some(p) = self.cancels.get_mut(&id) {
                    p.tickets.retain(|&t| t != ticket);
                }
            }
            Some(Waiter::Dispatch { attempt, .. }) => {
                self.clear_ticket(ticket);
                self.leave(ticket, attempt);
            }
        }
    }

    /// `ticket` no longer waits on `attempt`; an attempt nobody waits for
    /// is abandoned.
    fn leave(&mut self, ticket: Ticket, attempt: AttemptId) {
        let Some(a) = self.attempts.get_mut(&attempt) else {
            return;
        };
        if let Some(i) = a.rerun.iter().position(|&t| t == ticket) {
            a.rerun.remove(i);
            return;
        }
        a.tickets.retain(|&t| t != ticket);
        if a.tickets.is_empty() {
            self.abandon(attempt);
        }
    }

    fn abandon(&mut self, id: AttemptId) {
        let phase = self.attempt(id).phase.clone();
        match phase {
            Phase::Waiting { until } => {
                self.timers.clear(until, TimerReason::EnqueueTimeout(id));
                let shard = self.attempt(id).shard as usize;
                self.shards[shard].withdraw(id);
            }
            Phase::Queued => {
                let shard = self.attempt(id).shard as usize;
                if let Some(promoted) = self.shards[shard].withdraw(id) {
                    self.promoted(promoted);
                }
            }
            Phase::Fetching(_) | Phase::Checking { .. } => {
                if let Some(call) = phase.call() {
                    self.cancel_call(call, CancelReason::Abandoned);
                }
                self.release_run_slot(id);
            }
            // The write settles first; then the outcome is undone.
            Phase::Writing { .. } | Phase::Undoing { .. } => return,
        }
        let a = self.attempts.remove(&id);
        if let Some(key) = a.and_then(|a| a.key) {
            self.keys.release(&key.key);
        }
    }

    fn drain(&mut self, deadline: Timestamp) {
        if self.draining {
            return;
        }
        self.draining = true;
        // A deadline already due (a drain timeout of 0) refuses what runs
        // now, as a submit whose deadline passed is answered at once.
        if deadline <= self.now {
            self.drain_deadline();
        } else {
            self.timers.set(deadline, TimerReason::Drain);
        }
    }

    /// The drain deadline passed: whatever still runs is refused.
    fn drain_deadline(&mut self) {
        let response = self.overloaded();
        let waiting: Vec<Ticket> = self
            .tickets
            .iter()
            .filter(|(_, w)| matches!(w, Waiter::Dispatch { .. }))
            .map(|(&t, _)| t)
            .collect();
        for t in waiting {
            if let Some(Waiter::Dispatch { attempt, .. }) = self.tickets.get(&t).copied() {
                self.answer(t, response.clone(), false);
                self.leave(t, attempt);
            }
        }
    }

    // ----- time --------------------------------------------------------------

    fn fire_due_timers(&mut self) {
        while let Some(reason) = self.timers.pop_due(self.now) {
            match reason {
                TimerReason::Deadline(ticket) => {
                    if let Some(Waiter::Dispatch { attempt, .. }) =
                        self.tickets.get(&ticket).copied()
                    {
                        self.answer(ticket, Response::DeadlineExceeded, false);
                        self.leave(ticket, attempt);
                    }
                }
                TimerReason::EnqueueTimeout(id) => self.enqueue_timed_out(id),
                TimerReason::Drain => self.drain_deadline(),
            }
        }
    }

    fn enqueue_timed_out(&mut self, id: AttemptId) {
        let Some(a) = self.attempts.get(&id) else {
            return;
        };
        if !matches!(a.phase, Phase::Waiting { .. }) {
            return;
        }
        let shard = a.shard as usize;
        self.shards[shard].withdraw(id);
        self.stats.enqueue_timeouts += 1;
        let response = self.overloaded();
        self.fail_attempt(id, response);
    }

    fn expire(&mut self, now: Timestamp) {
        self.keys.expire(now);
        while let Some(&(at, id)) = self.retention.first() {
            if at > now {
                break;
            }
            self.unstore(id);
        }
    }

    // ----- the shard's run slots -------------------------------------------

    /// The attempt's run ended (it answered, failed or booked): free its
    /// run slot and start what waits.
    fn release_run_slot(&mut self, id: AttemptId) {
        let shard = self.attempt(id).shard as usize;
        let (next, promoted) = self.shards[shard].finish_run();
        if let Some(p) = promoted {
            self.promoted(p);
        }
        if let Some(next) = next {
            self.set_phase(next, Phase::Queued);
            self.start_run(next);
        }
    }

    /// A waiter moved into the queue.
    fn promoted(&mut self, id: AttemptId) {
        if let Some(Phase::Waiting { until }) = self.attempts.get(&id).map(|a| a.phase.clone()) {
            self.timers.clear(until, TimerReason::EnqueueTimeout(id));
            self.set_phase(id, Phase::Queued);
        }
    }

    // ----- durable state ---------------------------------------------------

    /// Builds the tables from restored durable state, dropping what has
    /// expired by `self.now`.
    fn install(&mut self, durable: Durable) -> Result<(), RestoreError> {
        let now = self.now;
        let retention_ms = self.config.retention_ms();
        self.next_assignment = durable.next_assignment;
        self.assignments = durable.assignments;
        for s in self.assignments.values_mut() {
            s.keep_until = s.assignment.end.plus_ms(retention_ms);
        }
        self.keys.restore_all(durable.keys, now);
        // A live key keeps its assignment readable for replays.
        for (entry, answer) in self.keys.durable() {
            if let StoredAnswer::Assigned(id) = answer {
                if let Some(s) = self.assignments.get_mut(id) {
                    let expiry = entry.created_at.plus_ms(self.config.idempotency_ttl_ms);
                    s.keep_until = s.keep_until.max(expiry);
                }
            }
        }
        self.assignments.retain(|_, s| s.keep_until > now);
        // Restoring reserved room for every record, keys and cancels too.
        self.assignments.shrink_to_fit();
        let mut retention = Vec::with_capacity(self.assignments.len());
        let mut bookings = Vec::with_capacity(self.assignments.len());
        for (&id, s) in self.assignments.iter() {
            retention.push((s.keep_until, id));
            let a = &s.assignment;
            // Only a journal written by hand (its checksums made to match)
            // holds such a thing; the core books only positive durations.
            if a.end <= a.start {
                return Err(RestoreError::EmptyInterval { id });
            }
            if a.status == AssignmentStatus::Confirmed {
                bookings.push((a.agent_id.clone(), a.interval(), id));
            }
        }
        self.active = bookings.len() as u64;
        retention.sort_unstable();
        self.retention = retention.into_iter().collect();
        self.book = Book::from_bookings(self.config.travel_buffer_ms(), bookings).map_err(
            |(agent, id)| RestoreError::DoubleBooking {
                agent: agent.to_string(),
                id,
            },
        )?;
        Ok(())
    }

    /// Keeps a durable assignment. Its booking is in the book already.
    fn store(&mut self, assignment: Assignment, key: Option<KeyEntry>) {
        let id = assignment.id;
        if assignment.status == AssignmentStatus::Confirmed {
            self.active += 1;
        }
        let key_expiry = key.map_or(Timestamp::ZERO, |k| {
            k.created_at.plus_ms(self.config.idempotency_ttl_ms)
        });
        let keep_until = assignment
            .end
            .plus_ms(self.config.retention_ms())
            .max(key_expiry);
        if let Some(old) = self.assignments.insert(
            id,
            Box::new(Stored {
                assignment,
                keep_until,
            }),
        ) {
            self.retention.remove(&(old.keep_until, id));
        }
        self.retention.insert((keep_until, id));
    }

    /// Forgets a stored assignment and frees its time.
    fn unstore(&mut self, id: AssignmentId) {
        if let Some(s) = self.assignments.remove(&id) {
            self.retention.remove(&(s.keep_until, id));
            if s.assignment.status == AssignmentStatus::Confirmed {
                self.active -= 1;
                self.book
                    .remove(&s.assignment.agent_id, s.assignment.interval(), id);
            }
        }
    }

    fn apply_cancelled(&mut self, id: AssignmentId) {
        if let Some(s) = self.assignments.get_mut(&id) {
            if s.assignment.status == AssignmentStatus::Confirmed {
                s.assignment.status = AssignmentStatus::Cancelled;
                self.active -= 1;
                let a = &s.assignment;
                self.book.remove(&a.agent_id, a.interval(), id);
            }
        }
    }

    // ----- small helpers -----------------------------------------------------

    fn overloaded(&self) -> Response {
        Response::Overloaded {
            retry_after_s: self.config.retry_after_s,
        }
    }

    fn new_call(&mut self, id: AttemptId) -> CallId {
        let call = CallId(self.next_call);
        self.next_call += 1;
        self.calls.insert(call, id);
        call
    }

    fn cancel_call(&mut self, call: CallId, reason: CancelReason) {
        let Some(id) = self.calls.remove(&call) else {
            return;
        };
        let dependency = match self.attempts.get(&id).map(|a| &a.phase) {
            Some(Phase::Checking { .. }) => Dependency::Rules,
            _ => Dependency::Availability,
        };
        let result = match reason {
            CancelReason::BatchFull => CallResult::Ok,
            CancelReason::Abandoned => CallResult::Cancelled,
        };
        self.stats.count_call(dependency, result);
        self.outputs.push_back(Output::CancelCall { call, reason });
    }

    /// The attempt and fetch state behind a streaming call.
    fn fetch_of(&mut self, call: CallId) -> Option<(AttemptId, Fetch)> {
        let id = *self.calls.get(&call)?;
        match self.attempts.get(&id).map(|a| &a.phase) {
            Some(Phase::Fetching(f)) if f.call == call => {}
            _ => return None,
        }
        match self.set_phase(id, Phase::Queued) {
            Phase::Fetching(f) => Some((id, f)),
            _ => None,
        }
    }

    fn set_phase(&mut self, id: AttemptId, phase: Phase) -> Phase {
        std::mem::replace(&mut self.attempt_mut(id).phase, phase)
    }

    fn attempt(&self, id: AttemptId) -> &Attempt {
        &self.attempts[&id]
    }

    fn attempt_mut(&mut self, id: AttemptId) -> &mut Attempt {
        self.attempts.get_mut(&id).expect("attempt exists")
    }

    /// The latest deadline among the attempt's tickets: it runs until then.
    fn attempt_deadline(&self, id: AttemptId) -> Timestamp {
        self.attempt(id)
            .tickets
            .iter()
            .filter_map(|t| self.deadline_of(*t))
            .max()
            .unwrap_or(self.now)
    }

    fn deadline_of(&self, ticket: Ticket) -> Option<Timestamp> {
        match self.tickets.get(&ticket)? {
            Waiter::Dispatch { deadline, .. } => Some(*deadline),
            Waiter::Cancel { .. } => None,
        }
    }

    fn clear_ticket(&mut self, ticket: Ticket) {
        if let Some(Waiter::Dispatch { deadline, .. }) = self.tickets.remove(&ticket) {
            self.timers.clear(deadline, TimerReason::Deadline(ticket));
        }
    }

    /// Answers a ticket that was never registered.
    fn answer_new(&mut self, ticket: Ticket, response: Response, replayed: bool) {
        self.tickets.remove(&ticket);
        self.emit_answer(ticket, response, replayed);
    }

    fn answer_all_new(&mut self, tickets: &[Ticket], response: Response) {
        for &t in tickets {
            self.answer_new(t, response.clone(), false);
        }
    }

    /// Answers a registered ticket; it is forgotten.
    fn answer(&mut self, ticket: Ticket, response: Response, replayed: bool) {
        debug_assert!(
            !matches!(response, Response::Assigned(_))
                || matches!(self.tickets.get(&ticket), Some(Waiter::Dispatch { deadline, .. }) if self.now < *deadline),
            "a 201 after its deadline"
        );
        self.clear_ticket(ticket);
        self.emit_answer(ticket, response, replayed);
    }

    fn emit_answer(&mut self, ticket: Ticket, response: Response, replayed: bool) {
        self.stats.count_answer(response.outcome(), replayed);
        self.outputs.push_back(Output::Respond {
            ticket,
            response,
            replayed,
        });
    }

    /// Cheap invariants, checked after every input in debug builds.
    fn check_bounds(&self) {
        debug_assert!(self.attempts.len() <= self.config.max_attempts as usize + 1);
        debug_assert!(self.keys.len() <= self.config.max_idempotency_keys as usize);
        debug_assert!(self.cancels.len() <= self.config.max_pending_cancels as usize);
        debug_assert!(self.calls.len() <= self.attempts.len());
        // A deadline per waiting ticket, an enqueue timeout per waiting
        // attempt, the drain's: a timer left behind is a leak.
        debug_assert!(self.timers.len() <= self.tickets.len() + self.attempts.len() + 1);
    }
}
