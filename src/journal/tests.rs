//! Tests of the pure journal over [`MemStorage`].

use crate::core::{
    Assignment, AssignmentId, AssignmentStatus, Config, Dispatcher, Fingerprint, KeyEntry, KeyHash,
    Record, Remembered, Timestamp,
};
use crate::journal::frame::{self, Entry, FrameError, Seal, HEADER_LEN};
use crate::journal::mem::{CrashChoices, KeepUnsynced, LoseUnsynced, MemStorage, Op};
use crate::journal::recovery::{log_name, tmp_name};
use crate::journal::{Journal, JournalConfig, JournalError, Opened, Settled, SnapshotReason};
use crate::journal::{Storage, StorageError};
use proptest::prelude::*;

const HOUR_MS: u64 = 3_600_000;
/// 2030-01-01: far from expiry at the restore time used here.
const BASE_MS: u64 = 1_893_456_000_000;

/// A booking of its own agent (so any set of them restores), with a key
/// for even `n`.
pub(crate) fn booking(n: u64) -> Record {
    let config = Config::default();
    let start = Timestamp(BASE_MS + n * HOUR_MS);
    Record::Booked {
        assignment: Assignment {
            id: AssignmentId::from_seq(&config.secret, n),
            status: AssignmentStatus::Confirmed,
            agent_id: format!("agent-{n}").into(),
            customer_id: "cust-1".into(),
            property_id: n.is_multiple_of(3).then(|| "prop-9".into()),
            zipcode: "94107".into(),
            start,
            end: start.plus_ms(HOUR_MS),
        },
        key: n.is_multiple_of(2).then_some(KeyEntry {
            key: KeyHash(u128::from(n) << 64 | 7),
            fingerprint: Fingerprint(u128::from(n) * 31),
            created_at: Timestamp(BASE_MS),
        }),
    }
}

/// A mix of every kind of record: bookings, cancellations, remembered
/// answers, undos and sequence marks.
pub(crate) fn record(n: u64) -> Record {
    let config = Config::default();
    match n % 7 {
        3 => Record::Cancelled {
            id: AssignmentId::from_seq(&config.secret, n - 1),
        },
        5 => Record::Answered {
            key: KeyEntry {
                key: KeyHash(u128::from(n) << 64 | 9),
                fingerprint: Fingerprint(u128::from(n)),
                created_at: Timestamp(BASE_MS),
            },
            answer: Remembered::NoAvailability,
        },
        6 => Record::Undone {
            id: Some(AssignmentId::from_seq(&config.secret, n - 2)),
            key: None,
        },
        _ => booking(n),
    }
}

/// The durable state `records` restore to, as a snapshot.
pub(crate) fn state_of(records: impl IntoIterator<Item = Record>) -> Vec<Record> {
    Dispatcher::restore(Config::default(), Timestamp(BASE_MS), records)
        .expect("the records restore")
        .snapshot()
}

fn config() -> JournalConfig {
    JournalConfig {
        compact_after_bytes: 1 << 20,
        salvage: false,
        salt: 7,
    }
}

fn open(storage: MemStorage) -> Opened<MemStorage> {
    Journal::open(storage, config()).expect("the journal opens")
}

fn reopen(journal: Journal<MemStorage>, choices: &mut dyn CrashChoices) -> Opened<MemStorage> {
    let mut storage = journal.into_storage();
    storage.crash(choices);
    open(storage)
}

fn settled(journal: &mut Journal<MemStorage>) -> Vec<Settled> {
    std::iter::from_fn(|| journal.poll_settled()).collect()
}

/// Appends and commits records `seqs` (seq n holds `record(n)`).
fn commit(journal: &mut Journal<MemStorage>, seqs: std::ops::RangeInclusive<u64>) {
    for n in seqs {
        journal.append(n, &record(n));
    }
    journal.commit();
}

fn records(seqs: std::ops::RangeInclusive<u64>) -> Vec<Record> {
    seqs.map(record).collect()
}

/// Offsets of the record frames of a file (marks skipped).
pub(crate) fn record_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let header = frame::decode_header(bytes).expect("a journal file's header");
    let seal = Seal::of(&header);
    let mut at = header.frames_start();
    while let Ok((entry, next)) = frame::read_frame(bytes, at, seal) {
        if matches!(entry, Entry::Record(_)) {
            offsets.push(at);
        }
        at = next;
    }
    offsets
}

// ----- framing ---------------------------------------------------------------

/// The seal of the frames tested alone.
fn seal() -> Seal {
    Seal::new(1, 7)
}

#[test]
fn frames_round_trip_every_kind_of_record() {
    let mut bytes = Vec::new();
    for n in 0..14 {
        frame::push_record(&mut bytes, seal(), &record(n)).unwrap();
    }
    frame::push_synced(&mut bytes, seal(), 12345);
    let mut at = 0;
    for n in 0..14 {
        let (entry, next) = frame::read_frame(&bytes, at, seal()).unwrap();
        assert_eq!(entry, Entry::Record(record(n)));
        at = next;
    }
    let (entry, next) = frame::read_frame(&bytes, at, seal()).unwrap();
    assert_eq!(entry, Entry::Synced { upto: 12345 });
    assert_eq!(next, bytes.len());
}

#[test]
fn a_frame_checks_its_length_and_checksum() {
    let mut bytes = Vec::new();
    frame::push_record(&mut bytes, seal(), &booking(1)).unwrap();
    for cut in 0..bytes.len() {
        assert_eq!(
            frame::read_frame(&bytes[..cut], 0, seal()).unwrap_err(),
            FrameError::Truncated,
            "cut at {cut}"
        );
    }
    for at in 4..bytes.len() {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x01;
        assert_eq!(
            frame::read_frame(&damaged, 0, seal()).unwrap_err(),
            FrameError::Checksum,
            "bit flipped at {at}"
        );
    }
    assert_eq!(
        frame::read_frame(&[0; 64], 0, seal()).unwrap_err(),
        FrameError::BadLength(0)
    );
}

#[test]
fn the_header_carries_magic_version_and_checksum() {
    let header = frame::encode_header(7, 1234, 99);
    let decoded = frame::decode_header(&header).unwrap();
    assert_eq!((decoded.generation, decoded.base_len), (7, 1234));
    assert_eq!((decoded.salt, decoded.frames_start()), (99, HEADER_LEN));
    assert_eq!(decoded.version, frame::FORMAT_VERSION);
    let v1 = frame::decode_header(&header_of_version(1)).unwrap();
    assert_eq!((v1.version, v1.salt, v1.frames_start()), (1, 0, 32));

    let mut bad = header;
    bad[0] = b'X';
    assert_eq!(
        frame::decode_header(&bad),
        Err(frame::HeaderError::BadMagic)
    );
    let mut bad = header;
    bad[20] ^= 1;
    assert_eq!(
        frame::decode_header(&bad),
        Err(frame::HeaderError::Checksum)
    );
    assert_eq!(
        frame::decode_header(&header[..10]),
        Err(frame::HeaderError::Truncated)
    );
}

/// A header of format `version`, for generation 1, with its checksum:
/// format 1's 32 bytes (no salt), or the 40 bytes of later formats.
fn header_of_version(version: u32) -> Vec<u8> {
    let mut header = frame::encode_header(1, HEADER_LEN as u64, 7).to_vec();
    if version == 1 {
        header.truncate(32);
        header[20..28].copy_from_slice(&32u64.to_le_bytes());
    }
    let len = header.len();
    header[8..12].copy_from_slice(&version.to_le_bytes());
    let crc = crc32c::crc32c(&header[..len - 4]);
    header[len - 4..].copy_from_slice(&crc.to_le_bytes());
    header
}

#[test]
fn a_future_format_version_is_refused_by_name() {
    let mut storage = MemStorage::new();
    let name = log_name(1);
    storage.create(&name).unwrap();
    storage.append(&name, &header_of_version(3)).unwrap();
    let err = Journal::open(storage, config()).err().unwrap();
    assert!(matches!(
        err,
        JournalError::UnsupportedVersion {
            found: 3,
            supported: 2,
            ..
        }
    ));
    assert!(err.to_string().contains(&name), "{err}");
}

#[test]
fn a_frame_checks_out_only_under_its_own_seal() {
    let mut bytes = Vec::new();
    frame::push_record(&mut bytes, Seal::new(1, 7), &booking(1)).unwrap();
    for other in [Seal::new(2, 7), Seal::new(1, 8), Seal::NONE] {
        assert_eq!(
            frame::read_frame(&bytes, 0, other).unwrap_err(),
            FrameError::Checksum
        );
    }
    frame::reseal(&mut bytes, Seal::new(2, 7));
    let (entry, _) = frame::read_frame(&bytes, 0, Seal::new(2, 7)).unwrap();
    assert_eq!(entry, Entry::Record(booking(1)));
}

/// A synced file of format 1 holding records 1..=3.
fn disk_of_format_one() -> MemStorage {
    let name = log_name(1);
    let mut file = header_of_version(1);
    frame::push_synced(&mut file, Seal::NONE, 32);
    for n in 1..=3 {
        frame::push_record(&mut file, Seal::NONE, &record(n)).unwrap();
    }
    let mut storage = MemStorage::new();
    storage.create(&name).unwrap();
    storage.append(&name, &file).unwrap();
    storage.sync(&name).unwrap();
    storage.sync_dir().unwrap();
    storage
}

#[test]
fn a_file_of_format_one_is_appended_to_as_it_is_until_its_compaction() {
    let mut opened = open(disk_of_format_one());
    assert_eq!(opened.records, records(1..=3));
    assert_eq!(opened.report.format, Some(1));
    assert_eq!(opened.journal.file(), log_name(1));
    commit(&mut opened.journal, 4..=4);
    // Still format 1, readable by the build that wrote it.
    let again = reopen(opened.journal, &mut LoseUnsynced);
    assert_eq!(again.records, records(1..=4));
    assert_eq!(again.report.format, Some(1));
    // A compaction carries what the snapshot does not cover into format 2.
    let mut journal = again.journal;
    commit(&mut journal, 5..=5);
    let state = state_of(records(1..=4));
    journal
        .install_snapshot(4, &state, journal.failures_reported())
        .unwrap_or_else(|e| panic!("{e}"));
    let fresh = journal.storage().contents(&log_name(2)).unwrap();
    assert_eq!(
        frame::decode_header(fresh).unwrap().version,
        frame::FORMAT_VERSION
    );
    commit(&mut journal, 6..=6);
    let last = reopen(journal, &mut LoseUnsynced);
    assert_eq!(last.report.format, Some(frame::FORMAT_VERSION));
    assert_eq!(last.journal.storage().list().unwrap(), vec![log_name(2)]);
    let mut expected = state;
    expected.extend(records(5..=6));
    assert_eq!(last.records, expected);
}

// ----- appending and recovering -----------------------------------------------

#[test]
fn a_new_directory_starts_generation_one() {
    let opened = open(MemStorage::new());
    assert!(opened.records.is_empty());
    assert_eq!(opened.report.file, None);
    assert_eq!(opened.journal.file(), log_name(1));
    assert!(opened.journal.is_writable());
    // It is durable: a crash right away keeps it.
    let again = reopen(opened.journal, &mut LoseUnsynced);
    assert_eq!(again.report.file.as_deref(), Some(log_name(1).as_str()));
}

#[test]
fn a_commit_writes_one_batch_and_settles_its_highest_seq() {
    let mut journal = open(MemStorage::new()).journal;
    let syncs_before = journal.storage().count(Op::Sync);
    let appends_before = journal.storage().count(Op::Append);
    commit(&mut journal, 1..=50);
    assert_eq!(settled(&mut journal), vec![Settled::Persisted { upto: 50 }]);
    assert_eq!(journal.storage().count(Op::Sync) - syncs_before, 1);
    assert_eq!(journal.storage().count(Op::Append) - appends_before, 1);
    assert_eq!(journal.stats().batches, 1);
    assert_eq!(journal.stats().appends, 50);
    // An empty commit does nothing.
    journal.commit();
    assert_eq!(settled(&mut journal), vec![]);
    assert_eq!(journal.stats().batches, 1);

    let reopened = reopen(journal, &mut LoseUnsynced);
    assert_eq!(reopened.records, records(1..=50));
    assert_eq!(reopened.report.torn_bytes, 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Whatever the batching, what was committed comes back in order.
    #[test]
    fn committed_records_come_back_in_order(batches in proptest::collection::vec(1u64..20, 1..12)) {
        let mut journal = open(MemStorage::new()).journal;
        let mut next = 1;
        for size in batches {
            commit(&mut journal, next..=next + size - 1);
            prop_assert_eq!(settled(&mut journal), vec![Settled::Persisted { upto: next + size - 1 }]);
            next += size;
        }
        let reopened = reopen(journal, &mut LoseUnsynced);
        prop_assert_eq!(reopened.records, records(1..=next - 1));
    }
}

/// A batch written but never synced: the process stops right after the write.
fn write_unsynced(journal: &mut Journal<MemStorage>, seqs: std::ops::RangeInclusive<u64>) {
    journal.storage_mut().halt_after(1);
    commit(journal, seqs);
}

struct KeepBytes(usize);

impl CrashChoices for KeepBytes {
    fn dir_changes_kept(&mut self, changes: usize) -> usize {
        changes
    }
    fn unsynced_bytes_kept(&mut self, _: &str, _: usize) -> usize {
        self.0
    }
}

/// Shows the first `n` freed bytes after every file a crash finds.
struct ShowFreed(usize);

impl CrashChoices for ShowFreed {
    fn dir_changes_kept(&mut self, changes: usize) -> usize {
        changes
    }
    fn unsynced_bytes_kept(&mut self, _: &str, _: usize) -> usize {
        0
    }
    fn stale_after(
        &mut self,
        _: &str,
        freed: &[Vec<u8>],
    ) -> Option<(usize, std::ops::Range<usize>)> {
        let first = freed.first()?;
        Some((0, 0..self.0.min(first.len())))
    }
}

#[test]
fn a_crash_may_show_a_removed_file_s_blocks_after_a_file_s_end() {
    let mut disk = MemStorage::new();
    disk.create("old").unwrap();
    disk.append("old", b"stale bytes").unwrap();
    disk.sync("old").unwrap();
    disk.create("new").unwrap();
    disk.append("new", b"ok").unwrap();
    disk.sync("new").unwrap();
    disk.remove("old").unwrap();
    disk.sync_dir().unwrap();
    // The removed file's blocks were free before the crash: it may show
    // them past the end of a file, and a later one still may.
    disk.crash(&mut ShowFreed(5));
    assert_eq!(disk.contents("new").unwrap(), b"okstale");
    disk.crash(&mut ShowFreed(0));
    assert_eq!(disk.contents("new").unwrap(), b"okstale");
    assert_eq!(disk.list().unwrap(), vec!["new".to_string()]);
}

#[test]
fn a_torn_tail_is_dropped_and_truncated_whatever_its_length() {
    let name = log_name(1);
    let mut base = open(MemStorage::new()).journal;
    commit(&mut base, 1..=5);
    let synced_len = base.storage().contents(&name).unwrap().len();
    // Where the frames of the unsynced batch (a mark, records 6..=8) end.
    let mut probe = open(base.storage().clone()).journal;
    write_unsynced(&mut probe, 6..=8);
    let full = probe.storage().contents(&name).unwrap().to_vec();
    let mut frame_ends = vec![synced_len];
    let seal = Seal::of(&frame::decode_header(&full).unwrap());
    while let Ok((_, next)) = frame::read_frame(&full, *frame_ends.last().unwrap(), seal) {
        frame_ends.push(next);
    }
    assert_eq!(frame_ends.len(), 5);
    assert_eq!(*frame_ends.last().unwrap(), full.len());
    let unsynced = full.len() - synced_len;

    for kept in 0..=unsynced {
        let mut journal = open(base.storage().clone()).journal;
        write_unsynced(&mut journal, 6..=8);
        let reopened = reopen(journal, &mut KeepBytes(kept));
        let whole_frames = frame_ends
            .iter()
            .filter(|&&end| end <= synced_len + kept)
            .count()
            - 1;
        let good_len = frame_ends[whole_frames];
        // The mark is the first frame: record frames come after it.
        let expected = records(1..=5 + whole_frames.saturating_sub(1) as u64);
        assert_eq!(reopened.records, expected, "kept {kept} of {unsynced}");
        // Counted up to the last byte that is not zero: zeros at the end
        // may as well be preallocated space (a length's high bytes are zero).
        let torn = &full[good_len..synced_len + kept];
        let counted = torn
            .iter()
            .rposition(|&b| b != 0)
            .map_or(0, |last| last + 1);
        assert_eq!(reopened.report.torn_bytes, counted as u64, "kept {kept}");
        let len_now = reopened.journal.storage().contents(&name).unwrap().len();
        assert_eq!(len_now, good_len, "kept {kept}");
        // The journal goes on after the cut.
        let mut journal = reopened.journal;
        commit(&mut journal, 9..=9);
        let mut expected = expected;
        expected.push(record(9));
        assert_eq!(reopen(journal, &mut LoseUnsynced).records, expected);
    }
}

#[test]
fn damage_before_the_tail_is_refused_with_file_and_offset() {
    let mut journal = open(MemStorage::new()).journal;
    commit(&mut journal, 1..=3);
    commit(&mut journal, 4..=6);
    let name = log_name(1);
    let offsets = record_offsets(journal.storage().contents(&name).unwrap());
    let mut storage = journal.into_storage();
    assert!(storage.flip_byte(&name, offsets[1] + 10));

    let err = Journal::open(storage.clone(), config()).err().unwrap();
    match &err {
        JournalError::Corrupt { file, offset, .. } => {
            assert_eq!(file, &name);
            assert_eq!(*offset, offsets[1] as u64);
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains(&name) && message.contains(&offsets[1].to_string()));
    assert!(message.contains("salvage"), "{message}");
}

#[test]
fn damage_in_the_last_synced_batch_is_refused_when_a_later_batch_vouches_for_it() {
    // The second batch's mark says the first batch was synced: damage in
    // the first batch cannot be a torn write.
    let mut journal = open(MemStorage::new()).journal;
    commit(&mut journal, 1..=3);
    commit(&mut journal, 4..=4);
    let name = log_name(1);
    let offsets = record_offsets(journal.storage().contents(&name).unwrap());
    let mut storage = journal.into_storage();
    storage.flip_byte(&name, offsets[2] + 3);
    let err = Journal::open(storage, config()).err().unwrap();
    assert!(
        matches!(err, JournalError::Corrupt { offset, .. } if offset == offsets[2] as u64),
        "{err}"
    );
}

#[test]
fn damage_inside_a_snapshot_is_refused_even_at_the_end_of_the_file() {
    let mut journal = open(MemStorage::new()).journal;
    commit(&mut journal, 1..=4);
    journal
        .install_snapshot(4, &records(1..=4), journal.failures_reported())
        .unwrap();
    let name = log_name(2);
    let bytes = journal.storage().contents(&name).unwrap().to_vec();
    let offsets = record_offsets(&bytes);
    let mut storage = journal.into_storage();
    storage.flip_byte(&name, bytes.len() - 2);
    let err = Journal::open(storage, config()).err().unwrap();
    assert!(
        matches!(err, JournalError::Corrupt { offset, ref reason, .. }
            if offset == offsets[3] as u64 && reason.contains("synced")),
        "{err}"
    );
}

#[test]
fn an_unsynced_batch_written_out_of_order_is_a_torn_tail() {
    // A real disk may persist the end of an unsynced write and not its
    // start: later frames are whole, but no mark vouches for the hole.
    let mut journal = open(MemStorage::new()).journal;
    commit(&mut journal, 1..=3);
    let name = log_name(1);
    write_unsynced(&mut journal, 4..=7);
    let offsets = record_offsets(journal.storage().contents(&name).unwrap());
    let mut storage = journal.into_storage();
    storage.crash(&mut KeepUnsynced);
    // The first record of the unsynced batch is a hole; 5..=7 made it.
    storage.flip_byte(&name, offsets[3] + 5);
    let reopened = open(storage);
    assert_eq!(reopened.records, records(1..=3));
    assert_eq!(reopened.report.torn_at, Some(offsets[3] as u64));
}

#[test]
fn salvage_skips_damage_and_starts_a_clean_file() {
    let mut journal = open(MemStorage::new()).journal;
    commit(&mut journal, 1..=3);
    commit(&mut journal, 4..=6);
    let name = log_name(1);
    let offsets = record_offsets(journal.storage().contents(&name).unwrap());
    let mut storage = journal.into_storage();
    storage.flip_byte(&name, offsets[1] + 10);

    let salvaged = Journal::open(
        storage,
        JournalConfig {
            salvage: true,
            ..config()
        },
    )
    .unwrap();
    let mut expected = records(1..=6);
    expected.remove(1);
    assert_eq!(salvaged.records, expected);
    assert_eq!(salvaged.report.skipped.len(), 1);
    assert_eq!(salvaged.report.skipped[0].offset, offsets[1] as u64);
    assert_eq!(salvaged.journal.file(), log_name(2));
    // The next start needs no salvage.
    let again = reopen(salvaged.journal, &mut LoseUnsynced);
    assert_eq!(again.records, expected);
    assert!(again.report.skipped.is_empty());
}

/// Past a file's synced end a crash may expose blocks that held another
/// file: frames of an older generation found there are a torn tail, not
/// records to replay.
#[test]
fn frames_of_another_generation_past_the_synced_end_are_not_replayed() {
    let mut journal = open(MemStorage::new()).journal;
    commit(&mut journal, 1..=3);
    let stale = journal.storage().contents(&log_name(1)).unwrap()[HEADER_LEN..].to_vec();
    let state = state_of(records(1..=3));
    journal
        .install_snapshot(3, &state, journal.failures_reported())
        .unwrap();
    commit(&mut journal, 4..=4);
    let current = log_name(2);
    // The old file's frames, as stale blocks appended after the synced end.
    journal.storage_mut().append(&current, &stale).unwrap();

    let reopened = reopen(journal, &mut KeepUnsynced);
    let mut expected = state;
    expected.push(record(4));
    assert_eq!(reopened.records, expected);
    assert_eq!(reopened.report.torn_bytes, stale.len() as u64);
}

/// Every new journal starts at generation 1: the salt tells its file from
/// the generation-1 file of another run whose blocks a crash exposes.
#[test]
fn frames_of_another_run_s_file_of_the_same_generation_are_not_replayed() {
    let run = |salt: u64| {
        Journal::open(MemStorage::new(), JournalConfig { salt, ..config() })
            .unwrap()
            .journal
    };
    let mut earlier = run(1);
    commit(&mut earlier, 1..=3);
    let stale = earlier.storage().contents(&log_name(1)).unwrap()[HEADER_LEN..].to_vec();
    let mut journal = run(2);
    commit(&mut journal, 10..=10);
    journal.storage_mut().append(&log_name(1), &stale).unwrap();

    let reopened = reopen(journal, &mut KeepUnsynced);
    assert_eq!(reopened.records, records(10..=10));
    assert_eq!(reopened.report.torn_bytes, stale.len() as u64);
}

/// A record carried into the next file is checked under its old seal
/// first: damage found there is reported, not sealed anew.
#[test]
fn a_carried_record_that_no_longer_checks_out_fails_the_switch() {
    let mut journal = open(MemStorage::new()).journal;
    commit(&mut journal, 1..=4);
    let offsets = record_offsets(journal.storage().contents(&log_name(1)).unwrap());
    journal
        .storage_mut()
        .flip_byte(&log_name(1), offsets[3] + 10);
    let err = journal
        .install_snapshot(3, &state_of(records(1..=3)), journal.failures_reported())
        .unwrap_err();
    assert!(
        matches!(&err, JournalError::Corrupt { offset, .. } if *offset == offsets[3] as u64),
        "{err}"
    );
    assert_eq!(journal.storage().list().unwrap(), vec![log_name(1)]);
}

#[test]
fn a_file_under_another_generation_s_name_is_refused() {
    let mut journal = open(MemStorage::new()).journal;
    commit(&mut journal, 1..=2);
    let mut storage = journal.into_storage();
    storage.rename(&log_name(1), &log_name(5)).unwrap();
    let err = Journal::open(storage, config()).err().unwrap();
    assert!(
        matches!(&err, JournalError::Corrupt { file, offset: 0, .. } if *file == log_name(5)),
        "{err}"
    );
}

#[test]
fn leftovers_of_a_compaction_are_removed() {
    let mut journal = open(MemStorage::new()).journal;
    commit(&mut journal, 1..=2);
    let mut storage = journal.into_storage();
    for stale in [log_name(0), tmp_name(2), tmp_name(9)] {
        storage.create(&stale).unwrap();
        storage.append(&stale, b"half a snapshot").unwrap();
    }
    storage.create("LOCK").unwrap();
    storage.sync_dir().unwrap();
    let opened = open(storage);
    assert_eq!(opened.records, records(1..=2));
    let mut removed = opened.report.removed.clone();
    removed.sort();
    assert_eq!(removed, vec![log_name(0), tmp_name(2), tmp_name(9)]);
    let mut left = opened.journal.storage().list().unwrap();
    left.sort();
    assert_eq!(left, vec!["LOCK".to_string(), log_name(1)]);
}

// ----- failures ---------------------------------------------------------------

/// A journal that committed 1..=`good` and then failed the sync of the
/// batch `failed` (which starts at `good` + 1), both reported.
fn failed_after(good: u64, failed: std::ops::RangeInclusive<u64>) -> Journal<MemStorage> {
    let mut journal = open(MemStorage::new()).journal;
    commit(&mut journal, 1..=good);
    journal.storage_mut().fail_next(Op::Sync, 1);
    let from = *failed.start();
    commit(&mut journal, failed);
    assert_eq!(
        settled(&mut journal),
        vec![Settled::Persisted { upto: good }, Settled::Failed { from }]
    );
    journal
}

#[test]
fn a_failed_sync_fails_the_batch_and_everything_until_a_snapshot() {
    let mut journal = failed_after(3, 4..=6);
    assert!(!journal.is_writable());
    assert_eq!(journal.wants_snapshot(), Some(SnapshotReason::Recover));
    // The storage works again, but the file is not trusted: later records
    // fail too. They came before the core heard of the failure, which
    // failed every pending write from 4 on: no second report.
    commit(&mut journal, 7..=8);
    assert_eq!(settled(&mut journal), vec![]);

    // The core, after PersistFailed, holds records 1..=3 only.
    journal
        .install_snapshot(3, &state_of(records(1..=3)), journal.failures_reported())
        .unwrap();
    assert!(journal.is_writable());
    assert_eq!(journal.wants_snapshot(), None);
    commit(&mut journal, 9..=10);
    assert_eq!(settled(&mut journal), vec![Settled::Persisted { upto: 10 }]);

    let reopened = reopen(journal, &mut KeepUnsynced);
    let expected: Vec<Record> = records(1..=3).into_iter().chain(records(9..=10)).collect();
    assert_eq!(state_of(reopened.records), state_of(expected));
}

#[test]
fn appends_after_a_failed_snapshot_are_reported_again() {
    let mut journal = failed_after(2, 3..=3);
    // The driver installs a snapshot after telling the core; it fails.
    journal.storage_mut().fail_next(Op::Sync, 1);
    assert!(journal
        .install_snapshot(2, &state_of(records(1..=2)), journal.failures_reported())
        .is_err());
    // What the core emits after that is news to it: it must hear it failed.
    commit(&mut journal, 4..=5);
    assert_eq!(settled(&mut journal), vec![Settled::Failed { from: 4 }]);
    // ...once: later refusals before the next snapshot are covered.
    commit(&mut journal, 6..=6);
    assert_eq!(settled(&mut journal), vec![]);
    journal
        .install_snapshot(2, &state_of(records(1..=2)), journal.failures_reported())
        .unwrap();
    commit(&mut journal, 7..=7);
    assert_eq!(settled(&mut journal), vec![Settled::Persisted { upto: 7 }]);
}

/// The records recovered from the journal's disk after a crash that keeps
/// only what was synced.
fn recovered(journal: Journal<MemStorage>) -> Vec<Record> {
    reopen(journal, &mut LoseUnsynced).records
}

#[test]
fn a_snapshot_taken_before_the_core_heard_of_a_failure_is_refused() {
    let mut journal = failed_after(2, 3..=3);
    // A compaction's snapshot, taken before the failure reached the core:
    // the core is about to fail every write it emitted so far.
    let stale = journal.install_snapshot(2, &state_of(records(1..=2)), 0);
    assert!(matches!(
        stale,
        Err(JournalError::StaleSnapshot {
            handled: 0,
            reported: 1
        })
    ));
    assert!(!journal.is_writable());
    commit(&mut journal, 4..=4);
    assert_eq!(settled(&mut journal), vec![], "4 is failed with the rest");
    // The core heard of it (4 included) and installs again.
    journal
        .install_snapshot(2, &state_of(records(1..=2)), 1)
        .unwrap();
    commit(&mut journal, 5..=5);
    assert_eq!(settled(&mut journal), vec![Settled::Persisted { upto: 5 }]);
    let expected = state_of(records(1..=2).into_iter().chain([record(5)]));
    assert_eq!(state_of(recovered(journal)), expected);
}

#[test]
fn an_install_whose_own_commit_fails_is_refused() {
    let mut journal = open(MemStorage::new()).journal;
    commit(&mut journal, 1..=2);
    assert_eq!(settled(&mut journal), vec![Settled::Persisted { upto: 2 }]);
    // Records 3 and 4 are staged when the compaction's snapshot comes; their
    // commit, which goes first, fails.
    journal.append(3, &record(3));
    journal.append(4, &record(4));
    journal.storage_mut().fail_next(Op::Sync, 1);
    let handled = journal.failures_reported();
    assert!(matches!(
        journal.install_snapshot(2, &state_of(records(1..=2)), handled),
        Err(JournalError::StaleSnapshot { .. })
    ));
    assert_eq!(settled(&mut journal), vec![Settled::Failed { from: 3 }]);
    // Written to a fresh file now, 5 would be durable though the core
    // fails it with 3 and 4 when it hears of the failure.
    commit(&mut journal, 5..=5);
    assert_eq!(settled(&mut journal), vec![]);
    journal
        .install_snapshot(2, &state_of(records(1..=2)), handled + 1)
        .unwrap();
    assert_eq!(state_of(recovered(journal)), state_of(records(1..=2)));
}

#[test]
fn a_batch_whose_sync_failed_does_not_come_back_after_a_crash() {
    let journal = failed_after(2, 3..=4);
    // The failed sync may have written the batch all the same; the cut
    // back to the last good length is synced, so a crash that keeps all
    // that reached the disk still brings back only what was acknowledged.
    let reopened = reopen(journal, &mut KeepUnsynced);
    assert_eq!(state_of(reopened.records), state_of(records(1..=2)));
}

#[test]
fn a_full_disk_fails_writes_until_there_is_room_again() {
    let mut journal = open(MemStorage::new()).journal;
    commit(&mut journal, 1..=2);
    let used = journal.storage().contents(&log_name(1)).unwrap().len() as u64;
    journal.storage_mut().set_capacity(Some(used + 40));
    commit(&mut journal, 3..=5);
    assert_eq!(
        settled(&mut journal),
        vec![Settled::Persisted { upto: 2 }, Settled::Failed { from: 3 }]
    );
    // The failed bytes were cut off again.
    assert_eq!(
        journal.storage().contents(&log_name(1)).unwrap().len() as u64,
        used
    );
    // No room for a snapshot either: the attempt fails and leaves no file behind.
    let err = journal
        .install_snapshot(2, &state_of(records(1..=2)), journal.failures_reported())
        .unwrap_err();
    assert!(
        matches!(
            err,
            JournalError::Storage {
                source: StorageError::NoSpace,
                ..
            }
        ),
        "{err}"
    );
    assert!(!journal.is_writable());
    assert_eq!(journal.storage().list().unwrap(), vec![log_name(1)]);
    assert_eq!(journal.stats().failed_snapshots, 1);

    journal.storage_mut().set_capacity(None);
    journal
        .install_snapshot(2, &state_of(records(1..=2)), journal.failures_reported())
        .unwrap();
    commit(&mut journal, 6..=6);
    assert_eq!(settled(&mut journal), vec![Settled::Persisted { upto: 6 }]);
    let reopened = reopen(journal, &mut LoseUnsynced);
    let expected: Vec<Record> = records(1..=2).into_iter().chain(records(6..=6)).collect();
    assert_eq!(state_of(reopened.records), state_of(expected));
}

#[test]
fn a_lost_append_settles_what_came_before_and_fails_the_rest() {
    let mut journal = open(MemStorage::new()).journal;
    journal.append(1, &record(1));
    journal.append(2, &record(2));
    journal.append_lost(3);
    journal.append(4, &record(4));
    journal.commit();
    assert_eq!(
        settled(&mut journal),
        vec![Settled::Persisted { upto: 2 }, Settled::Failed { from: 3 }]
    );
    assert_eq!(journal.wants_snapshot(), Some(SnapshotReason::Recover));
    let reopened = reopen(journal, &mut KeepUnsynced);
    assert_eq!(reopened.records, records(1..=2));
}

#[test]
fn a_failed_snapshot_write_leaves_the_old_file_in_use() {
    let mut journal = open(MemStorage::new()).journal;
    commit(&mut journal, 1..=3);
    journal.storage_mut().fail_next(Op::Sync, 1);
    assert!(journal
        .install_snapshot(3, &state_of(records(1..=3)), journal.failures_reported())
        .is_err());
    assert!(journal.is_writable());
    assert_eq!(journal.file(), log_name(1));
    assert_eq!(journal.storage().list().unwrap(), vec![log_name(1)]);
    commit(&mut journal, 4..=4);
    assert_eq!(
        settled(&mut journal),
        vec![
            Settled::Persisted { upto: 3 },
            Settled::Persisted { upto: 4 }
        ]
    );
    assert_eq!(reopen(journal, &mut LoseUnsynced).records, records(1..=4));
}

#[test]
fn a_failed_directory_sync_after_the_switch_distrusts_the_new_file() {
    let mut journal = open(MemStorage::new()).journal;
    commit(&mut journal, 1..=3);
    journal.storage_mut().fail_next(Op::SyncDir, 1);
    assert!(journal
        .install_snapshot(3, &state_of(records(1..=3)), journal.failures_reported())
        .is_err());
    assert!(!journal.is_writable());
    assert_eq!(journal.file(), log_name(2));
    journal
        .install_snapshot(3, &state_of(records(1..=3)), journal.failures_reported())
        .unwrap();
    assert_eq!(journal.file(), log_name(3));
    let reopened = reopen(journal, &mut LoseUnsynced);
    assert_eq!(state_of(reopened.records), state_of(records(1..=3)));
}

// ----- snapshots and compaction -------------------------------------------------

#[test]
fn compaction_is_asked_for_past_the_threshold() {
    let storage = MemStorage::new();
    let mut journal = Journal::open(
        storage,
        JournalConfig {
            compact_after_bytes: 2_000,
            ..config()
        },
    )
    .unwrap()
    .journal;
    let mut n = 0;
    while journal.wants_snapshot().is_none() {
        n += 1;
        commit(&mut journal, n..=n);
        assert!(n < 100, "never asked for compaction");
    }
    assert_eq!(journal.wants_snapshot(), Some(SnapshotReason::Compact));
    assert!(journal.stats().file_len >= 2_000);
    journal
        .install_snapshot(n, &state_of(records(1..=n)), journal.failures_reported())
        .unwrap();
    assert_eq!(journal.wants_snapshot(), None);
}

#[test]
fn a_snapshot_switch_carries_records_the_core_has_not_seen_settle() {
    let mut journal = open(MemStorage::new()).journal;
    commit(&mut journal, 1..=10);
    settled(&mut journal);
    // Staged but not yet committed: goes to the old file first, then is carried.
    journal.append(11, &record(11));
    // The core saw records up to 7 settle when it took its snapshot.
    journal
        .install_snapshot(7, &state_of(records(1..=7)), journal.failures_reported())
        .unwrap();
    assert_eq!(settled(&mut journal), vec![Settled::Persisted { upto: 11 }]);
    assert_eq!(journal.file(), log_name(2));
    assert_eq!(journal.storage().list().unwrap(), vec![log_name(2)]);
    commit(&mut journal, 12..=12);

    let reopened = reopen(journal, &mut LoseUnsynced);
    let tail: Vec<Record> = reopened.records[reopened.records.len() - 5..].to_vec();
    assert_eq!(tail, records(8..=12));
    assert_eq!(state_of(reopened.records), state_of(records(1..=12)));
}

#[test]
fn a_failure_does_not_drop_records_the_core_has_not_seen_settle() {
    let mut journal = open(MemStorage::new()).journal;
    commit(&mut journal, 1..=3);
    journal.storage_mut().fail_next(Op::Append, 1);
    commit(&mut journal, 4..=5);
    // The snapshot was taken before the core handled Persisted { upto: 3 }.
    journal
        .install_snapshot(1, &state_of(records(1..=1)), journal.failures_reported())
        .unwrap();
    let reopened = reopen(journal, &mut LoseUnsynced);
    assert_eq!(state_of(reopened.records), state_of(records(1..=3)));
}

struct Prefix {
    dir: usize,
    bytes: usize,
}

impl CrashChoices for Prefix {
    fn dir_changes_kept(&mut self, changes: usize) -> usize {
        self.dir.min(changes)
    }
    fn unsynced_bytes_kept(&mut self, _: &str, unsynced: usize) -> usize {
        self.bytes.min(unsynced)
    }
}

/// Stops the process after each step of a compaction in turn, crashes it
/// in several ways, and checks that recovery gives the same state.
#[test]
fn a_crash_at_any_step_of_a_compaction_recovers_the_same_state() {
    let mut crash_kinds: Vec<Box<dyn CrashChoices>> = vec![
        Box::new(LoseUnsynced),
        Box::new(KeepUnsynced),
        Box::new(Prefix { dir: 1, bytes: 50 }),
        Box::new(Prefix {
            dir: 2,
            bytes: 10_000,
        }),
        Box::new(Prefix { dir: 3, bytes: 0 }),
    ];
    let mut steps_seen = 0;
    for step in 0.. {
        let mut completed = false;
        for crash in crash_kinds.iter_mut() {
            let mut journal = open(MemStorage::new()).journal;
            commit(&mut journal, 1..=20);
            commit(&mut journal, 21..=30);
            journal.append(31, &record(31));
            journal.storage_mut().halt_after(step);
            completed = journal
                .install_snapshot(25, &state_of(records(1..=25)), journal.failures_reported())
                .is_ok();
            let opened = reopen(journal, crash.as_mut());
            let mut expected = records(1..=30);
            if opened.records.contains(&record(31)) {
                expected.push(record(31));
            }
            assert_eq!(
                state_of(opened.records),
                state_of(expected),
                "crash after {step} steps"
            );
            // Recovery leaves one complete file behind.
            let files = opened.journal.storage().list().unwrap();
            assert_eq!(files.len(), 1, "after {step} steps: {files:?}");
        }
        steps_seen = step;
        if completed {
            break;
        }
    }
    // commit (append, sync), create, append, sync, rename, sync dir, remove.
    assert!(steps_seen >= 7, "only {steps_seen} steps");
}
