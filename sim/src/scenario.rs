//! Swarm testing: every seed draws its own world — the core's configuration,
//! the roster, the client mix and the fault mix — so that rare corners (one
//! shard with a queue of one, a zero enqueue timeout, a tiny idempotency TTL,
//! a journal that fails every tenth write) are each visited by many seeds.
//!
//! Every draw follows the convention of [`crate::choices`]: a `0` choice is
//! the simple world (one shard, no fault, defaults), so shrinking a choice
//! list simplifies the scenario too.

use crate::choices::{Choices, ChoicesExt};
use crate::services::{Agent, Services};
use compact_str::{format_compact, CompactString};
use serde::{Deserialize, Serialize};
use tour_dispatcher::core::time::{MS_PER_DAY, MS_PER_HOUR, MS_PER_SECOND};
use tour_dispatcher::core::{Config, Secret, Timestamp};

/// 2027-01-04T00:00:00Z, a Monday: where simulated time starts.
pub const EPOCH: Timestamp = Timestamp(1_799_020_800_000);

/// Everything a seed decided before its first event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scenario {
    pub config: Config,
    pub services: Services,
    /// Zipcodes clients ask for (covered ones, then one nobody covers).
    pub zipcodes: Vec<CompactString>,
    pub clients: ClientMix,
    pub faults: Faults,
    /// When the world starts.
    pub start: Timestamp,
    /// How long the safety phase (with faults) lasts.
    pub safety_ms: u64,
}

/// How clients behave. Rates are per million.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientMix {
    /// New clients (bursts not counted) before the safety phase ends early.
    pub arrivals: u64,
    /// Mean gap between two new clients (ms).
    pub mean_gap_ms: u64,
    /// A new client brings a burst of this many others at once.
    pub burst_pm: u32,
    pub burst_max: u64,
    /// Requests that go to the first (hot) zipcode.
    pub hot_zip_pm: u32,
    pub key_pm: u32,
    /// After a 503/504/lost connection, retry with the same key.
    pub retry_pm: u32,
    pub max_retries: u32,
    /// A retry with an altered payload (same key).
    pub alter_pm: u32,
    /// Give up (ClientGone) before the deadline.
    pub give_up_pm: u32,
    /// Cancel an assignment after getting it.
    pub cancel_pm: u32,
    /// Send a DELETE for an id that may not exist.
    pub stray_cancel_pm: u32,
    /// Send a body with invalid values.
    pub invalid_pm: u32,
    /// Send the same request twice at once (the second joins the first).
    pub double_pm: u32,
    /// Send the request again after a success (a replay).
    pub repeat_pm: u32,
    /// A tight deadline (tens of ms).
    pub tight_pm: u32,
    /// Ask for a language few agents speak.
    pub language_pm: u32,
    /// Normal deadline (ms).
    pub timeout_ms: u64,
    /// Shut down (drain) once the faults heal.
    pub drain_pm: u32,
}

/// Fault rates (per million) and latencies (ms).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Faults {
    pub avail_latency_ms: u64,
    pub avail_interval_ms: u64,
    /// Most slots per streamed batch (besides the whole rest at once).
    pub chunk_max: u64,
    pub spike_pm: u32,
    pub spike_ms: u64,
    pub stream_error_pm: u32,
    pub stream_stall_pm: u32,
    /// A delivery carries a slot outside the window and out of order.
    #[serde(default)]
    pub stream_malformed_pm: u32,
    pub duplicate_pm: u32,
    /// A cancelled call still delivers (late).
    pub late_pm: u32,
    pub rules_latency_ms: u64,
    pub rules_error_pm: u32,
    pub rules_timeout_pm: u32,
    pub rules_stall_pm: u32,
    pub rules_malformed_pm: u32,
    pub journal_latency_ms: u64,
    pub journal_spike_pm: u32,
    pub journal_fail_pm: u32,
    /// Crash times within the safety phase (ms after the start).
    pub crashes: Vec<u64>,
    pub restart_ms: u64,
    /// Compact the journal once its file grew this much (`0`: never).
    pub compact_after_bytes: u64,
    /// A compaction is cut short by a crash.
    pub compaction_crash_pm: u32,
}

impl Faults {
    /// The same world with every fault healed (the liveness phase).
    pub fn healed(&self) -> Faults {
        Faults {
            spike_pm: 0,
            stream_error_pm: 0,
            stream_stall_pm: 0,
            stream_malformed_pm: 0,
            duplicate_pm: 0,
            late_pm: 0,
            rules_error_pm: 0,
            rules_timeout_pm: 0,
            rules_stall_pm: 0,
            rules_malformed_pm: 0,
            journal_spike_pm: 0,
            journal_fail_pm: 0,
            crashes: Vec::new(),
            compaction_crash_pm: 0,
            ..self.clone()
        }
    }
}

impl Scenario {
    /// Draws a whole scenario.
    pub fn draw(c: &mut dyn Choices) -> Scenario {
        let config = draw_config(c);
        let services = draw_services(c);
        let mut zipcodes = services.zipcodes();
        zipcodes.push("00000".into());
        let clients = draw_clients(c);
        let safety_ms = c.between(100, 10_000);
        let faults = draw_faults(c, safety_ms);
        let start = EPOCH.plus_ms(c.below(24) * MS_PER_HOUR);
        Scenario {
            config,
            services,
            zipcodes,
            clients,
            faults,
            start,
            safety_ms,
        }
    }
}

/// Small or large, with a `0` choice giving `small.0`.
fn small_or_large(c: &mut dyn Choices, small: (u64, u64), large: (u64, u64)) -> u64 {
    if c.chance(500_000) {
        c.between(large.0, large.1)
    } else {
        c.between(small.0, small.1)
    }
}

/// A fault rate: off (a `0` choice), or up to `max` per million.
fn rate(c: &mut dyn Choices, max: u32) -> u32 {
    if c.chance(600_000) {
        c.between(1, u64::from(max)) as u32
    } else {
        0
    }
}

fn draw_config(c: &mut dyn Choices) -> Config {
    let ttl_ms = if c.chance(250_000) {
        c.between(50, 5_000)
    } else {
        MS_PER_DAY
    };
    Config {
        shards: small_or_large(c, (1, 1), (2, 16)) as u32,
        vnodes: c.between(1, 64) as u32,
        queue_capacity: small_or_large(c, (1, 4), (8, 256)) as u32,
        max_waiters: small_or_large(c, (0, 4), (8, 64)) as u32,
        shard_concurrency: c.between(1, 4) as u32,
        enqueue_timeout_ms: if c.chance(300_000) {
            0
        } else {
            c.between(1, 200)
        },
        idempotency_ttl_ms: ttl_ms,
        max_idempotency_keys: small_or_large(c, (4, 64), (1_000, 100_000)) as u32,
        max_joiners: small_or_large(c, (0, 3), (4, 16)) as u32,
        max_candidates: small_or_large(c, (1, 4), (5, 64)) as u32,
        horizon_days: 365,
        retention_days: 1,
        travel_buffer_min: c.below(31) as u32,
        max_attempts: small_or_large(c, (8, 64), (1_000, 65_536)) as u32,
        max_pending_cancels: small_or_large(c, (1, 4), (64, 4_096)) as u32,
        retry_after_s: 1,
        secret: Secret::new(c.below(u64::MAX), c.below(u64::MAX)),
    }
}

const LANGUAGES: [&str; 4] = ["en", "es", "fr", "zh"];
const STEPS: [u32; 6] = [15, 5, 10, 20, 30, 60];

fn draw_services(c: &mut dyn Choices) -> Services {
    let zip_count = c.between(1, 10) as usize;
    let zips: Vec<CompactString> = (0..zip_count)
        .map(|i| format_compact!("{:05}", 94100 + i * 7))
        .collect();
    let agent_count = small_or_large(c, (1, 4), (5, 40));
    let agents = (0..agent_count)
        .map(|i| {
            let covered = c.between(1, 3) as usize;
            let first = c.index(zips.len());
            let zipcodes = (0..covered)
                .map(|k| zips[(first + k) % zips.len()].clone())
                .collect();
            let languages = LANGUAGES
                .iter()
                .enumerate()
                .filter(|&(k, _)| k == 0 || c.chance(300_000))
                .map(|(_, &l)| l.into())
                .collect();
            let hours = if c.chance(400_000) {
                let from = c.between(0, 12) as u32 * 60;
                (from, from + c.between(2, 12) as u32 * 60)
            } else {
                (0, 24 * 60)
            };
            Agent {
                id: format_compact!("ag-{i:03}"),
                zipcodes,
                languages,
                hours,
            }
        })
        .collect();
    let step = STEPS[c.index(STEPS.len())];
    let max_tours = c.between(1, 8) as u32;
    let min_lead = if c.chance(500_000) {
        c.between(1, 120) as u32
    } else {
        0
    };
    Services::new(agents, step, max_tours, min_lead)
}

fn draw_clients(c: &mut dyn Choices) -> ClientMix {
    ClientMix {
        arrivals: c.below(1_000),
        mean_gap_ms: c.between(2, 40),
        burst_pm: rate(c, 100_000),
        burst_max: c.between(2, 64),
        hot_zip_pm: rate(c, 900_000),
        key_pm: rate(c, 1_000_000),
        retry_pm: rate(c, 1_000_000),
        max_retries: c.between(1, 4) as u32,
        alter_pm: rate(c, 200_000),
        give_up_pm: rate(c, 200_000),
        cancel_pm: rate(c, 300_000),
        stray_cancel_pm: rate(c, 50_000),
        invalid_pm: rate(c, 100_000),
        double_pm: rate(c, 200_000),
        repeat_pm: rate(c, 200_000),
        tight_pm: rate(c, 500_000),
        language_pm: rate(c, 500_000),
        timeout_ms: small_or_large(c, (2_000, 2_000), (100, 10_000)),
        drain_pm: rate(c, 1_000_000),
    }
}

fn draw_faults(c: &mut dyn Choices, safety_ms: u64) -> Faults {
    let crash_count = if c.chance(350_000) {
        c.between(1, 3)
    } else {
        0
    };
    let mut crashes: Vec<u64> = (0..crash_count).map(|_| c.below(safety_ms)).collect();
    crashes.sort_unstable();
    Faults {
        avail_latency_ms: c.between(1, 30),
        avail_interval_ms: c.below(5),
        chunk_max: c.below(16),
        spike_pm: rate(c, 50_000),
        spike_ms: c.between(100, 5 * MS_PER_SECOND),
        stream_error_pm: rate(c, 50_000),
        stream_stall_pm: rate(c, 30_000),
        duplicate_pm: rate(c, 100_000),
        late_pm: rate(c, 500_000),
        rules_latency_ms: c.between(1, 20),
        rules_error_pm: rate(c, 50_000),
        rules_timeout_pm: rate(c, 30_000),
        rules_stall_pm: rate(c, 30_000),
        rules_malformed_pm: rate(c, 20_000),
        journal_latency_ms: c.between(1, 20),
        journal_spike_pm: rate(c, 50_000),
        journal_fail_pm: rate(c, 50_000),
        crashes,
        restart_ms: c.between(1, 500),
        compact_after_bytes: if c.chance(500_000) {
            c.between(200, 20_000)
        } else {
            0
        },
        compaction_crash_pm: rate(c, 250_000),
        // Drawn last: the draws before it keep their meaning.
        stream_malformed_pm: rate(c, 20_000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::choices::{Recorded, Seeded};

    #[test]
    fn every_drawn_config_is_valid() {
        for seed in 0..200 {
            let s = Scenario::draw(&mut Seeded::new(seed));
            s.config.validate().expect("valid config");
            assert!(!s.services.agents.is_empty());
        }
    }

    #[test]
    fn zero_choices_give_the_simple_world() {
        let s = Scenario::draw(&mut Recorded::new(Vec::new()));
        assert_eq!(s.config.shards, 1);
        assert_eq!(s.faults.crashes, Vec::<u64>::new());
        assert_eq!(s.faults.journal_fail_pm, 0);
        assert_eq!(s.faults.healed(), s.faults);
        s.config.validate().expect("valid config");
    }
}
