//! A faulty in-memory disk for tests and the simulator. Every fault is
//! driven from outside, so a seeded simulator reproduces it exactly:
//!
//! - bytes appended but not synced are lost in a [`crash`](MemStorage::crash),
//!   except for a prefix whose length the caller chooses (a torn write), of
//!   which a start may read back as zeros, and zeros may follow (a file
//!   preallocated with zeros, as the server's storage writes it);
//! - directory changes (create, rename, remove) not followed by a directory
//!   sync are lost in a crash, except for a prefix the caller chooses (file
//!   systems keep metadata changes in order);
//! - the next calls of an operation can be made to fail ([`MemStorage::fail_next`]),
//!   e.g. a failed sync; a failed sync leaves its bytes unsynced, but may
//!   have written them: cut off by an unsynced truncation, a crash may still
//!   bring back a prefix of them (as a real disk may after `EIO` on fsync);
//! - the blocks of a file removed before a crash are free again, and a file
//!   that grows past its synced end may show a run of them instead of zeros
//!   or its own bytes (on filesystems that do not zero a block before its
//!   data is written): the caller chooses whether, and which run;
//! - a capacity makes the disk full: an append writes what fits and fails;
//! - [`MemStorage::halt_after`] makes every operation fail after a number of
//!   changes, which is how a test stops a process at an exact step before
//!   crashing it.

use crate::journal::storage::{Storage, StorageError};
use std::collections::BTreeMap;

/// The operations of [`Storage`] that change the disk, to aim faults at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    Create,
    Append,
    Sync,
    Truncate,
    Rename,
    Remove,
    SyncDir,
}

/// What a crash keeps of what was not durable; the caller decides (from
/// its seeded choice source, say).
pub trait CrashChoices {
    /// How many of the `changes` directory changes since the last directory
    /// sync survive (they survive in order: a prefix).
    fn dir_changes_kept(&mut self, changes: usize) -> usize;
    /// How many of the `unsynced` bytes appended to `file` since its last
    /// sync survive (a prefix: a torn write).
    fn unsynced_bytes_kept(&mut self, file: &str, unsynced: usize) -> usize;
    /// How many of the `kept` unsynced bytes of `file`, from their start,
    /// read back as zeros: a disk that wrote the end of a batch over space
    /// preallocated with zeros, and not its start.
    fn kept_start_zeroed(&mut self, _file: &str, _kept: usize) -> usize {
        0
    }
    /// How many zeros follow what `file` keeps: space preallocated ahead
    /// of the appends, as the server's storage leaves it.
    fn zeros_after(&mut self, _file: &str) -> usize {
        0
    }
    /// Which run of which of `freed` (the bytes of each file removed before
    /// the crash) follows what `file` keeps, as an index and `start..end`:
    /// stale blocks that a file grown past its synced end shows. `None`
    /// for none.
    fn stale_after(
        &mut self,
        _file: &str,
        _freed: &[Vec<u8>],
    ) -> Option<(usize, std::ops::Range<usize>)> {
        None
    }
}

/// A crash that keeps nothing that was not durable.
pub struct LoseUnsynced;

impl CrashChoices for LoseUnsynced {
    fn dir_changes_kept(&mut self, _: usize) -> usize {
        0
    }
    fn unsynced_bytes_kept(&mut self, _: &str, _: usize) -> usize {
        0
    }
}

/// A crash that happens to keep everything (the page cache made it to disk).
pub struct KeepUnsynced;

impl CrashChoices for KeepUnsynced {
    fn dir_changes_kept(&mut self, changes: usize) -> usize {
        changes
    }
    fn unsynced_bytes_kept(&mut self, _: &str, unsynced: usize) -> usize {
        unsynced
    }
}

#[derive(Clone, Debug, Default)]
struct MemFile {
    data: Vec<u8>,
    /// `data[..synced]` is durable.
    synced: usize,
    /// What was durable past `synced` before an unsynced truncation.
    durable_tail: Vec<u8>,
    /// `data[..written]` may be on disk though no sync says so: a sync
    /// failed, after writing any part of the file or none.
    written: usize,
    /// What a failed sync may have written past `synced` before an
    /// unsynced truncation cut it: a crash may bring back a prefix of it.
    written_tail: Vec<u8>,
}

impl MemFile {
    fn sync(&mut self) {
        self.synced = self.data.len();
        self.durable_tail.clear();
        self.written = 0;
        self.written_tail.clear();
    }

    fn sync_failed(&mut self) {
        self.written = self.written.max(self.data.len());
    }

    fn truncate(&mut self, len: usize) {
        if len < self.synced {
            let mut tail = self.data[len..self.synced].to_vec();
            tail.append(&mut self.durable_tail);
            self.durable_tail = tail;
            self.synced = len;
        }
        let from = len.max(self.synced);
        if from < self.written.min(self.data.len()) {
            let mut tail = self.data[from..self.written.min(self.data.len())].to_vec();
            tail.append(&mut self.written_tail);
            self.written_tail = tail;
        }
        self.written = self.written.min(len);
        self.data.resize(len, 0);
    }

    /// Loses what was not durable, except what `choices` keeps.
    fn crash(&mut self, choices: &mut dyn CrashChoices, name: &str, freed: &[Vec<u8>]) {
        if self.durable_tail.is_empty() {
            let unsynced = self.data.len() - self.synced;
            let kept = choices.unsynced_bytes_kept(name, unsynced).min(unsynced);
            self.data.truncate(self.synced + kept);
            let zeroed = choices.kept_start_zeroed(name, kept).min(kept);
            self.data[self.synced..self.synced + zeroed].fill(0);
        } else {
            self.data.truncate(self.synced);
            self.data.append(&mut self.durable_tail);
        }
        if !self.written_tail.is_empty() && self.data.len() == self.synced {
            let tail = std::mem::take(&mut self.written_tail);
            let kept = choices
                .unsynced_bytes_kept(name, tail.len())
                .min(tail.len());
            self.data.extend_from_slice(&tail[..kept]);
        }
        self.written = 0;
        self.written_tail.clear();
        let stale = choices.stale_after(name, freed);
        if let Some(run) = stale.and_then(|(i, run)| freed.get(i)?.get(run)) {
            self.data.extend_from_slice(run);
        }
        let zeros = choices.zeros_after(name);
        self.data.resize(self.data.len() + zeros, 0);
        self.synced = self.data.len();
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum DirChange {
    Link { name: String, inode: u64 },
    Rename { from: String, to: String },
    Unlink { name: String },
}

impl DirChange {
    fn apply(&self, names: &mut BTreeMap<String, u64>) {
        match self {
            DirChange::Link { name, inode } => {
                names.insert(name.clone(), *inode);
            }
            DirChange::Rename { from, to } => {
                if let Some(inode) = names.remove(from) {
                    names.insert(to.clone(), inode);
                }
            }
            DirChange::Unlink { name } => {
                names.remove(name);
            }
        }
    }
}

/// The in-memory disk: one directory.
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    inodes: BTreeMap<u64, MemFile>,
    names: BTreeMap<String, u64>,
    durable_names: BTreeMap<String, u64>,
    unsynced_dir: Vec<DirChange>,
    next_inode: u64,
    capacity: Option<u64>,
    faults: BTreeMap<Op, u32>,
    halt_after: Option<u64>,
    counts: BTreeMap<Op, u64>,
    /// The bytes of each file the last crash found removed: free blocks
    /// whose old content a crash may show (see [`CrashChoices::stale_after`]).
    freed: Vec<Vec<u8>>,
}

/// At most this much of a removed file's content is kept as free blocks.
const MAX_FREED: usize = 1 << 20;

impl MemStorage {
    pub fn new() -> Self {
        MemStorage::default()
    }

    /// The next `n` calls of `op` fail with an I/O error.
    pub fn fail_next(&mut self, op: Op, n: u32) {
        self.faults.insert(op, n);
    }

    /// At most `bytes` over all files; `None` for no limit.
    pub fn set_capacity(&mut self, bytes: Option<u64>) {
        self.capacity = bytes;
    }

    /// After `changes` more operations, every operation that changes the disk fails
    /// until the next [`crash`](Self::crash): the process died there.
    pub fn halt_after(&mut self, changes: u64) {
        self.halt_after = Some(changes);
    }

    /// How many times `op` was called (failed calls included).
    pub fn count(&self, op: Op) -> u64 {
        self.counts.get(&op).copied().unwrap_or(0)
    }

    /// The process died: what was not durable is lost, except what
    /// `choices` keeps. Clears [`halt_after`](Self::halt_after).
    pub fn crash(&mut self, choices: &mut dyn CrashChoices) {
        let changes = std::mem::take(&mut self.unsynced_dir);
        let kept = choices.dir_changes_kept(changes.len()).min(changes.len());
        for change in &changes[..kept] {
            change.apply(&mut self.durable_names);
        }
        self.names = self.durable_names.clone();
        let mut surviving = BTreeMap::new();
        for inode in self.names.values() {
            if let Some(file) = self.inodes.remove(inode) {
                surviving.insert(*inode, file);
            }
        }
        // What no name holds any more was removed: its blocks are free,
        // with their old content, for the files that grew past their end.
        let removed: Vec<Vec<u8>> = std::mem::take(&mut self.inodes)
            .into_values()
            .filter(|file| !file.data.is_empty())
            .map(|mut file| {
                file.data.truncate(MAX_FREED);
                file.data
            })
            .collect();
        if !removed.is_empty() {
            self.freed = removed;
        }
        for (name, inode) in &self.names {
            if let Some(file) = surviving.get_mut(inode) {
                file.crash(choices, name, &self.freed);
            }
        }
        self.inodes = surviving;
        self.halt_after = None;
    }

    /// The current content of `name`.
    pub fn contents(&self, name: &str) -> Option<&[u8]> {
        let inode = self.names.get(name)?;
        self.inodes.get(inode).map(|f| f.data.as_slice())
    }

    /// Damages durable data (bit rot): flips the bits of byte `offset` of
    /// `name`. Returns whether there was such a byte.
    pub fn flip_byte(&mut self, name: &str, offset: usize) -> bool {
        let Some(file) = self.names.get(name).and_then(|i| self.inodes.get_mut(i)) else {
            return false;
        };
        let Some(byte) = file.data.get_mut(offset) else {
            return false;
        };
        *byte ^= 0xff;
        true
    }

    fn check(&mut self, op: Op) -> Result<(), StorageError> {
        *self.counts.entry(op).or_default() += 1;
        match &mut self.halt_after {
            Some(0) => return Err(StorageError::Io("the process has stopped".into())),
            Some(n) => *n -= 1,
            None => {}
        }
        match self.faults.get_mut(&op) {
            Some(n) if *n > 0 => {
                *n -= 1;
                Err(StorageError::Io(format!("injected {op:?} failure")))
            }
            _ => Ok(()),
        }
    }

    fn file_mut(&mut self, name: &str) -> Result<&mut MemFile, StorageError> {
        let inode = self.names.get(name).ok_or(StorageError::NotFound)?;
        self.inodes.get_mut(inode).ok_or(StorageError::NotFound)
    }

    /// Bytes held by the files in the directory.
    fn used(&self) -> u64 {
        self.names
            .values()
            .filter_map(|inode| self.inodes.get(inode))
            .map(|f| f.data.len() as u64)
            .sum()
    }

    fn change_dir(&mut self, change: DirChange) {
        change.apply(&mut self.names);
        self.unsynced_dir.push(change);
    }
}

impl Storage for MemStorage {
    fn list(&self) -> Result<Vec<String>, StorageError> {
        Ok(self.names.keys().cloned().collect())
    }

    fn read(&self, name: &str) -> Result<Vec<u8>, StorageError> {
        self.contents(name)
            .map(<[u8]>::to_vec)
            .ok_or(StorageError::NotFound)
    }

    fn create(&mut self, name: &str) -> Result<(), StorageError> {
        self.check(Op::Create)?;
        let inode = self.next_inode;
        self.next_inode += 1;
        self.inodes.insert(inode, MemFile::default());
        self.change_dir(DirChange::Link {
            name: name.to_string(),
            inode,
        });
        Ok(())
    }

    fn append(&mut self, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.check(Op::Append)?;
        let room = self
            .capacity
            .map_or(u64::MAX, |c| c.saturating_sub(self.used()));
        let fits = bytes.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        self.file_mut(name)?.data.extend_from_slice(&bytes[..fits]);
        if fits < bytes.len() {
            return Err(StorageError::NoSpace);
        }
        Ok(())
    }

    fn sync(&mut self, name: &str) -> Result<(), StorageError> {
        if let Err(e) = self.check(Op::Sync) {
            // A failed sync may have written the file's new bytes anyway.
            if let Ok(file) = self.file_mut(name) {
                file.sync_failed();
            }
            return Err(e);
        }
        self.file_mut(name)?.sync();
        Ok(())
    }

    fn truncate(&mut self, name: &str, len: u64) -> Result<(), StorageError> {
        self.check(Op::Truncate)?;
        let len = usize::try_from(len).map_err(|_| StorageError::NoSpace)?;
        self.file_mut(name)?.truncate(len);
        Ok(())
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), StorageError> {
        self.check(Op::Rename)?;
        if !self.names.contains_key(from) {
            return Err(StorageError::NotFound);
        }
        self.change_dir(DirChange::Rename {
            from: from.to_string(),
            to: to.to_string(),
        });
        Ok(())
    }

    fn remove(&mut self, name: &str) -> Result<(), StorageError> {
        self.check(Op::Remove)?;
        if !self.names.contains_key(name) {
            return Err(StorageError::NotFound);
        }
        self.change_dir(DirChange::Unlink {
            name: name.to_string(),
        });
        Ok(())
    }

    fn sync_dir(&mut self) -> Result<(), StorageError> {
        self.check(Op::SyncDir)?;
        for change in std::mem::take(&mut self.unsynced_dir) {
            change.apply(&mut self.durable_names);
        }
        Ok(())
    }
}
