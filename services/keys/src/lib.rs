//! A pipeline's API keys (its write keys for ingest, its read keys for queries): read from a
//! file (a mounted Secret key), one per line so a rotation can accept the old and the new
//! key at once, and re-read when the file changes. Keys are never logged or printed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use subtle::ConstantTimeEq;

/// How often the key file is checked for changes.
const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// The accepted keys, shared by every request.
#[derive(Clone)]
pub struct KeyRing {
    keys: Arc<RwLock<Vec<Vec<u8>>>>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print keys.
        f.write_str("KeyRing(..)")
    }
}

/// Why the key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the key file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the key file {path} holds no key")]
    Empty { path: PathBuf },
}

impl KeyRing {
    /// Loads the keys of `path`.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let keys = read_keys(path)?;
        Ok(KeyRing { keys: Arc::new(RwLock::new(keys)) })
    }

    /// Whether `presented` is one of the keys, compared in constant time per key.
    pub fn accepts(&self, presented: &[u8]) -> bool {
        let keys = self.keys.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Check every key without stopping early, so timing tells nothing about which.
        keys.iter().fold(subtle::Choice::from(0), |found, key| found | key.as_slice().ct_eq(presented)).into()
    }

    /// Re-reads `path` when its modification time changes, until the task is dropped. A
    /// file that becomes unreadable or empty keeps the previous keys (and is logged).
    /// `kind` names the keys in logs ("write", "read").
    pub fn watch(&self, path: PathBuf, kind: &'static str) -> tokio::task::JoinHandle<()> {
        let ring = self.clone();
        tokio::spawn(async move {
            let mut seen = modified(&path);
            let mut tick = tokio::time::interval(RELOAD_INTERVAL);
            loop {
                tick.tick().await;
                let now = modified(&path);
                if now == seen {
                    continue;
                }
                seen = now;
                match read_keys(&path) {
                    Ok(keys) => {
                        let count = keys.len();
                        *ring.keys.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = keys;
                        tracing::info!(keys = count, kind, "keys reloaded");
                    }
                    Err(e) => tracing::warn!(error = %e, kind, "keeping the previous keys"),
                }
            }
        })
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn read_keys(path: &Path) -> Result<Vec<Vec<u8>>, KeyError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| KeyError::Read { path: path.to_path_buf(), source })?;
    let keys: Vec<Vec<u8>> =
        text.lines().map(str::trim).filter(|l| !l.is_empty()).map(|l| l.as_bytes().to_vec()).collect();
    if keys.is_empty() {
        return Err(KeyError::Empty { path: path.to_path_buf() });
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_any_listed_key_and_nothing_else() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("write-key");
        std::fs::write(&path, "old-key\nnew-key\n").expect("write keys");
        let ring = KeyRing::load(&path).expect("load");
        assert!(ring.accepts(b"old-key"));
        assert!(ring.accepts(b"new-key"));
        assert!(!ring.accepts(b"new-ke"));
        assert!(!ring.accepts(b""));
    }

    #[test]
    fn an_empty_file_is_an_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("write-key");
        std::fs::write(&path, "\n  \n").expect("write");
        assert!(matches!(KeyRing::load(&path), Err(KeyError::Empty { .. })));
    }

    #[test]
    fn debug_output_shows_no_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("write-key");
        std::fs::write(&path, "s3cret").expect("write");
        let ring = KeyRing::load(&path).expect("load");
        assert!(!format!("{ring:?}").contains("s3cret"));
    }
}
