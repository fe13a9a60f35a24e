//! The core's pending timers, ordered by due time. `poll_timeout` is the
//! first of them.

use crate::core::io::TimerReason;
use crate::core::time::Timestamp;
use std::collections::BTreeSet;

#[derive(Debug, Clone, Default)]
pub struct Timers {
    due: BTreeSet<(Timestamp, TimerReason)>,
}

impl Timers {
    pub fn set(&mut self, at: Timestamp, reason: TimerReason) {
        self.due.insert((at, reason));
    }

    pub fn clear(&mut self, at: Timestamp, reason: TimerReason) {
        self.due.remove(&(at, reason));
    }

    pub fn next(&self) -> Option<(Timestamp, TimerReason)> {
        self.due.first().copied()
    }

    /// Removes and returns the first timer due at or before `now`.
    pub fn pop_due(&mut self, now: Timestamp) -> Option<TimerReason> {
        match self.due.first() {
            Some(&(at, _)) if at <= now => self.due.pop_first().map(|(_, r)| r),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        self.due.len()
    }

    pub fn is_empty(&self) -> bool {
        self.due.is_empty()
    }
}
