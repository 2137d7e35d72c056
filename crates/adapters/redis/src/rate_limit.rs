//! The shared rate limiter of scaled-out mode: GCRA in one Lua script per
//! request, on the Redis server's clock, so N API instances enforce one
//! limit. When Redis cannot answer, the request is judged by the instance's
//! own in-process limiter instead (fail open to a local limit, never closed,
//! never unlimited); the connection's breaker stops asking Redis for a while
//! after failures, so an outage does not add a timeout to every request.

use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use redis::Script;
use starling_app::ports::{RateDecision, RateLimitError, RateLimiter, RateLimits, RouteClass};
use starling_local::LocalRateLimiter;

use crate::connection::RedisConnection;

static GCRA: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/gcra.lua")));

pub struct RedisRateLimiter {
    connection: RedisConnection,
    prefix: String,
    limits: RateLimits,
    fallback: LocalRateLimiter,
}

impl RedisRateLimiter {
    /// Keys start with `prefix` (e.g. `starling:`); `fallback` judges
    /// requests while Redis is unreachable.
    pub fn new(
        connection: RedisConnection,
        prefix: &str,
        limits: RateLimits,
        fallback: LocalRateLimiter,
    ) -> Self {
        Self {
            connection,
            prefix: prefix.to_owned(),
            limits,
            fallback,
        }
    }

    async fn ask_redis(
        &self,
        class: RouteClass,
        client: &str,
    ) -> Result<RateDecision, redis::RedisError> {
        let quota = self.limits.quota(class);
        let interval_ms = u64::try_from(quota.interval().as_millis()).unwrap_or(u64::MAX);
        let mut connection = self.connection.clone();
        let (allowed, remaining, reset_ms, retry_ms): (i64, i64, i64, i64) = GCRA
            .key(format!("{}rl:{}:{client}", self.prefix, class.as_str()))
            .arg(interval_ms)
            .arg(quota.limit.max(1))
            .invoke_async(&mut connection)
            .await?;
        let millis = |value: i64| Duration::from_millis(u64::try_from(value).unwrap_or(0));
        Ok(RateDecision {
            allowed: allowed == 1,
            limit: quota.limit.max(1),
            remaining: u32::try_from(remaining).unwrap_or(0),
            reset: millis(reset_ms),
            retry_after: millis(retry_ms),
        })
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn check(&self, class: RouteClass, client: &str) -> Result<RateDecision, RateLimitError> {
        match self.ask_redis(class, client).await {
            Ok(decision) => Ok(decision),
            Err(error) => {
                tracing::debug!(error = %error, "rate limiter: Redis failed; limiting locally");
                metrics::counter!(starling_app::metric::RATE_LIMIT_FALLBACKS_TOTAL).increment(1);
                Ok(self.fallback.decide(class, client))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use starling_testing::RedisPrefix;

    use super::*;
    use crate::RedisOptions;

    async fn on(prefix: &RedisPrefix, limits: RateLimits) -> RedisRateLimiter {
        let connection =
            RedisConnection::connect(std::slice::from_ref(&prefix.url), &RedisOptions::default())
                .await
                .expect("Redis is reachable");
        RedisRateLimiter::new(
            connection,
            &prefix.prefix,
            limits,
            LocalRateLimiter::new(&limits),
        )
    }

    async fn make(limits: RateLimits) -> Option<(Arc<dyn RateLimiter>, RedisPrefix)> {
        let prefix = RedisPrefix::new()?;
        let limiter = on(&prefix, limits).await;
        Some((Arc::new(limiter), prefix))
    }

    starling_app::rate_limiter_contract!(make);

    /// Two instances on one Redis share one budget.
    #[tokio::test]
    async fn instances_share_one_limit() {
        let limits = starling_app::ports::contract::rate_limit::LIMITS;
        let Some(prefix) = RedisPrefix::new() else {
            return;
        };
        let (first, second) = (on(&prefix, limits).await, on(&prefix, limits).await);
        let client = format!("ip:{}", rand::random::<u64>());
        assert!(
            first
                .check(RouteClass::Auth, &client)
                .await
                .unwrap()
                .allowed
        );
        let shared = second.check(RouteClass::Auth, &client).await.unwrap();
        assert!(shared.allowed);
        assert_eq!(shared.remaining, 0, "the other instance's request counted");
        assert!(
            !first
                .check(RouteClass::Auth, &client)
                .await
                .unwrap()
                .allowed
        );
    }

    /// Redis gone: requests are judged locally, neither refused nor let
    /// through unlimited; Redis back, the shared limit applies again.
    #[tokio::test]
    async fn a_redis_gone_falls_back_to_the_local_limit() {
        let limits = starling_app::ports::contract::rate_limit::LIMITS;
        let Some(mut server) = starling_testing::OwnServer::redis() else {
            return;
        };
        let options = RedisOptions {
            response_timeout: Duration::from_millis(300),
            connection_timeout: Duration::from_millis(300),
            ..RedisOptions::default()
        };
        let connection = RedisConnection::connect(&[server.url.clone()], &options)
            .await
            .unwrap();
        let limiter =
            RedisRateLimiter::new(connection, "own:", limits, LocalRateLimiter::new(&limits));
        let shared_client = "ip:203.0.113.7";
        assert!(
            limiter
                .check(RouteClass::Auth, shared_client)
                .await
                .unwrap()
                .allowed
        );

        server.kill();
        let client = "ip:203.0.113.9";
        let started = std::time::Instant::now();
        assert!(
            limiter
                .check(RouteClass::Auth, client)
                .await
                .unwrap()
                .allowed
        );
        assert!(
            limiter
                .check(RouteClass::Auth, client)
                .await
                .unwrap()
                .allowed
        );
        assert!(
            !limiter
                .check(RouteClass::Auth, client)
                .await
                .unwrap()
                .allowed
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "no request waits long"
        );

        server.restart();
        // Once the breaker lets a probe through and the connection is back,
        // limits are kept in Redis again.
        let mut connection = redis::Client::open(server.url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut keys: Vec<String> = Vec::new();
        while keys.is_empty() && std::time::Instant::now() < deadline {
            let fresh = format!("ip:198.51.100.{}", rand::random::<u8>());
            assert!(
                limiter
                    .check(RouteClass::Read, &fresh)
                    .await
                    .unwrap()
                    .allowed
            );
            keys = redis::cmd("KEYS")
                .arg("own:rl:*")
                .query_async(&mut connection)
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(!keys.is_empty(), "the limit is kept in Redis again");
    }
}
