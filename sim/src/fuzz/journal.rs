//! The `journal` target: bytes as the current journal file, through
//! recovery over the in-memory disk, then through `Dispatcher::restore`.
//!
//! The first byte picks the mode: bit 0 turns salvage on; bit 1 builds the
//! file from the rest instead of taking it as it is — a valid header, then
//! each length-prefixed chunk wrapped in a frame with a correct checksum,
//! then whatever is left as a torn tail — so that the fuzzer reaches the
//! record decoder and `restore` without having to forge checksums.
//!
//! Properties: never a panic; an error or records; without salvage the
//! records are exactly the frames before the first bad one (a clean restore
//! of a valid prefix); with salvage they start with that prefix; every
//! record is one the file holds in a well-checked frame (nothing invented);
//! recovering what recovery left gives the same records and finds nothing
//! to cut; restore either refuses or rebuilds a core whose snapshot
//! restores to the same state.

use tour_dispatcher::core::{Config, Dispatcher, Record, Timestamp};
use tour_dispatcher::journal::frame::{self, Entry, Seal, FRAME_OVERHEAD, HEADER_LEN};
use tour_dispatcher::journal::recovery::log_name;
use tour_dispatcher::journal::{Journal, JournalConfig, MemStorage, Storage};

const GENERATION: u64 = 1;
const SALT: u64 = 7;
/// When the core restores: 2027-03-01T00:00:00Z.
const NOW: Timestamp = Timestamp(1_803_945_600_000);

pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let salvage = mode & 1 != 0;
    let file = if mode & 2 != 0 {
        framed(rest)
    } else {
        rest.to_vec()
    };
    recover(&file, salvage);
}

/// A file with a valid header (its `base_len` from the first two bytes),
/// a frame around each chunk `len u8 | payload`, and the rest as is.
pub fn framed(data: &[u8]) -> Vec<u8> {
    let (base, mut rest) = match data {
        [a, b, rest @ ..] => (u64::from(u16::from_le_bytes([*a, *b])), rest),
        _ => (0, data),
    };
    let mut file = frame::encode_header(GENERATION, HEADER_LEN as u64 + base, SALT).to_vec();
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len);
        if len == 0 || tail.len() < len {
            break;
        }
        let (payload, tail) = tail.split_at(len);
        push_frame(&mut file, payload);
        rest = tail;
    }
    file.extend_from_slice(rest);
    file
}

/// Appends `payload` in a frame whose length and checksum (sealed for
/// [`GENERATION`] and [`SALT`]) are right.
fn push_frame(file: &mut Vec<u8>, payload: &[u8]) {
    let start = file.len();
    file.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    file.extend_from_slice(&[0; FRAME_OVERHEAD - 4]);
    file.extend_from_slice(payload);
    frame::reseal(&mut file[start..], Seal::new(GENERATION, SALT));
}

fn recover(file: &[u8], salvage: bool) {
    let name = log_name(GENERATION);
    let config = JournalConfig {
        salvage,
        ..JournalConfig::default()
    };
    let opened = match Journal::open(disk_with(&name, file), config.clone()) {
        Ok(opened) => opened,
        Err(e) => {
            assert!(!e.to_string().is_empty(), "an error says what is wrong");
            return;
        }
    };
    let records = opened.records;
    let prefix = valid_prefix(file);
    if salvage {
        assert!(records.starts_with(&prefix), "salvage lost a valid prefix");
    } else {
        assert_eq!(records, prefix, "recovery is not the valid prefix");
    }
    let framed = framed_records(file);
    for r in &records {
        assert!(framed.contains(r), "recovery invented {r:?}");
    }
    let again =
        Journal::open(opened.journal.into_storage(), config).expect("what recovery left recovers");
    assert_eq!(again.records, records, "a second recovery differs");
    assert_eq!(again.report.torn_bytes, 0, "a second recovery cut again");
    assert!(again.report.skipped.is_empty(), "a second recovery skipped");
    restore(records);
}

fn disk_with(name: &str, file: &[u8]) -> MemStorage {
    let mut disk = MemStorage::new();
    let made = disk
        .create(name)
        .and_then(|()| disk.append(name, file))
        .and_then(|()| disk.sync(name))
        .and_then(|()| disk.sync_dir());
    made.expect("a fresh in-memory disk takes a file");
    disk
}

/// The records of the frames from the header on, up to the first bad one.
fn valid_prefix(file: &[u8]) -> Vec<Record> {
    let mut records = Vec::new();
    let Ok(header) = frame::decode_header(file) else {
        return records;
    };
    let (seal, mut offset) = (Seal::of(&header), header.frames_start());
    while let Ok((entry, next)) = frame::read_frame(file, offset, seal) {
        if let Entry::Record(r) = entry {
            records.push(r);
        }
        offset = next;
    }
    records
}

/// Every record held in a well-checked frame at any offset.
fn framed_records(file: &[u8]) -> Vec<Record> {
    let Ok(header) = frame::decode_header(file) else {
        return Vec::new();
    };
    let seal = Seal::of(&header);
    let last = file.len().saturating_sub(FRAME_OVERHEAD);
    (header.frames_start()..last)
        .filter_map(|at| match frame::read_frame(file, at, seal) {
            Ok((Entry::Record(r), _)) => Some(r),
            _ => None,
        })
        .collect()
}

/// Restore refuses or rebuilds; what it rebuilt restores to itself.
fn restore(records: Vec<Record>) {
    // A small ring: building the default one would take most of an execution.
    let config = Config {
        shards: 2,
        vnodes: 4,
        ..Config::default()
    };
    let Ok(core) = Dispatcher::restore(config.clone(), NOW, records) else {
        return;
    };
    let snapshot = core.snapshot();
    let again =
        Dispatcher::restore(config, NOW, snapshot.clone()).expect("a core's own snapshot restores");
    assert_eq!(again.snapshot(), snapshot, "snapshot → restore → snapshot");
    assert_eq!(again.assignments(), core.assignments());
    assert_eq!(again.book().len(), core.book().len());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Entry::Record(Record::Sequence { next: 5 })` in postcard.
    const SEQUENCE_5: [u8; 3] = [0, 4, 5];

    #[test]
    fn framed_inputs_reach_the_record_decoder() {
        let data = [&[0, 0, 3][..], &SEQUENCE_5, &[3], &SEQUENCE_5].concat();
        let file = framed(&data);
        let expected = vec![Record::Sequence { next: 5 }; 2];
        assert_eq!(valid_prefix(&file), expected);
        assert_eq!(framed_records(&file), expected);
        let opened = Journal::open(
            disk_with(&log_name(GENERATION), &file),
            JournalConfig::default(),
        )
        .expect("a well-framed journal opens");
        assert_eq!(opened.records, expected);
    }

    /// The raw seed of format 2 in the corpus is a whole journal file:
    /// a header with its salt, a synced mark and one record.
    #[test]
    fn the_raw_seed_of_format_two_recovers_its_record() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fuzz/corpus/journal/valid-raw-v2"
        );
        let seed = std::fs::read(path).expect("the seed is in the corpus");
        let file = &seed[1..];
        let header = frame::decode_header(file).expect("a format-2 header");
        assert_eq!(header.version, frame::FORMAT_VERSION);
        assert_eq!(valid_prefix(file), vec![Record::Sequence { next: 5 }]);
        run(&seed);
    }

    #[test]
    fn a_torn_tail_is_cut_and_the_prefix_kept() {
        let mut file = framed(&[0, 0, 3, 0, 4, 5]);
        let whole = file.len();
        file.extend_from_within(HEADER_LEN..whole - 1);
        let opened = Journal::open(
            disk_with(&log_name(GENERATION), &file),
            JournalConfig::default(),
        )
        .expect("a torn tail is not damage");
        assert_eq!(opened.records, vec![Record::Sequence { next: 5 }]);
        assert_eq!(opened.report.torn_at, Some(whole as u64));
        run(&[&[0][..], &file].concat());
    }
}
