//! One handle over a single Redis or a Redis Cluster: both reconnect by
//! themselves and multiplex concurrent commands over few connections, so
//! commands issued together are pipelined on the wire. Every command goes
//! through the dependency's guard (timeout, bulkhead, circuit breaker), so
//! a Redis that is down or hangs costs callers an error at once, not a wait.

use std::time::Duration;

use anyhow::Context;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, Value};
use starling_app::resilience::{Guard, GuardError, GuardSettings};

#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Treat the URL(s) as seed nodes of a Redis Cluster.
    pub cluster: bool,
    /// A command not answered in this time fails (the caller degrades).
    pub response_timeout: Duration,
    pub connection_timeout: Duration,
    /// Commands in flight at once per process; more fail at once.
    pub max_concurrent: usize,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            cluster: false,
            response_timeout: Duration::from_secs(2),
            connection_timeout: Duration::from_secs(2),
            max_concurrent: 512,
        }
    }
}

#[derive(Clone)]
pub struct RedisConnection {
    link: Link,
    guard: Guard,
    /// Commands sent through this handle are idempotent: a failed one may
    /// be sent again (within the guard's retry budget).
    idempotent: bool,
}

#[derive(Clone)]
enum Link {
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
            return Ok(Self::guarded(Link::Cluster(connection), options));
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
        Ok(Self::guarded(Link::Single(manager), options))
    }

    fn guarded(link: Link, options: &RedisOptions) -> Self {
        Self {
            link,
            idempotent: false,
            guard: Guard::new(
                "redis",
                &GuardSettings {
                    timeout: options.response_timeout,
                    max_concurrent: options.max_concurrent,
                    ..GuardSettings::default()
                },
            ),
        }
    }

    /// The same connection, for callers whose every command is idempotent
    /// (timeline scripts, cache reads and fills): failures are retried
    /// with jittered backoff while the retry budget allows.
    pub fn for_idempotent_commands(&self) -> Self {
        Self {
            idempotent: true,
            ..self.clone()
        }
    }

    /// The cluster connection, for commands routed to one node.
    pub fn cluster(&self) -> Option<&ClusterConnection> {
        match &self.link {
            Link::Cluster(connection) => Some(connection),
            Link::Single(_) => None,
        }
    }

    /// The guard every command passes (its breaker's state, for health).
    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// Answers once Redis answers a PING.
    pub async fn ping(&self) -> redis::RedisResult<()> {
        let mut connection = self.clone();
        redis::cmd("PING").query_async::<()>(&mut connection).await
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let (guard, link, idempotent) = (self.guard.clone(), self.link.clone(), self.idempotent);
        let send = move || {
            let mut link = link.clone();
            async move {
                match &mut link {
                    Link::Single(connection) => connection.req_packed_command(cmd).await,
                    Link::Cluster(connection) => connection.req_packed_command(cmd).await,
                }
            }
        };
        Box::pin(async move {
            let answer = if idempotent {
                guard.call_retrying(send).await
            } else {
                guard.call(send()).await
            };
            answer.map_err(guard_error)
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let (guard, link, idempotent) = (self.guard.clone(), self.link.clone(), self.idempotent);
        let send = move || {
            let mut link = link.clone();
            async move {
                match &mut link {
                    Link::Single(connection) => {
                        connection.req_packed_commands(cmd, offset, count).await
                    }
                    Link::Cluster(connection) => {
                        connection.req_packed_commands(cmd, offset, count).await
                    }
                }
            }
        };
        Box::pin(async move {
            let answer = if idempotent {
                guard.call_retrying(send).await
            } else {
                guard.call(send()).await
            };
            answer.map_err(guard_error)
        })
    }

    fn get_db(&self) -> i64 {
        match &self.link {
            Link::Single(connection) => connection.get_db(),
            Link::Cluster(connection) => connection.get_db(),
        }
    }
}

/// The guard's refusals as Redis errors, so callers degrade the same way.
fn guard_error(error: GuardError<RedisError>) -> RedisError {
    match error {
        GuardError::Failed(error) => error,
        refused => RedisError::from((ErrorKind::Io, "not sent", refused.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use starling_app::resilience::BreakerState;

    use super::*;

    /// A Redis that hangs (SIGSTOP) costs a timeout on the first few calls,
    /// then none: the breaker opens and calls fail at once until probes
    /// find it answering again.
    #[tokio::test]
    async fn a_hanging_redis_opens_the_breaker_and_calls_then_fail_at_once() {
        let Some(server) = starling_testing::OwnServer::redis() else {
            return;
        };
        let options = RedisOptions {
            response_timeout: Duration::from_millis(200),
            connection_timeout: Duration::from_millis(200),
            ..RedisOptions::default()
        };
        let connection = RedisConnection::connect(std::slice::from_ref(&server.url), &options)
            .await
            .unwrap();
        connection.ping().await.unwrap();

        server.pause();
        let mut waited = Vec::new();
        while connection.guard().state() == BreakerState::Closed {
            let started = Instant::now();
            assert!(connection.ping().await.is_err());
            waited.push(started.elapsed());
            assert!(waited.len() <= 10, "the breaker never opened");
        }
        assert!(
            waited.iter().all(|wait| *wait < Duration::from_millis(600)),
            "no call waits past its timeout: {waited:?}"
        );
        let started = Instant::now();
        assert!(connection.ping().await.is_err());
        assert!(
            started.elapsed() < Duration::from_millis(20),
            "failed at once"
        );

        server.resume();
        // Open for two seconds, then probes close it.
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while connection.guard().state() != BreakerState::Closed {
            let _ = connection.ping().await;
            assert!(Instant::now() < deadline, "the breaker never closed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        connection.ping().await.unwrap();
    }
}
