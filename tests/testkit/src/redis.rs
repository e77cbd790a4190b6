use std::process::Command;
use std::time::Duration;

use redis::AsyncCommands;

use crate::ports::{free_port, free_port_where, is_free};
use crate::{Binary, Error, Result, ServerProcess, WorkDir};

const START_TIMEOUT: Duration = Duration::from_secs(20);

/// When Redis fsyncs its append-only file: the durability modes of design.md section 7.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendFsync {
    /// `fast`: at most about a second of acknowledged writes at risk if Redis crashes.
    EverySec,
    /// `strict`: every write is on disk before Redis answers.
    Always,
}

/// How to run a test Redis.
#[derive(Debug, Clone, Copy, Default)]
pub struct RedisOptions {
    /// Append-only file persistence; `None` runs Redis without persistence.
    pub append_only: Option<AppendFsync>,
}

/// A redis-server on a free loopback port, stopped on drop.
#[derive(Debug)]
pub struct RedisServer {
    process: ServerProcess,
    port: u16,
    options: RedisOptions,
    dir: WorkDir,
}

impl RedisServer {
    /// Starts Redis without persistence.
    pub async fn start() -> Result<Self> {
        Self::start_with(RedisOptions::default()).await
    }

    /// Starts Redis with `options`.
    pub async fn start_with(options: RedisOptions) -> Result<Self> {
        let dir = WorkDir::new("redis")?;
        let port = free_port()?;
        let process = spawn_redis(&dir, port, options, &[])?;
        let mut server = RedisServer { process, port, options, dir };
        server.wait_ready().await?;
        Ok(server)
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port Redis listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection that multiplexes commands, for the current tokio runtime.
    pub async fn connection(&self) -> Result<redis::aio::MultiplexedConnection> {
        connect(&self.url()).await
    }

    /// Kills Redis with `SIGKILL`, as a crash would. Its data dir is kept for [`Self::restart`].
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Freezes Redis with `SIGSTOP`: connections are still accepted by the kernel but nothing
    /// answers, as with a Redis whose node vanished behind its Service address or a network
    /// partition (a killed Redis refuses connections at once instead).
    pub fn pause(&mut self) {
        self.process.pause();
    }

    /// Lets a Redis frozen by [`Self::pause`] answer again.
    pub fn resume(&mut self) {
        self.process.resume();
    }

    /// Starts Redis again on the same port and data dir (after [`Self::kill`]), so what the
    /// append-only file holds is loaded back.
    pub async fn restart(&mut self) -> Result<()> {
        self.process.kill();
        self.process = spawn_redis(&self.dir, self.port, self.options, &[])?;
        self.wait_ready().await
    }

    /// Like [`Self::restart`], but with other `options` from now on (e.g. weaker persistence).
    pub async fn restart_with(&mut self, options: RedisOptions) -> Result<()> {
        self.options = options;
        self.restart().await
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let url = self.url();
        self.process.wait_ready(START_TIMEOUT, || ping(url.clone())).await
    }
}

/// A three-node Redis Cluster (no replicas) with all 16384 slots assigned.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<(ServerProcess, u16)>,
    _dir: WorkDir,
}

impl RedisCluster {
    /// Starts three cluster-mode nodes, splits the slots between them, joins them and waits
    /// until every node reports `cluster_state:ok`.
    pub async fn start() -> Result<Self> {
        const NODES: usize = 3;
        const SLOTS: u16 = 16384;
        let dir = WorkDir::new("redis-cluster")?;
        let mut nodes = Vec::with_capacity(NODES);
        for i in 0..NODES {
            // The cluster bus listens on port + 10000.
            let port = free_port_where(|p| p < 55535 && is_free(p + 10000))?;
            let node_dir = dir.join(&format!("node-{i}"));
            std::fs::create_dir_all(&node_dir)
                .map_err(|e| Error::io(format!("creating {}", node_dir.display()), e))?;
            let nodes_conf = node_dir.join("nodes.conf");
            let args = [
                "--cluster-enabled".to_string(),
                "yes".to_string(),
                "--cluster-config-file".to_string(),
                nodes_conf.display().to_string(),
                "--cluster-node-timeout".to_string(),
                "5000".to_string(),
            ];
            let mut process =
                spawn_redis_in(&node_dir, &format!("redis-cluster-node-{i}"), port, None, &args)?;
            let url = format!("redis://127.0.0.1:{port}");
            process.wait_ready(START_TIMEOUT, || ping(url.clone())).await?;
            nodes.push((process, port));
        }

        let per_node = SLOTS / NODES as u16;
        for (i, (_, port)) in nodes.iter().enumerate() {
            let mut conn = connect(&format!("redis://127.0.0.1:{port}")).await?;
            let first = per_node * i as u16;
            let last = if i == NODES - 1 { SLOTS - 1 } else { first + per_node - 1 };
            let context = format!("assigning slots {first}-{last} to node {i}");
            let _: () = redis::cmd("CLUSTER")
                .arg("SET-CONFIG-EPOCH")
                .arg(i + 1)
                .query_async(&mut conn)
                .await
                .map_err(|e| Error::client(&context, e))?;
            let _: () = redis::cmd("CLUSTER")
                .arg("ADDSLOTSRANGE")
                .arg(first)
                .arg(last)
                .query_async(&mut conn)
                .await
                .map_err(|e| Error::client(&context, e))?;
        }
        let mut first = connect(&format!("redis://127.0.0.1:{}", nodes[0].1)).await?;
        for (_, port) in &nodes[1..] {
            let _: () = redis::cmd("CLUSTER")
                .arg("MEET")
                .arg("127.0.0.1")
                .arg(*port)
                .query_async(&mut first)
                .await
                .map_err(|e| Error::client("joining the cluster nodes", e))?;
        }
        for (process, port) in nodes.iter_mut() {
            let url = format!("redis://127.0.0.1:{port}");
            process
                .wait_ready(START_TIMEOUT, || {
                    let url = url.clone();
                    async move {
                        let mut conn = connect(&url).await.map_err(|e| e.to_string())?;
                        let info: String = redis::cmd("CLUSTER")
                            .arg("INFO")
                            .query_async(&mut conn)
                            .await
                            .map_err(|e| e.to_string())?;
                        let ok = info.contains("cluster_state:ok")
                            && info.contains(&format!("cluster_known_nodes:{NODES}"));
                        if ok { Ok(()) } else { Err(info.lines().take(6).collect::<Vec<_>>().join(", ")) }
                    }
                })
                .await?;
        }
        Ok(RedisCluster { nodes, _dir: dir })
    }

    /// The seed URLs of the nodes, for `redis::cluster::ClusterClient::new`.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|(_, port)| format!("redis://127.0.0.1:{port}")).collect()
    }

    /// A cluster connection that routes each key to its slot's node.
    pub async fn connection(&self) -> Result<redis::cluster_async::ClusterConnection> {
        let client = redis::cluster::ClusterClient::new(self.urls())
            .map_err(|e| Error::client("creating a Redis Cluster client", e))?;
        client.get_async_connection().await.map_err(|e| Error::client("connecting to the Redis Cluster", e))
    }
}

fn spawn_redis(dir: &WorkDir, port: u16, options: RedisOptions, extra: &[String]) -> Result<ServerProcess> {
    spawn_redis_in(dir.path(), "redis-server", port, options.append_only, extra)
}

fn spawn_redis_in(
    dir: &std::path::Path,
    name: &str,
    port: u16,
    append_only: Option<AppendFsync>,
    extra: &[String],
) -> Result<ServerProcess> {
    let mut command = Command::new(Binary::RedisServer.path()?);
    command
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--protected-mode", "no", "--daemonize", "no", "--save", ""])
        .arg("--dir")
        .arg(dir);
    match append_only {
        None => {
            command.args(["--appendonly", "no"]);
        }
        Some(fsync) => {
            let every = match fsync {
                AppendFsync::EverySec => "everysec",
                AppendFsync::Always => "always",
            };
            command.args(["--appendonly", "yes", "--appendfsync", every]);
        }
    }
    command.args(extra);
    ServerProcess::spawn(name, command, &dir.join(format!("{name}.log")))
}

async fn connect(url: &str) -> Result<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(url).map_err(|e| Error::client(format!("parsing {url}"), e))?;
    client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| Error::client(format!("connecting to {url}"), e))
}

async fn ping(url: String) -> std::result::Result<(), String> {
    let mut conn = connect(&url).await.map_err(|e| e.to_string())?;
    let pong: String = conn.ping().await.map_err(|e| e.to_string())?;
    if pong == "PONG" { Ok(()) } else { Err(format!("PING answered {pong}")) }
}
