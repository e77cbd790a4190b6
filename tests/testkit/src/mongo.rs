use std::process::Command;
use std::time::Duration;

use mongodb::bson::doc;

use crate::ports::free_port;
use crate::postgres::Postgres;
use crate::{Binary, Error, Result, ServerProcess, WorkDir};

const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Starts tried by [`FerretDb::restart`] while its port is in use.
const RESTART_TRIES: usize = 5;

/// The repair of FerretDB's catalogue that docs/operations.md prescribes before a restart.
const ORPHAN_TABLES_REPAIR: &str = include_str!("../../../docs/ferretdb-orphan-tables.sql");

/// The storage FerretDB runs on in the tests, picked by `PULSE_TEST_BACKEND` so that every
/// test that starts a [`FerretDb`] runs on either one unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// SQLite files in FerretDB's temp dir (the default).
    #[default]
    Sqlite,
    /// A throwaway PostgreSQL cluster (Debian's package), the backend FerretDB recommends
    /// for production.
    Postgresql,
}

impl Backend {
    /// The environment variable that picks the backend of [`FerretDb::start`].
    pub const VARIABLE: &'static str = "PULSE_TEST_BACKEND";

    /// The backend `PULSE_TEST_BACKEND` names: SQLite when it is unset or empty, an
    /// [`Error::UnknownBackend`] when it names neither backend.
    pub fn from_env() -> Result<Self> {
        let value = std::env::var_os(Self::VARIABLE);
        Self::parse(value.as_ref().map(|v| v.to_string_lossy()).as_deref())
    }

    /// The backend a value of `PULSE_TEST_BACKEND` names (`None`: unset).
    pub fn parse(value: Option<&str>) -> Result<Self> {
        match value.map(str::trim) {
            None | Some("") | Some("sqlite") => Ok(Backend::Sqlite),
            Some("postgresql") => Ok(Backend::Postgresql),
            Some(other) => Err(Error::UnknownBackend { value: other.to_string() }),
        }
    }

    /// `sqlite` or `postgresql`, as `PULSE_TEST_BACKEND` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgresql => "postgresql",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// FerretDB on a free loopback port, a real MongoDB-wire server, over SQLite files in its
/// temp dir or over a throwaway PostgreSQL cluster of its own ([`Backend`]).
#[derive(Debug)]
pub struct FerretDb {
    process: ServerProcess,
    port: u16,
    backend: Backend,
    /// FerretDB's flags that pick and address its backend.
    handler: Vec<String>,
    // After `process`: fields drop in order, so FerretDB stops before its PostgreSQL.
    postgres: Option<Postgres>,
    dir: WorkDir,
}

impl FerretDb {
    /// Starts FerretDB on the backend `PULSE_TEST_BACKEND` names (SQLite by default) and
    /// waits until it answers `ping`, which reaches the backend.
    pub async fn start() -> Result<Self> {
        Self::start_on(Backend::from_env()?).await
    }

    /// Starts FerretDB on `backend`, whatever `PULSE_TEST_BACKEND` says.
    pub async fn start_on(backend: Backend) -> Result<Self> {
        // Before starting PostgreSQL: a missing FerretDB is the error to show.
        Binary::Ferretdb.path()?;
        let dir = WorkDir::new("ferretdb")?;
        let port = free_port()?;
        let state = dir.join("state");
        std::fs::create_dir_all(&state).map_err(|e| Error::io(format!("creating {}", state.display()), e))?;
        let (handler, postgres) = match backend {
            Backend::Sqlite => {
                let data = dir.join("data");
                std::fs::create_dir_all(&data)
                    .map_err(|e| Error::io(format!("creating {}", data.display()), e))?;
                // Test data is thrown away: no fsync per write (as etcd runs with --unsafe-no-fsync).
                let url = format!("--sqlite-url=file:{}/?_pragma=synchronous(OFF)", data.display());
                (vec!["--handler=sqlite".to_string(), url], None)
            }
            Backend::Postgresql => {
                let postgres = Postgres::start().await?;
                let url = format!("--postgresql-url={}", postgres.url());
                (vec!["--handler=postgresql".to_string(), url], Some(postgres))
            }
        };
        let process = spawn(&dir, port, &handler)?;
        let mut ferret = FerretDb { process, port, backend, handler, postgres, dir };
        ferret.wait_ready().await?;
        Ok(ferret)
    }

    /// The backend this FerretDB stores its data in, e.g. for a test to print.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The PostgreSQL cluster behind FerretDB (`postgres://pulse@127.0.0.1:<port>/postgres`,
    /// trusted on loopback), on the PostgreSQL backend.
    pub fn postgresql_url(&self) -> Option<String> {
        self.postgres.as_ref().map(Postgres::url)
    }

    /// Kills FerretDB with `SIGKILL`, as a crash or outage would; its data stays (and its
    /// PostgreSQL, on that backend, keeps running).
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts FerretDB again on the same port and data (after [`Self::kill`]). On PostgreSQL
    /// it first runs the repair an operator runs before restarting a crashed FerretDB
    /// (docs/ferretdb-orphan-tables.sql): killed while creating a collection, FerretDB 1.x
    /// leaves a table its catalogue lacks and can never create that collection again.
    pub async fn restart(&mut self) -> Result<()> {
        self.process.kill();
        if self.postgres.is_some() {
            let said = self.psql(ORPHAN_TABLES_REPAIR)?;
            if !said.is_empty() {
                eprintln!("FerretDB's catalogue repaired before its restart: {said}");
            }
        }
        // While the server was down, its port may have been taken for a moment: a client
        // that keeps reconnecting to it can be given that very port for its own end (a TCP
        // self-connect) until it notices. A few tries, as an operator would retry.
        for _ in 1..RESTART_TRIES {
            self.process = spawn(&self.dir, self.port, &self.handler)?;
            match self.wait_ready().await {
                Err(Error::Exited { tail, .. }) if tail.contains("address already in use") => {
                    eprintln!("FerretDB's port {} was in use at its restart; trying again", self.port);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                ready => return ready,
            }
        }
        self.process = spawn(&self.dir, self.port, &self.handler)?;
        self.wait_ready().await
    }

    /// Runs `sql` on the PostgreSQL cluster behind FerretDB (on that backend) and returns its
    /// output, unaligned and without headers, followed by its notices and warnings.
    pub fn psql(&self, sql: &str) -> Result<String> {
        let url =
            self.postgresql_url().ok_or_else(|| Error::client("psql", "FerretDB is not on PostgreSQL"))?;
        let output = Command::new(Binary::Psql.path()?)
            .args(["--no-psqlrc", "--quiet", "--tuples-only", "--no-align", "-v", "ON_ERROR_STOP=1"])
            .args(["--dbname", &url, "--command", sql])
            .output()
            .map_err(|e| Error::io("running psql", e))?;
        let (stdout, stderr) =
            (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        if !output.status.success() {
            return Err(Error::client(format!("psql {}", output.status), stderr.trim()));
        }
        Ok([stdout.trim(), stderr.trim()]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("\n"))
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let uri = uri(self.port);
        self.process
            .wait_ready(START_TIMEOUT, || {
                let uri = uri.clone();
                async move {
                    let client = open(&uri).await.map_err(|e| e.to_string())?;
                    client
                        .database("admin")
                        .run_command(doc! { "ping": 1 })
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
            })
            .await
    }

    /// `mongodb://127.0.0.1:<port>/`.
    pub fn uri(&self) -> String {
        uri(self.port)
    }

    /// A client for the current tokio runtime.
    pub async fn client(&self) -> Result<mongodb::Client> {
        open(&self.uri()).await
    }

    /// The server process, e.g. to kill it in a failure test.
    pub fn process_mut(&mut self) -> &mut ServerProcess {
        &mut self.process
    }
}

fn spawn(dir: &WorkDir, port: u16, handler: &[String]) -> Result<ServerProcess> {
    let mut command = Command::new(Binary::Ferretdb.path()?);
    command
        .arg(format!("--listen-addr=127.0.0.1:{port}"))
        .args(handler)
        .arg(format!("--state-dir={}", dir.join("state").display()))
        .arg("--telemetry=disable")
        .arg("--debug-addr=-")
        .arg("--log-level=warn");
    ServerProcess::spawn("ferretdb", command, &dir.join("ferretdb.log"))
}

fn uri(port: u16) -> String {
    format!("mongodb://127.0.0.1:{port}/?serverSelectionTimeoutMS=2000&connectTimeoutMS=2000")
}

async fn open(uri: &str) -> Result<mongodb::Client> {
    mongodb::Client::with_uri_str(uri).await.map_err(|e| Error::client(format!("connecting to {uri}"), e))
}

#[cfg(test)]
mod tests {
    use super::Backend;
    use crate::Error;

    #[test]
    fn the_backend_is_sqlite_unless_postgresql_is_named() {
        assert_eq!(Backend::parse(None).ok(), Some(Backend::Sqlite));
        assert_eq!(Backend::parse(Some("")).ok(), Some(Backend::Sqlite));
        assert_eq!(Backend::parse(Some("sqlite")).ok(), Some(Backend::Sqlite));
        assert_eq!(Backend::parse(Some("postgresql")).ok(), Some(Backend::Postgresql));
        assert_eq!(Backend::Postgresql.to_string(), "postgresql");
    }

    #[test]
    fn an_unknown_backend_is_a_clear_error() {
        let err = Backend::parse(Some("postgres")).expect_err("not a backend name");
        assert!(matches!(err, Error::UnknownBackend { ref value } if value == "postgres"), "{err}");
        let message = err.to_string();
        assert!(
            message.contains("PULSE_TEST_BACKEND=\"postgres\""),
            "names the variable and value: {message}"
        );
        assert!(
            message.contains("`sqlite`") && message.contains("`postgresql`"),
            "says what is valid: {message}"
        );
    }
}
