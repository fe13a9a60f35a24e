//! Everything that can go wrong with a journal, worded for the operator.

use crate::journal::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal storage: could not {op} {file}: {source}")]
    Storage {
        op: &'static str,
        file: String,
        #[source]
        source: StorageError,
    },
    #[error(
        "journal file {file} is corrupt at byte offset {offset}: {reason}; refusing to start \
         (starting with salvage enabled skips the damaged records and keeps the rest)"
    )]
    Corrupt {
        file: String,
        offset: u64,
        reason: String,
    },
    #[error(
        "journal file {file} has format version {found}, this build reads versions 1 to \
         {supported}: start the version that wrote it"
    )]
    UnsupportedVersion {
        file: String,
        found: u32,
        supported: u32,
    },
    #[error("a journal record could not be encoded: {0}")]
    Encode(String),
    #[error(
        "the data directory {dir} is in use by another process (it holds the directory's LOCK \
         file); stop it or choose another directory"
    )]
    Locked { dir: String },
    #[error("the data directory {dir} cannot be used: {reason}")]
    DataDir { dir: String, reason: String },
    #[error("the journal writer thread could not be started: {0}")]
    Writer(String),
    #[error(
        "a snapshot taken before the dispatcher heard of failed journal writes ({handled} of \
         {reported} failures) was not installed; a fresh one follows"
    )]
    StaleSnapshot { handled: u64, reported: u64 },
}

impl JournalError {
    /// Wraps a storage failure with the operation and the file it hit.
    pub(crate) fn storage(op: &'static str, file: &str) -> impl FnOnce(StorageError) -> Self {
        let file = file.to_string();
        move |source| JournalError::Storage { op, file, source }
    }
}
