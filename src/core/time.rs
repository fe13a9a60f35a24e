//! Time as the core sees it: milliseconds since the Unix epoch, passed in by
//! the driver. The core never reads a clock.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Milliseconds since the Unix epoch (UTC).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

pub const MS_PER_SECOND: u64 = 1_000;
pub const MS_PER_MINUTE: u64 = 60 * MS_PER_SECOND;
pub const MS_PER_HOUR: u64 = 60 * MS_PER_MINUTE;
pub const MS_PER_DAY: u64 = 24 * MS_PER_HOUR;

impl Timestamp {
    pub const ZERO: Timestamp = Timestamp(0);
    pub const MAX: Timestamp = Timestamp(u64::MAX);

    pub const fn from_millis(ms: u64) -> Self {
        Timestamp(ms)
    }

    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// This instant plus `ms`, saturating at the end of time.
    pub const fn plus_ms(self, ms: u64) -> Self {
        Timestamp(self.0.saturating_add(ms))
    }

    /// This instant minus `ms`, saturating at the epoch.
    pub const fn minus_ms(self, ms: u64) -> Self {
        Timestamp(self.0.saturating_sub(ms))
    }

    /// Milliseconds from `earlier` to `self` (zero if `earlier` is later).
    pub const fn since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// The UTC day this instant falls on, counted from the epoch.
    pub const fn utc_day(self) -> u32 {
        (self.0 / MS_PER_DAY) as u32
    }

    /// RFC 3339 in UTC with a `Z`, to the second when there are no
    /// milliseconds (the common case), else to the millisecond.
    pub fn to_rfc3339(self) -> String {
        use ::time::format_description::well_known::Rfc3339;
        let nanos = i128::from(self.0) * 1_000_000;
        match ::time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
            Ok(t) => t
                .format(&Rfc3339)
                .unwrap_or_else(|_| format!("@{}ms", self.0)),
            Err(_) => format!("@{}ms", self.0),
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// A half-open interval of time `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Window {
    pub start: Timestamp,
    pub end: Timestamp,
}

impl Window {
    pub fn new(start: Timestamp, end: Timestamp) -> Self {
        debug_assert!(start <= end);
        Window { start, end }
    }

    pub fn len_ms(&self) -> u64 {
        self.end.since(self.start)
    }

    pub fn contains(&self, other: &Window) -> bool {
        self.start <= other.start && other.end <= self.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_rfc3339_utc() {
        assert_eq!(Timestamp(0).to_rfc3339(), "1970-01-01T00:00:00Z");
        assert_eq!(
            Timestamp(1_803_891_600_000).to_rfc3339(),
            "2027-03-01T09:00:00Z"
        );
        assert_eq!(Timestamp(1_500).to_rfc3339(), "1970-01-01T00:00:01.5Z");
    }

    #[test]
    fn utc_day_boundaries() {
        assert_eq!(Timestamp(MS_PER_DAY - 1).utc_day(), 0);
        assert_eq!(Timestamp(MS_PER_DAY).utc_day(), 1);
    }

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(Timestamp::MAX.plus_ms(1), Timestamp::MAX);
        assert_eq!(Timestamp(5).minus_ms(10), Timestamp::ZERO);
        assert_eq!(Timestamp(5).since(Timestamp(10)), 0);
    }
}
