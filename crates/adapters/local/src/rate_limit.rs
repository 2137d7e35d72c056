//! In-process rate limiting (governor's GCRA, one keyed limiter per route
//! class): the limiter of embedded mode, and the fallback of the shared one
//! when Redis cannot answer.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use starling_app::ports::{
    Quota, RateDecision, RateLimitError, RateLimiter, RateLimits, RouteClass,
};

type Keyed = governor::RateLimiter<
    String,
    DefaultKeyedStateStore<String>,
    DefaultClock,
    StateInformationMiddleware,
>;

struct ClassLimiter {
    quota: Quota,
    limiter: Keyed,
}

#[derive(Clone)]
pub struct LocalRateLimiter {
    classes: Arc<[(RouteClass, ClassLimiter); 4]>,
    clock: DefaultClock,
}

impl LocalRateLimiter {
    pub fn new(limits: &RateLimits) -> Self {
        let make = |class: RouteClass| {
            let quota = limits.quota(class);
            let burst = NonZeroU32::new(quota.limit).unwrap_or(NonZeroU32::MIN);
            let per = governor::Quota::with_period(quota.interval())
                .unwrap_or_else(|| governor::Quota::per_second(burst))
                .allow_burst(burst);
            (
                class,
                ClassLimiter {
                    quota,
                    limiter: governor::RateLimiter::keyed(per)
                        .with_middleware::<StateInformationMiddleware>(),
                },
            )
        };
        Self {
            classes: Arc::new([
                make(RouteClass::Read),
                make(RouteClass::Write),
                make(RouteClass::Auth),
                make(RouteClass::ApiKey),
            ]),
            clock: DefaultClock::default(),
        }
    }

    fn class(&self, class: RouteClass) -> &ClassLimiter {
        self.classes
            .iter()
            .find(|(candidate, _)| *candidate == class)
            .map(|(_, limiter)| limiter)
            .unwrap_or(&self.classes[0].1)
    }

    /// The decision for one request, without I/O.
    pub fn decide(&self, class: RouteClass, client: &str) -> RateDecision {
        let ClassLimiter { quota, limiter } = self.class(class);
        let interval = quota.interval();
        let limit = quota.limit.max(1);
        match limiter.check_key(&client.to_owned()) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                RateDecision {
                    allowed: true,
                    limit,
                    remaining,
                    reset: interval * (limit - remaining.min(limit)),
                    retry_after: Duration::ZERO,
                }
            }
            Err(not_until) => {
                let retry_after = not_until.wait_time_from(self.clock.now());
                RateDecision {
                    allowed: false,
                    limit,
                    remaining: 0,
                    // Full again once the wait is over and the rest of the
                    // burst has dripped back.
                    reset: retry_after + interval * (limit - 1),
                    retry_after,
                }
            }
        }
    }

    /// Forgets clients whose buckets are full again, so that the key space
    /// does not grow with every address ever seen. Call periodically.
    pub fn forget_idle(&self) {
        for (_, class) in self.classes.iter() {
            class.limiter.retain_recent();
            class.limiter.shrink_to_fit();
        }
    }

    /// Clients with state kept, over every class.
    pub fn tracked_clients(&self) -> usize {
        self.classes
            .iter()
            .map(|(_, class)| class.limiter.len())
            .sum()
    }
}

#[async_trait]
impl RateLimiter for LocalRateLimiter {
    async fn check(&self, class: RouteClass, client: &str) -> Result<RateDecision, RateLimitError> {
        Ok(self.decide(class, client))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    async fn make(limits: RateLimits) -> Option<(Arc<dyn RateLimiter>, ())> {
        Some((Arc::new(LocalRateLimiter::new(&limits)), ()))
    }

    starling_app::rate_limiter_contract!(make);

    #[test]
    fn idle_clients_are_forgotten() {
        let quota = Quota {
            limit: 2,
            window: Duration::from_millis(20),
        };
        let limiter = LocalRateLimiter::new(&RateLimits {
            read: quota,
            write: quota,
            auth: quota,
            api_key: quota,
        });
        for client in 0..50 {
            limiter.decide(RouteClass::Read, &format!("ip:{client}"));
        }
        assert_eq!(limiter.tracked_clients(), 50);
        std::thread::sleep(Duration::from_millis(50));
        limiter.forget_idle();
        assert_eq!(limiter.tracked_clients(), 0);
    }
}
