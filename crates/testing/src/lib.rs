//! Test support shared by the adapters' and the binary's tests: finding the
//! services a test needs, and giving each test its own isolated piece of them
//! (a database, a key prefix, a stream name).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod postgres;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub use postgres::{TestDatabase, test_database};

/// The URL in `variable`, or `None` with the reason printed, so the test
/// skips. With `STARLING_REQUIRE_SERVICES=1` (as in CI) a missing service
/// fails the test instead.
pub fn service_url(variable: &str, service: &str) -> Option<String> {
    match std::env::var(variable) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("STARLING_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("{variable} is not set and STARLING_REQUIRE_SERVICES=1");
            }
            eprintln!("skipped: set {variable} to run the {service} tests");
            None
        }
    }
}

/// `STARLING_TEST_REDIS_URL`, or `None` (skip) as [`service_url`] decides.
pub fn redis_url() -> Option<String> {
    service_url("STARLING_TEST_REDIS_URL", "Redis")
}

/// `STARLING_TEST_NATS_URL`, or `None` (skip) as [`service_url`] decides.
pub fn nats_url() -> Option<String> {
    service_url("STARLING_TEST_NATS_URL", "NATS")
}

/// A name no other test (in this process or another) uses: `prefix`, the
/// time, the process id and a counter; letters, digits and underscores only.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    format!(
        "{prefix}_{nanos:x}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
