//! The `/metrics` exposition: the metrics the API names (exactly those names
//! and labels), plus the dependency layers' latency and in-flight gauges and
//! the journal writer's commits (durations, batch sizes, counts, file size).
//!
//! Counts the server sees itself (answers to `POST /dispatch`, their
//! duration) are kept here as they happen. Counts and gauges that live in
//! the core (queue depths, reservations, keys, dependency call results, whose
//! `ok`/`cancelled` split only the core knows) are copied from its
//! [`Stats`] at scrape time.
//!
//! `prometheus-client` writes OpenMetrics; a scraper that asks for it gets
//! it, anyone else gets the classic Prometheus text format (version 0.0.4),
//! which differs only in the counters' `# TYPE` names and the `# EOF` line.

use crate::core::stats::CallResult;
use crate::core::{Dependency, Outcome, Stats};
use crate::journal::JournalStats;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::Mutex;
use std::time::Duration;

pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The outcomes `tour_dispatcher_dispatch_total` counts (the API's list).
pub const DISPATCH_OUTCOMES: [Outcome; 7] = [
    Outcome::Assigned,
    Outcome::NoAvailability,
    Outcome::Invalid,
    Outcome::IdempotencyConflict,
    Outcome::Overloaded,
    Outcome::DependencyUnavailable,
    Outcome::DeadlineExceeded,
];

const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShardLabel {
    shard: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    dependency: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DependencyLabel {
    dependency: &'static str,
}

/// Seconds a journal commit (one write and one sync) may take: from a
/// tenth of a millisecond (a sync on a fast disk) to a second.
const COMMIT_BUCKETS: [f64; 13] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// The journal writer's series. The writer thread updates them itself after
/// each commit: atomics, no lock the driver could wait on.
#[derive(Clone, Debug)]
pub struct JournalMetrics {
    commit_duration: Histogram,
    batch_records: Histogram,
    counters: [Counter; 6],
    file_bytes: Gauge,
}

/// The writer's counts the counters follow, in [`JournalMetrics::counters`] order.
fn journal_counts(stats: &JournalStats) -> [u64; 6] {
    [
        stats.appends,
        stats.syncs,
        stats.bytes_written,
        stats.failed_batches,
        stats.snapshots,
        stats.failed_snapshots,
    ]
}

const JOURNAL_COUNTERS: [(&str, &str); 6] = [
    (
        "tour_dispatcher_journal_records",
        "Records handed to the journal writer",
    ),
    (
        "tour_dispatcher_journal_syncs",
        "File syncs of the journal (batches and snapshots)",
    ),
    (
        "tour_dispatcher_journal_written_bytes",
        "Bytes written to journal files",
    ),
    (
        "tour_dispatcher_journal_failed_batches",
        "Journal batches whose write or sync failed",
    ),
    (
        "tour_dispatcher_journal_snapshots",
        "Snapshots installed (compactions and recoveries from a failure)",
    ),
    (
        "tour_dispatcher_journal_failed_snapshots",
        "Snapshot attempts that failed",
    ),
];

impl JournalMetrics {
    fn register(registry: &mut Registry) -> Self {
        let commit_duration = Histogram::new(COMMIT_BUCKETS);
        registry.register(
            "tour_dispatcher_journal_commit_duration_seconds",
            "Time one journal commit (a write and a sync of a batch) took",
            commit_duration.clone(),
        );
        let batch_records = Histogram::new(exponential_buckets(1.0, 2.0, 13));
        registry.register(
            "tour_dispatcher_journal_batch_records",
            "Records one journal commit made durable (group commit)",
            batch_records.clone(),
        );
        let counters = JOURNAL_COUNTERS.map(|(name, help)| {
            let counter = Counter::default();
            registry.register(name, help, counter.clone());
            counter
        });
        let file_bytes = Gauge::default();
        registry.register(
            "tour_dispatcher_journal_file_bytes",
            "Length of the current journal file (what was appended; preallocated zeros not counted)",
            file_bytes.clone(),
        );
        JournalMetrics {
            commit_duration,
            batch_records,
            counters,
            file_bytes,
        }
    }

    /// A commit of `records` records took `took`.
    pub fn committed(&self, records: usize, took: Duration) {
        self.commit_duration.observe(took.as_secs_f64());
        self.batch_records.observe(records as f64);
    }

    /// Follows the writer's counts from `before` to `now`.
    pub fn copy_stats(&self, before: &JournalStats, now: &JournalStats) {
        let (before, after) = (journal_counts(before), journal_counts(now));
        for ((counter, b), a) in self.counters.iter().zip(before).zip(after) {
            counter.inc_by(a.saturating_sub(b));
        }
        self.file_bytes
            .set(i64::try_from(now.file_len).unwrap_or(i64::MAX));
    }
}

/// Every metric of the server.
pub struct Metrics {
    registry: Registry,
    dispatch_total: Family<OutcomeLabel, Counter>,
    dispatch_duration: Histogram,
    cancellations_total: Counter,
    shard_queue_depth: Family<ShardLabel, Gauge>,
    reservations_active: Gauge,
    idempotency_keys: Gauge,
    dependency_calls: Family<CallLabels, Counter>,
    /// The in-flight gauge and duration histogram of availability and of
    /// rules, looked up once: the driver times every inline call, and a
    /// family lookup takes a lock and a hash each time.
    call_series: [(Gauge, Histogram); 2],
    /// The core's dependency counts as last copied into the counters.
    copied_calls: Mutex<[[u64; 3]; 3]>,
    journal: JournalMetrics,
}

impl Metrics {
    pub fn new(shards: u32) -> Self {
        let mut registry = Registry::default();
        let dispatch_total = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "tour_dispatcher_dispatch",
            "Answers to POST /dispatch, by outcome (replays count under their answer)",
            dispatch_total.clone(),
        );
        let dispatch_duration = Histogram::new(DURATION_BUCKETS);
        registry.register(
            "tour_dispatcher_dispatch_duration_seconds",
            "Time from a POST /dispatch arriving to its answer",
            dispatch_duration.clone(),
        );
        let cancellations_total = Counter::default();
        registry.register(
            "tour_dispatcher_cancellations",
            "DELETEs that cancelled a confirmed assignment",
            cancellations_total.clone(),
        );
        let shard_queue_depth = Family::<ShardLabel, Gauge>::default();
        registry.register(
            "tour_dispatcher_shard_queue_depth",
            "Requests waiting in each shard's queue",
            shard_queue_depth.clone(),
        );
        let reservations_active = Gauge::default();
        registry.register(
            "tour_dispatcher_reservations_active",
            "Confirmed assignments held (durable, not cancelled, within retention)",
            reservations_active.clone(),
        );
        let idempotency_keys = Gauge::default();
        registry.register(
            "tour_dispatcher_idempotency_keys",
            "Idempotency keys remembered or in flight",
            idempotency_keys.clone(),
        );
        let dependency_calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "tour_dispatcher_dependency_calls",
            "Calls to availability, rules and the journal, by result",
            dependency_calls.clone(),
        );
        let dependency_duration =
            Family::<DependencyLabel, Histogram>::new_with_constructor(|| {
                Histogram::new(DURATION_BUCKETS)
            });
        registry.register(
            "tour_dispatcher_dependency_call_duration_seconds",
                        "Time a finished availability stream (one page of it when read inline) or rules call took",
            dependency_duration.clone(),
        );
        let dependency_in_flight = Family::<DependencyLabel, Gauge>::default();
        registry.register(
            "tour_dispatcher_dependency_calls_in_flight",
            "Availability streams and rules calls running now",
            dependency_in_flight.clone(),
        );
        let call_series = [Dependency::Availability, Dependency::Rules].map(|dependency| {
            let label = DependencyLabel {
                dependency: dependency.label(),
            };
            let in_flight = dependency_in_flight.get_or_create(&label).clone();
            (in_flight, dependency_duration.get_or_create(&label).clone())
        });
        let journal = JournalMetrics::register(&mut registry);
        let metrics = Metrics {
            registry,
            journal,
            call_series,
            dispatch_total,
            dispatch_duration,
            cancellations_total,
            shard_queue_depth,
            reservations_active,
            idempotency_keys,
            dependency_calls,
            copied_calls: Mutex::new([[0; 3]; 3]),
        };
        metrics.show_every_series(shards);
        metrics
    }

    /// Creates every labelled series at zero, so a scrape shows them all
    /// before the first event.
    fn show_every_series(&self, shards: u32) {
        for outcome in DISPATCH_OUTCOMES {
            drop(self.dispatch_total.get_or_create(&OutcomeLabel {
                outcome: outcome.label(),
            }));
        }
        for shard in 0..shards {
            drop(self.shard_queue_depth.get_or_create(&ShardLabel {
                shard: shard.to_string(),
            }));
        }
        for dependency in Dependency::ALL {
            for result in CallResult::ALL {
                drop(self.dependency_calls.get_or_create(&CallLabels {
                    dependency: dependency.label(),
                    result: result.label(),
                }));
            }
        }
    }

    /// The journal writer's series, for the writer thread.
    pub fn journal(&self) -> JournalMetrics {
        self.journal.clone()
    }

    /// One answered `POST /dispatch`.
    pub fn dispatch_answered(&self, outcome: Outcome, took: Duration) {
        self.dispatch_total
            .get_or_create(&OutcomeLabel {
                outcome: outcome.label(),
            })
            .inc();
        self.dispatch_duration.observe(took.as_secs_f64());
    }

    /// A cancel record became durable.
    pub fn cancelled(&self) {
        self.cancellations_total.inc();
    }

    /// A call to availability or rules started.
    pub fn call_started(&self, dependency: Dependency) {
        if let Some((in_flight, _)) = self.call_series(dependency) {
            in_flight.inc();
        }
    }

    /// A call ended (`took` is `None` when it was stopped before it finished).
    pub fn call_ended(&self, dependency: Dependency, took: Option<Duration>) {
        if let Some((in_flight, duration)) = self.call_series(dependency) {
            in_flight.dec();
            if let Some(took) = took {
                duration.observe(took.as_secs_f64());
            }
        }
    }

    /// The series of a call; the journal's writes are not calls.
    fn call_series(&self, dependency: Dependency) -> Option<&(Gauge, Histogram)> {
        match dependency {
            Dependency::Availability => Some(&self.call_series[0]),
            Dependency::Rules => Some(&self.call_series[1]),
            Dependency::Journal => None,
        }
    }

    /// Copies the core's gauges and dependency counts.
    pub fn copy_core_stats(&self, stats: &Stats) {
        for (shard, depth) in stats.queue_depths.iter().enumerate() {
            self.shard_queue_depth
                .get_or_create(&ShardLabel {
                    shard: shard.to_string(),
                })
                .set(i64::from(*depth));
        }
        self.reservations_active
            .set(i64::try_from(stats.reservations_active).unwrap_or(i64::MAX));
        self.idempotency_keys
            .set(i64::try_from(stats.idempotency_keys).unwrap_or(i64::MAX));
        let mut copied = self.copied_calls.lock().unwrap_or_else(|p| p.into_inner());
        for dependency in Dependency::ALL {
            for result in CallResult::ALL {
                let now = stats.calls(dependency, result);
                let before = &mut copied[dependency as usize][result as usize];
                if now > *before {
                    self.dependency_calls
                        .get_or_create(&CallLabels {
                            dependency: dependency.label(),
                            result: result.label(),
                        })
                        .inc_by(now - *before);
                    *before = now;
                }
            }
        }
    }

    /// The exposition, in OpenMetrics when `openmetrics`, else in the
    /// Prometheus text format.
    pub fn encode(&self, openmetrics: bool) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        if openmetrics {
            text
        } else {
            openmetrics_to_prometheus(&text)
        }
    }
}

/// Whether an `Accept` header asks for OpenMetrics.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

/// OpenMetrics text → Prometheus text 0.0.4: a counter family `x` is
/// announced as `x_total` (its samples already are), `# UNIT` and `# EOF`
/// lines go.
fn openmetrics_to_prometheus(text: &str) -> String {
    let counters: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok())?
        })
    }

    #[test]
    fn exposes_the_api_names_with_zeros_first() {
        let m = Metrics::new(2);
        let text = m.encode(false);
        for outcome in DISPATCH_OUTCOMES {
            let series = format!(
                "tour_dispatcher_dispatch_total{{outcome=\"{}\"}}",
                outcome.label()
            );
            assert_eq!(sample(&text, &series), Some(0.0), "{series}");
        }
        assert_eq!(
            sample(&text, "tour_dispatcher_cancellations_total"),
            Some(0.0)
        );
        assert_eq!(
            sample(&text, "tour_dispatcher_shard_queue_depth{shard=\"1\"}"),
            Some(0.0)
        );
        assert_eq!(
            sample(&text, "tour_dispatcher_reservations_active"),
            Some(0.0)
        );
        assert_eq!(sample(&text, "tour_dispatcher_idempotency_keys"), Some(0.0));
        assert_eq!(
            sample(
                &text,
                "tour_dispatcher_dependency_calls_total{dependency=\"journal\",result=\"cancelled\"}"
            ),
            Some(0.0)
        );
        assert!(text.contains("# TYPE tour_dispatcher_dispatch_total counter"));
        assert!(text.contains("# TYPE tour_dispatcher_dispatch_duration_seconds histogram"));
        assert!(!text.contains("# EOF"));
        assert!(m.encode(true).ends_with("# EOF\n"));
    }

    #[test]
    fn counts_answers_and_copies_core_stats() {
        let m = Metrics::new(2);
        m.dispatch_answered(Outcome::Assigned, Duration::from_millis(3));
        m.dispatch_answered(Outcome::Assigned, Duration::from_millis(3));
        m.cancelled();
        let mut stats = Stats {
            queue_depths: vec![0, 5],
            reservations_active: 2,
            idempotency_keys: 3,
            ..Stats::default()
        };
        stats.dependency_calls[Dependency::Availability as usize][CallResult::Ok as usize] = 4;
        m.copy_core_stats(&stats);
        m.copy_core_stats(&stats);
        let text = m.encode(false);
        let assigned = "tour_dispatcher_dispatch_total{outcome=\"assigned\"}";
        assert_eq!(sample(&text, assigned), Some(2.0));
        assert_eq!(
            sample(&text, "tour_dispatcher_dispatch_duration_seconds_count"),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, "tour_dispatcher_cancellations_total"),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "tour_dispatcher_shard_queue_depth{shard=\"1\"}"),
            Some(5.0)
        );
        assert_eq!(
            sample(&text, "tour_dispatcher_reservations_active"),
            Some(2.0)
        );
        let ok =
            "tour_dispatcher_dependency_calls_total{dependency=\"availability\",result=\"ok\"}";
        assert_eq!(sample(&text, ok), Some(4.0), "copied once, not twice");
    }
}
