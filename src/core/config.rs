//! The core's configuration: every bound it enforces, each a plain value with
//! the default from the API's flag table.

use crate::core::ids::Secret;
use crate::core::time::{MS_PER_DAY, MS_PER_MINUTE, MS_PER_SECOND};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Number of shards (each with its own queue).
    pub shards: u32,
    /// Virtual nodes per shard on the hash ring.
    pub vnodes: u32,
    /// Requests waiting per shard, running ones not counted.
    pub queue_capacity: u32,
    /// Requests per shard waiting for room in a full queue.
    pub max_waiters: u32,
    /// Requests a shard runs at once.
    pub shard_concurrency: u32,
    /// How long a request may wait for room in a full queue (0: refuse at once).
    pub enqueue_timeout_ms: u64,
    /// How long an idempotency key is remembered, from its first request.
    pub idempotency_ttl_ms: u64,
    /// Keys remembered or in flight at once.
    pub max_idempotency_keys: u32,
    /// Repeats of one key that may wait on its running attempt.
    pub max_joiners: u32,
    /// Usable slots gathered into one batch for the rules.
    pub max_candidates: u32,
    /// How far ahead a window may end.
    pub horizon_days: u32,
    /// How long after its end an assignment stays readable.
    pub retention_days: u32,
    /// Minutes kept free between two tours of one agent.
    pub travel_buffer_min: u32,
    /// Attempts alive at once, over all shards (queued, running, writing or
    /// undoing). Bounds the core's tables when the journal is slow; past it a
    /// new request is refused as overloaded.
    pub max_attempts: u32,
    /// `DELETE`s waiting for their cancel record to become durable.
    pub max_pending_cancels: u32,
    /// The `Retry-After` sent with 503 answers, in seconds.
    pub retry_after_s: u32,
    /// Key of the keyed hashes (idempotency keys, fingerprints, ids).
    pub secret: Secret,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            shards: 8,
            vnodes: 64,
            queue_capacity: 64,
            max_waiters: 64,
            shard_concurrency: 1,
            enqueue_timeout_ms: 50,
            idempotency_ttl_ms: 86_400 * MS_PER_SECOND,
            max_idempotency_keys: 4_000_000,
            max_joiners: 16,
            max_candidates: 64,
            horizon_days: 365,
            retention_days: 30,
            travel_buffer_min: 15,
            max_attempts: 65_536,
            max_pending_cancels: 4_096,
            retry_after_s: 1,
            secret: Secret::default(),
        }
    }
}

/// A configuration value out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} must be between {min} and {max}, got {value}")]
    OutOfRange {
        name: &'static str,
        value: u64,
        min: u64,
        max: u64,
    },
    #[error(
        "retention ({retention_days} day(s)) must be at least the idempotency TTL ({ttl_s} s)"
    )]
    RetentionShorterThanTtl { retention_days: u32, ttl_s: u64 },
}

impl Config {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let checks: [(&'static str, u64, u64, u64); 16] = [
            ("shards", self.shards.into(), 1, 1024),
            ("vnodes", self.vnodes.into(), 1, 4096),
            ("queue_capacity", self.queue_capacity.into(), 1, 1_000_000),
            ("max_waiters", self.max_waiters.into(), 0, 1_000_000),
            ("shard_concurrency", self.shard_concurrency.into(), 1, 1024),
            ("enqueue_timeout_ms", self.enqueue_timeout_ms, 0, 3_600_000),
            (
                "idempotency_ttl_ms",
                self.idempotency_ttl_ms,
                1,
                365 * MS_PER_DAY,
            ),
            (
                "max_idempotency_keys",
                self.max_idempotency_keys.into(),
                1,
                100_000_000,
            ),
            ("max_joiners", self.max_joiners.into(), 0, 1024),
            ("max_candidates", self.max_candidates.into(), 1, 10_000),
            ("horizon_days", self.horizon_days.into(), 1, 3650),
            ("retention_days", self.retention_days.into(), 1, 3650),
            ("travel_buffer_min", self.travel_buffer_min.into(), 0, 1440),
            ("max_attempts", self.max_attempts.into(), 1, 100_000_000),
            (
                "max_pending_cancels",
                self.max_pending_cancels.into(),
                1,
                100_000_000,
            ),
            ("retry_after_s", self.retry_after_s.into(), 1, 3600),
        ];
        for (name, value, min, max) in checks {
            if value < min || value > max {
                return Err(ConfigError::OutOfRange {
                    name,
                    value,
                    min,
                    max,
                });
            }
        }
        if self.retention_ms() < self.idempotency_ttl_ms {
            return Err(ConfigError::RetentionShorterThanTtl {
                retention_days: self.retention_days,
                ttl_s: self.idempotency_ttl_ms / MS_PER_SECOND,
            });
        }
        Ok(())
    }

    pub fn retention_ms(&self) -> u64 {
        u64::from(self.retention_days) * MS_PER_DAY
    }

    pub fn travel_buffer_ms(&self) -> u64 {
        u64::from(self.travel_buffer_min) * MS_PER_MINUTE
    }
}
