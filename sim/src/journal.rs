//! The simulated journal: the project's real journal logic
//! (`tour_dispatcher::journal::Journal`) over `MemStorage`, its faulty
//! in-memory disk, driven by the world's clock and choices.
//!
//! The world decides when a batch is committed (the sync latency), which
//! writes and syncs fail, and what a crash keeps of what was not durable
//! (torn tails, lost directory changes, zeros where preallocated space was
//! not yet written over); it also stops the process in the
//! middle of a compaction now and then. Recovery after a crash is the
//! journal's own `open`, so a restarted core is restored from exactly what
//! the real recovery reads back.
//!
//! The driver's order matters after a failure, and the world keeps it: the
//! core hears of the failure first; the fresh file (the core's snapshot) is
//! installed before any write the core emits in that same step is appended.
//! The journal itself does not report again the appends it refused between
//! a reported failure and the next snapshot: the core failed those already.
//! A compaction's snapshot comes a while after the journal asked for it, as
//! the driver's does: records may be staged by then, their commit (the
//! install's first step) may fail, and the journal refuses a snapshot taken
//! before the core heard of a failure.

use crate::choices::{Choices, ChoicesExt};
use tour_dispatcher::core::Record;
use tour_dispatcher::journal::frame;
use tour_dispatcher::journal::{
    CrashChoices, Journal, JournalConfig, JournalError, MemStorage, Op, RecoveryReport, Settled,
    SnapshotReason,
};

/// Where the frames of the journal file at the start of `bytes` start.
fn frame_starts(bytes: &[u8]) -> Vec<usize> {
    let Ok(header) = frame::decode_header(bytes) else {
        return Vec::new();
    };
    let seal = frame::Seal::of(&header);
    let mut at = header.frames_start();
    let mut starts = Vec::new();
    while let Ok((_, next)) = frame::read_frame(bytes, at, seal) {
        starts.push(at);
        at = next;
    }
    starts
}

/// A crash's choices, drawn from the world's choice source; whether it
/// showed stale blocks.
struct Crash<'a>(&'a mut dyn Choices, bool);

impl CrashChoices for Crash<'_> {
    fn dir_changes_kept(&mut self, changes: usize) -> usize {
        self.0.below(changes as u64 + 1) as usize
    }
    fn unsynced_bytes_kept(&mut self, _file: &str, unsynced: usize) -> usize {
        self.0.below(unsynced as u64 + 1) as usize
    }
    fn kept_start_zeroed(&mut self, _file: &str, kept: usize) -> usize {
        if kept > 0 && self.0.chance(250_000) {
            self.0.between(1, kept as u64) as usize
        } else {
            0
        }
    }
    fn stale_after(
        &mut self,
        _file: &str,
        freed: &[Vec<u8>],
    ) -> Option<(usize, std::ops::Range<usize>)> {
        if freed.is_empty() || !self.0.chance(125_000) {
            return None;
        }
        let which = self.0.below(freed.len() as u64) as usize;
        let bytes = &freed[which];
        // Half the time from where a frame of the removed file starts: a
        // stale block that lines up with a frame is the one that matters.
        let starts = frame_starts(bytes);
        let start = if !starts.is_empty() && self.0.chance(500_000) {
            starts[self.0.below(starts.len() as u64) as usize]
        } else {
            self.0.below(bytes.len() as u64) as usize
        };
        let len = self.0.between(1, (bytes.len() - start).min(4096) as u64) as usize;
        self.1 = true;
        Some((which, start..start + len))
    }
    fn zeros_after(&mut self, _file: &str) -> usize {
        // Half the crashes find the server's preallocated zeros, of up to
        // a few frames' worth or a whole step.
        match self.0.below(4) {
            2 => self.0.between(1, 600) as usize,
            3 => 256 << 10,
            _ => 0,
        }
    }
}

/// The journal and its disk.
pub struct SimJournal {
    journal: Journal<MemStorage>,
    config: JournalConfig,
    /// Records appended since the last commit.
    staged: usize,
    /// A commit is scheduled.
    syncing: bool,
    /// Failures the core has heard of since the journal was opened.
    failures_handled: u64,
    /// The last crash showed blocks of a removed file past a file's end.
    pub showed_stale_blocks: bool,
}

impl SimJournal {
    /// A fresh journal on an empty disk; compaction once the file grew by
    /// `compact_after_bytes` (0: never).
    pub fn new(compact_after_bytes: u64) -> Result<Self, JournalError> {
        let config = JournalConfig {
            compact_after_bytes: match compact_after_bytes {
                0 => u64::MAX,
                n => n,
            },
            salvage: false,
            salt: 0,
        };
        let opened = Journal::open(MemStorage::new(), config.clone())?;
        Ok(SimJournal {
            journal: opened.journal,
            config,
            staged: 0,
            syncing: false,
            failures_handled: 0,
            showed_stale_blocks: false,
        })
    }

    /// The core asked to append `record` as write `seq`.
    pub fn append(&mut self, seq: u64, record: &Record) {
        self.journal.append(seq, record);
        self.staged += 1;
    }

    /// Whether a commit should be scheduled now: something is staged,
    /// nothing is being committed, and the file is trusted (after a failure
    /// nothing is committed until a fresh file exists).
    pub fn start_sync(&mut self) -> bool {
        if self.syncing || self.staged == 0 || !self.journal.is_writable() {
            return false;
        }
        self.syncing = true;
        true
    }

    /// The scheduled commit happens; `fault` makes one disk operation of it
    /// fail. Returns how the batch settled.
    pub fn commit(&mut self, fault: Option<Op>) -> Vec<Settled> {
        self.syncing = false;
        self.staged = 0;
        let j = &mut self.journal;
        if let Some(op) = fault {
            j.storage_mut().fail_next(op, 1);
        }
        j.commit();
        j.storage_mut().fail_next(Op::Append, 0);
        j.storage_mut().fail_next(Op::Sync, 0);
        std::iter::from_fn(|| j.poll_settled()).collect()
    }

    /// Whether records wait for a commit.
    pub fn has_staged(&self) -> bool {
        self.staged > 0
    }

    /// The core has heard of one more of the journal's failures.
    pub fn failure_handled(&mut self) {
        self.failures_handled += 1;
    }

    /// Why the journal wants a snapshot of the core, if it does.
    pub fn wants_snapshot(&self) -> Option<SnapshotReason> {
        self.journal.wants_snapshot()
    }

    /// Starts a fresh file from the core's snapshot (after a failure, or
    /// to compact); `halt_after` stops the process after that many disk
    /// operations (a crash in the middle of it). What was staged is
    /// committed first, `fault` making one disk operation of that commit
    /// fail; returns how that settled.
    pub fn install_snapshot(
        &mut self,
        durable_seq: u64,
        snapshot: &[Record],
        halt_after: Option<u64>,
        fault: Option<Op>,
    ) -> (Vec<Settled>, Result<(), JournalError>) {
        self.staged = 0;
        let j = &mut self.journal;
        if let Some(op) = fault {
            j.storage_mut().fail_next(op, 1);
        }
        j.commit();
        j.storage_mut().fail_next(Op::Append, 0);
        j.storage_mut().fail_next(Op::Sync, 0);
        let settled: Vec<Settled> = std::iter::from_fn(|| j.poll_settled()).collect();
        if let Some(n) = halt_after {
            j.storage_mut().halt_after(n);
        }
        (
            settled,
            j.install_snapshot(durable_seq, snapshot, self.failures_handled),
        )
    }

    /// The process died: the disk loses what was not durable (as `choices`
    /// decide), and the journal is recovered from it. Returns the records to
    /// restore the core from; the journal goes on from them.
    pub fn crash(
        &mut self,
        choices: &mut dyn Choices,
    ) -> Result<(Vec<Record>, RecoveryReport), JournalError> {
        let placeholder = Journal::open(MemStorage::new(), self.config.clone())?.journal;
        let mut storage = std::mem::replace(&mut self.journal, placeholder).into_storage();
        let mut crash = Crash(choices, false);
        storage.crash(&mut crash);
        self.showed_stale_blocks = crash.1;
        // A new process: its own salt, as the server draws one per start.
        self.config.salt = self.config.salt.wrapping_add(1);
        let opened = Journal::open(storage, self.config.clone())?;
        self.journal = opened.journal;
        self.staged = 0;
        self.syncing = false;
        self.failures_handled = 0;
        Ok((opened.records, opened.report))
    }
}

/// Picks the disk fault of a commit, if any: a failed sync or a failed
/// (short, as on a full disk) write.
pub fn draw_fault(choices: &mut dyn Choices, fail_pm: u32) -> Option<Op> {
    if !choices.chance(fail_pm) {
        None
    } else if choices.chance(500_000) {
        Some(Op::Sync)
    } else {
        Some(Op::Append)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::choices::Recorded;

    fn rec(n: u64) -> Record {
        Record::Sequence { next: n }
    }

    #[test]
    fn group_commit_then_failure_then_fresh_file() {
        let mut j = SimJournal::new(0).expect("opens");
        j.append(1, &rec(1));
        j.append(2, &rec(2));
        assert!(j.start_sync());
        j.append(3, &rec(3));
        assert!(!j.start_sync(), "one commit at a time");
        assert_eq!(j.commit(None), vec![Settled::Persisted { upto: 3 }]);
        j.append(4, &rec(4));
        assert!(j.start_sync());
        assert_eq!(j.commit(Some(Op::Sync)), vec![Settled::Failed { from: 4 }]);
        j.append(5, &rec(5));
        assert!(!j.start_sync(), "nothing is committed to an untrusted file");
        assert_eq!(j.wants_snapshot(), Some(SnapshotReason::Recover));
        j.failure_handled();
        let (stale, installed) = j.install_snapshot(3, &[rec(9)], None, None);
        assert_eq!(stale, vec![], "the refused append is not reported again");
        installed.expect("fresh file");
        j.append(6, &rec(6));
        assert!(j.start_sync());
        assert_eq!(j.commit(None), vec![Settled::Persisted { upto: 6 }]);
        let mut zeros = Recorded::new(Vec::new());
        assert_eq!(
            j.crash(&mut zeros).expect("recovers").0,
            vec![rec(9), rec(6)]
        );
    }

    #[test]
    fn a_crash_keeps_what_was_committed_and_nothing_staged() {
        let mut j = SimJournal::new(0).expect("opens");
        j.append(1, &rec(1));
        j.start_sync();
        j.commit(None);
        j.append(2, &rec(2));
        let mut zeros = Recorded::new(Vec::new());
        assert_eq!(j.crash(&mut zeros).expect("recovers").0, vec![rec(1)]);
    }
}
