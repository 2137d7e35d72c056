//! The rate-limit port: a quota per route class and client, enforced with
//! GCRA (a token bucket without a refill task). In process in embedded mode;
//! in Redis when scaled out, so that every API instance enforces one limit.

use std::time::Duration;

use async_trait::async_trait;

/// Which quota a request draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteClass {
    /// Reading: `GET` anything.
    Read,
    /// Changing: posts, likes, follows, profile edits.
    Write,
    /// Registering, logging in, refreshing: stricter, against credential stuffing.
    Auth,
    /// Anything done with an API key (scripts and bots): one quota of its
    /// own per key, apart from its owner's reads and writes.
    ApiKey,
}

impl RouteClass {
    pub const ALL: [RouteClass; 4] = [
        RouteClass::Read,
        RouteClass::Write,
        RouteClass::Auth,
        RouteClass::ApiKey,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RouteClass::Read => "read",
            RouteClass::Write => "write",
            RouteClass::Auth => "auth",
            RouteClass::ApiKey => "api_key",
        }
    }
}

/// `limit` requests per `window`, all of which may come at once (the burst);
/// after that one more each `window / limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub limit: u32,
    pub window: Duration,
}

impl Quota {
    /// Time between two requests once the burst is spent (at least 1 ms).
    pub fn interval(&self) -> Duration {
        (self.window / self.limit.max(1)).max(Duration::from_millis(1))
    }
}

/// The quota of every route class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    pub read: Quota,
    pub write: Quota,
    pub auth: Quota,
    pub api_key: Quota,
}

impl RateLimits {
    pub fn quota(&self, class: RouteClass) -> Quota {
        match class {
            RouteClass::Read => self.read,
            RouteClass::Write => self.write,
            RouteClass::Auth => self.auth,
            RouteClass::ApiKey => self.api_key,
        }
    }
}

/// The answer for one request, with what the response headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    pub allowed: bool,
    pub limit: u32,
    /// Requests left in the burst after this one.
    pub remaining: u32,
    /// Until the burst is whole again.
    pub reset: Duration,
    /// When refused: until the next request would be allowed.
    pub retry_after: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("rate limiter unavailable")]
pub struct RateLimitError(#[source] pub anyhow::Error);

#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Counts one request of `class` by `client` (e.g. `u:42`, `ip:10.0.0.7`)
    /// and says whether it may go on.
    async fn check(&self, class: RouteClass, client: &str) -> Result<RateDecision, RateLimitError>;
}
