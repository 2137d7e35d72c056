//! The black-box API suite again, on the scaled-out engines: each test's app
//! runs on a PostgreSQL database, a Redis key prefix and JetStream streams
//! of its own (`STARLING_TEST_DATABASE_URL`, `STARLING_TEST_REDIS_URL`,
//! `STARLING_TEST_NATS_URL`), with the relay between outbox and stream and
//! the fan-out worker reading partitions, exactly as separate roles would,
//! and the client talks to it through nginx running the shipped
//! `deploy/nginx/starling.conf` (`STARLING_TEST_NGINX`). The test files are
//! the embedded suite's own: one behaviour, two modes.

#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub, dead_code)]

/// Every test app in this binary runs on the scaled-out engines.
pub const SCALED_OUT: bool = true;

#[path = "../api/helpers.rs"]
mod helpers;

#[path = "../api/auth.rs"]
mod auth;
#[path = "../api/caching.rs"]
mod caching;
#[path = "../api/edge.rs"]
mod edge;
#[path = "../api/errors.rs"]
mod errors;
#[path = "../api/feed.rs"]
mod feed;
#[path = "../api/graph.rs"]
mod graph;
#[path = "../api/idempotency.rs"]
mod idempotency;
#[path = "../api/media.rs"]
mod media;
#[path = "../api/notifications.rs"]
mod notifications;
#[path = "../api/posts.rs"]
mod posts;
#[path = "../api/relations.rs"]
mod relations;
#[path = "../api/stream.rs"]
mod stream;
#[path = "../api/users.rs"]
mod users;
