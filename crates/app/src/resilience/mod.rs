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
use tokio::sync::Semaphore;

#[derive(Debug, Clone)]
pub struct GuardSettings {
    /// A call taking longer fails (and counts against the breaker).
    pub timeout: Duration,
    /// Calls allowed at once; one more fails at once.
    pub max_concurrent: usize,
    pub breaker: BreakerSettings,
}

impl Default for GuardSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(2),
            max_concurrent: 256,
            breaker: BreakerSettings::default(),
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
}

impl Guard {
    pub fn new(name: &'static str, settings: &GuardSettings) -> Self {
        Self {
            name,
            timeout: settings.timeout,
            bulkhead: Arc::new(Semaphore::new(settings.max_concurrent.max(1))),
            breaker: Arc::new(Breaker::new(name, settings.breaker.clone())),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
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
            metrics::counter!("starling_bulkhead_rejections_total", "dependency" => self.name)
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
                metrics::counter!("starling_dependency_timeouts_total", "dependency" => self.name)
                    .increment(1);
                Err(GuardError::TimedOut(self.name, self.timeout))
            }
        }
    }
}

#[cfg(test)]
mod tests {
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
