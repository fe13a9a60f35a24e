//! The simulated journal: what is durable, what is still being written, and
//! what a crash leaves behind.
//!
//! It follows the real journal's contract (DESIGN.md, "The journal"): writes
//! are synced in batches (group commit: a batch is whatever queued during
//! the previous sync), completions are acknowledged in order, a failed sync
//! fails every write from the first unsynced one on, and after a failure the
//! file is never trusted again — the journal starts afresh from
//! `Dispatcher::snapshot()`. Compaction writes a snapshot and then switches
//! to it; a crash before the switch recovers from the old file. A crash keeps
//! the durable records plus a torn prefix of the batch being synced.

use tour_dispatcher::core::Record;

/// A batch being synced.
#[derive(Clone, Debug)]
struct Syncing {
    /// Number of pending writes the batch covers.
    len: usize,
}

/// A compaction between its snapshot and its switch.
#[derive(Clone, Debug)]
struct Compaction {
    snapshot: Vec<Record>,
    tail: Vec<(u64, Record)>,
}

/// What a finished sync did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Synced {
    /// Every write up to `upto` is durable.
    Ok { upto: u64 },
    /// Writes before `from` are durable, `from` and after failed.
    Failed { from: u64 },
}

#[derive(Clone, Debug, Default)]
pub struct SimJournal {
    /// The durable base: initial records, a restored file or a snapshot.
    base: Vec<Record>,
    /// Synced writes after the base, with their sequence numbers.
    tail: Vec<(u64, Record)>,
    /// Written by the core, not yet synced.
    pending: Vec<(u64, Record)>,
    syncing: Option<Syncing>,
    /// The file broke at this sequence number; the core has not heard yet.
    broken_from: Option<u64>,
    compaction: Option<Compaction>,
}

impl SimJournal {
    pub fn new(initial: Vec<Record>) -> Self {
        SimJournal {
            base: initial,
            ..SimJournal::default()
        }
    }

    /// The core asked to append `record` as write `seq`.
    pub fn append(&mut self, seq: u64, record: Record) {
        self.pending.push((seq, record));
    }

    /// Starts syncing what is pending, if nothing is being synced and the
    /// file is sound. Returns whether a sync started.
    pub fn start_sync(&mut self) -> bool {
        if self.syncing.is_some() || self.broken_from.is_some() || self.pending.is_empty() {
            return false;
        }
        self.syncing = Some(Syncing {
            len: self.pending.len(),
        });
        true
    }

    /// The sync in flight finished; `torn` is `None` when it succeeded, or
    /// how many of its writes reached the disk before it failed.
    pub fn finish_sync(&mut self, torn: Option<usize>) -> Option<Synced> {
        let batch = self.syncing.take()?;
        let durable = torn.map_or(batch.len, |k| k.min(batch.len));
        let synced: Vec<(u64, Record)> = self.pending.drain(..durable).collect();
        if let Some(c) = &mut self.compaction {
            c.tail.extend(synced.iter().cloned());
        }
        let last = synced.last().map(|(seq, _)| *seq);
        self.tail.extend(synced);
        match torn {
            None => last.map(|upto| Synced::Ok { upto }),
            Some(_) => {
                let from = self.pending.first().map(|(seq, _)| *seq)?;
                self.broken_from = Some(from);
                Some(Synced::Failed { from })
            }
        }
    }

    /// The size of the batch in flight.
    pub fn syncing_len(&self) -> Option<usize> {
        self.syncing.as_ref().map(|s| s.len)
    }

    /// The core heard of the failure and holds only durable state: start a
    /// fresh file from its snapshot.
    pub fn adopt_snapshot(&mut self, snapshot: Vec<Record>) {
        self.base = snapshot;
        self.tail.clear();
        self.pending.clear();
        self.syncing = None;
        self.broken_from = None;
        self.compaction = None;
    }

    /// Records since the last snapshot (what compaction would fold).
    pub fn tail_len(&self) -> usize {
        self.tail.len()
    }

    pub fn is_compacting(&self) -> bool {
        self.compaction.is_some()
    }

    /// Starts a compaction from `snapshot`, which covers every write up to
    /// `durable_seq`; synced writes after it go to the new file as well.
    pub fn begin_compaction(&mut self, snapshot: Vec<Record>, durable_seq: u64) -> bool {
        if self.compaction.is_some() || self.broken_from.is_some() {
            return false;
        }
        let tail = self
            .tail
            .iter()
            .filter(|(seq, _)| *seq > durable_seq)
            .cloned()
            .collect();
        self.compaction = Some(Compaction { snapshot, tail });
        true
    }

    /// The new file is complete: switch to it.
    pub fn finish_compaction(&mut self) -> bool {
        let Some(c) = self.compaction.take() else {
            return false;
        };
        self.base = c.snapshot;
        self.tail = c.tail;
        true
    }

    /// The process died: what recovery reads back. `torn` writes of the
    /// batch in flight reached the disk. The journal then continues on what
    /// it recovered, with sequence numbers starting over.
    pub fn crash(&mut self, torn: usize) -> Vec<Record> {
        let reached = self.syncing_len().map_or(0, |n| torn.min(n));
        let mut records = std::mem::take(&mut self.base);
        records.extend(self.tail.drain(..).map(|(_, r)| r));
        records.extend(self.pending.drain(..reached).map(|(_, r)| r));
        *self = SimJournal::new(records.clone());
        records
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: u64) -> Record {
        Record::Sequence { next: n }
    }

    #[test]
    fn group_commit_then_failure_then_fresh_file() {
        let mut j = SimJournal::new(vec![rec(0)]);
        j.append(1, rec(1));
        j.append(2, rec(2));
        assert!(j.start_sync());
        j.append(3, rec(3));
        assert!(!j.start_sync(), "one sync at a time");
        assert_eq!(j.finish_sync(None), Some(Synced::Ok { upto: 2 }));
        assert!(j.start_sync());
        j.append(4, rec(4));
        assert_eq!(j.finish_sync(Some(0)), Some(Synced::Failed { from: 3 }));
        j.append(5, rec(5));
        assert!(!j.start_sync(), "a broken file is not written to");
        j.adopt_snapshot(vec![rec(9)]);
        assert_eq!(j.crash(0), vec![rec(9)]);
    }

    #[test]
    fn crash_keeps_durable_and_a_torn_prefix() {
        let mut j = SimJournal::new(Vec::new());
        j.append(1, rec(1));
        j.start_sync();
        j.finish_sync(None);
        j.append(2, rec(2));
        j.append(3, rec(3));
        j.start_sync();
        assert_eq!(j.crash(1), vec![rec(1), rec(2)]);
    }

    #[test]
    fn compaction_switches_only_when_finished() {
        let mut j = SimJournal::new(vec![rec(0)]);
        j.append(1, rec(1));
        j.start_sync();
        j.finish_sync(None);
        assert!(j.begin_compaction(vec![rec(7)], 1));
        j.append(2, rec(2));
        j.start_sync();
        j.finish_sync(None);
        let mut crashed = j.clone();
        assert_eq!(crashed.crash(0), vec![rec(0), rec(1), rec(2)], "old file");
        assert!(j.finish_compaction());
        assert_eq!(
            j.crash(0),
            vec![rec(7), rec(2)],
            "snapshot and the writes after it"
        );
    }
}
