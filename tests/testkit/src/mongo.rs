use std::process::Command;
use std::time::Duration;

use mongodb::bson::doc;

use crate::ports::free_port;
use crate::{Binary, Error, Result, ServerProcess, WorkDir};

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// FerretDB with its SQLite backend on a free loopback port: a real MongoDB-wire server.
#[derive(Debug)]
pub struct FerretDb {
    process: ServerProcess,
    port: u16,
    _dir: WorkDir,
}

impl FerretDb {
    /// Starts FerretDB over a fresh SQLite dir and waits until it answers `ping`.
    pub async fn start() -> Result<Self> {
        let dir = WorkDir::new("ferretdb")?;
        let port = free_port()?;
        let data = dir.join("data");
        let state = dir.join("state");
        for d in [&data, &state] {
            std::fs::create_dir_all(d).map_err(|e| Error::io(format!("creating {}", d.display()), e))?;
        }
        let process = spawn(&dir, port)?;
        let mut ferret = FerretDb { process, port, _dir: dir };
        ferret.wait_ready().await?;
        Ok(ferret)
    }

    /// Kills FerretDB with `SIGKILL`, as a crash or outage would; its data stays.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts FerretDB again on the same port and data (after [`Self::kill`]).
    pub async fn restart(&mut self) -> Result<()> {
        self.process.kill();
        self.process = spawn(&self._dir, self.port)?;
        self.wait_ready().await
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

fn spawn(dir: &WorkDir, port: u16) -> Result<ServerProcess> {
    let mut command = Command::new(Binary::Ferretdb.path()?);
    command
        .arg(format!("--listen-addr=127.0.0.1:{port}"))
        .arg("--handler=sqlite")
        // Test data is thrown away: no fsync per write (as etcd runs with --unsafe-no-fsync).
        .arg(format!("--sqlite-url=file:{}/?_pragma=synchronous(OFF)", dir.join("data").display()))
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
