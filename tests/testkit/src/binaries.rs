use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// A program of the local stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    Etcd,
    KubeApiserver,
    KubeControllerManager,
    KubeScheduler,
    Kubectl,
    Kwok,
    Ferretdb,
    Helm,
    RedisServer,
    Influxd,
}

impl Binary {
    /// The file name of the program.
    pub fn name(self) -> &'static str {
        match self {
            Binary::Etcd => "etcd",
            Binary::KubeApiserver => "kube-apiserver",
            Binary::KubeControllerManager => "kube-controller-manager",
            Binary::KubeScheduler => "kube-scheduler",
            Binary::Kubectl => "kubectl",
            Binary::Kwok => "kwok",
            Binary::Ferretdb => "ferretdb",
            Binary::Helm => "helm",
            Binary::RedisServer => "redis-server",
            Binary::Influxd => "influxd",
        }
    }

    /// Where the program is: the stack's bin dir, or for redis-server and influxd (OS
    /// packages) the first match on `PATH`. Errors with the command that builds it when it is missing.
    pub fn path(self) -> Result<PathBuf> {
        let path = match self {
            Binary::RedisServer => {
                find_on_path(self.name()).unwrap_or_else(|| PathBuf::from("/usr/bin/redis-server"))
            }
            Binary::Influxd => find_on_path(self.name()).unwrap_or_else(|| PathBuf::from("/usr/bin/influxd")),
            _ => bin_dir().join(self.name()),
        };
        if is_executable(&path) {
            Ok(path)
        } else {
            Err(Error::MissingBinary { name: self.name().to_string(), path })
        }
    }

    /// Whether the program is installed, for parts of the stack that are optional.
    pub fn is_available(self) -> bool {
        self.path().is_ok()
    }
}

/// The directory of the built stack: `$PULSE_BIN_DIR`, else `$PULSE_CACHE/bin`, else
/// `~/.cache/pulse/bin` (where tests/env/build-stack.sh puts it).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PULSE_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("PULSE_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| "/root".into());
        home.join(".cache").join("pulse")
    });
    cache.join("bin")
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}
