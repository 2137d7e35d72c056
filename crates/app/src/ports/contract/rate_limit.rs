//! The rate-limiter contract: GCRA with a burst of `limit` per `window`.
//! Limiters are made with `LIMITS` (reads 5 per 500 ms, writes 3 per
//! 300 ms, auth 2 per 10 s).

use std::sync::Arc;
use std::time::Duration;

use crate::ports::{Quota, RateLimiter, RateLimits, RouteClass};

pub const LIMITS: RateLimits = RateLimits {
    read: Quota {
        limit: 5,
        window: Duration::from_millis(500),
    },
    write: Quota {
        limit: 3,
        window: Duration::from_millis(300),
    },
    auth: Quota {
        limit: 2,
        window: Duration::from_secs(10),
    },
    api_key: Quota {
        limit: 4,
        window: Duration::from_millis(400),
    },
};

#[macro_export]
macro_rules! rate_limiter_contract {
    ($make:expr) => {
        $crate::rate_limiter_contract!(@cases $make;
            a_burst_is_allowed_then_refused_with_the_wait,
            clients_and_classes_have_quotas_of_their_own,
            the_bucket_drips_back_one_interval_at_a_time,
            concurrent_requests_never_exceed_the_burst,
        );
    };
    (@cases $make:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let Some((limiter, _guard)) =
                    ($make)($crate::ports::contract::rate_limit::LIMITS).await
                else {
                    return;
                };
                $crate::ports::contract::rate_limit::$case(limiter).await;
            }
        )+
    };
}

/// A client name no other test run uses (shared engines outlive tests).
fn client(name: &str) -> String {
    format!("{name}:{}", rand::random::<u64>())
}

pub async fn a_burst_is_allowed_then_refused_with_the_wait(limiter: Arc<dyn RateLimiter>) {
    let who = client("ip");
    for expected_remaining in (0..2).rev() {
        let decision = limiter.check(RouteClass::Auth, &who).await.unwrap();
        assert!(decision.allowed);
        assert_eq!(decision.limit, 2);
        assert_eq!(decision.remaining, expected_remaining);
        // Full again after one interval (5 s) per request spent.
        let spent = 2 - expected_remaining;
        let full_after = Duration::from_secs(5) * spent;
        assert!(
            decision.reset <= full_after
                && decision.reset + Duration::from_millis(500) >= full_after,
            "reset {:?} for {spent} spent",
            decision.reset
        );
    }
    let refused = limiter.check(RouteClass::Auth, &who).await.unwrap();
    assert!(!refused.allowed);
    assert_eq!(refused.remaining, 0);
    assert!(
        refused.retry_after > Duration::from_secs(4)
            && refused.retry_after <= Duration::from_secs(5),
        "retry after {:?}",
        refused.retry_after
    );
    assert!(refused.reset >= refused.retry_after);
    // Refusals do not dig the hole deeper.
    let again = limiter.check(RouteClass::Auth, &who).await.unwrap();
    assert!(!again.allowed);
    assert!(again.retry_after <= refused.retry_after);
}

pub async fn clients_and_classes_have_quotas_of_their_own(limiter: Arc<dyn RateLimiter>) {
    let first = client("u");
    let second = client("u");
    for _ in 0..2 {
        assert!(
            limiter
                .check(RouteClass::Auth, &first)
                .await
                .unwrap()
                .allowed
        );
    }
    assert!(
        !limiter
            .check(RouteClass::Auth, &first)
            .await
            .unwrap()
            .allowed
    );
    assert!(
        limiter
            .check(RouteClass::Auth, &second)
            .await
            .unwrap()
            .allowed
    );
    let read = limiter.check(RouteClass::Read, &first).await.unwrap();
    assert!(read.allowed);
    assert_eq!((read.limit, read.remaining), (5, 4));
    let write = limiter.check(RouteClass::Write, &first).await.unwrap();
    assert_eq!((write.limit, write.remaining), (3, 2));
}

pub async fn the_bucket_drips_back_one_interval_at_a_time(limiter: Arc<dyn RateLimiter>) {
    // Writes: 3 per 300 ms, one back every 100 ms.
    let who = client("u");
    for _ in 0..3 {
        assert!(
            limiter
                .check(RouteClass::Write, &who)
                .await
                .unwrap()
                .allowed
        );
    }
    let refused = limiter.check(RouteClass::Write, &who).await.unwrap();
    assert!(!refused.allowed);
    assert!(refused.retry_after <= Duration::from_millis(100));
    tokio::time::sleep(refused.retry_after + Duration::from_millis(15)).await;
    let back = limiter.check(RouteClass::Write, &who).await.unwrap();
    assert!(back.allowed, "one request came back after the interval");
    assert_eq!(back.remaining, 0);
    assert!(
        !limiter
            .check(RouteClass::Write, &who)
            .await
            .unwrap()
            .allowed
    );
    // Left alone for the window, the whole burst is back.
    tokio::time::sleep(Duration::from_millis(330)).await;
    let whole = limiter.check(RouteClass::Write, &who).await.unwrap();
    assert!(whole.allowed);
    assert_eq!(whole.remaining, 2);
}

pub async fn concurrent_requests_never_exceed_the_burst(limiter: Arc<dyn RateLimiter>) {
    let who = client("ip");
    let checks = (0..40)
        .map(|_| {
            let limiter = limiter.clone();
            let who = who.clone();
            tokio::spawn(async move { limiter.check(RouteClass::Auth, &who).await.unwrap() })
        })
        .collect::<Vec<_>>();
    let mut allowed = 0;
    for check in checks {
        if check.await.unwrap().allowed {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 2);
}
