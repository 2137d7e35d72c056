//! A circuit breaker over the failure rate of recent calls.
//!
//! Closed: calls go through; over the last `window` calls, once at least
//! `min_calls` were made, a failure share of `failure_rate` or more opens
//! it. Open: calls fail at once for `open_for`. Half-open: up to `probes`
//! calls go through; all succeeding close it, any failing opens it again.
//!
//! Written here rather than taken from recloser (which Starling used first):
//! recloser reports its state only as tracing events, and the state and
//! every transition must be in metrics, labelled by dependency.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

#[derive(Debug, Clone)]
pub struct BreakerSettings {
    pub window: usize,
    pub min_calls: usize,
    pub failure_rate: f64,
    pub open_for: Duration,
    pub probes: u32,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            window: 20,
            min_calls: 5,
            failure_rate: 0.5,
            open_for: Duration::from_secs(2),
            probes: 3,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    /// The gauge's value: 0 closed, 1 half-open, 2 open.
    fn level(self) -> f64 {
        match self {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen => 1.0,
            BreakerState::Open => 2.0,
        }
    }
}

enum Phase {
    Closed { outcomes: VecDeque<bool> },
    Open { until: Instant },
    HalfOpen { started: u32, succeeded: u32 },
}

pub struct Breaker {
    name: &'static str,
    settings: BreakerSettings,
    phase: Mutex<Phase>,
}

/// A call let through; say how it went (dropping it unsaid counts as a
/// failure: a call cancelled mid-way proves nothing good).
pub(crate) struct Permit<'a> {
    breaker: &'a Breaker,
    said: bool,
}

impl Permit<'_> {
    pub(crate) fn succeeded(mut self) {
        self.said = true;
        self.breaker.record(true);
    }

    pub(crate) fn failed(mut self) {
        self.said = true;
        self.breaker.record(false);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.said {
            self.breaker.record(false);
        }
    }
}

impl Breaker {
    pub fn new(name: &'static str, settings: BreakerSettings) -> Self {
        metrics::gauge!(crate::metric::BREAKER_STATE, "dependency" => name).set(0.0);
        Self {
            name,
            settings,
            phase: Mutex::new(Phase::Closed {
                outcomes: VecDeque::new(),
            }),
        }
    }

    pub fn state(&self) -> BreakerState {
        match &*self.phase.lock() {
            Phase::Closed { .. } => BreakerState::Closed,
            Phase::Open { until } if Instant::now() < *until => BreakerState::Open,
            Phase::Open { .. } | Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Lets a call through, or `None` while open (or while half-open with
    /// every probe already out).
    pub(crate) fn permit(&self) -> Option<Permit<'_>> {
        let mut phase = self.phase.lock();
        let allowed = match &mut *phase {
            Phase::Closed { .. } => true,
            Phase::Open { until } => {
                if Instant::now() >= *until {
                    *phase = Phase::HalfOpen {
                        started: 1,
                        succeeded: 0,
                    };
                    self.entered(BreakerState::HalfOpen);
                    true
                } else {
                    false
                }
            }
            Phase::HalfOpen { started, .. } => {
                if *started < self.settings.probes {
                    *started += 1;
                    true
                } else {
                    false
                }
            }
        };
        if allowed {
            Some(Permit {
                breaker: self,
                said: false,
            })
        } else {
            metrics::counter!(crate::metric::BREAKER_REJECTIONS_TOTAL, "dependency" => self.name)
                .increment(1);
            None
        }
    }

    fn record(&self, success: bool) {
        let mut phase = self.phase.lock();
        match &mut *phase {
            Phase::Closed { outcomes } => {
                outcomes.push_back(success);
                if outcomes.len() > self.settings.window {
                    outcomes.pop_front();
                }
                let failures = outcomes.iter().filter(|ok| !**ok).count();
                if outcomes.len() >= self.settings.min_calls
                    && failures as f64 >= self.settings.failure_rate * outcomes.len() as f64
                {
                    *phase = self.open();
                }
            }
            Phase::HalfOpen { succeeded, .. } => {
                if !success {
                    *phase = self.open();
                } else {
                    *succeeded += 1;
                    if *succeeded >= self.settings.probes {
                        *phase = Phase::Closed {
                            outcomes: VecDeque::new(),
                        };
                        self.entered(BreakerState::Closed);
                    }
                }
            }
            // A call let through before the breaker opened: its outcome is
            // old news.
            Phase::Open { .. } => {}
        }
    }

    fn open(&self) -> Phase {
        self.entered(BreakerState::Open);
        tracing::warn!(dependency = self.name, "circuit breaker opened");
        Phase::Open {
            until: Instant::now() + self.settings.open_for,
        }
    }

    fn entered(&self, state: BreakerState) {
        metrics::gauge!(crate::metric::BREAKER_STATE, "dependency" => self.name).set(state.level());
        metrics::counter!(
            crate::metric::BREAKER_TRANSITIONS_TOTAL,
            "dependency" => self.name,
            "to" => state.as_str()
        )
        .increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick() -> Breaker {
        Breaker::new(
            "test",
            BreakerSettings {
                window: 10,
                min_calls: 4,
                failure_rate: 0.5,
                open_for: Duration::from_millis(50),
                probes: 2,
            },
        )
    }

    fn call(breaker: &Breaker, success: bool) -> bool {
        match breaker.permit() {
            Some(permit) if success => {
                permit.succeeded();
                true
            }
            Some(permit) => {
                permit.failed();
                true
            }
            None => false,
        }
    }

    #[test]
    fn enough_failures_open_it_and_calls_then_fail_at_once() {
        let breaker = quick();
        // Below the minimum number of calls nothing opens it.
        for _ in 0..3 {
            assert!(call(&breaker, false));
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert!(call(&breaker, false));
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(!call(&breaker, true), "refused while open");
    }

    #[test]
    fn a_failure_rate_under_the_threshold_keeps_it_closed() {
        let breaker = quick();
        for index in 0..40 {
            assert!(call(&breaker, index % 4 != 3));
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn probes_close_it_or_open_it_again() {
        let breaker = quick();
        for _ in 0..4 {
            call(&breaker, false);
        }
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        // A failed probe opens it again at once.
        assert!(call(&breaker, false));
        assert_eq!(breaker.state(), BreakerState::Open);
        std::thread::sleep(Duration::from_millis(60));
        // Two probes out: a third call waits its turn (refused).
        let first = breaker.permit().unwrap();
        let second = breaker.permit().unwrap();
        assert!(breaker.permit().is_none());
        first.succeeded();
        second.succeeded();
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert!(call(&breaker, true));
    }

    #[test]
    fn a_call_dropped_unanswered_counts_as_failed() {
        let breaker = quick();
        for _ in 0..4 {
            drop(breaker.permit());
        }
        assert_eq!(breaker.state(), BreakerState::Open);
    }
}
