//! One handle over a single Redis or a Redis Cluster: both reconnect by
//! themselves and multiplex concurrent commands over few connections, so
//! commands issued together are pipelined on the wire.

use std::time::Duration;

use anyhow::Context;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Treat the URL(s) as seed nodes of a Redis Cluster.
    pub cluster: bool,
    /// A command not answered in this time fails (the caller degrades).
    pub response_timeout: Duration,
    pub connection_timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            cluster: false,
            response_timeout: Duration::from_secs(2),
            connection_timeout: Duration::from_secs(2),
        }
    }
}

#[derive(Clone)]
pub enum RedisConnection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl RedisConnection {
    /// Connects to `urls` (one for a single Redis; one or more seed nodes of
    /// a cluster).
    pub async fn connect(urls: &[String], options: &RedisOptions) -> anyhow::Result<Self> {
        if options.cluster {
            let client = ClusterClient::builder(urls.to_vec())
                .connection_timeout(options.connection_timeout)
                .response_timeout(options.response_timeout)
                .build()
                .context("parsing the Redis Cluster URLs")?;
            let connection = client
                .get_async_connection()
                .await
                .context("connecting to the Redis Cluster")?;
            return Ok(Self::Cluster(connection));
        }
        let [url] = urls else {
            anyhow::bail!("a single Redis takes exactly one URL, got {}", urls.len());
        };
        let client = redis::Client::open(url.as_str()).context("parsing the Redis URL")?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(options.response_timeout))
            .set_connection_timeout(Some(options.connection_timeout))
            .set_number_of_retries(2);
        let manager = ConnectionManager::new_with_config(client, config)
            .await
            .context("connecting to Redis")?;
        Ok(Self::Single(manager))
    }

    /// Answers once Redis answers a PING.
    pub async fn ping(&self) -> redis::RedisResult<()> {
        let mut connection = self.clone();
        redis::cmd("PING").query_async::<()>(&mut connection).await
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(connection) => connection.req_packed_commands(cmd, offset, count),
            Self::Cluster(connection) => connection.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(connection) => connection.get_db(),
            Self::Cluster(connection) => connection.get_db(),
        }
    }
}
