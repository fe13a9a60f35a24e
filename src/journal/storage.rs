//! The little a journal needs from a disk: files addressed by name inside
//! one directory, appended to, synced, renamed and removed. The server
//! implements it over real files; [`MemStorage`](super::MemStorage) is a
//! faulty in-memory disk for tests and the simulator.

/// One directory of files, as the journal uses it.
///
/// Durability follows POSIX: bytes appended to a file survive a crash only
/// once [`sync`](Storage::sync) of that file succeeded; a file's creation,
/// rename or removal survives only once [`sync_dir`](Storage::sync_dir)
/// succeeded.
pub trait Storage {
    /// The names of the files in the directory, in no particular order.
    fn list(&self) -> Result<Vec<String>, StorageError>;
    /// The whole content of `name`. It may end in zeros past what was
    /// appended (space a storage writes ahead of its appends, or a batch
    /// a crash lost after the file grew): recovery reads them as the end.
    fn read(&self, name: &str) -> Result<Vec<u8>, StorageError>;
    /// Creates `name` empty, replacing a file of that name.
    fn create(&mut self, name: &str) -> Result<(), StorageError>;
    /// Appends `bytes` after what was appended to `name` (and after what
    /// `name` held when the storage first opened it).
    fn append(&mut self, name: &str, bytes: &[u8]) -> Result<(), StorageError>;
    /// Makes the content of `name` durable.
    fn sync(&mut self, name: &str) -> Result<(), StorageError>;
    /// Cuts `name` down to its first `len` bytes.
    fn truncate(&mut self, name: &str, len: u64) -> Result<(), StorageError>;
    /// Renames `from` to `to`, atomically replacing `to`.
    fn rename(&mut self, from: &str, to: &str) -> Result<(), StorageError>;
    /// Removes `name`.
    fn remove(&mut self, name: &str) -> Result<(), StorageError>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&mut self) -> Result<(), StorageError>;
}

/// Why a storage operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    #[error("no such file")]
    NotFound,
    #[error("no space left on the device")]
    NoSpace,
    #[error("{0}")]
    Io(String),
}
