//! Reading a journal back: which file is current, and which of its bytes
//! are records, a torn tail, or damage.
//!
//! Files are named by generation: `journal-<generation>.log` is complete
//! (it was synced before it was renamed to that name), `<that>.tmp` is a
//! snapshot being written. The current file is the complete one of the
//! highest generation; temporary files and lower generations are leftovers
//! of a compaction and are removed.
//!
//! Inside the current file, a frame that does not check out is a *torn
//! tail* when none of its bytes were ever synced: it lies past the header's
//! `base_len` and no later [`Entry::Synced`] mark says the bytes at its
//! offset were durable. A crash may leave such bytes half written, or (on a
//! real disk) written out of order. Anything else is *damage*, and recovery
//! refuses to go on unless salvage is enabled.
//!
//! A run of zeros after the last frame is space written ahead of the
//! appends (the server preallocates its file so that a sync flushes data
//! alone): no frame starts with a zero length, so it reads as the end of
//! the file, and it is cut like a torn tail but not counted as one.

use crate::core::record::Record;
use crate::journal::error::JournalError;
use crate::journal::frame::{self, Entry, FrameError, Header, HeaderError, Seal, FRAME_OVERHEAD};

const PREFIX: &str = "journal-";
const LOG_SUFFIX: &str = ".log";
const TMP_SUFFIX: &str = ".log.tmp";

/// The name of the complete file of `generation`.
pub fn log_name(generation: u64) -> String {
    format!("{PREFIX}{generation:020}{LOG_SUFFIX}")
}

/// The name a snapshot of `generation` is written under before it is complete.
pub fn tmp_name(generation: u64) -> String {
    format!("{PREFIX}{generation:020}{TMP_SUFFIX}")
}

/// A journal file's generation, and whether it is a temporary one; `None`
/// for files that are not the journal's (the lock file, the secret, ...).
pub fn parse_name(name: &str) -> Option<(u64, bool)> {
    let rest = name.strip_prefix(PREFIX)?;
    let (digits, tmp) = match rest.strip_suffix(TMP_SUFFIX) {
        Some(d) => (d, true),
        None => (rest.strip_suffix(LOG_SUFFIX)?, false),
    };
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(|g| (g, tmp))
}

/// What recovery found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The file the records came from; `None` when the directory held no
    /// journal and a new one was started.
    pub file: Option<String>,
    /// The format of that file (see [`frame`]); it is appended to in that
    /// format until the next compaction writes this build's.
    pub format: Option<u32>,
    /// Records recovered.
    pub records: usize,
    /// Bytes of torn tail dropped and truncated away, counted up to the
    /// last one that is not zero: zeros at the end may be preallocated
    /// space as well as part of a torn write, and are cut either way.
    pub torn_bytes: u64,
    /// Zeros after the records and any torn bytes, cut too: space written
    /// ahead of the appends (a stop or a crash leaves it).
    pub zeros_cut: u64,
    /// Where the torn tail started, when there was one.
    pub torn_at: Option<u64>,
    /// Damaged regions skipped because salvage was enabled.
    pub skipped: Vec<SkippedRegion>,
    /// Leftover files removed (interrupted or superseded compactions).
    pub removed: Vec<String>,
}

/// A damaged region that salvage skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedRegion {
    pub offset: u64,
    pub len: u64,
    pub reason: String,
}

/// One file's content, read.
#[derive(Debug)]
pub struct Scan {
    pub header: Header,
    pub records: Vec<Record>,
    /// Bytes that are good: everything before the torn tail.
    pub valid_len: u64,
    pub skipped: Vec<SkippedRegion>,
}

/// Reads `bytes`, the content of `file`.
pub fn scan(file: &str, bytes: &[u8], salvage: bool) -> Result<Scan, JournalError> {
    let header = frame::decode_header(bytes).map_err(|e| match e {
        HeaderError::Version(found) => JournalError::UnsupportedVersion {
            file: file.to_string(),
            found,
            supported: frame::FORMAT_VERSION,
        },
        other => corrupt(file, 0, &other.to_string()),
    })?;
    let mut scan = Scan {
        header,
        records: Vec::new(),
        valid_len: bytes.len() as u64,
        skipped: Vec::new(),
    };
    let seal = Seal::of(&header);
    let mut offset = header.frames_start();
    while offset < bytes.len() {
        let error = match frame::read_frame(bytes, offset, seal) {
            Ok((entry, next)) => {
                if let Entry::Record(record) = entry {
                    scan.records.push(record);
                }
                offset = next;
                continue;
            }
            Err(error) => error,
        };
        if !is_damage(bytes, offset, &header, seal, &error) {
            scan.valid_len = offset as u64;
            break;
        }
        let reason = describe(offset, &header, &error);
        if !salvage {
            return Err(corrupt(file, offset as u64, &reason));
        }
        let Some(next) = next_frame(bytes, offset, seal) else {
            scan.skipped.push(SkippedRegion {
                offset: offset as u64,
                len: (bytes.len() - offset) as u64,
                reason,
            });
            break;
        };
        scan.skipped.push(SkippedRegion {
            offset: offset as u64,
            len: (next - offset) as u64,
            reason,
        });
        offset = next;
    }
    Ok(scan)
}

/// A bad frame is damage, not a torn tail, when its bytes had been synced,
/// or when it is whole (its checksum holds) but unreadable.
fn is_damage(bytes: &[u8], offset: usize, header: &Header, seal: Seal, error: &FrameError) -> bool {
    matches!(error, FrameError::Undecodable(_))
        || (offset as u64) < header.base_len
        || synced_beyond(bytes, offset, seal)
}

fn describe(offset: usize, header: &Header, error: &FrameError) -> String {
    if (offset as u64) < header.base_len {
        format!(
            "{error} (inside the first {} bytes, which were synced when the file was written)",
            header.base_len
        )
    } else {
        error.to_string()
    }
}

fn corrupt(file: &str, offset: u64, reason: &str) -> JournalError {
    JournalError::Corrupt {
        file: file.to_string(),
        offset,
        reason: reason.to_string(),
    }
}

/// Whether a valid mark after `offset` says the bytes at `offset` were synced.
fn synced_beyond(bytes: &[u8], offset: usize, seal: Seal) -> bool {
    let mut bad = offset;
    while let Some(mut at) = next_frame(bytes, bad, seal) {
        while let Ok((entry, next)) = frame::read_frame(bytes, at, seal) {
            if matches!(entry, Entry::Synced { upto } if upto > offset as u64) {
                return true;
            }
            at = next;
        }
        bad = at;
    }
    false
}

/// The first offset after `bad` where a valid frame starts.
fn next_frame(bytes: &[u8], bad: usize, seal: Seal) -> Option<usize> {
    let last_start = bytes.len().checked_sub(FRAME_OVERHEAD + 1)?;
    let mut at = bad + 1;
    while at <= last_start {
        // A frame's length is never zero, so one of its first four bytes is
        // not: jump over runs of zeros (preallocated space) in one step, to
        // the first start whose length reaches the next non-zero byte.
        if bytes[at..at + 4] == [0; 4] {
            let nonzero = bytes[at + 4..].iter().position(|&b| b != 0)?;
            at += 1 + nonzero;
            continue;
        }
        if frame::read_frame(bytes, at, seal).is_ok() {
            return Some(at);
        }
        at += 1;
    }
    None
}

/// How many of the bytes after `valid_len` are a torn write rather than
/// the zeros of preallocated space.
pub fn torn_len(bytes: &[u8], valid_len: u64) -> u64 {
    let tail = bytes.get(valid_len as usize..).unwrap_or_default();
    tail.iter()
        .rposition(|&b| b != 0)
        .map_or(0, |last| last as u64 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seal() -> Seal {
        Seal::new(1, 7)
    }

    /// A record frame whose payload is 256 bytes long: its first byte (the
    /// length's lowest) is zero, the hard case after a run of zeros.
    fn frame_starting_with_zero() -> Vec<u8> {
        let Record::Booked {
            mut assignment,
            key,
        } = crate::journal::tests::record(1)
        else {
            unreachable!("record 1 is a booking")
        };
        (0..300)
            .map(|n| {
                assignment.customer_id = "c".repeat(n).into();
                let mut out = Vec::new();
                let booked = Record::Booked {
                    assignment: assignment.clone(),
                    key,
                };
                frame::push_record(&mut out, seal(), &booked).expect("a booking encodes");
                out
            })
            .find(|out| out[..4] == [0, 1, 0, 0])
            .expect("some customer id makes a payload of 256 bytes")
    }

    /// Bytes made of pieces: a synced mark (a valid frame), a frame that
    /// starts with a zero, a run of zeros, or arbitrary bytes.
    fn piece() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            any::<u64>().prop_map(|upto| {
                let mut out = Vec::new();
                frame::push_synced(&mut out, seal(), upto);
                out
            }),
            Just(frame_starting_with_zero()),
            (1usize..64).prop_map(|n| vec![0; n]),
            proptest::collection::vec(any::<u8>(), 1..16),
        ]
    }

    proptest! {
        /// The search that jumps over zeros finds what trying every offset finds.
        #[test]
        fn next_frame_finds_the_first_valid_frame(
            pieces in proptest::collection::vec(piece(), 1..12),
            bad in 0usize..64,
        ) {
            let bytes = pieces.concat();
            let bad = bad.min(bytes.len());
            let every_offset = (bad + 1..bytes.len())
                .find(|&at| frame::read_frame(&bytes, at, seal()).is_ok());
            prop_assert_eq!(next_frame(&bytes, bad, seal()), every_offset);
        }
    }

    #[test]
    fn only_bytes_that_are_not_zero_count_as_torn() {
        assert_eq!(torn_len(&[1, 2, 3, 0, 0], 1), 2);
        assert_eq!(torn_len(&[1, 2, 3, 0, 9, 0], 1), 4);
        assert_eq!(torn_len(&[1, 0, 0], 1), 0);
        assert_eq!(torn_len(&[1], 1), 0);
    }
}
