//! Contract suites: the behaviour every adapter of a port must show.
//!
//! An adapter crate instantiates a suite with its own constructor, e.g.
//! `starling_app::timeline_store_contract!(make_store);` where
//! `async fn make_store(cap: usize) -> Option<(Arc<dyn TimelineStore>, Guard)>`;
//! each case becomes a `#[tokio::test]` of that crate, run against a fresh
//! store. `None` skips the case: the engine is not reachable here (and the
//! constructor panics instead when `STARLING_REQUIRE_SERVICES=1`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod blobs;
pub mod live;
pub mod login_failures;
pub mod rate_limit;
pub mod store;
pub mod timeline;
