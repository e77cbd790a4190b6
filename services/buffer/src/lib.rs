//! The connection to a pipeline's Redis buffer, shared by ingest and the processor: a
//! single Redis (through a reconnecting connection manager) or a Redis Cluster, behind one
//! type that runs any command or script.

mod append;
mod changes;
pub mod layout;

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

pub use append::{APPEND_BELOW_MARK_SCRIPT, APPEND_SCRIPT, append_entry};
pub use changes::{Changes, newest_rollup_change, publish_changes, read_changes, read_rollup_changes};
pub use layout::TenantLayout;

/// A connection to a single Redis or a Redis Cluster. Cheap to clone: clones share the
/// underlying multiplexed connection.
#[derive(Clone)]
pub enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Connection {
    /// A single-Redis connection that connects lazily and reconnects by itself, so a
    /// service can start while Redis is down.
    pub fn single_lazy(url: &str, timeout: Duration) -> redis::RedisResult<Self> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        Ok(Connection::Single(ConnectionManager::new_lazy_with_config(client, config)?))
    }

    /// A Redis Cluster connection from one seed node's URL; fails if no node answers.
    pub async fn cluster(url: &str, timeout: Duration) -> redis::RedisResult<Self> {
        let client = redis::cluster::ClusterClientBuilder::new(vec![url])
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .build()?;
        Ok(Connection::Cluster(client.get_async_connection().await?))
    }

    /// Connects to a single Redis or a cluster, as the pipeline says.
    pub async fn open(url: &str, cluster: bool, timeout: Duration) -> redis::RedisResult<Self> {
        if cluster { Self::cluster(url, timeout).await } else { Self::single_lazy(url, timeout) }
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(c) => c.req_packed_commands(cmd, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}
