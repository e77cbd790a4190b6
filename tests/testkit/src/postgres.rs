//! A throwaway PostgreSQL cluster, the storage of FerretDB's PostgreSQL backend.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::ports::free_port;
use crate::process::log_tail;
use crate::{Binary, Error, Result, ServerProcess, WorkDir};

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a fast shutdown may take before the server is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The superuser initdb creates. FerretDB connects as it over loopback, where the cluster
/// trusts every connection: nothing else can reach a throwaway cluster on 127.0.0.1.
const SUPERUSER: &str = "pulse";

/// PostgreSQL (Debian's package, the newest installed version) on a free loopback port, with
/// its data dir and unix socket in a temp dir and without fsync (test data is thrown away).
/// Stopped with a fast shutdown when dropped.
#[derive(Debug)]
pub(crate) struct Postgres {
    process: ServerProcess,
    port: u16,
    _dir: WorkDir,
}

impl Postgres {
    /// Creates a cluster with initdb, starts it and waits until it accepts connections.
    pub(crate) async fn start() -> Result<Self> {
        let dir = WorkDir::new("postgresql")?;
        let owner = Owner::for_postgres()?;
        let socket = dir.join("socket");
        std::fs::create_dir(&socket).map_err(|e| Error::io(format!("creating {}", socket.display()), e))?;
        if let Some(owner) = owner {
            owner.chown(dir.path())?;
            owner.chown(&socket)?;
        }
        initdb(&dir, owner).await?;
        let port = free_port()?;
        let mut command = Command::new(Binary::Postgres.path()?);
        command
            .arg("-D")
            .arg(dir.join("data"))
            .arg(format!("--port={port}"))
            .arg("-k")
            .arg(&socket)
            .args(["-c", "listen_addresses=127.0.0.1"])
            // Test data: no fsync, no waiting for the WAL, no full pages after checkpoints.
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
            .current_dir(dir.path());
        if let Some(owner) = owner {
            owner.apply(&mut command);
        }
        let process = ServerProcess::spawn("postgres", command, &dir.join("postgres.log"))?;
        let mut postgres = Postgres { process, port, _dir: dir };
        postgres.wait_ready().await?;
        Ok(postgres)
    }

    /// `postgres://pulse@127.0.0.1:<port>/postgres`: FerretDB keeps each MongoDB database
    /// as a schema of this one database.
    pub(crate) fn url(&self) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/postgres", self.port)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let isready = Binary::PgIsready.path()?;
        let port = self.port;
        self.process
            .wait_ready(START_TIMEOUT, || {
                let mut probe = tokio::process::Command::new(&isready);
                probe
                    .args(["--quiet", "--host=127.0.0.1", "--dbname=postgres"])
                    .arg(format!("--port={port}"))
                    .arg(format!("--username={SUPERUSER}"))
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .kill_on_drop(true);
                async move {
                    let status = probe.status().await.map_err(|e| format!("running pg_isready: {e}"))?;
                    match status.code() {
                        Some(0) => Ok(()),
                        Some(1) => Err("pg_isready: rejecting connections (starting up)".to_string()),
                        Some(2) => Err("pg_isready: no response".to_string()),
                        _ => Err(format!("pg_isready: {status}")),
                    }
                }
            })
            .await
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // A fast shutdown rather than SIGKILL: the postmaster then also removes its System V
        // shared memory segment, which a killed one leaves behind.
        self.process.stop_with(libc::SIGINT, STOP_GRACE);
    }
}

/// Frees the System V shared memory segment that the postmaster of `dir` (a [`Postgres`]'s
/// temp dir, left by a test process that was killed) left behind: a fast shutdown frees it,
/// a killed postmaster cannot, and each one left counts against the system's segment limit.
/// Removes only the segment that `postmaster.pid` names (key, id and creator) once no
/// process is attached to it.
pub(crate) fn release_stale_shared_memory(dir: &Path) {
    let Ok(pid_file) = std::fs::read_to_string(dir.join("data").join("postmaster.pid")) else { return };
    let mut lines = pid_file.lines();
    let postmaster = lines.next().map(str::trim);
    // Line 7 holds the segment's key and id.
    let Some(segment) = lines.nth(5) else { return };
    let mut segment = segment.split_whitespace();
    let (Some(postmaster), Some(key), Some(id)) = (postmaster, segment.next(), segment.next()) else {
        return;
    };
    let Ok(table) = std::fs::read_to_string("/proc/sysvipc/shm") else { return };
    // Columns: key shmid perms size cpid lpid nattch ...
    let unused = table.lines().skip(1).any(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        f.len() > 6 && f[0] == key && f[1] == id && f[4] == postmaster && f[6] == "0"
    });
    if let (true, Ok(id)) = (unused, id.parse::<libc::c_int>()) {
        remove_segment(id);
    }
}

#[allow(unsafe_code)]
fn remove_segment(id: libc::c_int) {
    // SAFETY: IPC_RMID takes no buffer (null is allowed) and only marks the segment for removal.
    unsafe {
        libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut());
    }
}

/// Creates the cluster's data dir, its superuser trusted, UTF-8 with the C locale (whatever
/// the host's locale), without fsync.
async fn initdb(dir: &WorkDir, owner: Option<Owner>) -> Result<()> {
    let binary = Binary::Initdb.path()?;
    let log = dir.join("initdb.log");
    let open_log = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| Error::io(format!("opening {}", log.display()), e))
    };
    let mut command = Command::new(&binary);
    command
        .arg(format!("--pgdata={}", dir.join("data").display()))
        .arg(format!("--username={SUPERUSER}"))
        .args(["--auth=trust", "--no-locale", "--encoding=UTF8", "--no-sync", "--no-instructions"])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(open_log()?)
        .stderr(open_log()?);
    if let Some(owner) = owner {
        owner.apply(&mut command);
    }
    let spawn_error = |source| Error::Spawn { name: "initdb".to_string(), binary: binary.clone(), source };
    let status =
        tokio::process::Command::from(command).kill_on_drop(true).status().await.map_err(spawn_error)?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Exited {
            name: "initdb".to_string(),
            status: status.to_string(),
            tail: log_tail(&log),
            log,
        })
    }
}

/// The user PostgreSQL runs as when the tests run as root, as they do in CI: PostgreSQL
/// refuses to run as root. Otherwise it runs as the user running the tests.
#[derive(Debug, Clone, Copy)]
struct Owner {
    uid: u32,
    gid: u32,
}

impl Owner {
    /// Under root: the `postgres` system user that Debian's package creates, else `nobody`.
    fn for_postgres() -> Result<Option<Owner>> {
        if !running_as_root() {
            return Ok(None);
        }
        // System users live in /etc/passwd; reading it avoids getpwnam, which is not
        // thread-safe, in a multi-threaded test process.
        let passwd =
            std::fs::read_to_string("/etc/passwd").map_err(|e| Error::io("reading /etc/passwd", e))?;
        ["postgres", "nobody"].iter().find_map(|name| Owner::from_passwd(&passwd, name)).map(Some).ok_or_else(
            || {
                Error::io(
                    "finding a user for PostgreSQL, which refuses to run as root",
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "neither `postgres` nor `nobody` is in /etc/passwd",
                    ),
                )
            },
        )
    }

    fn from_passwd(passwd: &str, name: &str) -> Option<Owner> {
        passwd.lines().find_map(|line| {
            let mut fields = line.split(':');
            if fields.next()? != name {
                return None;
            }
            let _password = fields.next()?;
            Some(Owner { uid: fields.next()?.parse().ok()?, gid: fields.next()?.parse().ok()? })
        })
    }

    fn chown(self, path: &Path) -> Result<()> {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
            .map_err(|e| Error::io(format!("giving {} to uid {}", path.display(), self.uid), e))
    }

    /// Runs `command` as this user, with no supplementary groups. std changes the user before
    /// the testkit's parent-death signal is set (pre_exec runs last), which matters: a change
    /// of user clears that signal, so wrapping the server in setpriv or runuser would let it
    /// outlive a killed test.
    fn apply(self, command: &mut Command) {
        command.uid(self.uid).gid(self.gid);
    }
}

#[allow(unsafe_code)]
fn running_as_root() -> bool {
    // SAFETY: geteuid(2) takes nothing and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod tests {
    use super::Owner;

    #[test]
    fn owners_are_read_from_passwd_lines() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\npostgres:x:101:104:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
        let postgres = Owner::from_passwd(passwd, "postgres").map(|o| (o.uid, o.gid));
        assert_eq!(postgres, Some((101, 104)));
        assert!(Owner::from_passwd(passwd, "postgre").is_none(), "a prefix is not a name");
        assert!(Owner::from_passwd("broken:x:notanumber:1:::\n", "broken").is_none());
    }
}
