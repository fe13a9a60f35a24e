//! The journal on real files: a [`Storage`] over one directory, the lock
//! that keeps a second server out of it, and the writer thread that turns
//! the driver's appends into group commits.
//!
//! The driver never waits for the disk: [`DurableJournal::append`] queues
//! the record on a bounded channel and returns. The writer thread takes
//! whatever queued up while its previous sync ran, writes it with one write
//! and one `fdatasync`, and reports through the `events` callback given to
//! [`DurableJournal::open`]; the driver turns those [`JournalEvent`]s into
//! the core's inputs.

use crate::core::Record;
use crate::journal::{
    Journal, JournalConfig, JournalError, JournalStats, RecoveryReport, Settled, SnapshotReason,
    Storage, StorageError,
};
use crate::server::data_dir::{create_private, create_private_dir_all};
use crate::server::metrics::JournalMetrics;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The file in the data directory whose lock marks it as in use.
pub const LOCK_FILE: &str = "LOCK";

/// How long the writer waits, when a snapshot is wanted because writes
/// failed (or its install did), before asking for one (doubling up to
/// [`MAX_BACKOFF`]).
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What the writer tells the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JournalEvent {
    /// Every record up to `upto` is durable: `Input::Persisted { upto }`.
    Persisted { upto: u64 },
    /// Every record from `from` on failed: `Input::PersistFailed { from }`.
    PersistFailed { from: u64 },
    /// Take `Dispatcher::snapshot()` and `durable_seq()` and hand them to
    /// [`DurableJournal::install_snapshot`]: the file passed the compaction
    /// threshold, or a failed write needs a fresh file (asked after a pause
    /// that grows with each failure). Sent once per need, and again only
    /// after an install that failed.
    WantsSnapshot,
    /// Whether records appended now can become durable (for `/readyz`).
    /// Sent once at start, then on every change.
    Writable(bool),
}

/// The journal's settings.
#[derive(Clone, Debug)]
pub struct JournalOptions {
    /// Compact once the current file has grown this much past its snapshot.
    pub compact_after_bytes: u64,
    /// Skip damaged records at recovery instead of refusing to start.
    pub salvage: bool,
    /// Most records written by one write and one sync.
    pub max_batch_records: usize,
    /// Zeros written ahead of the appends at a time (see [`FileStorage`]);
    /// 0 = the file grows with each batch.
    pub preallocate_bytes: u64,
    /// Where the writer reports its commits, if anywhere.
    pub metrics: Option<JournalMetrics>,
    /// Appends queued for the writer. Should exceed the core's bound on
    /// writes in flight (`max_attempts` + `max_pending_cancels`): an append
    /// that finds the queue full fails, like a failed write. A bound, not
    /// an allocation: memory is taken as appends wait.
    pub queue_capacity: usize,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            compact_after_bytes: 64 << 20,
            salvage: false,
            max_batch_records: 4096,
            preallocate_bytes: 256 << 10,
            metrics: None,
            queue_capacity: 65_536,
        }
    }
}

enum Message {
    Append {
        seq: u64,
        record: Record,
    },
    Install {
        at: SnapshotPoint,
        snapshot: Vec<Record>,
    },
    /// Answered after the next commit: whether the journal can write.
    Flush(SyncSender<bool>),
    Stop,
}

/// Where the core stood when it took a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotPoint {
    /// Every write up to it was durable, and none after it is in the snapshot.
    pub durable_seq: u64,
    /// The seq of the core's next write: every append before it was queued
    /// before the snapshot.
    pub next_seq: u64,
    /// The [`JournalEvent::PersistFailed`]s the core had heard of.
    pub failures_handled: u64,
}

/// The durable journal of a running server: the directory lock and the
/// writer thread.
pub struct DurableJournal {
    /// Unbounded underneath, so that memory is paid as appends wait rather
    /// than for every one the bound allows at start; `queued` bounds them.
    sender: Sender<Message>,
    /// Appends sent and not yet taken by the writer.
    queued: Arc<AtomicUsize>,
    /// The most appends that may wait (`JournalOptions::queue_capacity`).
    capacity: usize,
    /// The first append that found the queue full (0: none); the writer
    /// fails it and everything after it.
    lost_from: Arc<AtomicU64>,
    stats: Arc<Mutex<JournalStats>>,
    writer: Option<JoinHandle<()>>,
    /// Held (and so locked) for as long as the journal runs.
    _lock: Option<File>,
}

impl DurableJournal {
    /// Locks the dir, recovers, returns the records to restore and a running
    /// writer thread that reports events through `events` (the driver turns
    /// them into core inputs).
    pub fn open(
        dir: &Path,
        options: JournalOptions,
        events: Box<dyn Fn(JournalEvent) + Send>,
    ) -> Result<(DurableJournal, Vec<Record>, RecoveryReport), JournalError> {
        create_dir_durably(dir).map_err(|e| data_dir_error(dir, &e))?;
        let lock = lock_dir(dir)?;
        let storage = FileStorage::new(dir, options.preallocate_bytes);
        let (mut journal, records, report) =
            DurableJournal::start(storage, options, events).map_err(|e| with_dir(e, dir))?;
        journal._lock = Some(lock);
        Ok((journal, records, report))
    }

    /// [`open`](Self::open) over any storage, without a lock (for tests).
    pub fn start<S: Storage + Send + 'static>(
        storage: S,
        options: JournalOptions,
        events: Box<dyn Fn(JournalEvent) + Send>,
    ) -> Result<(DurableJournal, Vec<Record>, RecoveryReport), JournalError> {
        let config = JournalConfig {
            compact_after_bytes: options.compact_after_bytes,
            salvage: options.salvage,
            // Each process its own, so that no file of another run's
            // journal shares a seal with this one's.
            salt: rand::random(),
        };
        let opened = Journal::open(storage, config)?;
        let (sender, receiver) = mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let lost_from = Arc::new(AtomicU64::new(0));
        let stats = Arc::new(Mutex::new(opened.journal.stats().clone()));
        if let Some(metrics) = &options.metrics {
            metrics.copy_stats(&JournalStats::default(), opened.journal.stats());
        }
        let writer = Writer {
            metrics: options.metrics,
            journal: opened.journal,
            receiver,
            queued: Arc::clone(&queued),
            events,
            lost_from: Arc::clone(&lost_from),
            stats: Arc::clone(&stats),
            max_batch: options.max_batch_records.max(1),
            staged: 0,
            flushes: Vec::new(),
            writable: true,
            request_at: None,
            asked: false,
            backoff: FIRST_BACKOFF,
        };
        let handle = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| JournalError::Writer(e.to_string()))?;
        let journal = DurableJournal {
            sender,
            queued,
            capacity: options.queue_capacity.max(1),
            lost_from,
            stats,
            writer: Some(handle),
            _lock: None,
        };
        Ok((journal, opened.records, opened.report))
    }

    /// Queues a record; never waits. If the queue is full the record (and
    /// every later one, until a snapshot is installed) fails.
    pub fn append(&self, seq: u64, record: Record) {
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            // Keep the first: the writer fails everything from it on.
            let _ = self
                .lost_from
                .compare_exchange(0, seq, Ordering::AcqRel, Ordering::Acquire);
            return;
        }
        // The writer only stops when this is dropped.
        let _ = self.sender.send(Message::Append { seq, record });
    }

    /// Starts a fresh file from the core's `snapshot()`, taken `at` (see
    /// [`Journal::install_snapshot`]). Never waits: only appends count
    /// against the queue's bound.
    pub fn install_snapshot(&self, at: SnapshotPoint, snapshot: Vec<Record>) {
        let _ = self.sender.send(Message::Install { at, snapshot });
    }

    /// Blocks until everything appended so far has settled (for shutdown);
    /// false if writes failed and no fresh file has replaced them since
    /// (what failed was answered as failed, but is not on disk).
    pub fn flush(&self) -> bool {
        let (done, wait) = mpsc::sync_channel(1);
        if self.sender.send(Message::Flush(done)).is_err() {
            return false;
        }
        wait.recv().unwrap_or(false)
    }

    /// The writer's counters, as of its last batch.
    pub fn stats(&self) -> JournalStats {
        match self.stats.lock() {
            Ok(stats) => stats.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl Drop for DurableJournal {
    /// Settles what is queued and stops the writer (before the lock goes).
    fn drop(&mut self) {
        let _ = self.sender.send(Message::Stop);
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// The writer thread's state.
struct Writer<S: Storage> {
    journal: Journal<S>,
    receiver: Receiver<Message>,
    /// Appends sent and not yet taken (see [`DurableJournal::append`]).
    queued: Arc<AtomicUsize>,
    events: Box<dyn Fn(JournalEvent) + Send>,
    lost_from: Arc<AtomicU64>,
    stats: Arc<Mutex<JournalStats>>,
    metrics: Option<JournalMetrics>,
    max_batch: usize,
    /// Records staged for the next commit.
    staged: usize,
    /// Flushes answered after the next commit.
    flushes: Vec<SyncSender<bool>>,
    writable: bool,
    /// When to send the next `WantsSnapshot`.
    request_at: Option<Instant>,
    /// A `WantsSnapshot` went out and no `Install` has come since. The
    /// driver answers every one, and a snapshot of a large state takes it a
    /// while: asking again meanwhile would only have it build another.
    asked: bool,
    backoff: Duration,
}

impl<S: Storage> Writer<S> {
    fn run(mut self) {
        (self.events)(JournalEvent::Writable(true));
        let mut running = true;
        while running {
            running = match self.wait() {
                Some(message) => self.handle(message) && self.gather(),
                None => true,
            };
            self.commit();
            self.after_step();
        }
    }

    /// The next message, or `None` when there is something to report or
    /// a snapshot to ask for.
    fn wait(&mut self) -> Option<Message> {
        let lost = self.lost_from.load(Ordering::Acquire);
        match self.receiver.try_recv() {
            Ok(message) => return Some(message),
            Err(TryRecvError::Disconnected) => return Some(Message::Stop),
            Err(TryRecvError::Empty) => {}
        }
        if self.fail_lost(lost) {
            return None;
        }
        let Some(at) = self.request_at else {
            return Some(self.receiver.recv().unwrap_or(Message::Stop));
        };
        let timeout = at.saturating_duration_since(now());
        match self.receiver.recv_timeout(timeout) {
            Ok(message) => Some(message),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => Some(Message::Stop),
        }
    }

    /// Takes what else is queued, up to a batch; false on stop.
    fn gather(&mut self) -> bool {
        while self.staged < self.max_batch {
            let lost = self.lost_from.load(Ordering::Acquire);
            match self.receiver.try_recv() {
                Ok(message) => {
                    if !self.handle(message) {
                        return false;
                    }
                }
                Err(TryRecvError::Empty) => {
                    self.fail_lost(lost);
                    return true;
                }
                Err(TryRecvError::Disconnected) => return false,
            }
        }
        true
    }

    /// Handles one message; false on stop.
    fn handle(&mut self, message: Message) -> bool {
        match message {
            Message::Append { seq, record } => {
                self.queued.fetch_sub(1, Ordering::AcqRel);
                self.note_lost(seq);
                self.journal.append(seq, &record);
                self.staged += 1;
            }
            // Sent after every append before `at.next_seq` and before any
            // later one: an append lost after it may have earlier ones still
            // queued behind it, so only one before `at.next_seq` fails here.
            Message::Install { at, snapshot } => {
                self.note_lost(at.next_seq);
                self.staged = 0;
                let installed =
                    self.journal
                        .install_snapshot(at.durable_seq, &snapshot, at.failures_handled);
                // A stale snapshot means a failure the driver has yet to
                // handle: its own snapshot follows, no need to ask.
                self.asked = matches!(installed, Err(JournalError::StaleSnapshot { .. }));
                if installed.is_ok() {
                    self.backoff = FIRST_BACKOFF;
                    self.request_at = None;
                }
                self.report();
            }
            // Sent once the driver has stopped: after every append.
            Message::Flush(done) => {
                self.note_lost(u64::MAX);
                self.flushes.push(done);
            }
            Message::Stop => return false,
        }
        true
    }

    /// Fails the lost append, if there is one before `seq`. Call it only
    /// once every append before `seq` has been handled.
    fn note_lost(&mut self, seq: u64) -> bool {
        let lost = self.lost_from.load(Ordering::Acquire);
        lost < seq && self.fail_lost(lost)
    }

    /// Fails `lost` (0: none), read from `lost_from` before the queue was
    /// found empty: every append before it was queued before it was lost,
    /// so all of them have been handled.
    fn fail_lost(&mut self, lost: u64) -> bool {
        let taken = lost != 0
            && self
                .lost_from
                .compare_exchange(lost, 0, Ordering::AcqRel, Ordering::Acquire)
                .is_ok();
        if taken {
            self.journal.append_lost(lost);
        }
        taken
    }

    fn commit(&mut self) {
        let started = now();
        self.journal.commit();
        if let (Some(metrics), true) = (&self.metrics, self.staged > 0) {
            metrics.committed(self.staged, started.elapsed());
        }
        self.staged = 0;
        self.report();
        let writable = self.journal.is_writable();
        for done in self.flushes.drain(..) {
            let _ = done.send(writable);
        }
    }

    /// Reports settled records, then a change of writability.
    fn report(&mut self) {
        while let Some(settled) = self.journal.poll_settled() {
            (self.events)(match settled {
                Settled::Persisted { upto } => JournalEvent::Persisted { upto },
                Settled::Failed { from } => JournalEvent::PersistFailed { from },
            });
        }
        let writable = self.journal.is_writable();
        if writable != self.writable {
            self.writable = writable;
            (self.events)(JournalEvent::Writable(writable));
        }
        let stats = self.journal.stats();
        // Only this thread writes the shared copy: it is what was reported.
        let mut shared = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(metrics) = &self.metrics {
            metrics.copy_stats(&shared, stats);
        }
        *shared = stats.clone();
    }

    /// Asks for a snapshot when one is wanted and due, and not asked for.
    fn after_step(&mut self) {
        let Some(reason) = self.journal.wants_snapshot().filter(|_| !self.asked) else {
            self.request_at = None;
            return;
        };
        let now = now();
        let due = *self.request_at.get_or_insert(match reason {
            SnapshotReason::Compact => now,
            // Give a failing disk a moment before trying a fresh file.
            SnapshotReason::Recover => now + self.backoff,
        });
        if due <= now {
            (self.events)(JournalEvent::WantsSnapshot);
            self.asked = true;
            self.request_at = None;
            self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        }
    }
}

#[allow(clippy::disallowed_methods)] // the writer's pauses are real time
fn now() -> Instant {
    Instant::now()
}

/// Creates `dir` and any missing parents, and syncs the directory that
/// holds each one created: otherwise a power cut could take a new data
/// directory away, journal and all, with bookings acknowledged in it.
fn create_dir_durably(dir: &Path) -> io::Result<()> {
    let missing: Vec<&Path> = dir.ancestors().take_while(|d| !d.exists()).collect();
    create_private_dir_all(dir)?;
    // Each created directory's entry lives in its parent.
    for created in missing {
        let parent = match created.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// Locks `dir`'s lock file, or says who has it.
fn lock_dir(dir: &Path) -> Result<File, JournalError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))
        .map_err(|e| data_dir_error(dir, &e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(JournalError::Locked {
            dir: dir.display().to_string(),
        }),
        Err(TryLockError::Error(e)) => Err(data_dir_error(dir, &e)),
    }
}

fn data_dir_error(dir: &Path, e: &io::Error) -> JournalError {
    JournalError::DataDir {
        dir: dir.display().to_string(),
        reason: e.to_string(),
    }
}

/// Names files by their path, so the operator knows which one.
fn with_dir(error: JournalError, dir: &Path) -> JournalError {
    let path = |file: String| dir.join(file).display().to_string();
    match error {
        JournalError::Storage { op, file, source } => JournalError::Storage {
            op,
            file: path(file),
            source,
        },
        JournalError::Corrupt {
            file,
            offset,
            reason,
        } => JournalError::Corrupt {
            file: path(file),
            offset,
            reason,
        },
        JournalError::UnsupportedVersion {
            file,
            found,
            supported,
        } => JournalError::UnsupportedVersion {
            file: path(file),
            found,
            supported,
        },
        other => other,
    }
}

/// One directory of real files.
///
/// Appends go into space written with zeros ahead of them, `preallocate`
/// bytes at a time: the sync of a batch (`fdatasync`) then flushes the data
/// alone, where a sync that also grows the file must first commit the new
/// size to the filesystem's own journal (BENCHMARKS.md, "Preallocated
/// journal files": about 0.15 against 0.09 ms a sync on ext4). Every
/// journal byte is so written twice, once as a zero; the commit that
/// crosses a step pays for the next step's zeros. A stop or a crash leaves
/// zeros after the last record, which recovery reads as the end of the
/// file and cuts. The journal only appends to a file it created or whose
/// tail recovery cut, so a file opened here ends where its appends do.
pub struct FileStorage {
    dir: PathBuf,
    /// Zeros written ahead of the appends at a time; 0 = grow with each.
    preallocate: u64,
    /// Open handles, so a batch costs no `open`.
    files: BTreeMap<String, OpenFile>,
}

/// A file the storage writes, generic so that tests can make writes fail.
struct OpenFile<F = File> {
    file: F,
    /// Where the next append goes.
    len: u64,
    /// The file's length on disk: what was appended, then zeros.
    allocated: u64,
}

impl OpenFile {
    fn new(file: File) -> io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(OpenFile {
            file,
            len,
            allocated: len,
        })
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.len = len;
        self.allocated = len;
        Ok(())
    }
}

impl<F: Write + Seek> OpenFile<F> {
    /// Writes `bytes` after what was appended, then, when they reach the
    /// end of the zeros, zeros up to the next multiple of `preallocate`
    /// past them.
    fn append(&mut self, bytes: &[u8], preallocate: u64) -> io::Result<()> {
        self.file.seek(SeekFrom::Start(self.len))?;
        self.file.write_all(bytes)?;
        self.len += bytes.len() as u64;
        self.allocated = self.allocated.max(self.len);
        if preallocate == 0 || self.len < self.allocated {
            return Ok(());
        }
        // The next step boundary past the records, so that the next append
        // lands in zeros even when this one ended on a boundary.
        let target = (self.len / preallocate + 1) * preallocate;
        match self.write_zeros(target) {
            Ok(()) => Ok(()),
            // The records are written: the file just grows with each batch
            // until there is room again.
            Err(e) if is_out_of_room(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Writes zeros from the end of the file up to `target`.
    fn write_zeros(&mut self, target: u64) -> io::Result<()> {
        static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
        while self.allocated < target {
            let n = (target - self.allocated).min(ZEROS.len() as u64) as usize;
            match self.file.write(&ZEROS[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => self.allocated += written as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl FileStorage {
    pub fn new(dir: &Path, preallocate: u64) -> Self {
        FileStorage {
            dir: dir.to_path_buf(),
            preallocate,
            files: BTreeMap::new(),
        }
    }

    fn file(&mut self, name: &str) -> io::Result<&mut OpenFile> {
        if !self.files.contains_key(name) {
            let file = OpenOptions::new().write(true).open(self.dir.join(name))?;
            self.files.insert(name.to_string(), OpenFile::new(file)?);
        }
        self.files
            .get_mut(name)
            .ok_or_else(|| io::Error::other("file handle vanished"))
    }
}

fn is_out_of_room(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::FileTooLarge | io::ErrorKind::QuotaExceeded
    )
}

fn storage_error(e: io::Error) -> StorageError {
    match e.kind() {
        io::ErrorKind::NotFound => StorageError::NotFound,
        io::ErrorKind::StorageFull => StorageError::NoSpace,
        _ => StorageError::Io(e.to_string()),
    }
}

impl Storage for FileStorage {
    fn list(&self) -> Result<Vec<String>, StorageError> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(storage_error)? {
            let entry = entry.map_err(storage_error)?;
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn read(&self, name: &str) -> Result<Vec<u8>, StorageError> {
        fs::read(self.dir.join(name)).map_err(storage_error)
    }

    fn create(&mut self, name: &str) -> Result<(), StorageError> {
        let file = create_private(&self.dir.join(name)).map_err(storage_error)?;
        let file = OpenFile::new(file).map_err(storage_error)?;
        self.files.insert(name.to_string(), file);
        Ok(())
    }

    fn append(&mut self, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let preallocate = self.preallocate;
        self.file(name)
            .and_then(|f| f.append(bytes, preallocate))
            .map_err(storage_error)
    }

    fn sync(&mut self, name: &str) -> Result<(), StorageError> {
        self.file(name)
            .and_then(|f| f.file.sync_data())
            .map_err(storage_error)
    }

    fn truncate(&mut self, name: &str, len: u64) -> Result<(), StorageError> {
        self.file(name)
            .and_then(|f| f.truncate(len))
            .map_err(storage_error)
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), StorageError> {
        fs::rename(self.dir.join(from), self.dir.join(to)).map_err(storage_error)?;
        // The handle follows the file, not the name.
        self.files.remove(to);
        if let Some(file) = self.files.remove(from) {
            self.files.insert(to.to_string(), file);
        }
        Ok(())
    }

    fn remove(&mut self, name: &str) -> Result<(), StorageError> {
        self.files.remove(name);
        fs::remove_file(self.dir.join(name)).map_err(storage_error)
    }

    fn sync_dir(&mut self) -> Result<(), StorageError> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(storage_error)
    }
}

#[cfg(test)]
mod tests;
