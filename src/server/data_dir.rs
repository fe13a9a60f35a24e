//! The data directory: created if missing, held by one server at a time
//! (an exclusive lock on `server.lock`, released by the OS when the process
//! ends, even by a crash), and home of the secret that keys the core's
//! hashes and ids.
//!
//! The secret is drawn at random the first time and kept in `secret`: the
//! ids of journaled assignments and the hashes of remembered idempotency
//! keys depend on it, so it must outlive restarts.

use crate::core::Secret;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

const LOCK_FILE: &str = "server.lock";
const SECRET_FILE: &str = "secret";

/// Why the data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("cannot create the data directory {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("the data directory {path} is in use by another tour-dispatcher (it holds {path}/server.lock); stop it or choose another --data-dir")]
    Locked { path: PathBuf },
    #[error("cannot lock the data directory {path}: {source}")]
    Lock { path: PathBuf, source: io::Error },
    #[error("cannot read or write the secret {path}: {source}")]
    SecretIo { path: PathBuf, source: io::Error },
    #[error("the secret {path} is damaged (expected 32 hex digits); restore it from a backup: the journal's ids depend on it")]
    SecretDamaged { path: PathBuf },
}

/// A locked data directory.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    _lock: File,
}

impl DataDir {
    /// Creates `path` if needed and locks it.
    pub fn open(path: &Path) -> Result<DataDir, DataDirError> {
        fs::create_dir_all(path).map_err(|source| DataDirError::Create {
            path: path.to_owned(),
            source,
        })?;
        let lock_path = path.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| DataDirError::Lock {
                path: path.to_owned(),
                source,
            })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(DataDirError::Locked {
                    path: path.to_owned(),
                })
            }
            Err(fs::TryLockError::Error(source)) => {
                return Err(DataDirError::Lock {
                    path: path.to_owned(),
                    source,
                })
            }
        }
        Ok(DataDir {
            path: path.to_owned(),
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The kept secret, created at random the first time.
    pub fn secret(&self) -> Result<Secret, DataDirError> {
        let path = self.path.join(SECRET_FILE);
        let io_error = |source| DataDirError::SecretIo {
            path: path.clone(),
            source,
        };
        match fs::read_to_string(&path) {
            Ok(text) => {
                parse_secret(text.trim()).ok_or(DataDirError::SecretDamaged { path: path.clone() })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let secret = random_secret();
                write_durably(&path, format_secret(&secret).as_bytes()).map_err(io_error)?;
                Ok(secret)
            }
            Err(e) => Err(io_error(e)),
        }
    }
}

/// A fresh random secret.
pub fn random_secret() -> Secret {
    Secret::new(rand::random(), rand::random())
}

fn format_secret(s: &Secret) -> String {
    format!("{:016x}{:016x}\n", s.k0, s.k1)
}

fn parse_secret(text: &str) -> Option<Secret> {
    if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let k0 = u64::from_str_radix(&text[..16], 16).ok()?;
    let k1 = u64::from_str_radix(&text[16..], 16).ok()?;
    Some(Secret::new(k0, k1))
}

/// Writes `bytes` to `path` so that a crash leaves either nothing or all of
/// it: a temporary file, synced, renamed over, and the directory synced.
fn write_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tour-data-dir-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn creates_locks_and_keeps_the_secret() {
        let path = scratch("keeps").join("nested");
        let dir = DataDir::open(&path).unwrap();
        assert!(path.is_dir());
        let secret = dir.secret().unwrap();
        assert_eq!(dir.secret().unwrap(), secret, "read back, not redrawn");
        assert!(
            matches!(DataDir::open(&path), Err(DataDirError::Locked { .. })),
            "a second server is refused"
        );
        drop(dir);
        let again = DataDir::open(&path).unwrap();
        assert_eq!(again.secret().unwrap(), secret);
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_damaged_secret_is_refused() {
        let path = scratch("damaged");
        let dir = DataDir::open(&path).unwrap();
        fs::write(path.join(SECRET_FILE), "not hex").unwrap();
        assert!(matches!(
            dir.secret(),
            Err(DataDirError::SecretDamaged { .. })
        ));
        fs::remove_dir_all(&path).unwrap();
    }

    #[test]
    fn secrets_round_trip_through_text() {
        let s = Secret::new(1, u64::MAX);
        assert_eq!(parse_secret(format_secret(&s).trim()), Some(s));
        assert_ne!(random_secret(), random_secret());
    }
}
