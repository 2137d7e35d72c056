//! The login-failures contract: counts add up, concurrently too, per key,
//! until cleared or forgotten.

use std::sync::Arc;
use std::time::Duration;

use crate::ports::{Failures, LoginFailures};

#[macro_export]
macro_rules! login_failures_contract {
    ($make:expr) => {
        $crate::login_failures_contract!(@cases $make;
            failures_add_up_per_key_until_cleared,
            concurrent_failures_all_count,
            failures_are_forgotten_after_their_time,
        );
    };
    (@cases $make:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let Some((failures, _guard)) = ($make)().await else {
                    return;
                };
                $crate::ports::contract::login_failures::$case(failures).await;
            }
        )+
    };
}

/// A key no other test run uses (shared engines outlive tests).
fn key(name: &str) -> String {
    format!("{name}:{}", rand::random::<u64>())
}

const DAY: Duration = Duration::from_secs(24 * 3600);

pub async fn failures_add_up_per_key_until_cleared(failures: Arc<dyn LoginFailures>) {
    let (ada, bob) = (key("u"), key("u"));
    assert_eq!(failures.get(&ada).await.unwrap(), Failures::default());
    for (count, at) in [(1, 1_000), (2, 2_000), (3, 2_500)] {
        let after = failures.add(&ada, at, DAY).await.unwrap();
        assert_eq!(
            after,
            Failures {
                count,
                last_at_ms: at
            }
        );
    }
    assert_eq!(
        failures.get(&ada).await.unwrap(),
        Failures {
            count: 3,
            last_at_ms: 2_500
        }
    );
    assert_eq!(failures.get(&bob).await.unwrap().count, 0);
    failures.add(&bob, 7, DAY).await.unwrap();
    failures.clear(&ada).await.unwrap();
    assert_eq!(failures.get(&ada).await.unwrap(), Failures::default());
    assert_eq!(failures.get(&bob).await.unwrap().count, 1);
    // Clearing what is not there is fine.
    failures.clear(&key("nobody")).await.unwrap();
}

pub async fn concurrent_failures_all_count(failures: Arc<dyn LoginFailures>) {
    let who = key("l");
    let adds = (0..40).map(|at| {
        let (failures, who) = (failures.clone(), who.clone());
        tokio::spawn(async move { failures.add(&who, at, DAY).await.unwrap() })
    });
    let mut counts: Vec<u32> = Vec::new();
    for add in adds {
        counts.push(add.await.unwrap().count);
    }
    counts.sort_unstable();
    assert_eq!(
        counts,
        (1..=40).collect::<Vec<_>>(),
        "each add saw its own count"
    );
    assert_eq!(failures.get(&who).await.unwrap().count, 40);
}

pub async fn failures_are_forgotten_after_their_time(failures: Arc<dyn LoginFailures>) {
    let who = key("u");
    failures
        .add(&who, 1, Duration::from_millis(150))
        .await
        .unwrap();
    assert_eq!(failures.get(&who).await.unwrap().count, 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(failures.get(&who).await.unwrap(), Failures::default());
}
