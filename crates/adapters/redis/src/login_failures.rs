//! Failed logins counted in Redis, shared by every API instance: a guesser
//! spreading attempts across instances meets one back-off. When Redis
//! cannot answer, the instance counts in process instead (the same
//! fallback as the rate limiter's: a local limit, never none).

use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use redis::Script;
use starling_app::ports::{Failures, LoginFailures, LoginFailuresError};
use starling_local::LocalLoginFailures;

use crate::connection::RedisConnection;

static ADD: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/login_failure.lua")));

pub struct RedisLoginFailures {
    connection: RedisConnection,
    prefix: String,
    fallback: LocalLoginFailures,
}

impl RedisLoginFailures {
    /// Keys are `<prefix>lf:<key>`.
    pub fn new(connection: RedisConnection, prefix: &str) -> Self {
        Self {
            connection,
            prefix: prefix.to_owned(),
            fallback: LocalLoginFailures::default(),
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}lf:{key}", self.prefix)
    }

    fn fell_back(error: &redis::RedisError) {
        tracing::debug!(error = %error, "login failures: Redis failed; counting locally");
        metrics::counter!(starling_app::metric::LOGIN_FAILURES_FALLBACKS_TOTAL).increment(1);
    }
}

#[async_trait]
impl LoginFailures for RedisLoginFailures {
    async fn get(&self, key: &str) -> Result<Failures, LoginFailuresError> {
        let mut connection = self.connection.clone();
        let read: redis::RedisResult<(Option<u32>, Option<i64>)> = redis::cmd("HMGET")
            .arg(self.key(key))
            .arg("n")
            .arg("t")
            .query_async(&mut connection)
            .await;
        match read {
            Ok((count, last_at_ms)) => {
                let shared = Failures {
                    count: count.unwrap_or(0),
                    last_at_ms: last_at_ms.unwrap_or(0),
                };
                // Failures counted here while Redis was away still count.
                let local = self.fallback.get_now(key);
                Ok(if local.count > shared.count {
                    local
                } else {
                    shared
                })
            }
            Err(error) => {
                Self::fell_back(&error);
                Ok(self.fallback.get_now(key))
            }
        }
    }

    async fn add(
        &self,
        key: &str,
        at_ms: i64,
        forget_after: Duration,
    ) -> Result<Failures, LoginFailuresError> {
        let mut connection = self.connection.clone();
        let forget_ms = u64::try_from(forget_after.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let added: redis::RedisResult<u32> = ADD
            .key(self.key(key))
            .arg(at_ms)
            .arg(forget_ms)
            .invoke_async(&mut connection)
            .await;
        match added {
            Ok(count) => Ok(Failures {
                count,
                last_at_ms: at_ms,
            }),
            Err(error) => {
                Self::fell_back(&error);
                Ok(self.fallback.add_now(key, at_ms, forget_after))
            }
        }
    }

    async fn clear(&self, key: &str) -> Result<(), LoginFailuresError> {
        self.fallback.clear_now(key);
        let mut connection = self.connection.clone();
        redis::cmd("DEL")
            .arg(self.key(key))
            .query_async::<()>(&mut connection)
            .await
            .map_err(|error| LoginFailuresError(error.into()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use starling_testing::RedisPrefix;

    use super::*;
    use crate::RedisOptions;

    async fn on(prefix: &RedisPrefix) -> RedisLoginFailures {
        let connection =
            RedisConnection::connect(std::slice::from_ref(&prefix.url), &RedisOptions::default())
                .await
                .expect("Redis is reachable");
        RedisLoginFailures::new(connection, &prefix.prefix)
    }

    async fn make() -> Option<(Arc<dyn LoginFailures>, RedisPrefix)> {
        let prefix = RedisPrefix::new()?;
        let failures = on(&prefix).await;
        Some((Arc::new(failures), prefix))
    }

    starling_app::login_failures_contract!(make);

    /// Two instances on one Redis count one account's failures together.
    #[tokio::test]
    async fn instances_count_together() {
        let Some(prefix) = RedisPrefix::new() else {
            return;
        };
        let (first, second) = (on(&prefix).await, on(&prefix).await);
        let key = format!("u:{}", rand::random::<u64>());
        let day = Duration::from_secs(86_400);
        first.add(&key, 10, day).await.unwrap();
        assert_eq!(second.add(&key, 20, day).await.unwrap().count, 2);
        assert_eq!(
            first.get(&key).await.unwrap(),
            Failures {
                count: 2,
                last_at_ms: 20
            }
        );
    }
}
