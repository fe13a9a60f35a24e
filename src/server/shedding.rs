//! Shedding under CPU overload: refusing new dispatches while the runtime
//! runs its tasks late.
//!
//! When the server's CPU is the bottleneck, requests do not wait in any of
//! its queues: they wait in the kernel's socket buffers and in the
//! runtime's run queue, before a handler sees them, so no queue bound
//! refuses them and the backlog grows to seconds. What does show is how
//! late the runtime wakes a task that asked to be woken: a probe task
//! sleeps for half the lag bound (between 1 and 100 ms) again and again
//! and measures how late it wakes. A wake later than the bound starts
//! shedding, for the hold time after it: a new dispatch is answered 503
//! overloaded (with Retry-After) as soon as its body is read, at a fraction
//! of a full request's cost, so the backlog drains and the dispatches taken
//! wait less. The probe reads the runtime's clock, as the server does for
//! its timers: this is the server measuring itself, not the core's time.
//!
//! Off by default (`--shed-lag-ms 0`). A bound is a trade: a tight one
//! keeps the accepted requests' latency low under overload, and also
//! refuses the tail of a burst that the server would have caught up with
//! (on a loaded machine, the runtime is sometimes late by itself).
//! Requiring two late probes in a row, so that one stall would not count,
//! was tried and shed too little to drain a sustained overload
//! (BENCHMARKS.md, "Shedding under CPU overload").

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::time::Instant;

/// When to shed: the lag bound and how long shedding lasts after a late
/// probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SheddingConfig {
    /// A probe later than this is late.
    pub lag_bound: Duration,
    /// How long shedding lasts after a late probe.
    pub hold: Duration,
}

impl SheddingConfig {
    /// How often the probe asks to be woken: half the bound, so that a
    /// runtime that is late finds the probe late within about a bound and
    /// a half.
    pub fn probe_period(&self) -> Duration {
        (self.lag_bound / 2).clamp(Duration::from_millis(1), Duration::from_millis(100))
    }

    /// What one probe's lag, measured at `now`, decides: the instant until
    /// which to shed, if the probe was late.
    pub fn shedding_end(&self, lag: Duration, now: Instant) -> Option<Instant> {
        (lag > self.lag_bound).then(|| now + self.hold)
    }
}

/// Whether new dispatches are being shed; read by every handler, written
/// by the probe.
#[derive(Debug)]
pub struct Shedder {
    /// The instant `until_us` counts from.
    origin: Instant,
    /// Until when to shed, in microseconds after `origin` (0: not shedding).
    until_us: AtomicU64,
}

impl Shedder {
    /// A shedder that sheds nothing until a probe says so.
    pub fn new() -> Arc<Self> {
        Arc::new(Shedder {
            origin: Instant::now(),
            until_us: AtomicU64::new(0),
        })
    }

    /// Whether a dispatch arriving now is to be refused.
    pub fn is_shedding(&self) -> bool {
        let until = self.until_us.load(Ordering::Relaxed);
        until != 0 && self.micros_since_origin(Instant::now()) < until
    }

    /// Sheds every dispatch that arrives before `until` (a sooner end than
    /// one already set changes nothing).
    pub fn shed_until(&self, until: Instant) {
        // 0 stands for "not shedding": an end at the origin is past anyway.
        let until = self.micros_since_origin(until);
        self.until_us.fetch_max(until, Ordering::Relaxed);
    }

    fn micros_since_origin(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.origin).as_micros() as u64
    }

    /// Starts the probe on the current runtime; it stops with the runtime
    /// or once the shedder is dropped (with the server that held it).
    pub fn start_probe(self: &Arc<Self>, config: SheddingConfig) {
        tokio::spawn(probe(Arc::downgrade(self), config));
    }
}

/// How often shedding may be logged: under a sustained overload it starts
/// again every hold.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Wakes every probe period and sheds after a late wake, until `shedder`
/// is gone.
async fn probe(shedder: Weak<Shedder>, config: SheddingConfig) {
    let period = config.probe_period();
    let mut logged: Option<Instant> = None;
    loop {
        let due = Instant::now() + period;
        tokio::time::sleep_until(due).await;
        let now = Instant::now();
        let Some(shedder) = shedder.upgrade() else {
            return;
        };
        let lag = now.saturating_duration_since(due);
        let Some(until) = config.shedding_end(lag, now) else {
            continue;
        };
        if logged.is_none_or(|at| now >= at + LOG_EVERY) {
            logged = Some(now);
            tracing::warn!(
                lag_ms = lag.as_millis() as u64,
                bound_ms = config.lag_bound.as_millis() as u64,
                "the runtime is running late: refusing new dispatches as overloaded"
            );
        }
        shedder.shed_until(until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn config(bound_ms: u64) -> SheddingConfig {
        SheddingConfig {
            lag_bound: ms(bound_ms),
            hold: ms(50),
        }
    }

    #[test]
    fn a_probe_later_than_the_bound_sheds_for_the_hold_after_it() {
        let t0 = Instant::now();
        assert_eq!(config(5).shedding_end(ms(1), t0), None, "on time");
        assert_eq!(
            config(5).shedding_end(ms(5), t0),
            None,
            "the bound is not late"
        );
        assert_eq!(config(5).shedding_end(ms(6), t0), Some(t0 + ms(50)));
    }

    #[test]
    fn the_probe_period_is_half_the_bound_within_limits() {
        assert_eq!(config(5).probe_period(), Duration::from_micros(2500));
        assert_eq!(config(1).probe_period(), ms(1));
        assert_eq!(config(10_000).probe_period(), ms(100));
    }

    #[tokio::test]
    async fn a_shedder_sheds_until_the_latest_instant_it_was_given() {
        let shedder = Shedder::new();
        assert!(!shedder.is_shedding());
        shedder.shed_until(Instant::now() + Duration::from_secs(60));
        assert!(shedder.is_shedding());
        shedder.shed_until(Instant::now());
        assert!(shedder.is_shedding(), "a sooner end does not shorten it");
        let past = Shedder::new();
        past.shed_until(Instant::now() - ms(1));
        assert!(!past.is_shedding());
        let brief = Shedder::new();
        brief.shed_until(Instant::now() + ms(20));
        assert!(brief.is_shedding());
        tokio::time::sleep(ms(40)).await;
        assert!(!brief.is_shedding(), "shedding ends at its end");
    }

    /// The probe itself: a runtime held up (as a full CPU holds it) starts
    /// shedding; a runtime on time does not. The bound is far above what a
    /// busy test machine delays a thread by.
    #[tokio::test]
    async fn a_runtime_held_up_starts_shedding() {
        let shedder = Shedder::new();
        shedder.start_probe(SheddingConfig {
            lag_bound: ms(250),
            hold: Duration::from_secs(60),
        });
        tokio::time::sleep(ms(600)).await;
        assert!(!shedder.is_shedding(), "on time: no shedding");
        // This test's runtime has one thread: blocking it holds up the
        // probe, which runs (late) once this task waits.
        std::thread::sleep(ms(600));
        for _ in 0..100 {
            if shedder.is_shedding() {
                break;
            }
            tokio::time::sleep(ms(10)).await;
        }
        assert!(shedder.is_shedding());
    }
}
