//! The driver's seam to the availability service and the rules engine.
//!
//! [`AvailabilityService`] streams slots into a [`SlotSink`];
//! [`RulesService`] answers one batch of candidates. The embedded
//! implementations run the same pure code as the simulator
//! ([`crate::embedded`]) behind the configured latencies, on tokio timers.
//! Cross-cutting concerns are layers that implement the same traits around
//! any inner service: [`Traced`] (a span and a log line per call) and
//! [`Metered`] (latency histogram and in-flight gauge). A real HTTP client
//! would implement the same traits and slot in without touching the driver.

use crate::core::{
    CallId, Candidate, Dependency, DependencyError, Input, RuleRequest, Slot, Timestamp, Window,
};
use crate::embedded::{self, AvailabilityConfig, Roster, RulesConfig};
use crate::server::clock::Clock;
use crate::server::metrics::Metrics;
use compact_str::CompactString;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::Instrument;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One availability stream to open.
#[derive(Clone, Debug)]
pub struct AvailabilityQuery {
    pub call: CallId,
    pub zipcode: CompactString,
    pub window: Window,
    pub duration_min: u32,
    pub after: Option<Slot>,
    /// The attempt's deadline when the call began: a hint for a remote
    /// service; a repeat that joins later may extend it.
    pub deadline: Timestamp,
}

/// One batch of candidates to judge.
#[derive(Clone, Debug)]
pub struct RulesQuery {
    pub call: CallId,
    pub request: RuleRequest,
    pub candidates: Vec<Candidate>,
    /// As [`AvailabilityQuery::deadline`].
    pub deadline: Timestamp,
}

/// Streams slots in `(start, agent)` order, strictly after `query.after`.
pub trait AvailabilityService: Send + Sync + 'static {
    fn stream<'a>(
        &'a self,
        query: AvailabilityQuery,
        sink: &'a mut SlotSink,
    ) -> BoxFuture<'a, Result<(), DependencyError>>;

    /// Up to `max` slots of `query`'s stream strictly after `after`, read
    /// at once; fewer than `max` means the stream ends there.
    ///
    /// `Some` only from a service that answers without waiting (the
    /// embedded one without latency): the driver then reads its streams
    /// inline, a page at a time until the core has enough, instead of
    /// running a task per call. A service answers `Some` to every call or
    /// to none.
    fn page_now(
        &self,
        _query: &AvailabilityQuery,
        _after: Option<&Slot>,
        _max: usize,
    ) -> Option<Vec<Slot>> {
        None
    }
}

/// One verdict per candidate, in order.
pub trait RulesService: Send + Sync + 'static {
    fn check(&self, query: RulesQuery) -> BoxFuture<'_, Result<Vec<bool>, DependencyError>>;

    /// The verdicts at once, from a service that answers without waiting
    /// (as [`AvailabilityService::page_now`]).
    fn check_now(&self, _query: &RulesQuery) -> Option<Result<Vec<bool>, DependencyError>> {
        None
    }
}

/// Where a stream puts its slots: they reach the driver as
/// `SlotsStreamed` batches of at most `chunk` slots, numbered from 0.
pub struct SlotSink {
    call: CallId,
    to_driver: mpsc::Sender<Input>,
    buffer: Vec<Slot>,
    chunk: usize,
    sent: u32,
}

impl SlotSink {
    pub fn new(call: CallId, to_driver: mpsc::Sender<Input>, chunk: usize) -> Self {
        SlotSink {
            call,
            to_driver,
            buffer: Vec::new(),
            chunk: chunk.max(1),
            sent: 0,
        }
    }

    /// Adds a slot; a full chunk goes to the driver.
    pub async fn push(&mut self, slot: Slot) -> Result<(), DependencyError> {
        self.buffer.push(slot);
        if self.buffer.len() >= self.chunk {
            self.flush().await?;
        }
        Ok(())
    }

    /// Sends what is buffered (before the stream pauses, and at its end).
    pub async fn flush(&mut self) -> Result<(), DependencyError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let slots = std::mem::take(&mut self.buffer);
        let first_index = self.sent;
        self.sent += slots.len() as u32;
        let batch = Input::SlotsStreamed {
            call: self.call,
            first_index,
            slots,
        };
        // The driver only goes away at shutdown; the stream ends with it.
        self.to_driver
            .send(batch)
            .await
            .map_err(|_| DependencyError::Unavailable)
    }

    /// Slots delivered so far (flushed or buffered).
    pub fn count(&self) -> u32 {
        self.sent + self.buffer.len() as u32
    }
}

/// The embedded availability service.
pub struct EmbeddedAvailability {
    pub roster: Arc<Roster>,
    pub config: AvailabilityConfig,
    /// Before the first slot (or before the end of an empty stream).
    pub latency: Duration,
    /// Between two slots.
    pub slot_interval: Duration,
}

impl AvailabilityService for EmbeddedAvailability {
    fn stream<'a>(
        &'a self,
        query: AvailabilityQuery,
        sink: &'a mut SlotSink,
    ) -> BoxFuture<'a, Result<(), DependencyError>> {
        Box::pin(async move {
            let slots = self.slots(&query, query.after.as_ref());
            pause(self.latency).await;
            for (i, slot) in slots.enumerate() {
                if i > 0 && !self.slot_interval.is_zero() {
                    sink.flush().await?;
                    tokio::time::sleep(self.slot_interval).await;
                }
                sink.push(slot).await?;
            }
            sink.flush().await
        })
    }

    fn page_now(
        &self,
        query: &AvailabilityQuery,
        after: Option<&Slot>,
        max: usize,
    ) -> Option<Vec<Slot>> {
        let waits = !self.latency.is_zero() || !self.slot_interval.is_zero();
        (!waits).then(|| {
            // One allocation for the page (`max` is the core's batch size),
            // not one per doubling.
            let mut page = Vec::with_capacity(max);
            page.extend(self.slots(query, after).take(max));
            page
        })
    }
}

impl EmbeddedAvailability {
    fn slots<'a>(&'a self, query: &AvailabilityQuery, after: Option<&Slot>) -> embedded::Slots<'a> {
        embedded::slots(
            &self.roster,
            &self.config,
            &query.zipcode,
            query.window,
            query.duration_min,
            after,
        )
    }
}

/// The embedded rules engine.
pub struct EmbeddedRules {
    pub roster: Arc<Roster>,
    pub config: RulesConfig,
    pub latency: Duration,
    /// The evaluation time is `now` when the verdict is given.
    pub clock: Clock,
}

impl RulesService for EmbeddedRules {
    fn check(&self, query: RulesQuery) -> BoxFuture<'_, Result<Vec<bool>, DependencyError>> {
        Box::pin(async move {
            pause(self.latency).await;
            Ok(self.evaluate(&query))
        })
    }

    fn check_now(&self, query: &RulesQuery) -> Option<Result<Vec<bool>, DependencyError>> {
        self.latency.is_zero().then(|| Ok(self.evaluate(query)))
    }
}

impl EmbeddedRules {
    fn evaluate(&self, query: &RulesQuery) -> Vec<bool> {
        embedded::evaluate(
            &self.roster,
            &self.config,
            self.clock.now(),
            &query.request,
            &query.candidates,
        )
    }
}

async fn pause(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

/// Tracing layer: a span per call, a debug line when it ends.
pub struct Traced<S>(pub S);

impl<S: AvailabilityService> AvailabilityService for Traced<S> {
    fn stream<'a>(
        &'a self,
        query: AvailabilityQuery,
        sink: &'a mut SlotSink,
    ) -> BoxFuture<'a, Result<(), DependencyError>> {
        let span =
            tracing::debug_span!("availability", call = query.call.0, zipcode = %query.zipcode);
        Box::pin(
            async move {
                let result = self.0.stream(query, sink).await;
                let slots = sink.count();
                match &result {
                    Ok(()) => tracing::debug!(slots, "stream ended"),
                    Err(e) => tracing::warn!(slots, error = %e, "stream failed"),
                }
                result
            }
            .instrument(span),
        )
    }

    fn page_now(
        &self,
        query: &AvailabilityQuery,
        after: Option<&Slot>,
        max: usize,
    ) -> Option<Vec<Slot>> {
        let page = self.0.page_now(query, after, max)?;
        tracing::debug!(call = query.call.0, zipcode = %query.zipcode, slots = page.len(), "page read");
        Some(page)
    }
}

impl<S: RulesService> RulesService for Traced<S> {
    fn check(&self, query: RulesQuery) -> BoxFuture<'_, Result<Vec<bool>, DependencyError>> {
        let span = tracing::debug_span!(
            "rules",
            call = query.call.0,
            candidates = query.candidates.len()
        );
        Box::pin(
            async move {
                let result = self.0.check(query).await;
                match &result {
                    Ok(v) => {
                        tracing::debug!(allowed = v.iter().filter(|&&ok| ok).count(), "verdicts")
                    }
                    Err(e) => tracing::warn!(error = %e, "rules call failed"),
                }
                result
            }
            .instrument(span),
        )
    }

    fn check_now(&self, query: &RulesQuery) -> Option<Result<Vec<bool>, DependencyError>> {
        let result = self.0.check_now(query)?;
        tracing::debug!(
            call = query.call.0,
            candidates = query.candidates.len(),
            ok = result.is_ok(),
            "verdicts"
        );
        Some(result)
    }
}

/// Metrics layer: how long finished calls took and how many run now.
pub struct Metered<S> {
    pub inner: S,
    pub metrics: Arc<Metrics>,
}

/// Counts a call in flight until dropped; records its latency if it finished.
struct InFlight<'a> {
    metrics: &'a Metrics,
    dependency: Dependency,
    started: Instant,
    finished: bool,
}

impl<'a> InFlight<'a> {
    #[allow(clippy::disallowed_methods)] // latency is measured on the monotonic clock
    fn start(metrics: &'a Metrics, dependency: Dependency) -> Self {
        metrics.call_started(dependency);
        InFlight {
            metrics,
            dependency,
            started: Instant::now(),
            finished: false,
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let took = self.finished.then(|| self.started.elapsed());
        self.metrics.call_ended(self.dependency, took);
    }
}

/// `call`, counted in flight while it runs and timed if it finishes.
async fn measured<T>(
    metrics: &Metrics,
    dependency: Dependency,
    call: impl Future<Output = T>,
) -> T {
    let mut guard = InFlight::start(metrics, dependency);
    let result = call.await;
    guard.finished = true;
    result
}

/// An inline call, timed if it answered (each page of an inline stream
/// counts as a call of its own).
fn measured_now<T>(
    metrics: &Metrics,
    dependency: Dependency,
    call: impl FnOnce() -> Option<T>,
) -> Option<T> {
    let mut guard = InFlight::start(metrics, dependency);
    let result = call();
    guard.finished = result.is_some();
    result
}

impl<S: AvailabilityService> AvailabilityService for Metered<S> {
    fn stream<'a>(
        &'a self,
        query: AvailabilityQuery,
        sink: &'a mut SlotSink,
    ) -> BoxFuture<'a, Result<(), DependencyError>> {
        Box::pin(measured(
            &self.metrics,
            Dependency::Availability,
            self.inner.stream(query, sink),
        ))
    }

    fn page_now(
        &self,
        query: &AvailabilityQuery,
        after: Option<&Slot>,
        max: usize,
    ) -> Option<Vec<Slot>> {
        measured_now(&self.metrics, Dependency::Availability, || {
            self.inner.page_now(query, after, max)
        })
    }
}

impl<S: RulesService> RulesService for Metered<S> {
    fn check(&self, query: RulesQuery) -> BoxFuture<'_, Result<Vec<bool>, DependencyError>> {
        Box::pin(measured(
            &self.metrics,
            Dependency::Rules,
            self.inner.check(query),
        ))
    }

    fn check_now(&self, query: &RulesQuery) -> Option<Result<Vec<bool>, DependencyError>> {
        measured_now(&self.metrics, Dependency::Rules, || {
            self.inner.check_now(query)
        })
    }
}

/// The services the driver calls.
#[derive(Clone)]
pub struct Services {
    pub availability: Arc<dyn AvailabilityService>,
    pub rules: Arc<dyn RulesService>,
}

/// Everything the embedded services need.
pub struct EmbeddedSettings {
    pub roster: Arc<Roster>,
    pub availability: AvailabilityConfig,
    pub rules: RulesConfig,
    pub availability_latency: Duration,
    pub slot_interval: Duration,
    pub rules_latency: Duration,
}

impl Services {
    /// The embedded services with the tracing and metrics layers.
    pub fn embedded(settings: EmbeddedSettings, clock: Clock, metrics: Arc<Metrics>) -> Self {
        let availability = EmbeddedAvailability {
            roster: settings.roster.clone(),
            config: settings.availability,
            latency: settings.availability_latency,
            slot_interval: settings.slot_interval,
        };
        let rules = EmbeddedRules {
            roster: settings.roster,
            config: settings.rules,
            latency: settings.rules_latency,
            clock,
        };
        Services {
            availability: Arc::new(Metered {
                inner: Traced(availability),
                metrics: metrics.clone(),
            }),
            rules: Arc::new(Metered {
                inner: Traced(rules),
                metrics,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::time::MS_PER_HOUR;

    fn demo_settings(latency_ms: u64, interval_ms: u64) -> EmbeddedSettings {
        EmbeddedSettings {
            roster: Arc::new(Roster::demo()),
            availability: AvailabilityConfig { slot_step_min: 15 },
            rules: RulesConfig::default(),
            availability_latency: Duration::from_millis(latency_ms),
            slot_interval: Duration::from_millis(interval_ms),
            rules_latency: Duration::ZERO,
        }
    }

    fn query(hours: u64) -> AvailabilityQuery {
        // A day far in the future, from midnight UTC.
        let start = Timestamp(1_803_859_200_000);
        AvailabilityQuery {
            call: CallId(1),
            zipcode: "94107".into(),
            window: Window::new(start, start.plus_ms(hours * MS_PER_HOUR)),
            duration_min: 30,
            after: None,
            deadline: Timestamp::MAX,
        }
    }

    async fn collect(services: &Services, q: AvailabilityQuery, chunk: usize) -> Vec<Input> {
        let (tx, mut rx) = mpsc::channel(1024);
        let mut sink = SlotSink::new(q.call, tx, chunk);
        services.availability.stream(q, &mut sink).await.unwrap();
        drop(sink);
        let mut got = Vec::new();
        while let Some(i) = rx.recv().await {
            got.push(i);
        }
        got
    }

    /// The slots of `q` straight from the pure stream.
    fn pure_slots(q: &AvailabilityQuery) -> Vec<Slot> {
        let config = AvailabilityConfig { slot_step_min: 15 };
        embedded::slots(&Roster::demo(), &config, &q.zipcode, q.window, 30, None).collect()
    }

    #[tokio::test]
    async fn streams_the_pure_slots_in_numbered_chunks() {
        let metrics = Arc::new(Metrics::new(1));
        let services = Services::embedded(demo_settings(0, 0), Clock::start(), metrics.clone());
        let q = query(2);
        let expected = pure_slots(&q);
        assert!(!expected.is_empty());
        let batches = collect(&services, q, 3).await;
        let mut got = Vec::new();
        for b in batches {
            let Input::SlotsStreamed {
                first_index, slots, ..
            } = b
            else {
                panic!("only batches")
            };
            assert_eq!(first_index as usize, got.len());
            assert!(slots.len() <= 3);
            got.extend(slots);
        }
        assert_eq!(got, expected);
        let text = metrics.encode(false);
        let finished =
            "tour_dispatcher_dependency_call_duration_seconds_count{dependency=\"availability\"} 1";
        assert!(text.contains(finished), "{text}");
        let running = "tour_dispatcher_dependency_calls_in_flight{dependency=\"availability\"} 0";
        assert!(text.contains(running), "{text}");
    }

    #[test]
    fn pages_read_at_once_are_the_stream_in_order() {
        let metrics = Arc::new(Metrics::new(1));
        let services = Services::embedded(demo_settings(0, 0), Clock::start(), metrics);
        let q = query(6);
        let expected = pure_slots(&q);
        let mut got: Vec<Slot> = Vec::new();
        loop {
            let page = services
                .availability
                .page_now(&q, got.last(), 7)
                .expect("no latency: pages at once");
            let last = page.len() < 7;
            got.extend(page);
            if last {
                break;
            }
        }
        assert!(expected.len() > 7 * 3, "several pages");
        assert_eq!(got, expected);

        let waiting = Services::embedded(
            demo_settings(1, 0),
            Clock::start(),
            Arc::new(Metrics::new(1)),
        );
        assert!(waiting.availability.page_now(&q, None, 7).is_none());
        let ticking = Services::embedded(
            demo_settings(0, 1),
            Clock::start(),
            Arc::new(Metrics::new(1)),
        );
        assert!(ticking.availability.page_now(&q, None, 7).is_none());
    }

    #[tokio::test]
    async fn latency_and_interval_are_applied() {
        let metrics = Arc::new(Metrics::new(1));
        let services = Services::embedded(demo_settings(60, 5), Clock::start(), metrics);
        let mut q = query(1);
        q.zipcode = "99999".into();
        #[allow(clippy::disallowed_methods)]
        let started = Instant::now();
        assert!(collect(&services, q, 8).await.is_empty());
        assert!(
            started.elapsed() >= Duration::from_millis(60),
            "an empty stream ends late"
        );
        let q = query(1);
        let batches = collect(&services, q, 8).await;
        assert!(batches.len() > 1, "slots come one by one when spaced");
        assert!(batches
            .iter()
            .all(|b| matches!(b, Input::SlotsStreamed { slots, .. } if slots.len() == 1)));
    }

    #[tokio::test]
    async fn rules_judge_each_candidate() {
        let metrics = Arc::new(Metrics::new(1));
        let services = Services::embedded(demo_settings(0, 0), Clock::start(), metrics);
        let start = Timestamp(1_803_891_600_000);
        let candidate = |agent: &str| Candidate {
            slot: Slot {
                start,
                agent: agent.into(),
            },
            tours_that_day: 0,
        };
        let verdicts = services
            .rules
            .check(RulesQuery {
                call: CallId(2),
                request: RuleRequest {
                    zipcode: "94107".into(),
                    language: Some("fr".into()),
                    duration_min: 30,
                },
                candidates: vec![candidate("ag-9410x-1"), candidate("ag-9410x-2")],
                deadline: Timestamp::MAX,
            })
            .await
            .unwrap();
        assert_eq!(verdicts, [false, true], "only agent 2 speaks fr");
    }
}
