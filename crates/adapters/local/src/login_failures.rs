//! Failed logins counted in process: the embedded mode's store, and the
//! fallback of the shared one while Redis cannot answer. Bounded: past
//! `capacity` keys the least used are forgotten (quick_cache's CLOCK-Pro),
//! so a flood of logins to made-up accounts cannot grow memory.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;
use quick_cache::sync::Cache;
use starling_app::ports::{Failures, LoginFailures, LoginFailuresError};

/// Keys remembered at most (about 100 bytes each).
const DEFAULT_CAPACITY: usize = 100_000;

#[derive(Clone, Copy)]
struct Entry {
    failures: Failures,
    forget_at: Instant,
}

pub struct LocalLoginFailures {
    entries: Cache<String, Entry>,
    /// Adds are read-modify-write: one at a time (they follow a failed
    /// password check, which costs far more).
    adding: Mutex<()>,
}

impl Default for LocalLoginFailures {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }
}

impl LocalLoginFailures {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            entries: Cache::new(capacity.max(1)),
            adding: Mutex::new(()),
        }
    }

    fn current(&self, key: &str) -> Failures {
        match self.entries.get(key) {
            Some(entry) if entry.forget_at > Instant::now() => entry.failures,
            _ => Failures::default(),
        }
    }

    /// The same as the port's `add`, without its `Result`: for the shared
    /// store's fallback.
    pub fn add_now(&self, key: &str, at_ms: i64, forget_after: Duration) -> Failures {
        let _one_at_a_time = self.adding.lock();
        let failures = Failures {
            count: self.current(key).count.saturating_add(1),
            last_at_ms: at_ms,
        };
        self.entries.insert(
            key.to_owned(),
            Entry {
                failures,
                forget_at: Instant::now() + forget_after,
            },
        );
        failures
    }

    pub fn get_now(&self, key: &str) -> Failures {
        self.current(key)
    }

    pub fn clear_now(&self, key: &str) {
        self.entries.remove(key);
    }
}

#[async_trait]
impl LoginFailures for LocalLoginFailures {
    async fn get(&self, key: &str) -> Result<Failures, LoginFailuresError> {
        Ok(self.get_now(key))
    }

    async fn add(
        &self,
        key: &str,
        at_ms: i64,
        forget_after: Duration,
    ) -> Result<Failures, LoginFailuresError> {
        Ok(self.add_now(key, at_ms, forget_after))
    }

    async fn clear(&self, key: &str) -> Result<(), LoginFailuresError> {
        self.clear_now(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    async fn make() -> Option<(Arc<dyn LoginFailures>, ())> {
        Some((Arc::new(LocalLoginFailures::default()), ()))
    }

    starling_app::login_failures_contract!(make);

    #[test]
    fn memory_stays_bounded_under_a_flood_of_keys() {
        let failures = LocalLoginFailures::with_capacity(1_000);
        for key in 0..20_000 {
            failures.add_now(&format!("l:{key}"), 1, Duration::from_secs(60));
        }
        assert!(
            failures.entries.len() <= 1_000,
            "{}",
            failures.entries.len()
        );
    }
}
