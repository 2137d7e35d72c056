//! Redis adapters of the scaled-out mode: the timeline-store port (each home
//! timeline a capped sorted set), the shared tier of the hydration caches,
//! the bus that carries cache invalidations between instances, and the
//! rate limiter and the failed-login counts all instances share.
//!
//! Every key of one user carries the user id as a hash tag (`tl:{42}`), so
//! the scripts that touch several keys of one user run on one Redis Cluster
//! slot; nothing ever touches two users' keys in one command.

mod cache;
mod connection;
mod login_failures;
mod rate_limit;
mod timelines;

pub use cache::{BroadcastCache, CacheKey, InvalidationBus, TieredCache};
pub use connection::{RedisConnection, RedisOptions};
pub use login_failures::RedisLoginFailures;
pub use rate_limit::RedisRateLimiter;
pub use timelines::RedisTimelines;
