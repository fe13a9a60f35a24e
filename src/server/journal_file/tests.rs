//! Tests of the journal on real files and of the writer thread.

use super::*;
use crate::journal::recovery::{log_name, tmp_name};
use crate::journal::tests::{record, record_offsets, state_of};
use crate::journal::{MemStorage, Op};
use std::sync::mpsc::Receiver;

const WAIT: Duration = Duration::from_secs(10);

fn records(seqs: std::ops::RangeInclusive<u64>) -> Vec<Record> {
    seqs.map(record).collect()
}

/// An events callback and the receiving end of what it reports.
fn events() -> (Box<dyn Fn(JournalEvent) + Send>, Receiver<JournalEvent>) {
    let (tx, rx) = mpsc::channel();
    (
        Box::new(move |event| {
            let _ = tx.send(event);
        }),
        rx,
    )
}

/// Waits for an event matching `wanted`, returning those seen before it.
fn wait_for(
    rx: &Receiver<JournalEvent>,
    wanted: impl Fn(&JournalEvent) -> bool,
) -> Vec<JournalEvent> {
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(WAIT) {
            Ok(event) if wanted(&event) => return seen,
            Ok(event) => seen.push(event),
            Err(_) => panic!("no such event; saw {seen:?}"),
        }
    }
}

fn drain(rx: &Receiver<JournalEvent>) -> Vec<JournalEvent> {
    rx.try_iter().collect()
}

/// The core's point for a snapshot: durable up to `durable_seq`, its next
/// write `next_seq`, `failures_handled` failures heard of.
fn at(durable_seq: u64, next_seq: u64, failures_handled: u64) -> SnapshotPoint {
    SnapshotPoint {
        durable_seq,
        next_seq,
        failures_handled,
    }
}

fn small_options() -> JournalOptions {
    JournalOptions {
        compact_after_bytes: 1 << 20,
        salvage: false,
        max_batch_records: 256,
        queue_capacity: 10_000,
        preallocate_bytes: PREALLOCATE,
        metrics: None,
    }
}

/// Small, so that tests cross many preallocation steps.
const PREALLOCATE: u64 = 4096;

/// A [`MemStorage`] the test keeps a hand on while the writer owns it,
/// with an optional pause in every sync (a slow disk).
#[derive(Clone)]
struct Shared {
    disk: Arc<Mutex<MemStorage>>,
    sync_pause: Duration,
}

impl Shared {
    fn new(sync_pause: Duration) -> Self {
        Shared {
            disk: Arc::new(Mutex::new(MemStorage::new())),
            sync_pause,
        }
    }

    fn disk(&self) -> std::sync::MutexGuard<'_, MemStorage> {
        self.disk.lock().unwrap()
    }
}

impl Storage for Shared {
    fn list(&self) -> Result<Vec<String>, StorageError> {
        self.disk().list()
    }
    fn read(&self, name: &str) -> Result<Vec<u8>, StorageError> {
        self.disk().read(name)
    }
    fn create(&mut self, name: &str) -> Result<(), StorageError> {
        self.disk().create(name)
    }
    fn append(&mut self, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.disk().append(name, bytes)
    }
    fn sync(&mut self, name: &str) -> Result<(), StorageError> {
        std::thread::sleep(self.sync_pause);
        self.disk().sync(name)
    }
    fn truncate(&mut self, name: &str, len: u64) -> Result<(), StorageError> {
        self.disk().truncate(name, len)
    }
    fn rename(&mut self, from: &str, to: &str) -> Result<(), StorageError> {
        self.disk().rename(from, to)
    }
    fn remove(&mut self, name: &str) -> Result<(), StorageError> {
        self.disk().remove(name)
    }
    fn sync_dir(&mut self) -> Result<(), StorageError> {
        self.disk().sync_dir()
    }
}

// ----- real files ---------------------------------------------------------------

#[test]
fn appended_records_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (callback, rx) = events();
    let (journal, restored, report) =
        DurableJournal::open(dir.path(), small_options(), callback).unwrap();
    assert!(restored.is_empty());
    assert_eq!(report.file, None);
    for n in 1..=100 {
        journal.append(n, record(n));
    }
    journal.flush();
    let seen = drain(&rx);
    assert_eq!(seen.first(), Some(&JournalEvent::Writable(true)));
    assert_eq!(seen.last(), Some(&JournalEvent::Persisted { upto: 100 }));
    drop(journal);

    let (callback, _rx) = events();
    let (_journal, restored, report) =
        DurableJournal::open(dir.path(), small_options(), callback).unwrap();
    assert_eq!(restored, records(1..=100));
    assert_eq!(report.torn_bytes, 0);
}

#[test]
fn a_data_directory_is_created_with_its_missing_parents() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a").join("b").join("data");
    let (callback, _rx) = events();
    let (journal, _, _) = DurableJournal::open(&nested, small_options(), callback).unwrap();
    journal.append(1, record(1));
    assert!(journal.flush());
    assert!(nested.join(log_name(1)).exists());
}

#[test]
fn a_second_opener_of_a_data_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (callback, _rx) = events();
    let first = DurableJournal::open(dir.path(), small_options(), callback).unwrap();
    let (callback, _rx2) = events();
    let err = DurableJournal::open(dir.path(), small_options(), callback)
        .err()
        .unwrap();
    assert!(matches!(err, JournalError::Locked { .. }), "{err}");
    assert!(err.to_string().contains(&dir.path().display().to_string()));
    drop(first);
    let (callback, _rx3) = events();
    assert!(DurableJournal::open(dir.path(), small_options(), callback).is_ok());
}

#[test]
fn a_torn_tail_in_a_real_file_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let (callback, _rx) = events();
    let (journal, _, _) = DurableJournal::open(dir.path(), small_options(), callback).unwrap();
    for n in 1..=10 {
        journal.append(n, record(n));
    }
    journal.flush();
    let len = journal.stats().file_len;
    drop(journal);
    let path = dir.path().join(log_name(1));
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(len - 7).unwrap();

    let (callback, _rx) = events();
    let (_journal, restored, report) =
        DurableJournal::open(dir.path(), small_options(), callback).unwrap();
    assert_eq!(restored, records(1..=9));
    assert!(report.torn_bytes > 0);
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        report.torn_at.unwrap(),
        "the tail was truncated"
    );
}

/// Opens a journal in `dir`, appends `seqs`, waits for them to be durable
/// and stops it (as a crash would leave it: nothing is tidied); returns
/// the length of what was appended.
fn append_and_stop(dir: &Path, preallocate_bytes: u64, seqs: std::ops::RangeInclusive<u64>) -> u64 {
    let options = JournalOptions {
        preallocate_bytes,
        ..small_options()
    };
    let (callback, _rx) = events();
    let (journal, _, _) = DurableJournal::open(dir, options, callback).unwrap();
    for n in seqs {
        journal.append(n, record(n));
    }
    journal.flush();
    journal.stats().file_len
}

#[test]
fn appends_go_into_preallocated_zeros_which_recovery_cuts_without_calling_them_torn() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(log_name(1));
    let appended = append_and_stop(dir.path(), PREALLOCATE, 1..=40);
    let bytes = fs::read(&path).unwrap();
    assert_eq!(
        bytes.len() as u64 % PREALLOCATE,
        0,
        "grown a step at a time"
    );
    assert!(bytes.len() as u64 > appended);
    assert!(bytes[appended as usize..].iter().all(|&b| b == 0));

    let (callback, _rx) = events();
    let (journal, restored, report) =
        DurableJournal::open(dir.path(), small_options(), callback).unwrap();
    assert_eq!(restored, records(1..=40));
    assert_eq!((report.torn_bytes, report.torn_at), (0, None));
    assert_eq!(report.zeros_cut, bytes.len() as u64 - appended);
    assert_eq!(fs::metadata(&path).unwrap().len(), appended, "zeros cut");
    // Appends after recovery start where the records end, zeros again ahead.
    for n in 41..=60 {
        journal.append(n, record(n));
    }
    journal.flush();
    drop(journal);
    let (callback, _rx) = events();
    let (_journal, restored, _) =
        DurableJournal::open(dir.path(), small_options(), callback).unwrap();
    assert_eq!(restored, records(1..=60));
}

#[test]
fn a_torn_write_into_preallocated_zeros_counts_only_its_own_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(log_name(1));
    let appended = append_and_stop(dir.path(), PREALLOCATE, 1..=10);
    let mut file = OpenOptions::new().write(true).open(&path).unwrap();
    file.seek(SeekFrom::Start(appended)).unwrap();
    file.write_all(&[0xab; 5]).unwrap();
    drop(file);

    let (callback, _rx) = events();
    let (_journal, restored, report) =
        DurableJournal::open(dir.path(), small_options(), callback).unwrap();
    assert_eq!(restored, records(1..=10));
    assert_eq!((report.torn_bytes, report.torn_at), (5, Some(appended)));
    assert_eq!(report.zeros_cut, PREALLOCATE - appended % PREALLOCATE - 5);
    assert_eq!(fs::metadata(&path).unwrap().len(), appended);
}

/// A file with room for `room` bytes; past it a write fails with `kind`.
struct Cramped {
    bytes: std::io::Cursor<Vec<u8>>,
    room: usize,
    kind: io::ErrorKind,
}

impl Write for Cramped {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let at = self.bytes.position() as usize;
        let n = buf.len().min(self.room.saturating_sub(at));
        if n == 0 && !buf.is_empty() {
            return Err(self.kind.into());
        }
        self.bytes.write(&buf[..n])
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for Cramped {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.bytes.seek(pos)
    }
}

fn cramped(room: usize, kind: io::ErrorKind) -> OpenFile<Cramped> {
    OpenFile {
        file: Cramped {
            bytes: Default::default(),
            room,
            kind,
        },
        len: 0,
        allocated: 0,
    }
}

#[test]
fn with_no_room_for_the_zeros_the_records_are_still_written() {
    let mut file = cramped(100, io::ErrorKind::StorageFull);
    file.append(&[7; 40], 64).unwrap();
    file.append(&[8; 40], 64).unwrap();
    assert_eq!(
        (file.len, file.allocated),
        (80, 100),
        "zeros up to the room"
    );
    let written = file.file.bytes.get_ref();
    assert_eq!(written[..80], [[7; 40], [8; 40]].concat());
    assert!(written[80..].iter().all(|&b| b == 0));
    // Past the room the records themselves fail, and the next append would
    // go where this one started (the journal cuts what it wrote).
    assert!(file.append(&[9; 40], 64).is_err());
    assert_eq!(file.len, 80);
}

#[test]
fn any_other_failure_to_write_the_zeros_fails_the_append() {
    let mut file = cramped(50, io::ErrorKind::Other);
    assert!(file.append(&[7; 40], 64).is_err());
    let mut file = cramped(50, io::ErrorKind::StorageFull);
    file.append(&[7; 40], 64).unwrap();
    assert_eq!((file.len, file.allocated), (40, 50));
}

#[test]
fn zeros_go_ahead_in_steps_and_appends_overwrite_them() {
    let mut file = cramped(usize::MAX, io::ErrorKind::Other);
    file.append(&[1; 10], 64).unwrap();
    assert_eq!((file.len, file.allocated), (10, 64));
    file.append(&[2; 54], 64).unwrap();
    assert_eq!(
        (file.len, file.allocated),
        (64, 128),
        "a full step asks for the next"
    );
    file.append(&[3; 200], 64).unwrap();
    assert_eq!((file.len, file.allocated), (264, 320));
    let written = file.file.bytes.into_inner();
    assert_eq!(written.len(), 320);
    assert_eq!(
        &written[..264],
        [&[1; 10][..], &[2; 54], &[3; 200]].concat()
    );
    assert!(written[264..].iter().all(|&b| b == 0));
}

#[test]
fn the_writer_reports_its_commits_to_the_metrics() {
    let metrics = crate::server::metrics::Metrics::new(1);
    let options = JournalOptions {
        metrics: Some(metrics.journal()),
        ..small_options()
    };
    let (callback, _rx) = events();
    let (journal, _, _) =
        DurableJournal::start(Shared::new(Duration::ZERO), options, callback).unwrap();
    for n in 1..=10 {
        journal.append(n, record(n));
    }
    journal.flush();
    let stats = journal.stats();
    let text = metrics.encode(false);
    let sample = |name: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.split(' ').next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(sample("tour_dispatcher_journal_records_total"), 10.0);
    assert_eq!(sample("tour_dispatcher_journal_batch_records_sum"), 10.0);
    let commits = sample("tour_dispatcher_journal_commit_duration_seconds_count");
    assert_eq!(commits, stats.batches as f64);
    assert_eq!(
        sample("tour_dispatcher_journal_batch_records_count"),
        commits
    );
    // The first file's snapshot was synced too.
    assert_eq!(
        sample("tour_dispatcher_journal_syncs_total"),
        stats.syncs as f64
    );
    assert_eq!(
        sample("tour_dispatcher_journal_written_bytes_total"),
        stats.bytes_written as f64
    );
    assert_eq!(
        sample("tour_dispatcher_journal_file_bytes"),
        stats.file_len as f64
    );
    assert_eq!(sample("tour_dispatcher_journal_failed_batches_total"), 0.0);
}

#[test]
fn without_preallocation_the_file_ends_where_the_records_do() {
    let dir = tempfile::tempdir().unwrap();
    let appended = append_and_stop(dir.path(), 0, 1..=40);
    let on_disk = fs::metadata(dir.path().join(log_name(1))).unwrap().len();
    assert_eq!(on_disk, appended);
}

#[test]
fn damage_in_a_real_file_is_refused_naming_its_path_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (callback, _rx) = events();
    let (journal, _, _) = DurableJournal::open(dir.path(), small_options(), callback).unwrap();
    for n in 1..=10 {
        journal.append(n, record(n));
        journal.flush();
    }
    drop(journal);
    let path = dir.path().join(log_name(1));
    let mut bytes = fs::read(&path).unwrap();
    let damaged = record_offsets(&bytes)[2];
    bytes[damaged + 10] ^= 0x40;
    fs::write(&path, &bytes).unwrap();

    let (callback, _rx) = events();
    let err = DurableJournal::open(dir.path(), small_options(), callback)
        .err()
        .unwrap();
    let JournalError::Corrupt { file, offset, .. } = &err else {
        panic!("expected corruption, got {err:?}");
    };
    assert_eq!(file, &path.display().to_string());
    assert_eq!(*offset, damaged as u64);
    assert!(err.to_string().contains(&format!("byte offset {offset}")));

    let (callback, _rx) = events();
    let salvage = JournalOptions {
        salvage: true,
        ..small_options()
    };
    let (_journal, restored, report) = DurableJournal::open(dir.path(), salvage, callback).unwrap();
    assert_eq!(report.skipped.len(), 1);
    let mut expected = records(1..=10);
    expected.remove(2);
    assert_eq!(restored, expected);
}

/// The files of a compaction as they are at each of its steps, recovered
/// in a fresh directory each: every one gives the same state.
#[test]
fn a_crash_at_any_step_of_a_compaction_recovers_from_real_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Journal::open(
        FileStorage::new(dir.path(), PREALLOCATE),
        JournalConfig::default(),
    )
    .unwrap()
    .journal;
    for n in 1..=30 {
        journal.append(n, &record(n));
        if n % 10 == 0 {
            journal.commit();
        }
    }
    let old = fs::read(dir.path().join(log_name(1))).unwrap();
    // The core saw 1..=25 settle: 26..=30 are carried after the snapshot.
    journal
        .install_snapshot(25, &state_of(records(1..=25)), journal.failures_reported())
        .unwrap();
    let new = fs::read(dir.path().join(log_name(2))).unwrap();
    let expected = state_of(records(1..=30));

    /// A step's name and the files on disk after a crash there.
    type State = (String, Vec<(String, Vec<u8>)>);
    let mut states: Vec<State> = Vec::new();
    let cuts = [0, 5, 32, 100, new.len() / 2, new.len() - 1, new.len()];
    for cut in cuts {
        states.push((
            format!("snapshot written up to byte {cut}"),
            vec![
                (log_name(1), old.clone()),
                (tmp_name(2), new[..cut].to_vec()),
            ],
        ));
    }
    states.push((
        "renamed, old file still there".into(),
        vec![(log_name(1), old.clone()), (log_name(2), new.clone())],
    ));
    states.push(("done".into(), vec![(log_name(2), new.clone())]));

    for (step, files) in states {
        let crashed = tempfile::tempdir().unwrap();
        for (name, bytes) in &files {
            fs::write(crashed.path().join(name), bytes).unwrap();
        }
        let opened = Journal::open(
            FileStorage::new(crashed.path(), PREALLOCATE),
            JournalConfig::default(),
        )
        .unwrap_or_else(|e| panic!("{step}: {e}"));
        assert_eq!(state_of(opened.records), expected, "{step}");
        let left: Vec<String> = fs::read_dir(crashed.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left.len(), 1, "{step}: {left:?}");
    }
}

// ----- the writer thread ----------------------------------------------------------

#[test]
fn group_commit_puts_many_appends_in_few_syncs() {
    let disk = Shared::new(Duration::from_millis(3));
    let (callback, rx) = events();
    let (journal, _, _) = DurableJournal::start(disk.clone(), small_options(), callback).unwrap();
    let syncs_before = disk.disk().count(Op::Sync);
    for n in 1..=2_000 {
        journal.append(n, record(n));
    }
    journal.flush();
    let stats = journal.stats();
    let syncs = disk.disk().count(Op::Sync) - syncs_before;
    assert_eq!(stats.appends, 2_000);
    assert_eq!(stats.batches, syncs);
    // While one sync runs the next batch gathers; a batch holds at most 256.
    assert!(syncs <= 100, "{syncs} syncs for 2000 appends");
    assert!(
        syncs >= 2_000 / 256,
        "{syncs} syncs: batches over the bound"
    );

    let persisted: Vec<u64> = drain(&rx)
        .into_iter()
        .filter_map(|e| match e {
            JournalEvent::Persisted { upto } => Some(upto),
            _ => None,
        })
        .collect();
    assert!(persisted.windows(2).all(|w| w[0] < w[1]), "{persisted:?}");
    assert_eq!(persisted.last(), Some(&2_000));
    assert_eq!(persisted.len() as u64, syncs);
}

#[test]
fn a_failing_disk_fails_writes_until_a_snapshot_is_installed() {
    let disk = Shared::new(Duration::ZERO);
    let (callback, rx) = events();
    let (journal, _, _) = DurableJournal::start(disk.clone(), small_options(), callback).unwrap();
    journal.append(1, record(1));
    journal.flush();
    assert_eq!(
        wait_for(&rx, |e| *e == JournalEvent::Persisted { upto: 1 }),
        vec![JournalEvent::Writable(true)]
    );

    disk.disk().fail_next(Op::Sync, 1);
    journal.append(2, record(2));
    journal.flush();
    wait_for(&rx, |e| *e == JournalEvent::PersistFailed { from: 2 });
    wait_for(&rx, |e| *e == JournalEvent::Writable(false));
    // Nothing is acknowledged until a fresh file exists. Record 3 came
    // before the core heard of the failure (which failed every write from
    // 2 on), so it is not reported again.
    journal.append(3, record(3));
    assert!(!journal.flush(), "a flush says the journal cannot write");
    // The writer asks for a snapshot after a pause; again only after an
    // install that failed.
    let mut seen = wait_for(&rx, |e| *e == JournalEvent::WantsSnapshot);
    disk.disk().fail_next(Op::Create, 1);
    journal.install_snapshot(at(1, 4, 1), state_of(records(1..=1)));
    seen.extend(wait_for(&rx, |e| *e == JournalEvent::WantsSnapshot));
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, JournalEvent::PersistFailed { .. })),
        "{seen:?}"
    );
    assert_eq!(journal.stats().failed_snapshots, 1);

    journal.install_snapshot(at(1, 4, 1), state_of(records(1..=1)));
    journal.append(4, record(4));
    journal.flush();
    let seen = wait_for(&rx, |e| *e == JournalEvent::Persisted { upto: 4 });
    assert!(seen.contains(&JournalEvent::Writable(true)), "{seen:?}");
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, JournalEvent::PersistFailed { .. })),
        "{seen:?}"
    );
    assert_eq!(journal.stats().snapshots, 1);
    assert!(journal.flush(), "a fresh file replaced the failed one");
    drop(journal);

    let storage = disk.disk().clone();
    let reopened = Journal::open(storage, JournalConfig::default()).unwrap();
    let expected: Vec<Record> = vec![record(1), record(4)];
    assert_eq!(state_of(reopened.records), state_of(expected));
}

#[test]
fn compaction_is_asked_for_and_carried_out() {
    let disk = Shared::new(Duration::ZERO);
    let options = JournalOptions {
        compact_after_bytes: 4_000,
        ..small_options()
    };
    let (callback, rx) = events();
    let (journal, _, _) = DurableJournal::start(disk.clone(), options, callback).unwrap();
    let mut n = 0;
    while !drain(&rx).contains(&JournalEvent::WantsSnapshot) {
        n += 1;
        assert!(n < 1_000, "compaction never asked for");
        journal.append(n, record(n));
        journal.flush();
    }
    journal.install_snapshot(at(n, n + 1, 0), state_of(records(1..=n)));
    journal.append(n + 1, record(n + 1));
    journal.flush();
    assert_eq!(journal.stats().snapshots, 1);
    assert_eq!(journal.stats().generation, 2);
    drop(journal);
    let reopened = Journal::open(disk.disk().clone(), JournalConfig::default()).unwrap();
    assert_eq!(state_of(reopened.records), state_of(records(1..=n + 1)));
}

#[test]
fn a_snapshot_is_asked_for_once_until_one_is_installed() {
    let disk = Shared::new(Duration::ZERO);
    let options = JournalOptions {
        compact_after_bytes: 1,
        ..small_options()
    };
    let (callback, rx) = events();
    let (journal, _, _) = DurableJournal::start(disk, options, callback).unwrap();
    // Commits go on for many times the writer's first pause while the
    // driver builds its snapshot (which takes a while for a large state).
    for n in 1..=40 {
        journal.append(n, record(n));
        journal.flush();
        std::thread::sleep(FIRST_BACKOFF / 5);
    }
    let asked = |seen: &[JournalEvent]| {
        seen.iter()
            .filter(|e| **e == JournalEvent::WantsSnapshot)
            .count()
    };
    let seen = drain(&rx);
    assert_eq!(asked(&seen), 1, "{seen:?}");
    journal.install_snapshot(at(40, 41, 0), state_of(records(1..=40)));
    assert!(journal.flush());
    assert_eq!(journal.stats().snapshots, 1);
    // The file passes the threshold again: asked again.
    journal.append(41, record(41));
    journal.flush();
    wait_for(&rx, |e| *e == JournalEvent::WantsSnapshot);
}

/// A journal whose writer queue holds 4 messages, over a disk whose syncs
/// take `sync_pause`, and its events.
fn with_tight_queue(sync_pause: Duration) -> (DurableJournal, Shared, Receiver<JournalEvent>) {
    let disk = Shared::new(sync_pause);
    let options = JournalOptions {
        queue_capacity: 4,
        ..small_options()
    };
    let (callback, rx) = events();
    let (journal, _, _) = DurableJournal::start(disk.clone(), options, callback).unwrap();
    (journal, disk, rx)
}

#[test]
fn an_append_that_finds_the_queue_full_fails_and_so_does_what_follows() {
    let (journal, disk, rx) = with_tight_queue(Duration::from_millis(5));
    for n in 1..=200 {
        journal.append(n, record(n));
    }
    journal.flush();
    let seen = drain(&rx);
    let first_failure = seen
        .iter()
        .position(|e| matches!(e, JournalEvent::PersistFailed { .. }))
        .expect("the queue overflowed");
    let JournalEvent::PersistFailed { from } = seen[first_failure] else {
        unreachable!()
    };
    let persisted_before = seen[..first_failure]
        .iter()
        .filter_map(|e| match e {
            JournalEvent::Persisted { upto } => Some(*upto),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    assert_eq!(persisted_before, from - 1, "{seen:?}");
    assert!(
        !seen[first_failure..]
            .iter()
            .any(|e| matches!(e, JournalEvent::Persisted { .. })),
        "nothing after the lost append is acknowledged: {seen:?}"
    );
    drop(journal);
    let reopened = Journal::open(disk.disk().clone(), JournalConfig::default()).unwrap();
    assert_eq!(reopened.records, records(1..=from - 1));
}

/// The driver hands over a snapshot (waiting for room) and then appends
/// without waiting: an append lost to a full queue after the snapshot may
/// have others still queued ahead of it, which must be written first.
#[test]
fn an_append_lost_after_a_snapshot_fails_only_what_follows_it() {
    let (journal, disk, rx) = with_tight_queue(Duration::from_millis(50));
    for n in 1..=3 {
        journal.append(n, record(n));
    }
    assert!(journal.flush());
    // The writer is busy with 4's slow sync while the rest is queued.
    journal.append(4, record(4));
    journal.install_snapshot(at(3, 5, 0), state_of(records(1..=3)));
    for n in 5..=20 {
        journal.append(n, record(n));
    }
    journal.flush();
    let seen = drain(&rx);
    let Some(JournalEvent::PersistFailed { from }) = seen
        .iter()
        .find(|e| matches!(e, JournalEvent::PersistFailed { .. }))
        .copied()
    else {
        panic!("the queue overflowed: {seen:?}")
    };
    assert!(
        from > 5,
        "appends queued behind the snapshot were lost: {seen:?}"
    );
    let persisted = seen.iter().filter_map(|e| match e {
        JournalEvent::Persisted { upto } => Some(*upto),
        _ => None,
    });
    assert_eq!(persisted.max(), Some(from - 1), "{seen:?}");
    drop(journal);
    let reopened = Journal::open(disk.disk().clone(), JournalConfig::default()).unwrap();
    assert_eq!(state_of(reopened.records), state_of(records(1..=from - 1)));
}
