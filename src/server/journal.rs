//! The driver's seam to the journal: a [`Journal`] takes appends without
//! blocking and reports what became durable through [`JournalEvent`]s, which
//! reach the driver through an [`EventQueue`].
//!
//! [`MemoryJournal`] keeps nothing and says of every append that it is
//! durable already, so the driver acknowledges it at once, without an
//! event: it is `--ephemeral`. The [`DurableJournal`] (files, group commit
//! on a writer thread) implements the same trait and reports later; the
//! core sees the same `Persist` → `Persisted` either way.

use crate::core::Record;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

use crate::server::journal_file::DurableJournal;
pub use crate::server::journal_file::JournalEvent;
pub use crate::server::journal_file::SnapshotPoint;

/// Where the journal reports to; called from any thread.
pub type EventSink = Box<dyn Fn(JournalEvent) + Send>;

/// What became of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Durable already: the driver acknowledges it itself, at once.
    Durable,
    /// Its `Persisted` or `PersistFailed` event follows.
    Pending,
}

/// A journal as the driver uses it. No method blocks on the disk except
/// [`Journal::flush`], which the server calls once, at shutdown, off the
/// driver, and [`Journal::install_snapshot`] when the writer's queue is
/// full (it waits for room: a snapshot cannot be dropped as an append is
/// failed). The queue is sized above the core's writes in flight.
pub trait Journal: Send {
    /// Appends `record` as number `seq` (seqs come in increasing order).
    fn append(&mut self, seq: u64, record: Record) -> Appended;
    /// Starts over from `snapshot`, the core's state `at` a point: every
    /// durable fact up to `at.durable_seq`; appends after it that are still
    /// pending follow it. A snapshot taken before the core heard of a
    /// reported failure is refused (the core's own, taken once it has, comes
    /// next).
    fn install_snapshot(&mut self, at: SnapshotPoint, snapshot: Vec<Record>);
    /// Waits until everything appended is durable or has failed.
    fn flush(&mut self) -> Result<(), String>;
}

impl Journal for DurableJournal {
    fn append(&mut self, seq: u64, record: Record) -> Appended {
        DurableJournal::append(self, seq, record);
        Appended::Pending
    }

    fn install_snapshot(&mut self, at: SnapshotPoint, snapshot: Vec<Record>) {
        DurableJournal::install_snapshot(self, at, snapshot);
    }

    fn flush(&mut self) -> Result<(), String> {
        if DurableJournal::flush(self) {
            Ok(())
        } else {
            Err(
                "its last writes failed (see the log); every booking acknowledged is on disk"
                    .into(),
            )
        }
    }
}

/// Keeps nothing; every append is "durable" at once.
pub struct MemoryJournal;

impl MemoryJournal {
    /// A journal that reports, once, that it can write.
    pub fn new(events: EventSink) -> Self {
        events(JournalEvent::Writable(true));
        MemoryJournal
    }
}

impl Journal for MemoryJournal {
    fn append(&mut self, _seq: u64, _record: Record) -> Appended {
        Appended::Durable
    }

    fn install_snapshot(&mut self, _at: SnapshotPoint, _snapshot: Vec<Record>) {}

    fn flush(&mut self) -> Result<(), String> {
        Ok(())
    }
}

/// Journal events waiting for the driver. Consecutive `Persisted` events
/// merge into one (they are cumulative), as do consecutive `Writable` ones,
/// so the queue stays a handful of entries long however fast the journal
/// acknowledges.
#[derive(Clone, Default)]
pub struct EventQueue {
    inner: Arc<(Mutex<VecDeque<JournalEvent>>, Notify)>,
}

impl EventQueue {
    pub fn push(&self, event: JournalEvent) {
        let (queue, notify) = &*self.inner;
        {
            let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
            match (q.back_mut(), event) {
                (
                    Some(JournalEvent::Persisted { upto }),
                    JournalEvent::Persisted { upto: newer },
                ) => *upto = (*upto).max(newer),
                (Some(JournalEvent::Writable(w)), JournalEvent::Writable(newer)) => *w = newer,
                _ => q.push_back(event),
            }
        }
        notify.notify_one();
    }

    /// A sink for a journal's reports.
    pub fn sink(&self) -> EventSink {
        let queue = self.clone();
        Box::new(move |event| queue.push(event))
    }

    /// Everything queued, in order.
    pub fn take(&self) -> Vec<JournalEvent> {
        let (queue, _) = &*self.inner;
        let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
        q.drain(..).collect()
    }

    /// Resolves once something was pushed since the last wait.
    pub async fn pushed(&self) {
        self.inner.1.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_journal_says_each_append_is_durable_at_once() {
        let queue = EventQueue::default();
        let mut journal = MemoryJournal::new(queue.sink());
        for seq in [1, 2] {
            let appended = journal.append(seq, Record::Sequence { next: 0 });
            assert_eq!(appended, Appended::Durable);
        }
        assert_eq!(queue.take(), [JournalEvent::Writable(true)]);
        assert!(journal.flush().is_ok());
    }

    #[test]
    fn queue_keeps_order_and_merges_runs() {
        let q = EventQueue::default();
        for e in [
            JournalEvent::Persisted { upto: 1 },
            JournalEvent::Persisted { upto: 3 },
            JournalEvent::PersistFailed { from: 4 },
            JournalEvent::Writable(false),
            JournalEvent::Writable(true),
            JournalEvent::Persisted { upto: 5 },
        ] {
            q.push(e);
        }
        assert_eq!(
            q.take(),
            [
                JournalEvent::Persisted { upto: 3 },
                JournalEvent::PersistFailed { from: 4 },
                JournalEvent::Writable(true),
                JournalEvent::Persisted { upto: 5 },
            ]
        );
        assert!(q.take().is_empty());
    }
}
