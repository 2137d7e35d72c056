//! Protections around a remote dependency (Redis, NATS, a replica, object
//! storage): a timeout on every call, a bulkhead (a bounded number of calls
//! at once, so a slow dependency cannot take every task), and a circuit
//! breaker (after enough failures, calls fail at once for a while instead
//! of waiting on something that is down). Adapters put their calls through
//! a `Guard`; its state is in metrics, labelled by dependency.

mod breaker;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use breaker::{Breaker, BreakerSettings, BreakerState};
use rand::Rng;
use tokio::sync::Semaphore;
use tower::retry::budget::{Budget, TpsBudget};

#[derive(Debug, Clone)]
pub struct GuardSettings {
    /// A call taking longer fails (and counts against the breaker).
    pub timeout: Duration,
    /// Calls allowed at once; one more fails at once.
    pub max_concurrent: usize,
    pub breaker: BreakerSettings,
    /// Retries of idempotent calls, at most this share of calls (after a
    /// floor of `retry_floor_per_sec`), so retries cannot multiply the load
    /// on a dependency that is struggling.
    pub retry_share: f32,
    pub retry_floor_per_sec: u32,
}

impl Default for GuardSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(2),
            max_concurrent: 256,
            breaker: BreakerSettings::default(),
            retry_share: 0.1,
            retry_floor_per_sec: 10,
        }
    }
}

/// Why a guarded call did not give the dependency's answer.
#[derive(Debug, thiserror::Error)]
pub enum GuardError<E> {
    #[error("{0}: circuit open")]
    Open(&'static str),
    #[error("{0}: too many calls in flight")]
    Full(&'static str),
    #[error("{0}: no answer within {1:?}")]
    TimedOut(&'static str, Duration),
    #[error(transparent)]
    Failed(E),
}

/// Timeout, bulkhead and breaker for one dependency, shared by every
/// adapter that talks to it.
#[derive(Clone)]
pub struct Guard {
    name: &'static str,
    timeout: Duration,
    bulkhead: Arc<Semaphore>,
    breaker: Arc<Breaker>,
    retries: Arc<TpsBudget>,
}

/// The wait before retrying a job after `failures` failed attempts (the
/// deletion saga's steps, data exports): up to `initial * 2^failures`,
/// capped at `max`, drawn from the upper half of that so that a retry
/// never comes much sooner than its back-off, while jobs that failed
/// together do not retry together.
pub fn job_retry_wait(initial: Duration, max: Duration, failures: u32) -> Duration {
    let ceiling = initial
        .saturating_mul(2u32.saturating_pow(failures.min(16)))
        .min(max);
    let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::thread_rng().gen_range(millis / 2..=millis.max(1)))
}

/// Retries of one idempotent call at most.
const MAX_RETRIES: u32 = 2;
/// Full jitter: a retry waits a uniform time up to this, doubled per retry.
const RETRY_BACKOFF: Duration = Duration::from_millis(20);

impl Guard {
    pub fn new(name: &'static str, settings: &GuardSettings) -> Self {
        // Exported from the start, so that alerts and rate() see the first one.
        for counter in [
            crate::metric::BULKHEAD_REJECTIONS_TOTAL,
            crate::metric::DEPENDENCY_TIMEOUTS_TOTAL,
            crate::metric::DEPENDENCY_RETRIES_TOTAL,
            crate::metric::RETRY_BUDGET_EXHAUSTED_TOTAL,
            crate::metric::BREAKER_REJECTIONS_TOTAL,
        ] {
            metrics::counter!(counter, "dependency" => name).increment(0);
        }
        for state in ["open", "half_open", "closed"] {
            metrics::counter!(crate::metric::BREAKER_TRANSITIONS_TOTAL, "dependency" => name, "to" => state)
                .increment(0);
        }
        Self {
            name,
            timeout: settings.timeout,
            bulkhead: Arc::new(Semaphore::new(settings.max_concurrent.max(1))),
            breaker: Arc::new(Breaker::new(name, settings.breaker.clone())),
            retries: Arc::new(TpsBudget::new(
                Duration::from_secs(10),
                settings.retry_floor_per_sec,
                settings.retry_share,
            )),
        }
    }

    /// Like `call`, for an idempotent call `make` can start again: a failure
    /// is retried (up to twice, after a jittered wait) while the retry budget
    /// allows; a timeout, an open breaker or a full bulkhead is not.
    pub async fn call_retrying<T, E, F, Fut>(&self, make: F) -> Result<T, GuardError<E>>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.retries.deposit();
        let mut retried = 0;
        loop {
            let error = match self.call(make()).await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            // A timeout is not retried: a dependency that is slow would get
            // more load and the caller a longer wait.
            let transient = matches!(error, GuardError::Failed(_));
            if !transient || retried == MAX_RETRIES {
                return Err(error);
            }
            if !self.retries.withdraw() {
                metrics::counter!(crate::metric::RETRY_BUDGET_EXHAUSTED_TOTAL, "dependency" => self.name)
                    .increment(1);
                return Err(error);
            }
            retried += 1;
            metrics::counter!(crate::metric::DEPENDENCY_RETRIES_TOTAL, "dependency" => self.name)
                .increment(1);
            let ceiling = RETRY_BACKOFF * 2u32.pow(retried - 1);
            let wait = rand::thread_rng().gen_range(Duration::ZERO..=ceiling);
            tokio::time::sleep(wait).await;
        }
    }

    pub fn state(&self) -> BreakerState {
        self.breaker.state()
    }

    /// Runs `call` unless the breaker is open or the bulkhead full, within
    /// the timeout. Its failures and timeouts count against the breaker;
    /// refusals by the guard itself do not.
    pub async fn call<T, E, F>(&self, call: F) -> Result<T, GuardError<E>>
    where
        F: Future<Output = Result<T, E>>,
    {
        let Ok(_slot) = self.bulkhead.try_acquire() else {
            metrics::counter!(crate::metric::BULKHEAD_REJECTIONS_TOTAL, "dependency" => self.name)
                .increment(1);
            return Err(GuardError::Full(self.name));
        };
        let Some(permit) = self.breaker.permit() else {
            return Err(GuardError::Open(self.name));
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => {
                permit.succeeded();
                Ok(value)
            }
            Ok(Err(error)) => {
                permit.failed();
                Err(GuardError::Failed(error))
            }
            Err(_) => {
                permit.failed();
                metrics::counter!(crate::metric::DEPENDENCY_TIMEOUTS_TOTAL, "dependency" => self.name)
                    .increment(1);
                Err(GuardError::TimedOut(self.name, self.timeout))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn job_retries_wait_longer_up_to_the_cap() {
        use super::job_retry_wait;
        let (initial, max) = (Duration::from_secs(1), Duration::from_secs(300));
        for failures in [0, 1, 5, 30] {
            let ceiling = (initial * 2u32.pow(failures.min(16))).min(max);
            let wait = job_retry_wait(initial, max, failures);
            assert!(
                wait <= ceiling && wait >= ceiling / 2,
                "{failures}: {wait:?}"
            );
        }
    }

    use std::time::Instant;

    use super::*;

    fn guard(max_concurrent: usize) -> Guard {
        Guard::new(
            "test",
            &GuardSettings {
                timeout: Duration::from_millis(30),
                max_concurrent,
                breaker: BreakerSettings {
                    window: 10,
                    min_calls: 3,
                    failure_rate: 0.5,
                    open_for: Duration::from_secs(60),
                    probes: 1,
                },
                ..GuardSettings::default()
            },
        )
    }

    #[tokio::test]
    async fn a_hanging_dependency_times_out_then_is_not_waited_for() {
        let guard = guard(8);
        for _ in 0..3 {
            let started = Instant::now();
            let hung = guard.call(std::future::pending::<Result<(), ()>>()).await;
            assert!(matches!(hung, Err(GuardError::TimedOut(..))));
            assert!(started.elapsed() < Duration::from_millis(200));
        }
        assert_eq!(guard.state(), BreakerState::Open);
        let started = Instant::now();
        let refused = guard.call(std::future::pending::<Result<(), ()>>()).await;
        assert!(matches!(refused, Err(GuardError::Open("test"))));
        assert!(
            started.elapsed() < Duration::from_millis(5),
            "no wait at all"
        );
    }

    #[tokio::test]
    async fn a_flaky_idempotent_call_is_retried() {
        let guard = guard(8);
        let attempts = std::sync::atomic::AtomicU32::new(0);
        let answered = guard
            .call_retrying(|| {
                let attempt = attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async move {
                    if attempt == 0 {
                        Err("blip")
                    } else {
                        Ok(attempt)
                    }
                }
            })
            .await;
        assert_eq!(answered.unwrap(), 1);
    }

    #[tokio::test]
    async fn retries_stay_within_their_budget() {
        let guard = Guard::new(
            "budget",
            &GuardSettings {
                timeout: Duration::from_millis(30),
                max_concurrent: 8,
                // Never opens: the budget alone bounds the retries here.
                breaker: BreakerSettings {
                    min_calls: usize::MAX,
                    ..BreakerSettings::default()
                },
                retry_share: 0.1,
                retry_floor_per_sec: 1,
            },
        );
        let attempts = std::sync::atomic::AtomicU32::new(0);
        for _ in 0..100 {
            let failed = guard
                .call_retrying(|| {
                    attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    async { Err::<(), _>("down") }
                })
                .await;
            assert!(failed.is_err());
        }
        let retries = attempts.load(std::sync::atomic::Ordering::SeqCst) - 100;
        // A tenth of the calls, plus the floor's reserve (1/s over 10 s).
        assert!(retries <= 10 + 10 + 1, "{retries} retries for 100 calls");
        assert!(retries >= 5, "some retries were allowed: {retries}");
    }

    #[tokio::test]
    async fn the_bulkhead_bounds_calls_in_flight() {
        let guard = guard(2);
        let slow = || {
            let guard = guard.clone();
            tokio::spawn(async move {
                guard
                    .call(async {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok::<_, ()>(())
                    })
                    .await
            })
        };
        let running = [slow(), slow()];
        tokio::time::sleep(Duration::from_millis(5)).await;
        let third = guard.call(async { Ok::<_, ()>(()) }).await;
        assert!(matches!(third, Err(GuardError::Full("test"))));
        for call in running {
            assert!(call.await.unwrap().is_ok());
        }
        // Refusals by the bulkhead are not the dependency's failures.
        assert_eq!(guard.state(), BreakerState::Closed);
        assert!(guard.call(async { Ok::<_, ()>(()) }).await.is_ok());
    }
}
