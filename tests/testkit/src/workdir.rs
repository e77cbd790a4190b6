use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// A temp dir for one server's data and logs, removed on drop (kept when the environment
/// sets `PULSE_TESTKIT_KEEP=1`, to read a failed run's logs).
///
/// Dirs live under `$TMPDIR/pulse-testkit/<pid>-...`; dirs of processes that no longer run
/// (a killed test binary cannot clean up) are removed the first time a new one is made, with
/// the shared memory a killed PostgreSQL of theirs left.
#[derive(Debug)]
pub struct WorkDir {
    dir: tempfile::TempDir,
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if std::env::var_os("PULSE_TESTKIT_KEEP").is_some_and(|v| v == "1") {
            self.dir.disable_cleanup(true);
        }
    }
}

impl WorkDir {
    /// Creates a fresh dir whose name starts with `name`.
    pub fn new(name: &str) -> Result<Self> {
        let base = std::env::temp_dir().join("pulse-testkit");
        std::fs::create_dir_all(&base).map_err(|e| Error::io(format!("creating {}", base.display()), e))?;
        remove_stale_dirs_once(&base);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{}-{name}-", std::process::id()))
            .tempdir_in(&base)
            .map_err(|e| Error::io(format!("creating a temp dir in {}", base.display()), e))?;
        Ok(WorkDir { dir })
    }

    /// The dir's path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside the dir.
    pub fn join(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn remove_stale_dirs_once(base: &Path) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Ok(entries) = std::fs::read_dir(base) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|n| n.split('-').next()?.parse::<u32>().ok()) else {
                continue;
            };
            if !Path::new(&format!("/proc/{pid}")).exists() {
                crate::postgres::release_stale_shared_memory(&entry.path());
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    });
}
