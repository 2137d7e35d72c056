//! Black-box tests: the real router on port 0 with a fresh data directory per
//! test, driven over HTTP as a client would. A test marked `#[both_modes]`
//! runs twice, `<test>::embedded` and `<test>::scaled_out` (see
//! `helpers::Mode`): one behaviour, two modes, one file.

#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod helpers;
mod process;

mod admin;
mod api_keys;
mod auth;
mod bench;
mod caching;
mod deletion;
mod deploy;
mod docs;
mod durability;
mod edge;
mod engine;
mod errors;
mod export;
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
mod reliability;
mod roles;
mod sessions;
mod stream;
mod traces;
mod users;
