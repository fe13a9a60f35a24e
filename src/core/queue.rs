//! A shard's admission: a bounded queue of attempts waiting to run, a
//! bounded line of attempts waiting for room in that queue, and a count of
//! running attempts capped by the shard's concurrency.

use crate::core::ids::AttemptId;
use std::collections::VecDeque;

/// Where an offered attempt went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// It may run now (a run slot was free).
    Run,
    /// It waits in the queue.
    Queued,
    /// The queue is full; it waits for room until its enqueue timeout.
    Waiting,
    /// Queue and waiting line are full (or waiting is not allowed): refuse.
    Refused,
}

#[derive(Debug, Clone)]
pub struct ShardQueue {
    queue: VecDeque<AttemptId>,
    waiters: VecDeque<AttemptId>,
    running: u32,
    capacity: usize,
    max_waiters: usize,
    concurrency: u32,
}

impl ShardQueue {
    pub fn new(capacity: u32, max_waiters: u32, concurrency: u32) -> Self {
        ShardQueue {
            queue: VecDeque::new(),
            waiters: VecDeque::new(),
            running: 0,
            capacity: capacity as usize,
            max_waiters: max_waiters as usize,
            concurrency,
        }
    }

    /// Offers a new attempt; `may_wait` is false when the enqueue timeout is 0.
    pub fn offer(&mut self, attempt: AttemptId, may_wait: bool) -> Admission {
        if self.running < self.concurrency && self.queue.is_empty() {
            self.running += 1;
            Admission::Run
        } else if self.queue.len() < self.capacity {
            self.queue.push_back(attempt);
            Admission::Queued
        } else if may_wait && self.waiters.len() < self.max_waiters {
            self.waiters.push_back(attempt);
            Admission::Waiting
        } else {
            Admission::Refused
        }
        .checked(self)
    }

    /// A running attempt finished its run; returns the next attempt to run
    /// (which now holds the freed slot) and the waiter that moved into the
    /// queue, if any.
    pub fn finish_run(&mut self) -> (Option<AttemptId>, Option<AttemptId>) {
        debug_assert!(self.running > 0);
        self.running -= 1;
        let next = self.start_next();
        let promoted = self.promote_waiter();
        self.check();
        (next, promoted)
    }

    /// Takes an attempt out of the queue or the waiting line (it was
    /// abandoned or timed out). Returns the waiter promoted into the room it
    /// left, if any.
    pub fn withdraw(&mut self, attempt: AttemptId) -> Option<AttemptId> {
        if let Some(i) = self.waiters.iter().position(|&a| a == attempt) {
            self.waiters.remove(i);
            return None;
        }
        if let Some(i) = self.queue.iter().position(|&a| a == attempt) {
            self.queue.remove(i);
            let promoted = self.promote_waiter();
            self.check();
            return promoted;
        }
        None
    }

    pub fn depth(&self) -> u32 {
        self.queue.len() as u32
    }

    pub fn waiting(&self) -> u32 {
        self.waiters.len() as u32
    }

    pub fn running(&self) -> u32 {
        self.running
    }

    fn start_next(&mut self) -> Option<AttemptId> {
        if self.running < self.concurrency {
            let next = self.queue.pop_front()?;
            self.running += 1;
            Some(next)
        } else {
            None
        }
    }

    fn promote_waiter(&mut self) -> Option<AttemptId> {
        if self.queue.len() < self.capacity {
            let w = self.waiters.pop_front()?;
            self.queue.push_back(w);
            Some(w)
        } else {
            None
        }
    }

    fn check(&self) {
        debug_assert!(self.queue.len() <= self.capacity, "queue over capacity");
        debug_assert!(self.waiters.len() <= self.max_waiters, "waiters over bound");
        debug_assert!(self.running <= self.concurrency, "running over concurrency");
        debug_assert!(
            self.waiters.is_empty() || self.queue.len() == self.capacity,
            "a waiter waits while the queue has room"
        );
    }
}

impl Admission {
    fn checked(self, q: &ShardQueue) -> Self {
        q.check();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_then_queues_then_waits_then_refuses() {
        let mut q = ShardQueue::new(2, 1, 1);
        assert_eq!(q.offer(AttemptId(1), true), Admission::Run);
        assert_eq!(q.offer(AttemptId(2), true), Admission::Queued);
        assert_eq!(q.offer(AttemptId(3), true), Admission::Queued);
        assert_eq!(q.offer(AttemptId(4), true), Admission::Waiting);
        assert_eq!(q.offer(AttemptId(5), true), Admission::Refused);
        assert_eq!(q.depth(), 2);
        assert_eq!(q.finish_run(), (Some(AttemptId(2)), Some(AttemptId(4))));
        assert_eq!(q.depth(), 2);
        assert_eq!(q.waiting(), 0);
    }

    #[test]
    fn zero_enqueue_timeout_refuses_at_once() {
        let mut q = ShardQueue::new(1, 5, 1);
        q.offer(AttemptId(1), false);
        q.offer(AttemptId(2), false);
        assert_eq!(q.offer(AttemptId(3), false), Admission::Refused);
    }

    #[test]
    fn withdrawing_from_the_queue_promotes_a_waiter() {
        let mut q = ShardQueue::new(1, 2, 1);
        q.offer(AttemptId(1), true);
        q.offer(AttemptId(2), true);
        q.offer(AttemptId(3), true);
        assert_eq!(q.withdraw(AttemptId(2)), Some(AttemptId(3)));
        assert_eq!(q.withdraw(AttemptId(3)), None);
        assert_eq!((q.depth(), q.waiting()), (0, 0));
    }

    #[test]
    fn concurrency_allows_parallel_runs() {
        let mut q = ShardQueue::new(1, 0, 3);
        for a in 1..=3 {
            assert_eq!(q.offer(AttemptId(a), true), Admission::Run);
        }
        assert_eq!(q.offer(AttemptId(4), true), Admission::Queued);
        assert_eq!(q.running(), 3);
    }
}
