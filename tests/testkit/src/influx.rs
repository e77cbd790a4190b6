use std::process::Command;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::ports::free_port;
use crate::{Binary, Error, Result, ServerProcess, WorkDir};

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// InfluxDB 1.x (`influxd` from the OS packages) on a free loopback port, with its meta,
/// data and WAL in a temp dir. Its HTTP API (`/write`, `/query`, `/ping`) is at [`Self::url`].
#[derive(Debug)]
pub struct InfluxDb {
    process: ServerProcess,
    port: u16,
    dir: WorkDir,
}

impl InfluxDb {
    /// Starts influxd and waits until `/ping` answers 204.
    pub async fn start() -> Result<Self> {
        let dir = WorkDir::new("influxdb")?;
        let port = free_port()?;
        let rpc = free_port()?;
        let config = format!(
            "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n\
             [meta]\n  dir = \"{d}/meta\"\n\
             [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n\
             [http]\n  enabled = true\n  bind-address = \"127.0.0.1:{port}\"\n  log-enabled = false\n\
             [monitor]\n  store-enabled = false\n\
             [logging]\n  level = \"warn\"\n",
            d = dir.path().display()
        );
        let path = dir.join("influxdb.conf");
        std::fs::write(&path, config).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        let process = spawn(&dir)?;
        let mut influx = InfluxDb { process, port, dir };
        influx.wait_ready().await?;
        Ok(influx)
    }

    /// Kills influxd with `SIGKILL`, as a crash or outage would; its data stays.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts influxd again on the same port and data (after [`Self::kill`]).
    pub async fn restart(&mut self) -> Result<()> {
        self.process.kill();
        self.process = spawn(&self.dir)?;
        self.wait_ready().await
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server process, e.g. for its log.
    pub fn process_mut(&mut self) -> &mut ServerProcess {
        &mut self.process
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let port = self.port;
        self.process.wait_ready(START_TIMEOUT, move || ping(port)).await
    }
}

fn spawn(dir: &WorkDir) -> Result<ServerProcess> {
    let mut command = Command::new(Binary::Influxd.path()?);
    command.arg("run").arg("-config").arg(dir.join("influxdb.conf"));
    ServerProcess::spawn("influxd", command, &dir.join("influxd.log"))
}

/// `GET /ping` over a plain socket (the testkit has no HTTP client): ready on 204.
async fn ping(port: u16) -> std::result::Result<(), String> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
    stream.write_all(b"GET /ping HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").await.map_err(|e| e.to_string())?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.map_err(|e| e.to_string())?;
    let status = String::from_utf8_lossy(&head[9..12]).to_string();
    if status == "204" { Ok(()) } else { Err(format!("/ping answered {status}")) }
}
