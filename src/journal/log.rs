//! The journal itself: a sans-IO writer over a [`Storage`], used by the
//! server's writer thread over real files and by the simulator over a
//! faulty in-memory disk.
//!
//! The driver [`append`](Journal::append)s the core's `Persist { seq, record }`
//! outputs, [`commit`](Journal::commit)s whenever it likes (one write and one
//! sync for everything appended since the last commit: group commit), and
//! drains [`Settled`] answers from [`poll_settled`](Journal::poll_settled),
//! which become the core's `Persisted { upto }` / `PersistFailed { from }`.
//!
//! A failed write or sync makes the current file untrusted: every record
//! appended from then on fails, until the driver installs a snapshot of the
//! core's state with [`install_snapshot`](Journal::install_snapshot), which
//! starts a fresh file. Compaction is the same operation, asked for when the
//! file has grown by [`JournalConfig::compact_after_bytes`].
//!
//! Switching files: the new generation is written under a temporary name,
//! synced, renamed into place and the directory synced. Recovery reads the
//! highest complete generation, so a crash at any step leaves either the old
//! file or the new one, and both hold every acknowledged record.

use crate::core::record::Record;
use crate::journal::error::JournalError;
use crate::journal::frame::{self, Entry, Seal, HEADER_LEN};
use crate::journal::recovery::{self, RecoveryReport};
use crate::journal::storage::{Storage, StorageError};
use std::collections::VecDeque;

/// What the journal needs to know besides its storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalConfig {
    /// Ask for a snapshot once the current file has grown this much past
    /// its own snapshot.
    pub compact_after_bytes: u64,
    /// Skip damaged records at recovery instead of refusing to start.
    pub salvage: bool,
    /// Mixed into the salt of every file this journal writes (see
    /// [`frame`]): give each process its own (the server draws it at
    /// random), so that frames of another run's files never check out.
    pub salt: u64,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            compact_after_bytes: 64 << 20,
            salvage: false,
            salt: 0,
        }
    }
}

/// How appended records ended, in order; the core's `Persisted` and
/// `PersistFailed` inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// Every record with a sequence number up to `upto` is durable.
    Persisted { upto: u64 },
    /// Every record from `from` on failed; everything before is durable.
    Failed { from: u64 },
}

/// Why the journal wants a snapshot of the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotReason {
    /// The file grew past the compaction threshold.
    Compact,
    /// A write failed: nothing is acknowledged until a fresh file exists.
    Recover,
}

/// Counters, for metrics and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JournalStats {
    /// Records appended.
    pub appends: u64,
    /// Commits that wrote a batch (each one write and one sync).
    pub batches: u64,
    /// File syncs, batches and snapshots together.
    pub syncs: u64,
    pub bytes_written: u64,
    /// Batches whose write or sync failed, and appends lost before they
    /// reached the journal.
    pub failed_batches: u64,
    /// Snapshots installed, and attempts that failed.
    pub snapshots: u64,
    pub failed_snapshots: u64,
    /// The current file's generation and length.
    pub generation: u64,
    pub file_len: u64,
}

/// A record written and synced into the current file by this process.
#[derive(Clone, Copy, Debug)]
struct Written {
    seq: u64,
    start: u64,
    end: u64,
}

/// The journal over one directory.
pub struct Journal<S: Storage> {
    storage: S,
    config: JournalConfig,
    file: String,
    generation: u64,
    /// What the current file's frames are sealed with.
    seal: Seal,
    /// Switches tried, for the salt of the next file: one that failed is
    /// tried again at the same generation, under another salt.
    switches_tried: u64,
    /// Length of the current file; all of it is synced while `trusted`.
    len: u64,
    base_len: u64,
    /// False after a failed write: nothing goes into this file any more.
    trusted: bool,
    /// Records synced into the current file by this process, oldest first:
    /// those a snapshot does not cover are carried into the next file.
    written: VecDeque<Written>,
    /// The next batch: a [`frame::push_synced`] mark, then record frames.
    staged: Vec<u8>,
    /// Where each staged record lies in `staged`.
    staged_seqs: Vec<Written>,
    /// Every record from this one on fails at the next commit.
    failing_from: Option<u64>,
    /// A failure was reported and no snapshot taken after the core heard of
    /// it has been tried since: the appends refused meanwhile were emitted
    /// before the core heard of the failure, which failed them already.
    /// Reporting them again would fail the writes that go to the fresh file.
    failure_reported: bool,
    /// Failures reported in all (each a [`Settled::Failed`]).
    failures_reported: u64,
    settled: VecDeque<Settled>,
    stats: JournalStats,
}

/// A journal just opened: the records to restore the core from, and what
/// recovery did.
pub struct Opened<S: Storage> {
    pub journal: Journal<S>,
    pub records: Vec<Record>,
    pub report: RecoveryReport,
}

impl<S: Storage> Journal<S> {
    /// Recovers the journal in `storage` (or starts one), cleans up after
    /// interrupted compactions, and returns it ready to append.
    pub fn open(storage: S, config: JournalConfig) -> Result<Opened<S>, JournalError> {
        let mut journal = Journal {
            storage,
            config,
            file: String::new(),
            generation: 0,
            seal: Seal::NONE,
            switches_tried: 0,
            len: 0,
            base_len: 0,
            trusted: false,
            written: VecDeque::new(),
            staged: Vec::new(),
            staged_seqs: Vec::new(),
            failing_from: None,
            failure_reported: false,
            failures_reported: 0,
            settled: VecDeque::new(),
            stats: JournalStats::default(),
        };
        let mut names: Vec<(u64, bool, String)> = journal
            .storage
            .list()
            .map_err(JournalError::storage("list", "the journal directory"))?
            .into_iter()
            .filter_map(|name| recovery::parse_name(&name).map(|(g, tmp)| (g, tmp, name)))
            .collect();
        names.sort();
        let current = names.iter().rev().find(|(_, tmp, _)| !tmp).cloned();
        let (records, mut report) = match current {
            Some((generation, _, name)) => journal.recover(generation, name)?,
            None => {
                journal.switch(&[], &[])?;
                (Vec::new(), RecoveryReport::default())
            }
        };
        for (_, _, name) in names.into_iter().filter(|(_, _, n)| *n != journal.file) {
            match journal.storage.remove(&name) {
                Ok(()) => report.removed.push(name),
                // Salvage's fresh file already replaced it.
                Err(StorageError::NotFound) => {}
                Err(e) => return Err(JournalError::storage("remove", &name)(e)),
            }
        }
        report.records = records.len();
        journal.stats.generation = journal.generation;
        journal.stats.file_len = journal.len;
        Ok(Opened {
            journal,
            records,
            report,
        })
    }

    /// Reads generation `generation`, cuts its torn tail, and makes it (or,
    /// after salvage, a clean copy of it) the current file.
    fn recover(
        &mut self,
        generation: u64,
        name: String,
    ) -> Result<(Vec<Record>, RecoveryReport), JournalError> {
        let bytes = self
            .storage
            .read(&name)
            .map_err(JournalError::storage("read", &name))?;
        let scan = recovery::scan(&name, &bytes, self.config.salvage)?;
        if scan.header.generation != generation {
            return Err(JournalError::Corrupt {
                file: name,
                offset: 0,
                reason: format!(
                    "its header says generation {}: it was copied or renamed by hand",
                    scan.header.generation
                ),
            });
        }
        let torn_bytes = recovery::torn_len(&bytes, scan.valid_len);
        if bytes.len() as u64 > scan.valid_len {
            self.storage
                .truncate(&name, scan.valid_len)
                .map_err(JournalError::storage("truncate", &name))?;
        }
        // Whatever the file holds now is what the core restores from: make
        // it durable (the tail may never have been synced), and make its
        // name durable (the crash may have come right after the rename).
        self.storage
            .sync(&name)
            .map_err(JournalError::storage("sync", &name))?;
        self.storage
            .sync_dir()
            .map_err(JournalError::storage("sync", "the journal directory"))?;
        self.file = name.clone();
        self.generation = generation;
        // A file of an older format is appended to in its own format.
        self.seal = Seal::of(&scan.header);
        self.len = scan.valid_len;
        self.base_len = scan.header.base_len;
        self.trusted = true;
        if !scan.skipped.is_empty() {
            // Start the next run from a clean file, not from one that needs salvage.
            self.switch(&scan.records, &[])?;
        }
        let report = RecoveryReport {
            file: Some(name),
            format: Some(scan.header.version),
            torn_bytes,
            zeros_cut: bytes.len() as u64 - scan.valid_len - torn_bytes,
            torn_at: (torn_bytes > 0).then_some(scan.valid_len),
            skipped: scan.skipped,
            ..RecoveryReport::default()
        };
        Ok((scan.records, report))
    }

    /// Queues `record` for the next commit.
    pub fn append(&mut self, seq: u64, record: &Record) {
        self.stats.appends += 1;
        if !self.trusted || self.failing_from.is_some() {
            self.failing_from.get_or_insert(seq);
            return;
        }
        let before = self.staged.len();
        let seal = self.seal;
        if self.staged.is_empty() {
            frame::push_synced(&mut self.staged, seal, self.len);
        }
        let start = self.staged.len() as u64;
        match frame::push_record(&mut self.staged, seal, record) {
            Ok(()) => self.staged_seqs.push(Written {
                seq,
                start,
                end: self.staged.len() as u64,
            }),
            Err(_) => {
                // Cannot happen for the core's records; if it did, the
                // record would fail like a failed write.
                self.staged.truncate(before);
                self.failing_from = Some(seq);
            }
        }
    }

    /// Record `seq` never reached the journal (the writer's queue was full):
    /// it and everything after it fail, as after a failed write. Call it
    /// once every record before `seq` has been appended.
    pub fn append_lost(&mut self, seq: u64) {
        self.failing_from.get_or_insert(seq);
    }

    /// Writes and syncs everything appended since the last commit, as one
    /// batch, and settles it (see [`poll_settled`](Self::poll_settled)).
    pub fn commit(&mut self) {
        if let (Some(first), Some(last)) = (self.staged_seqs.first(), self.staged_seqs.last()) {
            let (first, last) = (first.seq, last.seq);
            let batch = std::mem::take(&mut self.staged);
            let seqs = std::mem::take(&mut self.staged_seqs);
            if self.write_batch(&batch, &seqs) {
                self.settled.push_back(Settled::Persisted { upto: last });
            } else {
                // The failure covers whatever was to fail after the batch.
                self.failing_from = Some(first);
            }
        }
        if let Some(from) = self.failing_from.take() {
            self.trusted = false;
            if !self.failure_reported {
                self.failure_reported = true;
                self.failures_reported += 1;
                self.stats.failed_batches += 1;
                self.settled.push_back(Settled::Failed { from });
            }
        }
    }

    /// Appends one batch to the current file and syncs it.
    fn write_batch(&mut self, batch: &[u8], seqs: &[Written]) -> bool {
        let written = self
            .storage
            .append(&self.file, batch)
            .and_then(|()| self.storage.sync(&self.file));
        self.stats.syncs += 1;
        if written.is_err() {
            // Best effort: keep what recovery will read free of the failed
            // bytes, durably (a failed sync may have left some of them on
            // disk, to come back after a crash as records the core failed).
            // The file is not trusted again either way.
            let _ = self
                .storage
                .truncate(&self.file, self.len)
                .and_then(|()| self.storage.sync(&self.file));
            return false;
        }
        let base = self.len;
        self.written.extend(seqs.iter().map(|w| Written {
            seq: w.seq,
            start: base + w.start,
            end: base + w.end,
        }));
        self.len += batch.len() as u64;
        self.stats.batches += 1;
        self.stats.bytes_written += batch.len() as u64;
        self.stats.file_len = self.len;
        true
    }

    /// The next settled outcome, in sequence order.
    pub fn poll_settled(&mut self) -> Option<Settled> {
        self.settled.pop_front()
    }

    /// Whether (and why) the journal wants [`install_snapshot`](Self::install_snapshot).
    pub fn wants_snapshot(&self) -> Option<SnapshotReason> {
        if !self.trusted {
            Some(SnapshotReason::Recover)
        } else if self.len.saturating_sub(self.base_len) >= self.config.compact_after_bytes {
            Some(SnapshotReason::Compact)
        } else {
            None
        }
    }

    /// Whether records appended now can become durable.
    pub fn is_writable(&self) -> bool {
        self.trusted
    }

    /// How many failures the journal has reported ([`Settled::Failed`]).
    pub fn failures_reported(&self) -> u64 {
        self.failures_reported
    }

    /// Starts a fresh file from `snapshot`, the core's `snapshot()` taken
    /// when its `durable_seq()` was `durable_seq`, once the core had heard
    /// of `failures_handled` of the journal's reported failures. Commits
    /// what is staged first; records synced here with a later sequence
    /// number (the core had not seen them settle) are carried after the
    /// snapshot. On error the journal stays as it was (or untrusted, when
    /// the switch or the commit failed) and wants a snapshot again.
    ///
    /// A snapshot taken before the core heard of a reported failure (that
    /// commit's own included) is refused: the core fails every write it
    /// emitted before it hears of a failure, and a fresh file would make
    /// the later of those durable, to come back after a crash.
    pub fn install_snapshot(
        &mut self,
        durable_seq: u64,
        snapshot: &[Record],
        failures_handled: u64,
    ) -> Result<(), JournalError> {
        self.commit();
        if failures_handled < self.failures_reported {
            self.stats.failed_snapshots += 1;
            return Err(JournalError::StaleSnapshot {
                handled: failures_handled,
                reported: self.failures_reported,
            });
        }
        // The core has heard of every failure: whatever is appended from
        // now on is news to it.
        self.failure_reported = false;
        let carried: Vec<Written> = self
            .written
            .iter()
            .filter(|w| w.seq > durable_seq)
            .copied()
            .collect();
        let result = self.switch(snapshot, &carried);
        match result {
            Ok(()) => self.stats.snapshots += 1,
            Err(_) => self.stats.failed_snapshots += 1,
        }
        result
    }

    /// Writes generation + 1 with `records` and then the `carried` records
    /// of the current file, and makes it current.
    fn switch(&mut self, records: &[Record], carried: &[Written]) -> Result<(), JournalError> {
        let generation = self.generation + 1;
        let salt = file_salt(self.config.salt, generation, self.switches_tried);
        self.switches_tried += 1;
        let seal = Seal::new(generation, salt);
        let mut frames = Vec::new();
        for record in records {
            frame::push_record(&mut frames, seal, record)?;
        }
        let mut reindexed = Vec::with_capacity(carried.len());
        if !carried.is_empty() {
            let old = self
                .storage
                .read(&self.file)
                .map_err(JournalError::storage("read", &self.file))?;
            for w in carried {
                reindexed.push(self.carry(&old, w, seal, &mut frames)?);
            }
        }
        let base_len = (HEADER_LEN + frames.len()) as u64;
        let mut bytes = Vec::with_capacity(base_len as usize);
        bytes.extend_from_slice(&frame::encode_header(generation, base_len, salt));
        bytes.extend_from_slice(&frames);
        let tmp = recovery::tmp_name(generation);
        let name = recovery::log_name(generation);
        if let Err(e) = self.write_complete(&tmp, &bytes, &name) {
            let _ = self.storage.remove(&tmp);
            return Err(e);
        }
        // From here recovery may pick the new file: never write the old one again.
        let old = std::mem::replace(&mut self.file, name);
        self.generation = generation;
        self.seal = seal;
        self.len = base_len;
        self.base_len = base_len;
        self.written = reindexed.into();
        self.stats.generation = generation;
        self.stats.file_len = base_len;
        self.stats.bytes_written += base_len;
        self.trusted = false;
        self.storage
            .sync_dir()
            .map_err(JournalError::storage("sync", "the journal directory"))?;
        self.trusted = true;
        if !old.is_empty() {
            // Recovery removes it if this does not.
            let _ = self.storage.remove(&old);
        }
        Ok(())
    }

    /// Appends the frame of `w`, read from `old` (the current file's
    /// bytes), to `frames`, sealed with `seal`; where it lies in the new
    /// file. A frame that no longer checks out under its own seal is damage
    /// to report, not to seal anew.
    fn carry(
        &self,
        old: &[u8],
        w: &Written,
        seal: Seal,
        frames: &mut Vec<u8>,
    ) -> Result<Written, JournalError> {
        let intact = matches!(
            frame::read_frame(old, w.start as usize, self.seal),
            Ok((Entry::Record(_), next)) if next as u64 == w.end
        );
        if !intact {
            return Err(JournalError::Corrupt {
                file: self.file.clone(),
                offset: w.start,
                reason: "a record written by this process no longer checks out".into(),
            });
        }
        let start = HEADER_LEN + frames.len();
        frames.extend_from_slice(&old[w.start as usize..w.end as usize]);
        frame::reseal(&mut frames[start - HEADER_LEN..], seal);
        Ok(Written {
            seq: w.seq,
            start: start as u64,
            end: (HEADER_LEN + frames.len()) as u64,
        })
    }

    /// Writes `bytes` to `tmp`, syncs it and renames it to `name`.
    fn write_complete(&mut self, tmp: &str, bytes: &[u8], name: &str) -> Result<(), JournalError> {
        self.storage
            .create(tmp)
            .map_err(JournalError::storage("create", tmp))?;
        self.storage
            .append(tmp, bytes)
            .map_err(JournalError::storage("write", tmp))?;
        self.stats.syncs += 1;
        self.storage
            .sync(tmp)
            .map_err(JournalError::storage("sync", tmp))?;
        self.storage
            .rename(tmp, name)
            .map_err(JournalError::storage("rename", tmp))
    }

    pub fn stats(&self) -> &JournalStats {
        &self.stats
    }

    /// The current file's name.
    pub fn file(&self) -> &str {
        &self.file
    }

    pub fn storage(&self) -> &S {
        &self.storage
    }

    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }

    /// The storage back, e.g. to crash it and open it again.
    pub fn into_storage(self) -> S {
        self.storage
    }
}

/// The salt of the file of `generation` written at the `tried`-th switch of
/// a journal whose own salt is `salt`, mixed by splitmix64's finalizer so
/// that nearby inputs give unrelated salts.
fn file_salt(salt: u64, generation: u64, tried: u64) -> u64 {
    let mut x = salt ^ generation.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ tried.rotate_left(32);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}
