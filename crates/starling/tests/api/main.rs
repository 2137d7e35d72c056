//! Black-box tests: the real router on port 0 with a fresh data directory per
//! test, driven over HTTP as a client would.

#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

/// This binary runs every test on the embedded engines.
pub const SCALED_OUT: bool = false;

mod helpers;
mod process;

mod auth;
mod bench;
mod caching;
mod deploy;
mod docs;
mod durability;
mod edge;
mod engine;
mod errors;
mod feed;
mod first_run;
mod graph;
mod idempotency;
mod logging;
mod media;
mod nginx;
mod notifications;
mod ops;
mod posts;
mod relations;
mod roles;
mod stream;
mod traces;
mod users;
