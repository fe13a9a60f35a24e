//! The secret kept in the data directory: the key of the core's hashes and
//! ids. It is drawn at random the first time and kept in `secret`: the ids
//! of journaled assignments and the hashes of remembered idempotency keys
//! depend on it, so it must outlive restarts. (The journal holds the
//! directory's lock; the secret is read after it is taken.)

use crate::core::Secret;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Options that create a file only its owner may read or write (0600 on
/// Unix): the secret, the journal and traces hold the key of the ids and
/// the customers' ids.
#[cfg_attr(not(unix), allow(unused_mut))]
pub fn private_file() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// Creates `path` empty (or empties it) for writing, as a [`private_file`].
pub fn create_private(path: &Path) -> io::Result<File> {
    private_file()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
}

/// Creates `dir` and its missing parents, those it creates open to their
/// owner alone (0700 on Unix).
pub fn create_private_dir_all(dir: &Path) -> io::Result<()> {
    let mut builder = DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

const SECRET_FILE: &str = "secret";

/// Why the secret cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read or write the secret {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("the secret {path} is damaged (expected 32 hex digits); restore it from a backup: the journal's ids depend on it")]
    Damaged { path: PathBuf },
    #[error("the secret {path} is missing but the journal beside it has records; restore it from a backup: the journal's ids depend on it")]
    Missing { path: PathBuf },
}

/// The secret kept in `dir`, created at random when `may_create` (the
/// journal is empty) and there is none yet.
pub fn load_or_create_secret(dir: &Path, may_create: bool) -> Result<Secret, SecretError> {
    let path = dir.join(SECRET_FILE);
    let io_error = |source| SecretError::Io {
        path: path.clone(),
        source,
    };
    match fs::read_to_string(&path) {
        Ok(text) => {
            warn_if_shared(&path);
            parse_secret(text.trim()).ok_or(SecretError::Damaged { path: path.clone() })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound && may_create => {
            let secret = random_secret();
            write_durably(&path, format_secret(&secret).as_bytes()).map_err(io_error)?;
            Ok(secret)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(SecretError::Missing { path }),
        Err(e) => Err(io_error(e)),
    }
}

/// Earlier builds created the secret under the umask (often 0644), and a
/// file's mode is the operator's to change: say so rather than change it.
fn warn_if_shared(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format_args!("{mode:o}"),
                    "the secret (the key of the ids and idempotency hashes) can be read by \
                     others; `chmod 600` it"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
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
        // One left by a crash keeps its mode when opened: start afresh.
        let _ = fs::remove_file(&tmp);
        let mut file = create_private(&tmp)?;
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
        let dir = std::env::temp_dir().join(format!("tour-secret-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn created_once_then_kept() {
        let dir = scratch("kept");
        let secret = load_or_create_secret(&dir, true).unwrap();
        assert_eq!(load_or_create_secret(&dir, true).unwrap(), secret);
        assert_eq!(load_or_create_secret(&dir, false).unwrap(), secret);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_beside_records_or_damaged_is_refused() {
        let dir = scratch("refused");
        assert!(matches!(
            load_or_create_secret(&dir, false),
            Err(SecretError::Missing { .. })
        ));
        fs::write(dir.join(SECRET_FILE), "not hex").unwrap();
        assert!(matches!(
            load_or_create_secret(&dir, true),
            Err(SecretError::Damaged { .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn the_secret_and_new_directories_are_for_their_owner_alone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch("private");
        let nested = dir.join("a/b");
        create_private_dir_all(&nested).unwrap();
        load_or_create_secret(&nested, true).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&nested.join(SECRET_FILE)), 0o600);
        // A temporary file left by a crash does not lend its mode.
        let other = dir.join("c");
        create_private_dir_all(&other).unwrap();
        let tmp = other.join(SECRET_FILE).with_extension("tmp");
        fs::write(&tmp, "left over").unwrap();
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).unwrap();
        load_or_create_secret(&other, true).unwrap();
        assert_eq!(mode(&other.join(SECRET_FILE)), 0o600);
        assert_eq!(mode(&nested), 0o700);
        assert_eq!(mode(&dir.join("a")), 0o700);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn secrets_round_trip_through_text() {
        let s = Secret::new(1, u64::MAX);
        assert_eq!(parse_secret(format_secret(&s).trim()), Some(s));
        assert_ne!(random_secret(), random_secret());
    }
}
