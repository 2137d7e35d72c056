//! In-process adapters for embedded mode: the timeline store, the hydration
//! caches, the event log that tails the SQL outbox, the rate limiter, the
//! failed-login counts and the live-update log.

mod cache;
mod event_log;
mod live;
mod login_failures;
mod rate_limit;
mod timelines;

pub use cache::MemoryCache;
pub use event_log::OutboxEventLog;
pub use live::LocalLiveLog;
pub use login_failures::LocalLoginFailures;
pub use rate_limit::LocalRateLimiter;
pub use timelines::LocalTimelines;
