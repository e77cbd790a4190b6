use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// How often readiness is probed while a server starts.
const PROBE_INTERVAL: Duration = Duration::from_millis(50);

/// A running server process, killed (and reaped) when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl ServerProcess {
    /// Starts `command` with stdout and stderr appended to `log`.
    ///
    /// The child gets `SIGKILL` when this process dies, however it dies: it is forked from a
    /// thread that lives as long as the process, with the Linux parent-death signal set.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Result<Self> {
        let binary = PathBuf::from(command.get_program());
        let open_log = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .map_err(|e| Error::io(format!("opening {}", log.display()), e))
        };
        command.stdin(Stdio::null()).stdout(open_log()?).stderr(open_log()?);
        set_parent_death_signal(&mut command);
        let child = spawn_from_lasting_thread(command).map_err(|source| Error::Spawn {
            name: name.to_string(),
            binary,
            source,
        })?;
        Ok(ServerProcess { name: name.to_string(), child: Some(child), log: log.to_path_buf() })
    }

    /// The server's name, as used in errors.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The OS process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The log file that holds the server's stdout and stderr.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Errors with the end of the log if the server has exited.
    pub fn check_running(&mut self) -> Result<()> {
        let Some(child) = self.child.as_mut() else {
            return Err(self.exited("killed by the test".to_string()));
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(self.exited(status.to_string())),
            Err(e) => Err(Error::io(format!("checking on {}", self.name), e)),
        }
    }

    /// Polls `probe` until it succeeds, the server exits, or `timeout` passes. The error of
    /// the last probe and the end of the server's log go into the error.
    pub async fn wait_ready<T, F, Fut>(&mut self, timeout: Duration, mut probe: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, String>>,
    {
        let started = Instant::now();
        loop {
            self.check_running()?;
            let last_check = match tokio::time::timeout(PROBE_INTERVAL * 20, probe()).await {
                Ok(Ok(ready)) => return Ok(ready),
                Ok(Err(e)) => e,
                Err(_) => "the probe itself timed out".to_string(),
            };
            if started.elapsed() > timeout {
                return Err(Error::NotReady {
                    name: self.name.clone(),
                    waited: started.elapsed(),
                    last_check,
                    log: self.log.clone(),
                    tail: log_tail(&self.log),
                });
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }

    /// Kills the server now with `SIGKILL`, as a crash would, and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server with `SIGSTOP`, as a long GC pause, a stalled VM or a debugger
    /// would: it keeps its sockets and state and carries on where it was after [`Self::resume`].
    pub fn pause(&mut self) {
        if let Some(child) = self.child.as_ref() {
            send_signal(child.id(), libc::SIGSTOP);
        }
    }

    /// Lets a server frozen by [`Self::pause`] run again (`SIGCONT`).
    pub fn resume(&mut self) {
        if let Some(child) = self.child.as_ref() {
            send_signal(child.id(), libc::SIGCONT);
        }
    }

    /// Asks the server to stop with `SIGTERM` and waits up to `grace` before killing it.
    pub fn terminate(&mut self, grace: Duration) {
        self.stop_with(libc::SIGTERM, grace);
    }

    /// Sends `SIGTERM` and waits up to `within` for the server to exit: its exit status if it
    /// did, `None` if it is still running then (it is left running; dropping it kills it).
    /// For tests of a server's own shutdown, where [`Self::terminate`] would hide a hang.
    pub fn sigterm_and_wait(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        send_signal(child.id(), libc::SIGTERM);
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` (the server's own "stop" signal, e.g. `SIGINT` for PostgreSQL's fast
    /// shutdown) and waits up to `grace` before killing it.
    pub(crate) fn stop_with(&mut self, signal: libc::c_int, grace: Duration) {
        let Some(child) = self.child.as_mut() else { return };
        send_signal(child.id(), signal);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                self.child = None;
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }

    fn exited(&self, status: String) -> Error {
        Error::Exited { name: self.name.clone(), status, log: self.log.clone(), tail: log_tail(&self.log) }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The end of a log for error messages: the last error-looking lines first (servers such
/// as kube-apiserver log their fatal error amid hundreds of info lines), then the last lines.
pub(crate) fn log_tail(log: &Path) -> String {
    const ERRORS: usize = 8;
    const LINES: usize = 15;
    let text = match std::fs::read_to_string(log) {
        Ok(text) => text,
        Err(e) => return format!("(log unreadable: {e})"),
    };
    let lines: Vec<&str> = text.lines().collect();
    let looks_like_error = |line: &&&str| {
        let lower = line.to_lowercase();
        line.starts_with('E')
            || line.starts_with('F')
            || lower.contains("error")
            || lower.contains("fatal")
            || lower.contains("panic")
    };
    let errors: Vec<&str> = lines.iter().filter(looks_like_error).copied().collect();
    let last = &lines[lines.len().saturating_sub(LINES)..];
    let mut out = String::new();
    if !errors.is_empty() {
        out.push_str("  errors:\n");
        for line in &errors[errors.len().saturating_sub(ERRORS)..] {
            out.push_str(&format!("    {line}\n"));
        }
        out.push_str("  last lines:\n");
    }
    for line in last {
        out.push_str(&format!("    {line}\n"));
    }
    out
}

type SpawnRequest = (Command, mpsc::SyncSender<std::io::Result<Child>>);

/// Forks `command` from one thread that lives until the process exits. The parent-death
/// signal fires when the forking *thread* ends, so forking from a test's own thread would
/// kill a shared server as soon as that test finished.
fn spawn_from_lasting_thread(command: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (requests, incoming) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("pulse-testkit-spawner".into())
            .spawn(move || {
                for (mut command, reply) in incoming {
                    let _ = reply.send(command.spawn());
                }
            })
            .map(|_| requests)
            .unwrap_or_else(|e| panic!("cannot start the testkit's spawner thread: {e}"))
    });
    let (reply, result) = mpsc::sync_channel(1);
    let gone = || std::io::Error::other("the testkit's spawner thread is gone");
    spawner.send((command, reply)).map_err(|_| gone())?;
    result.recv().map_err(|_| gone())?
}

#[allow(unsafe_code)]
fn set_parent_death_signal(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls (prctl, getppid, kill).
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl.
            if libc::getppid() == 1 {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
            Ok(())
        });
    }
}

#[allow(unsafe_code)]
fn send_signal(pid: u32, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return };
    // SAFETY: kill(2) with a pid we own and a valid signal has no memory-safety concerns.
    unsafe {
        libc::kill(pid, signal);
    }
}
