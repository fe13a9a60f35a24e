//! The `core_inputs` target: raw [`Input`] sequences with arbitrary times,
//! straight into the `Dispatcher`, with no simulated world to keep them
//! sensible: late, repeated, unknown and nonsensical deliveries, time going
//! backwards and leaping ahead.
//!
//! The inputs are drawn through [`Plan`], an `arbitrary` mirror that names
//! tickets, calls, sequence numbers and assignments mostly among those the
//! core handed out (so the fuzzer reaches deep states), sometimes not.
//!
//! Properties, after every input: no panic; every answer goes to a ticket
//! that was handed in and not answered yet, and is of its kind (a dispatch
//! answer for a submit, a cancel answer for a DELETE); no 201 at or after
//! the ticket's deadline; no call id handed out twice, no cancel of a call
//! never started; journal sequence numbers increase; every queue, waiting
//! line, run slot and table within its bound; no agent double-booked.
//! At the end, the core's snapshot restores to the same durable state.

use arbitrary::{Arbitrary, Unstructured};
use std::collections::{BTreeMap, BTreeSet};
use tour_dispatcher::core::time::{MS_PER_MINUTE, MS_PER_SECOND};
use tour_dispatcher::core::{
    AssignmentId, CallId, Config, DependencyError, Dispatcher, Input, Output, RawRequest,
    RawWindow, Record, Response, Secret, Slot, Ticket, Timestamp, Window,
};

/// Where time starts: 2027-03-01T00:00:00Z.
const T0: u64 = 1_803_945_600_000;
const ZIPCODES: [&str; 3] = ["94107", "10001", "60601"];
const AGENTS: [&str; 4] = ["ag-a", "ag-b", "ag-c", "ag-d"];
const DURATIONS: [i64; 6] = [15, 30, 45, 60, 90, 240];
const MAX_STEPS: usize = 200;
const SLOT_MS: u64 = 15 * MS_PER_MINUTE;

/// A small configuration, so that every bound is within reach.
#[derive(Arbitrary, Debug)]
struct Knobs {
    shards: u8,
    queue_capacity: u8,
    max_waiters: u8,
    shard_concurrency: u8,
    enqueue_timeout_ms: u16,
    idempotency_ttl_s: u16,
    max_idempotency_keys: u8,
    max_joiners: u8,
    max_candidates: u8,
    travel_buffer_min: u8,
    max_attempts: u8,
    max_pending_cancels: u8,
}

impl Knobs {
    fn config(&self) -> Config {
        let between = |v: u8, lo: u32, hi: u32| lo + u32::from(v) % (hi - lo + 1);
        Config {
            shards: between(self.shards, 1, 4),
            vnodes: 8,
            queue_capacity: between(self.queue_capacity, 1, 4),
            max_waiters: between(self.max_waiters, 0, 3),
            shard_concurrency: between(self.shard_concurrency, 1, 2),
            enqueue_timeout_ms: u64::from(self.enqueue_timeout_ms % 2_000),
            idempotency_ttl_ms: (1 + u64::from(self.idempotency_ttl_s)) * MS_PER_SECOND,
            max_idempotency_keys: between(self.max_idempotency_keys, 1, 8),
            max_joiners: between(self.max_joiners, 0, 3),
            max_candidates: between(self.max_candidates, 1, 8),
            horizon_days: 30,
            retention_days: 1,
            travel_buffer_min: between(self.travel_buffer_min, 0, 30),
            max_attempts: between(self.max_attempts, 1, 16),
            max_pending_cancels: between(self.max_pending_cancels, 1, 4),
            retry_after_s: 1,
            secret: Secret::new(7, 11),
        }
    }
}

/// How the clock moves before an input.
#[derive(Arbitrary, Debug)]
enum Advance {
    Stay,
    Millis(u16),
    Minutes(u8),
    /// Backwards: the core must hold to the latest time it saw.
    Back(u16),
    Days(u8),
}

/// A dispatch body: mostly plausible, sometimes anything.
#[derive(Arbitrary, Debug)]
enum Body {
    Plausible {
        customer: u8,
        zipcode: u8,
        /// Window start, in slots of 15 minutes from now.
        start: u16,
        /// Window length, in slots.
        len: u8,
        duration: u8,
        language: Option<bool>,
        property: bool,
    },
    Raw {
        customer_id: Option<String>,
        property_id: Option<String>,
        zipcode: Option<String>,
        start: Option<String>,
        end: Option<String>,
        duration_minutes: Option<i64>,
        language: Option<String>,
    },
}

/// Picks among the things the core handed out, or anything.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Pick {
    Known(u8),
    Any(u64),
}

#[derive(Arbitrary, Debug)]
enum Verdicts {
    /// One verdict per candidate sent, from the bits.
    Fitting(u64),
    /// As many as the fuzzer says.
    Any(Vec<bool>),
    Failed,
}

#[derive(Arbitrary, Debug)]
enum Step {
    Submit {
        body: Body,
        key: Option<u8>,
        timeout_ms: u16,
    },
    ClientGone(Pick),
    Slots {
        call: Pick,
        first_index: u8,
        /// (agent, start in slots after the window's start)
        slots: Vec<(u8, u8)>,
    },
    StreamEnded {
        call: Pick,
        count: u8,
        failed: bool,
    },
    Verdicts {
        call: Pick,
        verdicts: Verdicts,
    },
    Persisted(Pick),
    PersistFailed(Pick),
    Cancel(Pick),
    Drain(u16),
    Tick,
}

/// What the harness knows about a ticket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TicketKind {
    Submit { deadline: Timestamp },
    Cancel,
}

/// A call the core started.
#[derive(Clone, Debug)]
struct Started {
    window: Option<Window>,
    candidates: usize,
}

/// The run: the core, what it handed out, and what is still owed.
struct Harness {
    core: Dispatcher,
    config: Config,
    now: Timestamp,
    next_ticket: u64,
    waiting: BTreeMap<Ticket, TicketKind>,
    answered: BTreeSet<Ticket>,
    calls: BTreeMap<CallId, Started>,
    call_order: Vec<CallId>,
    seqs: Vec<u64>,
    ids: Vec<AssignmentId>,
}

pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(knobs) = Knobs::arbitrary(&mut u) else {
        return;
    };
    let config = knobs.config();
    let core = Dispatcher::new(config.clone()).expect("the knobs give a valid configuration");
    let mut h = Harness {
        core,
        config,
        now: Timestamp(T0),
        next_ticket: 1,
        waiting: BTreeMap::new(),
        answered: BTreeSet::new(),
        calls: BTreeMap::new(),
        call_order: Vec::new(),
        seqs: Vec::new(),
        ids: Vec::new(),
    };
    for _ in 0..MAX_STEPS {
        let (Ok(advance), Ok(step)) = (Advance::arbitrary(&mut u), Step::arbitrary(&mut u)) else {
            break;
        };
        let at = h.advance(advance);
        let input = h.input(step, at);
        h.feed(at, input);
    }
    h.check_restore();
}

impl Harness {
    /// The time the input is handed in at; the core's time is the latest.
    fn advance(&mut self, advance: Advance) -> Timestamp {
        let at = match advance {
            Advance::Stay => self.now,
            Advance::Millis(ms) => self.now.plus_ms(u64::from(ms)),
            Advance::Minutes(m) => self.now.plus_ms(u64::from(m) * MS_PER_MINUTE),
            Advance::Back(ms) => self.now.minus_ms(u64::from(ms)),
            Advance::Days(d) => self.now.plus_ms(u64::from(d) * 24 * 60 * MS_PER_MINUTE),
        };
        self.now = self.now.max(at);
        at
    }

    fn ticket(&mut self, kind: TicketKind) -> Ticket {
        let t = Ticket(self.next_ticket);
        self.next_ticket += 1;
        self.waiting.insert(t, kind);
        t
    }

    fn input(&mut self, step: Step, at: Timestamp) -> Input {
        match step {
            Step::Submit {
                body,
                key,
                timeout_ms,
            } => {
                let deadline = self.now.plus_ms(1 + u64::from(timeout_ms));
                let body = self.body(body);
                Input::Submit {
                    ticket: self.ticket(TicketKind::Submit { deadline }),
                    body,
                    idempotency_key: key.map(|k| format!("key-{}", k % 8)),
                    deadline,
                }
            }
            Step::ClientGone(p) => Input::ClientGone {
                ticket: Ticket(pick(p, self.next_ticket, |i| i as u64 + 1)),
            },
            Step::Slots {
                call,
                first_index,
                slots,
            } => {
                let call = self.call(call);
                let base = self
                    .calls
                    .get(&call)
                    .and_then(|c| c.window)
                    .map_or(at, |w| w.start);
                let slots = slots
                    .into_iter()
                    .map(|(agent, k)| Slot {
                        start: base.plus_ms(u64::from(k) * SLOT_MS),
                        agent: AGENTS[usize::from(agent) % AGENTS.len()].into(),
                    })
                    .collect();
                Input::SlotsStreamed {
                    call,
                    first_index: first_index.into(),
                    slots,
                }
            }
            Step::StreamEnded {
                call,
                count,
                failed,
            } => Input::StreamEnded {
                call: self.call(call),
                count: count.into(),
                result: if failed {
                    Err(DependencyError::Unavailable)
                } else {
                    Ok(())
                },
            },
            Step::Verdicts { call, verdicts } => {
                let call = self.call(call);
                let sent = self.calls.get(&call).map_or(0, |c| c.candidates);
                let result = match verdicts {
                    Verdicts::Fitting(bits) => {
                        Ok((0..sent).map(|i| bits >> (i % 64) & 1 == 1).collect())
                    }
                    Verdicts::Any(v) => Ok(v),
                    Verdicts::Failed => Err(DependencyError::Timeout),
                };
                Input::RuleVerdicts { call, result }
            }
            Step::Persisted(p) => Input::Persisted { upto: self.seq(p) },
            Step::PersistFailed(p) => Input::PersistFailed { from: self.seq(p) },
            Step::Cancel(p) => {
                let id = match p {
                    Pick::Known(i) if !self.ids.is_empty() => {
                        self.ids[usize::from(i) % self.ids.len()]
                    }
                    Pick::Known(i) => AssignmentId::from_seq(&self.config.secret, i.into()),
                    Pick::Any(v) => AssignmentId(v),
                };
                Input::CancelAssignment {
                    ticket: self.ticket(TicketKind::Cancel),
                    id,
                }
            }
            Step::Drain(ms) => Input::Drain {
                deadline: self.now.plus_ms(ms.into()),
            },
            Step::Tick => Input::Tick,
        }
    }

    fn body(&self, body: Body) -> RawRequest {
        match body {
            Body::Plausible {
                customer,
                zipcode,
                start,
                len,
                duration,
                language,
                property,
            } => {
                let start =
                    Timestamp((self.now.as_millis() / SLOT_MS + u64::from(start)) * SLOT_MS);
                let end = start.plus_ms((1 + u64::from(len)) * SLOT_MS);
                RawRequest {
                    customer_id: Some(format!("cust-{}", customer % 4)),
                    property_id: property.then(|| "prop-1".into()),
                    zipcode: Some(ZIPCODES[usize::from(zipcode) % ZIPCODES.len()].into()),
                    window: Some(RawWindow {
                        start: Some(start.to_rfc3339()),
                        end: Some(end.to_rfc3339()),
                    }),
                    duration_minutes: Some(DURATIONS[usize::from(duration) % DURATIONS.len()]),
                    language: language.map(|es| if es { "es" } else { "en" }.into()),
                }
            }
            Body::Raw {
                customer_id,
                property_id,
                zipcode,
                start,
                end,
                duration_minutes,
                language,
            } => RawRequest {
                customer_id,
                property_id,
                zipcode,
                window: (start.is_some() || end.is_some()).then_some(RawWindow { start, end }),
                duration_minutes,
                language,
            },
        }
    }

    fn call(&self, p: Pick) -> CallId {
        match p {
            Pick::Known(i) if !self.call_order.is_empty() => {
                // The most recent calls are the live ones: count from the end.
                let back = usize::from(i) % self.call_order.len();
                self.call_order[self.call_order.len() - 1 - back]
            }
            Pick::Known(i) => CallId(i.into()),
            Pick::Any(v) => CallId(v),
        }
    }

    fn seq(&self, p: Pick) -> u64 {
        pick(p, self.seqs.len() as u64, |i| self.seqs[i])
    }

    fn feed(&mut self, at: Timestamp, input: Input) {
        self.core.handle(at, input);
        while let Some(out) = self.core.poll_output() {
            self.judge(out);
        }
        self.check_bounds();
        self.check_book();
    }

    fn judge(&mut self, out: Output) {
        match out {
            Output::FetchAvailability { call, window, .. } => self.started(call, Some(window), 0),
            Output::CheckRules {
                call, candidates, ..
            } => self.started(call, None, candidates.len()),
            Output::CancelCall { call, .. } => {
                assert!(self.calls.contains_key(&call), "cancel of unknown {call:?}");
            }
            Output::Persist { seq, record } => {
                if let Some(&last) = self.seqs.last() {
                    assert!(seq > last, "journal seq {seq} after {last}");
                }
                self.seqs.push(seq);
                if let Record::Booked { assignment, .. } = record {
                    self.ids.push(assignment.id);
                }
            }
            Output::Respond {
                ticket, response, ..
            } => self.answer(ticket, &response),
        }
    }

    fn started(&mut self, call: CallId, window: Option<Window>, candidates: usize) {
        let fresh = self
            .calls
            .insert(call, Started { window, candidates })
            .is_none();
        assert!(fresh, "{call:?} handed out twice");
        self.call_order.push(call);
    }

    fn answer(&mut self, ticket: Ticket, response: &Response) {
        assert!(
            !self.answered.contains(&ticket),
            "second answer to {ticket:?}: {response:?}"
        );
        let Some(kind) = self.waiting.remove(&ticket) else {
            panic!("answer to unknown {ticket:?}: {response:?}");
        };
        self.answered.insert(ticket);
        let cancel_answer = matches!(response, Response::Cancelled(_) | Response::NotFound);
        match kind {
            TicketKind::Submit { deadline } => {
                assert!(!cancel_answer, "a submit got {response:?}");
                if let Response::Assigned(a) = response {
                    assert!(
                        self.now < deadline,
                        "201 at {:?}, deadline {deadline:?}",
                        self.now
                    );
                    self.ids.push(a.id);
                }
            }
            TicketKind::Cancel => assert!(
                cancel_answer
                    || matches!(
                        response,
                        Response::Overloaded { .. } | Response::DependencyUnavailable { .. }
                    ),
                "a DELETE got {response:?}"
            ),
        }
    }

    fn check_bounds(&self) {
        let s = self.core.stats();
        let c = &self.config;
        for (shard, &n) in s.queue_depths.iter().enumerate() {
            assert!(n <= c.queue_capacity, "shard {shard} queue {n}");
        }
        for (shard, &n) in s.waiting.iter().enumerate() {
            assert!(n <= c.max_waiters, "shard {shard} waiters {n}");
        }
        for (shard, &n) in s.running.iter().enumerate() {
            assert!(n <= c.shard_concurrency, "shard {shard} running {n}");
        }
        assert!(
            s.idempotency_keys <= u64::from(c.max_idempotency_keys),
            "{s:?}"
        );
        assert!(s.attempts <= u64::from(c.max_attempts), "{s:?}");
        assert!(
            s.tickets <= self.waiting.len() as u64,
            "the core owes unknown tickets: {s:?}"
        );
    }

    fn check_book(&self) {
        let buffer = self.config.travel_buffer_ms();
        let mut last: Option<(&str, Window)> = None;
        for (agent, interval, id) in self.core.book().iter() {
            assert!(interval.start < interval.end, "{id} is empty");
            if let Some((prev_agent, prev)) = last {
                if prev_agent == agent {
                    assert!(
                        prev.end.plus_ms(buffer) <= interval.start,
                        "{agent} double-booked: {prev:?} then {interval:?}"
                    );
                }
            }
            last = Some((agent, interval));
        }
    }

    /// The durable state survives a snapshot and a restore: restore drops
    /// only what has expired (a key or an assignment the live core still
    /// holds, e.g. while its undo is in flight, may go), invents nothing,
    /// and its own snapshot restores to itself.
    fn check_restore(&self) {
        let snapshot = self.core.snapshot();
        let restore = |records: Vec<Record>| {
            Dispatcher::restore(self.config.clone(), self.now, records)
                .expect("a core's own snapshot restores")
        };
        let first = restore(snapshot.clone()).snapshot();
        for r in &first {
            assert!(snapshot.contains(r), "restore invented {r:?}");
        }
        assert_eq!(restore(first.clone()).snapshot(), first, "not a fixpoint");
        let retention_ms = self.config.retention_ms();
        let restored = restore(snapshot);
        for a in self.core.assignments() {
            if a.end.plus_ms(retention_ms) > self.now {
                assert_eq!(restored.assignment(&a.id), Some(a), "restore lost {}", a.id);
            }
        }
    }
}

/// Among `known` things by index (`nth`), or anything.
fn pick(p: Pick, known: u64, nth: impl Fn(usize) -> u64) -> u64 {
    match p {
        Pick::Known(i) if known > 0 => nth(usize::from(i) % known as usize),
        Pick::Known(i) => i.into(),
        Pick::Any(v) => v,
    }
}
