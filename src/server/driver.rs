//! The driver: one task owns the [`Dispatcher`] and runs the sans-IO loop.
//!
//! It waits for whichever comes first — a command from an HTTP handler, a
//! result from a dependency call, a journal event, or the core's next timer —
//! feeds it to the core with the current time, then executes every output
//! without awaiting: it spawns stream and rules tasks (and aborts them on
//! `CancelCall`), appends to the journal, and answers tickets through their
//! oneshot channels. Nothing inside the loop waits on the outside world, so
//! a deadline fires on time however slow a dependency is.
//!
//! Services that answer without waiting (the embedded ones without
//! latency) are not given a task per call: their calls are answered
//! inline, as the next inputs, before the driver waits again — a stream
//! page by page, so that a `CancelCall` still stops it once the core has
//! its batch. Likewise an append that the journal reports durable at once
//! (`--ephemeral`) is acknowledged as an inline `Persisted`, with no event
//! to wait for. The core sees the same inputs either way.
//!
//! Handlers reach the driver through two bounded channels: submits (a full
//! one is answered 503 overloaded by the handler) and control (cancels,
//! reads, client-gone notices, drain).

use crate::core::{
    Assignment, AssignmentId, CallId, DependencyError, Dispatcher, Input, Output, RawRequest,
    Record, Response, Slot, Stats, Ticket, Timestamp,
};
use crate::server::clock::Clock;
use crate::server::journal::{Appended, EventQueue, Journal, JournalEvent, SnapshotPoint};
use crate::server::metrics::Metrics;
use crate::server::services::{AvailabilityQuery, RulesQuery, Services, SlotSink};
use crate::server::state::ServerState;
use crate::server::trace::TraceRecorder;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

/// A ticket's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub response: Response,
    pub replayed: bool,
}

/// What HTTP handlers ask of the driver.
#[derive(Debug)]
pub enum Command {
    Submit {
        ticket: Ticket,
        body: RawRequest,
        idempotency_key: Option<String>,
        deadline: Timestamp,
        reply: oneshot::Sender<Answer>,
    },
    Cancel {
        ticket: Ticket,
        id: AssignmentId,
        reply: oneshot::Sender<Answer>,
    },
    /// The client of `ticket` went away before its answer.
    ClientGone { ticket: Ticket },
    /// A durable assignment, for `GET /assignments/{id}`.
    Get {
        id: AssignmentId,
        reply: oneshot::Sender<Option<Assignment>>,
    },
    /// The core's counters, for `/metrics`.
    Stats { reply: oneshot::Sender<Stats> },
    /// Shutdown: stop taking submits, finish what runs.
    Drain,
}

/// The handlers' side of the driver's channels.
#[derive(Clone, Debug)]
pub struct DriverHandle {
    pub submits: mpsc::Sender<Command>,
    pub control: mpsc::Sender<Command>,
}

/// What the driver needs besides the core.
pub struct DriverParts {
    pub clock: Clock,
    pub journal: Box<dyn Journal>,
    pub journal_events: EventQueue,
    pub services: Services,
    pub metrics: Arc<Metrics>,
    pub state: Arc<ServerState>,
    pub recorder: Option<TraceRecorder>,
    pub drain_timeout: Duration,
    /// Capacity of the submit, control and result channels.
    pub channel_capacity: usize,
    /// Most slots per `SlotsStreamed` batch.
    pub stream_chunk: usize,
}

pub struct Driver {
    core: Dispatcher,
    parts: DriverParts,
    submits: mpsc::Receiver<Command>,
    control: mpsc::Receiver<Command>,
    results_tx: mpsc::Sender<Input>,
    results: mpsc::Receiver<Input>,
    /// Tickets waiting for their answer.
    waiting: BTreeMap<Ticket, oneshot::Sender<Answer>>,
    /// Dependency calls running, to stop on `CancelCall`.
    calls: BTreeMap<CallId, Running>,
    /// The next steps of inline calls, taken before the driver waits again.
    /// Bounded by the calls the core runs at once.
    inline: VecDeque<InlineStep>,
    /// Journal seqs of cancel records not yet settled (for the metric).
    cancel_writes: BTreeSet<u64>,
    /// Outputs of the last input, not yet executed.
    outputs: Vec<Output>,
    control_open: bool,
    /// `PersistFailed` events the core has handled, told with each snapshot.
    failures_handled: u64,
}

impl Driver {
    pub fn new(core: Dispatcher, parts: DriverParts) -> (Driver, DriverHandle) {
        let capacity = parts.channel_capacity.max(1);
        let (submits_tx, submits) = mpsc::channel(capacity);
        let (control_tx, control) = mpsc::channel(capacity);
        let (results_tx, results) = mpsc::channel(capacity);
        let driver = Driver {
            core,
            parts,
            submits,
            control,
            results_tx,
            results,
            waiting: BTreeMap::new(),
            calls: BTreeMap::new(),
            inline: VecDeque::new(),
            cancel_writes: BTreeSet::new(),
            outputs: Vec::new(),
            control_open: true,
            failures_handled: 0,
        };
        let handle = DriverHandle {
            submits: submits_tx,
            control: control_tx,
        };
        (driver, handle)
    }

    /// Runs until a drain has finished (every ticket answered, every write
    /// settled); returns the journal, still to be flushed.
    pub async fn run(mut self) -> Box<dyn Journal> {
        // Events the journal raised while opening (e.g. writability).
        self.journal_events();
        // One timer for the core's next wake-up, moved only when that moves:
        // setting a fresh timer on every pass costs more than the pass.
        let timer = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(timer);
        loop {
            if self.core.is_draining() && self.core.is_idle() {
                break;
            }
            let wake = self
                .next_wake()
                .and_then(|at| self.parts.clock.instant_of(at))
                .map(tokio::time::Instant::from_std);
            if let Some(at) = wake {
                if timer.deadline() != at {
                    timer.as_mut().reset(at);
                }
            }
            tokio::select! {
                biased;
                () = self.parts.journal_events.pushed() => self.journal_events(),
                Some(input) = self.results.recv() => self.call_result(input),
                command = self.control.recv(), if self.control_open => match command {
                    Some(c) => self.command(c),
                    // Every handle is gone: nobody can submit any more.
                    None => {
                        self.control_open = false;
                        self.command(Command::Drain);
                    }
                },
                // A long inline chain goes on here, after whatever else came.
                () = tokio::task::yield_now(), if !self.inline.is_empty() => self.execute_outputs(),
                Some(command) = self.submits.recv() => self.command(command),
                () = &mut timer, if wake.is_some() => self.feed(Input::Tick),
            }
        }
        for (_, call) in std::mem::take(&mut self.calls) {
            if let Running::Task(task) = call {
                task.abort();
            }
        }
        if let Some(recorder) = &mut self.parts.recorder {
            if let Err(e) = recorder.flush() {
                tracing::error!(error = %e, "cannot write the trace");
            }
        }
        self.parts.journal
    }

    /// When the core must next be ticked: its own next timer, or the next
    /// expiry of an assignment or a key, so that an idle server gives their
    /// memory back.
    fn next_wake(&self) -> Option<Timestamp> {
        let timer = self.core.poll_timeout().map(|(at, _)| at);
        match (timer, expiry_wake(&self.core)) {
            (Some(t), Some(e)) => Some(t.min(e)),
            (t, e) => t.or(e),
        }
    }

    /// Feeds one input at the current time, then executes its outputs.
    fn feed(&mut self, input: Input) {
        self.handle(input);
        self.execute_outputs();
    }

    /// Feeds one input at the current time; its outputs wait in
    /// `self.outputs` (recorded, not yet executed).
    fn handle(&mut self, input: Input) {
        let now = self.parts.clock.now();
        let recorded = self.parts.recorder.is_some().then(|| input.clone());
        self.core.handle(now, input);
        while let Some(output) = self.core.poll_output() {
            self.outputs.push(output);
        }
        if let (Some(recorder), Some(input)) = (&mut self.parts.recorder, recorded) {
            if let Err(e) = recorder.step(now, &input, &self.outputs) {
                tracing::error!(error = %e, "cannot write the trace; recording stops");
                self.parts.recorder = None;
            }
        }
    }

    /// Executes the outputs waiting, then feeds the inline calls' answers
    /// one by one (with the outputs each of them brings), at most
    /// [`INLINE_STEPS`] of them: a longer chain (a stream scanning many
    /// pages) goes on from `select!`, after journal events, results and
    /// control, so that it holds none of them up for long.
    fn execute_outputs(&mut self) {
        for _ in 0..INLINE_STEPS {
            self.execute_waiting();
            let Some(input) = self.next_inline_answer() else {
                return;
            };
            self.handle(input);
        }
        self.execute_waiting();
    }

    /// Executes the outputs waiting, keeping their buffer's room for the
    /// next input's (a request's life takes several inputs).
    fn execute_waiting(&mut self) {
        let mut outputs = std::mem::take(&mut self.outputs);
        for output in outputs.drain(..) {
            self.execute(output);
        }
        // Executing an output never feeds the core: its answers queue.
        debug_assert!(self.outputs.is_empty());
        self.outputs = outputs;
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Submit {
                ticket,
                body,
                idempotency_key,
                deadline,
                reply,
            } => {
                // A client that left while its request waited in the channel
                // needs no attempt at all.
                if reply.is_closed() {
                    return;
                }
                self.waiting.insert(ticket, reply);
                self.feed(Input::Submit {
                    ticket,
                    body,
                    idempotency_key,
                    deadline,
                });
            }
            Command::Cancel { ticket, id, reply } => {
                if reply.is_closed() {
                    return;
                }
                self.waiting.insert(ticket, reply);
                self.feed(Input::CancelAssignment { ticket, id });
            }
            Command::ClientGone { ticket } => {
                if self.waiting.remove(&ticket).is_some() {
                    self.feed(Input::ClientGone { ticket });
                }
            }
            Command::Get { id, reply } => {
                self.catch_up_with_time();
                let _ = reply.send(self.core.assignment(&id).cloned());
            }
            Command::Stats { reply } => {
                self.catch_up_with_time();
                let _ = reply.send(self.core.stats());
            }
            Command::Drain => {
                // Submits that passed the handlers' drain check and wait in
                // their channel are requests already taken: they run first.
                while let Ok(submit) = self.submits.try_recv() {
                    self.command(submit);
                }
                if !self.core.is_draining() {
                    let deadline = self
                        .parts
                        .clock
                        .now()
                        .plus_ms(self.parts.drain_timeout.as_millis() as u64);
                    tracing::info!(
                        running = self.waiting.len(),
                        "draining: finishing what runs, refusing new requests"
                    );
                    self.feed(Input::Drain { deadline });
                }
            }
        }
    }

    /// The core forgets what is past its retention or TTL when it is next
    /// fed, and the driver's timer feeds it on the whole second after: a
    /// read in between ticks it first, so that it never shows an assignment
    /// past retention or counts a key past its TTL.
    fn catch_up_with_time(&mut self) {
        let now = self.parts.clock.now();
        let due = self.core.next_expiry(self.core.now());
        if due.is_some_and(|at| at <= now) {
            self.feed(Input::Tick);
        }
    }

    fn call_result(&mut self, input: Input) {
        if let Some(call) = ended_call(&input) {
            self.calls.remove(&call);
        }
        self.feed(input);
    }

    fn journal_events(&mut self) {
        for event in self.parts.journal_events.take() {
            match event {
                JournalEvent::Persisted { upto } => {
                    let input = self.durable_upto(upto);
                    self.feed(input);
                }
                JournalEvent::PersistFailed { from } => {
                    tracing::error!(from, "journal writes failed; continuing from a snapshot");
                    self.settle_cancels(from.saturating_sub(1), from);
                    self.handle(Input::PersistFailed { from });
                    self.failures_handled += 1;
                    // The fresh file first: what the failure set off (reruns,
                    // new remembered answers) is appended to it.
                    self.install_snapshot();
                    self.execute_outputs();
                }
                JournalEvent::WantsSnapshot => self.install_snapshot(),
                JournalEvent::Writable(writable) => {
                    if !writable {
                        tracing::warn!("the journal cannot write: not ready");
                    }
                    self.parts.state.set_journal_writable(writable);
                }
            }
        }
    }

    /// The input saying that every write up to `upto` is durable, with the
    /// cancellations among them counted.
    fn durable_upto(&mut self, upto: u64) -> Input {
        self.settle_cancels(upto, u64::MAX);
        Input::Persisted { upto }
    }

    /// Cancel records up to `durable` count as cancellations; those from
    /// `failed` on never happened.
    fn settle_cancels(&mut self, durable: u64, failed: u64) {
        let rest = self.cancel_writes.split_off(&durable.saturating_add(1));
        for _ in &self.cancel_writes {
            self.parts.metrics.cancelled();
        }
        self.cancel_writes = rest.into_iter().filter(|&seq| seq < failed).collect();
    }

    fn install_snapshot(&mut self) {
        let at = SnapshotPoint {
            durable_seq: self.core.durable_seq(),
            next_seq: self.core.next_seq(),
            failures_handled: self.failures_handled,
        };
        self.parts
            .journal
            .install_snapshot(at, self.core.snapshot());
    }

    fn execute(&mut self, output: Output) {
        match output {
            Output::FetchAvailability {
                call,
                zipcode,
                window,
                duration_min,
                after,
                deadline,
            } => self.start_stream(AvailabilityQuery {
                call,
                zipcode,
                window,
                duration_min,
                after,
                deadline,
            }),
            Output::CheckRules {
                call,
                request,
                candidates,
                deadline,
            } => self.start_rules(RulesQuery {
                call,
                request,
                candidates,
                deadline,
            }),
            Output::CancelCall { call, .. } => {
                // An inline call's queued step finds it gone and is dropped.
                if let Some(Running::Task(task)) = self.calls.remove(&call) {
                    task.abort();
                }
            }
            Output::Persist { seq, record } => {
                if matches!(record, Record::Cancelled { .. }) {
                    self.cancel_writes.insert(seq);
                }
                if self.parts.journal.append(seq, record) == Appended::Durable {
                    self.acknowledge(seq);
                }
            }
            Output::Respond {
                ticket,
                response,
                replayed,
            } => {
                if let Some(reply) = self.waiting.remove(&ticket) {
                    let _ = reply.send(Answer { response, replayed });
                }
            }
        }
    }

    /// Runs a call until it ends or the core cancels it. A call is not cut
    /// at the deadline it was issued with: a repeat of the key that joins
    /// later extends the attempt past it, and the core cancels the call
    /// itself once no request waits for it.
    fn start_stream(&mut self, query: AvailabilityQuery) {
        let service = self.parts.services.availability.clone();
        let chunk = self.parts.stream_chunk;
        if let Some(page) = service.page_now(&query, query.after.as_ref(), chunk) {
            self.calls.insert(query.call, Running::Inline);
            self.inline.push_back(InlineStep::Stream {
                query,
                sent: 0,
                page: Some(page),
            });
            return;
        }
        let to_driver = self.results_tx.clone();
        let call = query.call;
        let task = tokio::spawn(async move {
            let mut sink = SlotSink::new(call, to_driver.clone(), chunk);
            let streamed = service.stream(query, &mut sink).await;
            let result = match streamed {
                Ok(()) => sink.flush().await,
                Err(e) => Err(e),
            };
            let ended = Input::StreamEnded {
                call,
                count: sink.count(),
                result,
            };
            let _ = to_driver.send(ended).await;
        });
        self.calls.insert(call, Running::Task(task.abort_handle()));
    }

    fn start_rules(&mut self, query: RulesQuery) {
        let service = self.parts.services.rules.clone();
        if let Some(result) = service.check_now(&query) {
            self.calls.insert(query.call, Running::Inline);
            let call = query.call;
            self.inline.push_back(InlineStep::Verdicts { call, result });
            return;
        }
        let to_driver = self.results_tx.clone();
        let call = query.call;
        let task = tokio::spawn(async move {
            let result = service.check(query).await;
            let _ = to_driver.send(Input::RuleVerdicts { call, result }).await;
        });
        self.calls.insert(call, Running::Task(task.abort_handle()));
    }

    /// Acknowledges a write the journal made durable at once, as the next
    /// inline answer (acknowledgements are cumulative: one serves a run).
    fn acknowledge(&mut self, seq: u64) {
        match self.inline.back_mut() {
            Some(InlineStep::Persisted { upto }) => *upto = seq,
            _ => self.inline.push_back(InlineStep::Persisted { upto: seq }),
        }
    }

    /// The next inline answer: a durable write, or the answer of a live
    /// inline call (reading the next page of a stream when that is its step).
    fn next_inline_answer(&mut self) -> Option<Input> {
        while let Some(step) = self.inline.pop_front() {
            let live = |call: &CallId| self.calls.contains_key(call);
            let answer = match step {
                InlineStep::Persisted { upto } => return Some(self.durable_upto(upto)),
                InlineStep::Verdicts { call, result } if live(&call) => {
                    Input::RuleVerdicts { call, result }
                }
                InlineStep::Stream { query, sent, page } if live(&query.call) => {
                    self.stream_page(query, sent, page)
                }
                _ => continue, // cancelled
            };
            if let Some(call) = ended_call(&answer) {
                self.calls.remove(&call);
            }
            return Some(answer);
        }
        None
    }

    /// One page of an inline stream as `SlotsStreamed` (queueing the step
    /// after it), or its end.
    fn stream_page(
        &mut self,
        mut query: AvailabilityQuery,
        sent: u32,
        page: Option<Vec<Slot>>,
    ) -> Input {
        let call = query.call;
        let chunk = self.parts.stream_chunk;
        let page = page.or_else(|| {
            self.parts
                .services
                .availability
                .page_now(&query, query.after.as_ref(), chunk)
        });
        let slots = match page {
            Some(slots) if !slots.is_empty() => slots,
            ended => {
                // `None` here is a service that stopped answering at once.
                let result = ended.map(|_| ()).ok_or(DependencyError::Unavailable);
                return Input::StreamEnded {
                    call,
                    count: sent,
                    result,
                };
            }
        };
        let count = sent + slots.len() as u32;
        // A short page is the last: the end follows without another read.
        let next = (slots.len() < chunk).then(Vec::new);
        query.after = slots.last().cloned();
        self.inline.push_back(InlineStep::Stream {
            query,
            sent: count,
            page: next,
        });
        Input::SlotsStreamed {
            call,
            first_index: sent,
            slots,
        }
    }
}

/// The whole second on which `core` next has an assignment or a key to
/// forget: taken on whole seconds, the driver's timer moves at most once a
/// second for them, however many expire.
fn expiry_wake(core: &Dispatcher) -> Option<Timestamp> {
    core.next_expiry(core.now())
        .map(|at| Timestamp(at.as_millis().div_ceil(1_000).saturating_mul(1_000)))
}

/// The call an input ends, if it is a call's last answer.
fn ended_call(input: &Input) -> Option<CallId> {
    match input {
        Input::StreamEnded { call, .. } | Input::RuleVerdicts { call, .. } => Some(*call),
        _ => None,
    }
}

/// How a dependency call runs.
enum Running {
    /// In a task of its own, aborted on `CancelCall`.
    Task(AbortHandle),
    /// Inline: its next step waits in the driver's queue.
    Inline,
}

/// What an inline call does next, or a write the journal made durable at
/// once.
enum InlineStep {
    /// Tell the core that writes up to `upto` are durable.
    Persisted { upto: u64 },
    /// Give the core these verdicts.
    Verdicts {
        call: CallId,
        result: Result<Vec<bool>, DependencyError>,
    },
    /// Stream slots after `query.after`: `page` if already read (empty at
    /// the end), else the next page read now.
    Stream {
        query: AvailabilityQuery,
        sent: u32,
        page: Option<Vec<Slot>>,
    },
}

/// Inline answers fed per pass of the driver's loop: a request's life
/// takes a handful, a stream of many pages more.
const INLINE_STEPS: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::time::{MS_PER_DAY, MS_PER_HOUR, MS_PER_MINUTE};
    use crate::core::{AssignmentStatus, Config, Dependency, RawWindow};
    use crate::embedded::{AvailabilityConfig, Roster, RulesConfig};
    use crate::server::journal::MemoryJournal;
    use crate::server::services::EmbeddedSettings;
    use std::sync::Mutex;

    /// What the driver asked of the journal.
    #[derive(Debug, Clone, PartialEq)]
    enum Call {
        Append(u64, Record),
        /// The snapshot's durable seq and the failures the core had heard of.
        Install(u64, u64),
    }

    /// A journal that acknowledges nothing by itself: the test does.
    struct Scripted(Arc<Mutex<Vec<Call>>>);

    impl Journal for Scripted {
        fn append(&mut self, seq: u64, record: Record) -> Appended {
            self.0.lock().unwrap().push(Call::Append(seq, record));
            Appended::Pending
        }
        fn install_snapshot(&mut self, at: SnapshotPoint, _snapshot: Vec<Record>) {
            let call = Call::Install(at.durable_seq, at.failures_handled);
            self.0.lock().unwrap().push(call);
        }
        fn flush(&mut self) -> Result<(), String> {
            Ok(())
        }
    }

    struct Rig {
        handle: DriverHandle,
        calls: Arc<Mutex<Vec<Call>>>,
        events: EventQueue,
        metrics: Arc<Metrics>,
        state: Arc<ServerState>,
        clock: Clock,
        next_ticket: u64,
        run: tokio::task::JoinHandle<Box<dyn Journal>>,
    }

    impl Rig {
        fn start() -> Rig {
            Rig::with_latency(Duration::ZERO)
        }

        /// A rig whose embedded services take `latency` (zero: inline calls).
        fn with_latency(latency: Duration) -> Rig {
            Rig::build(
                latency,
                |_| Vec::new(),
                |calls, _| Box::new(Scripted(calls)),
            )
        }

        /// A rig with the `--ephemeral` journal: every append is durable at
        /// once, and no event says so.
        fn ephemeral() -> Rig {
            Rig::build(
                Duration::ZERO,
                |_| Vec::new(),
                |_, events| Box::new(MemoryJournal::new(events.sink())),
            )
        }

        /// A rig whose core is restored, when it starts, from the records
        /// `records` gives for that time.
        fn build(
            latency: Duration,
            records: impl FnOnce(Timestamp) -> Vec<Record>,
            journal: impl FnOnce(Arc<Mutex<Vec<Call>>>, &EventQueue) -> Box<dyn Journal>,
        ) -> Rig {
            let clock = Clock::start();
            let metrics = Arc::new(Metrics::new(1));
            let state = Arc::new(ServerState::default());
            let events = EventQueue::default();
            let calls = Arc::new(Mutex::new(Vec::new()));
            let services = Services::embedded(
                EmbeddedSettings {
                    roster: Arc::new(Roster::demo()),
                    availability: AvailabilityConfig { slot_step_min: 15 },
                    rules: RulesConfig::default(),
                    availability_latency: latency,
                    slot_interval: Duration::ZERO,
                    rules_latency: latency,
                },
                clock,
                metrics.clone(),
            );
            let config = Config {
                shards: 1,
                ..Config::default()
            };
            let core = Dispatcher::restore(config, clock.now(), records(clock.now())).unwrap();
            let (driver, handle) = Driver::new(
                core,
                DriverParts {
                    clock,
                    journal: journal(calls.clone(), &events),
                    journal_events: events.clone(),
                    services,
                    metrics: metrics.clone(),
                    state: state.clone(),
                    recorder: None,
                    drain_timeout: Duration::from_secs(5),
                    channel_capacity: 16,
                    stream_chunk: 8,
                },
            );
            Rig {
                handle,
                calls,
                events,
                metrics,
                state,
                clock,
                next_ticket: 1,
                run: tokio::spawn(driver.run()),
            }
        }

        /// A request for two days from now, 09:00-12:00 UTC.
        fn body(&self, customer: &str) -> RawRequest {
            self.body_between(customer, 9, 12)
        }

        /// A request for two days from now, between the given UTC hours.
        fn body_between(&self, customer: &str, from_h: u64, to_h: u64) -> RawRequest {
            let day = self.clock.now().as_millis() / MS_PER_DAY + 2;
            let at = |h: u64| Timestamp(day * MS_PER_DAY + h * MS_PER_HOUR).to_rfc3339();
            RawRequest {
                customer_id: Some(customer.into()),
                zipcode: Some("94107".into()),
                window: Some(RawWindow {
                    start: Some(at(from_h)),
                    end: Some(at(to_h)),
                }),
                duration_minutes: Some(30),
                ..RawRequest::default()
            }
        }

        /// Submits `body`, acknowledges its journal write and returns the
        /// booking.
        async fn book(&mut self, body: RawRequest) -> Assignment {
            let seen = self.calls.lock().unwrap().len();
            let answer = self.submit(body).await;
            let Call::Append(seq, _) = self.calls(seen + 1).await[seen].clone() else {
                panic!("a booking write")
            };
            self.events.push(JournalEvent::Persisted { upto: seq });
            match answer.await.unwrap().response {
                Response::Assigned(a) => a,
                other => panic!("{other:?}"),
            }
        }

        /// How many calls (or inline pages) of `dependency` were timed.
        fn timed_calls(&self, dependency: &str) -> u64 {
            let metrics = self.metrics.encode(false);
            let line = format!(
                "tour_dispatcher_dependency_call_duration_seconds_count{{dependency=\"{dependency}\"}} "
            );
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(line.as_str()))
                .map_or(0, |n| n.parse().unwrap())
        }

        async fn submit(&mut self, body: RawRequest) -> oneshot::Receiver<Answer> {
            let (reply, answer) = oneshot::channel();
            let ticket = Ticket(self.next_ticket);
            self.next_ticket += 1;
            let deadline = self.clock.now().plus_ms(5_000);
            let submit = Command::Submit {
                ticket,
                body,
                idempotency_key: None,
                deadline,
                reply,
            };
            self.handle.submits.send(submit).await.unwrap();
            answer
        }

        /// Waits until the journal saw `n` calls.
        async fn calls(&self, n: usize) -> Vec<Call> {
            for _ in 0..200 {
                let calls = self.calls.lock().unwrap().clone();
                if calls.len() >= n {
                    return calls;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            panic!("the journal saw {:?}", self.calls.lock().unwrap());
        }
    }

    /// A confirmed tour, `id` 1, whose retention ends at `keep_until`.
    fn kept_until(config: &Config, keep_until: Timestamp) -> Vec<Record> {
        let end = Timestamp(keep_until.as_millis() - config.retention_ms());
        let assignment = Assignment {
            id: AssignmentId::from_seq(&config.secret, 1),
            status: AssignmentStatus::Confirmed,
            agent_id: "ag-001".into(),
            customer_id: "c".into(),
            property_id: None,
            zipcode: "94107".into(),
            start: Timestamp(end.as_millis() - 30 * MS_PER_MINUTE),
            end,
        };
        vec![Record::Booked {
            assignment,
            key: None,
        }]
    }

    #[test]
    fn an_idle_core_is_woken_on_the_second_after_an_expiry() {
        let config = Config::default();
        let now = Timestamp(1_800_000_000_250);
        let keep_until = Timestamp(now.as_millis() + 2_500);
        let core =
            Dispatcher::restore(config.clone(), now, kept_until(&config, keep_until)).unwrap();
        assert_eq!(core.poll_timeout(), None, "no timer of its own");
        assert_eq!(core.next_expiry(now), Some(keep_until));
        assert_eq!(expiry_wake(&core), Some(Timestamp(1_800_000_003_000)));
        // Once it is gone, nothing is left to wake for.
        let mut core = core;
        core.handle(Timestamp(1_800_000_003_000), Input::Tick);
        assert!(core.assignments().is_empty());
        assert_eq!(expiry_wake(&core), None);
    }

    #[tokio::test]
    async fn a_read_on_an_idle_server_shows_nothing_past_retention() {
        let config = Config::default();
        let id = AssignmentId::from_seq(&config.secret, 1);
        // A tour whose retention ends 1.5 s after the rig starts (time for
        // the first reads on a busy machine).
        let booked = |now: Timestamp| kept_until(&config, Timestamp(now.as_millis() + 1_500));
        let rig = Rig::build(Duration::ZERO, booked, |_, events| {
            Box::new(MemoryJournal::new(events.sink()))
        });
        let get = || async {
            let (reply, answer) = oneshot::channel();
            let get = Command::Get { id, reply };
            rig.handle.control.send(get).await.unwrap();
            answer.await.unwrap()
        };
        let stats = || async {
            let (reply, answer) = oneshot::channel();
            rig.handle
                .control
                .send(Command::Stats { reply })
                .await
                .unwrap();
            answer.await.unwrap()
        };
        assert!(get().await.is_some());
        assert_eq!(stats().await.reservations_active, 1);
        tokio::time::sleep(Duration::from_millis(1_600)).await;
        // Nothing else reached the core meanwhile.
        assert_eq!(get().await, None);
        assert_eq!(stats().await.reservations_active, 0);
    }

    #[tokio::test]
    async fn persisted_answers_and_a_failed_write_installs_a_snapshot() {
        let mut rig = Rig::start();
        let first = rig.submit(rig.body("a")).await;
        let calls = rig.calls(1).await;
        assert!(matches!(calls[0], Call::Append(1, Record::Booked { .. })));
        rig.events.push(JournalEvent::PersistFailed { from: 1 });
        let answer = first.await.unwrap();
        assert_eq!(
            answer.response,
            Response::DependencyUnavailable {
                dependency: Dependency::Journal,
                retry_after_s: 1
            }
        );
        assert_eq!(
            rig.calls(2).await[1],
            Call::Install(0, 1),
            "a fresh file from the snapshot, after the failure"
        );

        let second = rig.submit(rig.body("b")).await;
        let calls = rig.calls(3).await;
        let Call::Append(seq, Record::Booked { assignment, .. }) = &calls[2] else {
            panic!("{calls:?}")
        };
        rig.events.push(JournalEvent::Persisted { upto: *seq });
        let answer = second.await.unwrap();
        assert_eq!(answer.response, Response::Assigned(assignment.clone()));

        let (reply, cancelled) = oneshot::channel();
        let id = assignment.id;
        rig.handle
            .control
            .send(Command::Cancel {
                ticket: Ticket(99),
                id,
                reply,
            })
            .await
            .unwrap();
        let calls = rig.calls(4).await;
        assert_eq!(calls[3], Call::Append(seq + 1, Record::Cancelled { id }));
        rig.events.push(JournalEvent::Persisted { upto: seq + 1 });
        assert!(matches!(
            cancelled.await.unwrap().response,
            Response::Cancelled(_)
        ));
        assert!(rig
            .metrics
            .encode(false)
            .contains("tour_dispatcher_cancellations_total 1"));

        rig.state.set_ready();
        rig.events.push(JournalEvent::Writable(false));
        for _ in 0..200 {
            if rig.state.not_ready_because().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            rig.state.not_ready_because(),
            Some("the journal cannot write")
        );

        rig.handle.control.send(Command::Drain).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), rig.run)
            .await
            .expect("an idle driver stops once drained")
            .unwrap();
    }

    #[tokio::test]
    async fn a_drain_runs_the_submits_already_taken_first() {
        let mut rig = Rig::ephemeral();
        // Queued before the driver runs again, the drain behind them.
        let mut answers = Vec::new();
        for customer in ["a", "b", "c"] {
            answers.push(rig.submit(rig.body(customer)).await);
        }
        rig.handle.control.send(Command::Drain).await.unwrap();
        for answer in answers {
            let answer = tokio::time::timeout(Duration::from_secs(5), answer)
                .await
                .expect("answered")
                .unwrap();
            assert!(
                matches!(answer.response, Response::Assigned(_)),
                "{answer:?}"
            );
        }
        tokio::time::timeout(Duration::from_secs(5), rig.run)
            .await
            .expect("an idle driver stops once drained")
            .unwrap();
    }

    #[tokio::test]
    async fn a_journal_durable_at_once_is_acknowledged_by_the_driver() {
        let mut rig = Rig::ephemeral();
        let booked = rig.submit(rig.body("a")).await;
        // Nothing else would ever say that the write is durable.
        let answer = tokio::time::timeout(Duration::from_secs(5), booked)
            .await
            .expect("answered without a journal event")
            .unwrap();
        let Response::Assigned(assignment) = answer.response else {
            panic!("{answer:?}")
        };
        let (reply, cancelled) = oneshot::channel();
        let cancel = Command::Cancel {
            ticket: Ticket(99),
            id: assignment.id,
            reply,
        };
        rig.handle.control.send(cancel).await.unwrap();
        assert!(matches!(
            cancelled.await.unwrap().response,
            Response::Cancelled(_)
        ));
        assert!(
            rig.metrics
                .encode(false)
                .contains("tour_dispatcher_cancellations_total 1"),
            "the cancel counted once durable"
        );
        assert!(rig.calls.lock().unwrap().is_empty(), "no scripted journal");
    }

    #[tokio::test]
    async fn inline_calls_choose_as_the_tasks_do() {
        let mut inline = Rig::start();
        let mut tasks = Rig::with_latency(Duration::from_millis(1));
        for customer in ["a", "b", "c", "d", "e", "f"] {
            let by_inline = inline.book(inline.body(customer)).await;
            let by_task = tasks.book(tasks.body(customer)).await;
            assert_eq!(
                (&by_inline.agent_id, by_inline.start),
                (&by_task.agent_id, by_task.start)
            );
        }
        assert!(inline.timed_calls("rules") >= 6);
        assert_eq!(tasks.timed_calls("rules"), 6);
    }

    #[tokio::test]
    async fn an_inline_stream_stops_once_the_core_has_its_batch() {
        let mut rig = Rig::start();
        // 10 hours: 38 start times of 30-minute tours on a 15-minute grid,
        // for the zipcode's agents on duty; read 8 slots a page.
        let body = rig.body_between("a", 8, 18);
        let every_slot = {
            let at = |h: u64| {
                let day = rig.clock.now().as_millis() / MS_PER_DAY + 2;
                Timestamp(day * MS_PER_DAY + h * MS_PER_HOUR)
            };
            crate::embedded::slots(
                &Roster::demo(),
                &AvailabilityConfig { slot_step_min: 15 },
                "94107",
                crate::core::Window::new(at(8), at(18)),
                30,
                None,
            )
            .count()
        };
        let booked = rig.book(body).await;
        assert_eq!(booked.zipcode, "94107");
        let pages = rig.timed_calls("availability");
        // 64 candidates and the next start time: 8 or 9 pages of 8 (a
        // stream run by a task would be timed once).
        assert!(
            every_slot.div_ceil(8) > 9,
            "{every_slot} slots in the window"
        );
        assert!(
            (8..=9).contains(&pages),
            "{pages} pages read of the {} the stream had",
            every_slot.div_ceil(8)
        );
    }

    #[tokio::test]
    async fn a_long_inline_scan_goes_on_across_passes_to_its_answer() {
        let mut rig = Rig::start();
        // A week that nobody can take (no agent speaks the language): every
        // page of every batch is read, far more than one pass's steps.
        let mut body = rig.body_between("a", 0, 7 * 24);
        body.language = Some("xx".into());
        let answer = rig.submit(body).await;
        let answer = tokio::time::timeout(Duration::from_secs(5), answer)
            .await
            .expect("answered within its deadline")
            .unwrap();
        assert_eq!(answer.response, Response::NoAvailability);
        let pages = rig.timed_calls("availability");
        assert!(pages > INLINE_STEPS as u64, "{pages} pages");
    }

    #[tokio::test]
    async fn a_client_gone_before_its_submit_is_taken_starts_nothing() {
        let mut rig = Rig::start();
        let (reply, answer) = oneshot::channel();
        drop(answer);
        let gone = Command::Submit {
            ticket: Ticket(1000),
            body: rig.body("gone"),
            idempotency_key: None,
            deadline: rig.clock.now().plus_ms(5_000),
            reply,
        };
        rig.handle.submits.send(gone).await.unwrap();
        // The channel is in order: the second submit comes after the first.
        let second = rig.submit(rig.body("here")).await;
        let calls = rig.calls(1).await;
        assert_eq!(
            calls.len(),
            1,
            "only the waiting client's booking: {calls:?}"
        );
        let Call::Append(seq, _) = calls[0] else {
            panic!()
        };
        rig.events.push(JournalEvent::Persisted { upto: seq });
        assert!(matches!(
            second.await.unwrap().response,
            Response::Assigned(_)
        ));
    }

    #[tokio::test]
    async fn a_cancel_the_journal_cannot_write_is_503_and_keeps_the_booking() {
        let mut rig = Rig::start();
        let booked = rig.submit(rig.body("a")).await;
        let Call::Append(seq, _) = rig.calls(1).await[0].clone() else {
            panic!()
        };
        rig.events.push(JournalEvent::Persisted { upto: seq });
        let Response::Assigned(assignment) = booked.await.unwrap().response else {
            panic!("booked")
        };
        let cancel = |reply| Command::Cancel {
            ticket: Ticket(50),
            id: assignment.id,
            reply,
        };
        let (reply, answer) = oneshot::channel();
        rig.handle.control.send(cancel(reply)).await.unwrap();
        let Call::Append(cancel_seq, _) = rig.calls(2).await[1].clone() else {
            panic!()
        };
        rig.events
            .push(JournalEvent::PersistFailed { from: cancel_seq });
        assert_eq!(
            answer.await.unwrap().response,
            Response::DependencyUnavailable {
                dependency: Dependency::Journal,
                retry_after_s: 1
            }
        );
        assert!(rig
            .metrics
            .encode(false)
            .contains("tour_dispatcher_cancellations_total 0"));
        let (reply, read) = oneshot::channel();
        rig.handle
            .control
            .send(Command::Get {
                id: assignment.id,
                reply,
            })
            .await
            .unwrap();
        assert_eq!(read.await.unwrap(), Some(assignment), "still confirmed");
    }
}
