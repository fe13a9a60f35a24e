//! The journal: how the core's records become durable and come back after
//! a crash. Pure logic over a small [`Storage`] trait, so that the server
//! runs it over real files and the simulator over [`MemStorage`], a faulty
//! in-memory disk.
//!
//! - [`frame`]: the file header and the record frames (length, CRC32C,
//!   postcard payload);
//! - [`recovery`]: which file is current and where its good bytes end;
//! - [`log`]: the [`Journal`] — group commit, failure handling, snapshots
//!   and compaction;
//! - [`mem`]: the in-memory disk with its fault knobs.

pub mod error;
pub mod frame;
pub mod log;
pub mod mem;
pub mod recovery;
pub mod storage;

pub use error::JournalError;
pub use log::{Journal, JournalConfig, JournalStats, Opened, Settled, SnapshotReason};
pub use mem::{CrashChoices, KeepUnsynced, LoseUnsynced, MemStorage, Op};
pub use recovery::{RecoveryReport, SkippedRegion};
pub use storage::{Storage, StorageError};

#[cfg(test)]
pub(crate) mod tests;
