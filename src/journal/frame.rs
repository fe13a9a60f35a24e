//! The bytes on disk.
//!
//! A journal file is a header followed by frames:
//!
//! ```text
//! header: magic "TOURJRNL" | version u32 | generation u64 | base_len u64 | salt u64 | crc32c u32
//! frame:  len u32 | crc32c(seal ++ len bytes ++ payload) u32 | payload (len bytes)
//! ```
//!
//! The seal is the file's generation and salt: a frame checks out only in
//! the file it was written for. Past a file's synced end a crash can expose
//! blocks that held another file (on filesystems that do not zero newly
//! allocated blocks before their data is written), and a frame read there
//! must fail its checksum, not be replayed. The generation alone would not
//! do: every new journal starts at generation 1, and a switch that failed
//! is tried again at the same generation. So each file gets its own salt,
//! drawn from the journal's (random per process) salt, the generation and
//! the count of switches tried.
//!
//! Format 1 had neither salt nor seal (its header is 32 bytes, without the
//! salt). Recovery still reads it, and the journal appends to such a file
//! in its own format: only its next compaction writes format 2, so an
//! earlier build can still start on the directory until then.
//!
//! All integers are little-endian. `base_len` is the length the file had
//! when it was synced and renamed into place: everything before it is
//! durable by construction. A payload is one [`Entry`] in postcard, a compact
//! binary serde format whose wire format is specified and stable across
//! releases of its 1.x line (chosen over JSON for size and decoding speed:
//! recovery decodes a million records in well under a second). Every batch
//! the writer appends starts with a [`Entry::Synced`] mark saying how much of
//! the file was durable before the batch: recovery uses it to tell a torn
//! tail (bytes that were never synced) from damage to synced bytes.

use crate::core::record::Record;
use crate::journal::error::JournalError;
use serde::{Deserialize, Serialize};

pub const MAGIC: [u8; 8] = *b"TOURJRNL";
pub const FORMAT_VERSION: u32 = 2;
/// The oldest format recovery still reads.
pub const OLDEST_READABLE_VERSION: u32 = 1;
/// The length of this build's header.
pub const HEADER_LEN: usize = 40;
/// The length of format 1's header, which had no salt.
const HEADER_LEN_V1: usize = 32;
pub const FRAME_OVERHEAD: usize = 8;
/// No record comes near this; a larger length field is damage.
pub const MAX_PAYLOAD: usize = 1 << 20;

/// What a frame holds.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub enum Entry {
    /// A record of the core.
    Record(Record),
    /// The first `upto` bytes of the file were durable when this was written.
    Synced { upto: u64 },
}

/// [`Entry`] by reference, for encoding without a copy (same variant order,
/// so the same bytes).
#[derive(Serialize)]
enum EntryRef<'a> {
    Record(&'a Record),
    Synced { upto: u64 },
}

/// What a frame's checksum starts from: see the module's doc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seal(u32);

impl Seal {
    /// Format 1's frames, which had no seal.
    pub const NONE: Seal = Seal(0);

    /// The seal of the frames of the file of `generation` and `salt`.
    pub fn new(generation: u64, salt: u64) -> Seal {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&generation.to_le_bytes());
        bytes[8..].copy_from_slice(&salt.to_le_bytes());
        Seal(crc32c::crc32c(&bytes))
    }

    /// The seal of the frames of the file with `header`.
    pub fn of(header: &Header) -> Seal {
        if header.version == 1 {
            Seal::NONE
        } else {
            Seal::new(header.generation, header.salt)
        }
    }

    fn checksum(self, len_bytes: &[u8], payload: &[u8]) -> u32 {
        crc32c::crc32c_append(crc32c::crc32c_append(self.0, len_bytes), payload)
    }
}

/// A decoded file header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: u32,
    pub generation: u64,
    pub base_len: u64,
    /// 0 in format 1, which had none.
    pub salt: u64,
}

impl Header {
    /// Where the first frame starts.
    pub fn frames_start(&self) -> usize {
        if self.version == 1 {
            HEADER_LEN_V1
        } else {
            HEADER_LEN
        }
    }
}

/// Why the bytes at some offset are not a frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("the frame runs past the end of the file")]
    Truncated,
    #[error("the frame length {0} is impossible")]
    BadLength(u32),
    #[error("the frame checksum does not match")]
    Checksum,
    #[error("the frame's checksum is right but its content cannot be decoded: {0}")]
    Undecodable(String),
}

/// Why the header is not a header.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("the file is too short for a header")]
    Truncated,
    #[error("the file does not start with the journal magic")]
    BadMagic,
    #[error("the header checksum does not match")]
    Checksum,
    #[error("unsupported format version {0}")]
    Version(u32),
}

pub fn encode_header(generation: u64, base_len: u64, salt: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&generation.to_le_bytes());
    h[20..28].copy_from_slice(&base_len.to_le_bytes());
    h[28..36].copy_from_slice(&salt.to_le_bytes());
    let crc = crc32c::crc32c(&h[..36]);
    h[36..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The header at the start of `bytes`: format 1's 32 bytes, or the 40 of
/// every later format, as its version says (the checksum covers it).
pub fn decode_header(bytes: &[u8]) -> Result<Header, HeaderError> {
    let start = bytes.get(..12).ok_or(HeaderError::Truncated)?;
    if start[..8] != MAGIC {
        return Err(HeaderError::BadMagic);
    }
    let version = le_u32(&start[8..12]);
    let len = if version == 1 {
        HEADER_LEN_V1
    } else {
        HEADER_LEN
    };
    let h = bytes.get(..len).ok_or(HeaderError::Truncated)?;
    if crc32c::crc32c(&h[..len - 4]) != le_u32(&h[len - 4..]) {
        return Err(HeaderError::Checksum);
    }
    if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&version) {
        return Err(HeaderError::Version(version));
    }
    Ok(Header {
        version,
        generation: le_u64(&h[12..20]),
        base_len: le_u64(&h[20..28]),
        salt: if version == 1 { 0 } else { le_u64(&h[28..36]) },
    })
}

/// Appends the frame of `record`, sealed with `seal`, to `out`.
pub fn push_record(out: &mut Vec<u8>, seal: Seal, record: &Record) -> Result<(), JournalError> {
    push_entry(out, seal, &EntryRef::Record(record))
}

/// Appends a [`Entry::Synced`] mark, sealed with `seal`, to `out`.
pub fn push_synced(out: &mut Vec<u8>, seal: Seal, upto: u64) {
    // A two-variant enum around a u64 always encodes.
    let _ = push_entry(out, seal, &EntryRef::Synced { upto });
}

/// Seals `frame`, one whole frame, with `seal` instead (to carry it into
/// another file).
pub fn reseal(frame: &mut [u8], seal: Seal) {
    let crc = seal.checksum(&frame[..4], &frame[FRAME_OVERHEAD..]);
    frame[4..8].copy_from_slice(&crc.to_le_bytes());
}

fn push_entry(out: &mut Vec<u8>, seal: Seal, entry: &EntryRef<'_>) -> Result<(), JournalError> {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_OVERHEAD]);
    *out = match postcard::to_extend(entry, std::mem::take(out)) {
        Ok(bytes) => bytes,
        Err(e) => return Err(JournalError::Encode(e.to_string())),
    };
    let len = out.len() - start - FRAME_OVERHEAD;
    if len > MAX_PAYLOAD {
        out.truncate(start);
        return Err(JournalError::Encode(format!(
            "a record of {len} bytes is larger than the limit of {MAX_PAYLOAD}"
        )));
    }
    let len_bytes = (len as u32).to_le_bytes();
    let payload = &out[start + FRAME_OVERHEAD..];
    let crc = seal.checksum(&len_bytes, payload);
    out[start..start + 4].copy_from_slice(&len_bytes);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// The frame at `offset`, sealed with `seal`, and the offset just after it.
pub fn read_frame(bytes: &[u8], offset: usize, seal: Seal) -> Result<(Entry, usize), FrameError> {
    let head = bytes
        .get(offset..offset.saturating_add(FRAME_OVERHEAD))
        .ok_or(FrameError::Truncated)?;
    let len = le_u32(&head[..4]);
    // Zero is impossible too: every entry encodes to at least one byte, and
    // a zeroed region (a hole, or space preallocated ahead of the appends)
    // must not read as a run of empty frames.
    if len == 0 || len as usize > MAX_PAYLOAD {
        return Err(FrameError::BadLength(len));
    }
    let end = offset + FRAME_OVERHEAD + len as usize;
    let payload = bytes
        .get(offset + FRAME_OVERHEAD..end)
        .ok_or(FrameError::Truncated)?;
    if seal.checksum(&head[..4], payload) != le_u32(&head[4..8]) {
        return Err(FrameError::Checksum);
    }
    match postcard::take_from_bytes::<Entry>(payload) {
        Ok((entry, [])) => Ok((entry, end)),
        Ok((_, rest)) => Err(FrameError::Undecodable(format!(
            "{} bytes left over after the entry",
            rest.len()
        ))),
        Err(e) => Err(FrameError::Undecodable(e.to_string())),
    }
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}
