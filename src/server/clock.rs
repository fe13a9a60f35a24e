//! The server's `now`: the wall clock read once at start, advanced by the
//! monotonic clock. A step of the system clock (NTP, an operator) moves
//! neither deadlines nor timers, and `now` never goes backwards.

use crate::core::Timestamp;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Beyond this, a time is as good as never (and timers need not be set).
pub const FAR_AHEAD: Duration = Duration::from_secs(100 * 365 * 86_400);

#[derive(Clone, Copy, Debug)]
pub struct Clock {
    wall_at_start: Timestamp,
    started: Instant,
}

impl Clock {
    /// Reads the wall clock once.
    #[allow(clippy::disallowed_methods)] // the server is where time enters
    pub fn start() -> Self {
        let wall_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Clock {
            wall_at_start: Timestamp(wall_ms),
            started: Instant::now(),
        }
    }

    /// Milliseconds since the Unix epoch, now.
    pub fn now(&self) -> Timestamp {
        self.wall_at_start
            .plus_ms(self.started.elapsed().as_millis() as u64)
    }

    /// The monotonic instant at which `now()` reaches `at` (now, if it
    /// has); `None` for "never" (more than [`FAR_AHEAD`] away).
    pub fn instant_of(&self, at: Timestamp) -> Option<Instant> {
        let offset = Duration::from_millis(at.since(self.wall_at_start));
        if offset > FAR_AHEAD {
            return None;
        }
        self.started.checked_add(offset)
    }

    /// How long until `now()` reaches `at` (zero if it has).
    pub fn until(&self, at: Timestamp) -> Duration {
        Duration::from_millis(at.since(self.now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_monotonic_and_close_to_the_wall_clock() {
        let clock = Clock::start();
        let a = clock.now();
        let b = clock.now();
        assert!(b >= a);
        #[allow(clippy::disallowed_methods)]
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(wall.abs_diff(a.as_millis()) < 5_000);
    }

    #[test]
    fn instants_map_back_to_timestamps() {
        let clock = Clock::start();
        let later = clock.now().plus_ms(1_500);
        let until = clock.until(later);
        assert!(until <= Duration::from_millis(1_500));
        assert!(until >= Duration::from_millis(1_000));
        assert!(clock.instant_of(later) > clock.instant_of(clock.now()));
        assert_eq!(clock.instant_of(Timestamp::MAX), None);
    }
}
