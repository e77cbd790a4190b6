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
    /// Prometheus's server, to scrape the services and run dashboard queries.
    Prometheus,
    /// Prometheus's rule checker and unit-test runner.
    Promtool,
    /// Deployment and Pod series of a control plane, for Prometheus.
    KubeStateMetrics,
    RedisServer,
    Influxd,
    /// PostgreSQL's server, for FerretDB's PostgreSQL backend.
    Postgres,
    /// Creates a PostgreSQL data dir.
    Initdb,
    /// Asks a PostgreSQL server whether it accepts connections.
    PgIsready,
    /// PostgreSQL's shell, e.g. to look at what FerretDB stored.
    Psql,
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
            Binary::Prometheus => "prometheus",
            Binary::Promtool => "promtool",
            Binary::KubeStateMetrics => "kube-state-metrics",
            Binary::RedisServer => "redis-server",
            Binary::Influxd => "influxd",
            Binary::Postgres => "postgres",
            Binary::Initdb => "initdb",
            Binary::PgIsready => "pg_isready",
            Binary::Psql => "psql",
        }
    }

    /// Where the program is: the stack's bin dir; for redis-server and influxd (OS packages)
    /// the first match on `PATH`; for PostgreSQL's programs the newest
    /// `/usr/lib/postgresql/<version>/bin` (Debian keeps them off `PATH`), else `PATH`.
    /// Errors with the command that builds or installs it when it is missing.
    pub fn path(self) -> Result<PathBuf> {
        let path = match self {
            Binary::Postgres | Binary::Initdb | Binary::PgIsready | Binary::Psql => {
                newest_postgresql_bin_dir()
                    .map(|dir| dir.join(self.name()))
                    .filter(|p| is_executable(p))
                    .or_else(|| find_on_path(self.name()))
                    .unwrap_or_else(|| Path::new(DEBIAN_POSTGRESQL).join("<version>/bin").join(self.name()))
            }
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

/// Where Debian's `postgresql-<version>` packages put their programs.
const DEBIAN_POSTGRESQL: &str = "/usr/lib/postgresql";

/// `/usr/lib/postgresql/<version>/bin` of the newest installed version (16 over 15 over 9.6).
fn newest_postgresql_bin_dir() -> Option<PathBuf> {
    let version = |name: &str| -> Option<(u32, u32)> {
        let mut parts = name.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next().map_or(Some(0), |m| m.parse().ok())?;
        Some((major, minor))
    };
    std::fs::read_dir(DEBIAN_POSTGRESQL)
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let bin = entry.path().join("bin");
            let v = version(entry.file_name().to_str()?)?;
            is_executable(&bin.join("postgres")).then_some((v, bin))
        })
        .max_by_key(|(v, _)| *v)
        .map(|(_, bin)| bin)
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}
