//! The live-log contract. Logs are made with a retention and a per-topic
//! capacity; each case gets a fresh log.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use starling_domain::{LiveEvent, PostId, Topic, UserId};

use crate::ports::{LiveLog, LiveMessage, LiveSink};

#[macro_export]
macro_rules! live_log_contract {
    ($make:expr) => {
        $crate::live_log_contract!(@cases $make;
            updates_reach_the_sink_in_sequence_order,
            a_replay_returns_the_topics_updates_after_a_position,
            an_update_published_again_is_dropped,
            positions_the_log_never_gave_replay_incomplete,
            expired_updates_make_a_replay_incomplete,
            a_replay_beyond_its_limit_is_incomplete,
        );
    };
    (@cases $make:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                $crate::ports::contract::live::$case(&$make).await;
            }
        )+
    };
}

/// A log from the adapter's constructor, kept alive with its guard.
pub type Made = Option<(Arc<dyn LiveLog>, Box<dyn std::any::Any + Send>)>;

#[derive(Default)]
struct Collect(Mutex<Vec<LiveMessage>>);

impl LiveSink for Collect {
    fn deliver(&self, message: LiveMessage) {
        self.0.lock().push(message);
    }
}

impl Collect {
    async fn wait_for(&self, count: usize) -> Vec<LiveMessage> {
        for _ in 0..200 {
            if self.0.lock().len() >= count {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.0.lock().clone()
    }
}

fn post(id: i64, author: i64) -> LiveEvent {
    LiveEvent::Post {
        post_id: PostId(id),
        author_id: UserId(author),
    }
}

fn inbox(id: i64) -> Topic {
    Topic::Inbox(UserId(id))
}

async fn sequence_of(log: &dyn LiveLog, updates: &[(Topic, LiveEvent)]) -> u64 {
    log.publish(updates).await.unwrap();
    log.head().await.unwrap()
}

pub async fn updates_reach_the_sink_in_sequence_order<F, Fut>(make: &F)
where
    F: Fn(Duration, usize) -> Fut,
    Fut: std::future::Future<Output = Made>,
{
    let Some((log, _guard)) = make(Duration::from_secs(60), 100).await else {
        return;
    };
    let sink = Arc::new(Collect::default());
    log.attach(sink.clone()).await.unwrap();
    log.publish(&[(inbox(1), post(10, 5)), (inbox(2), post(10, 5))])
        .await
        .unwrap();
    log.publish(&[
        (Topic::Author(UserId(5)), post(11, 5)),
        (inbox(1), post(12, 6)),
    ])
    .await
    .unwrap();
    let seen = sink.wait_for(4).await;
    assert_eq!(seen.len(), 4, "every update is delivered once");
    let topics: Vec<Topic> = seen.iter().map(|m| m.topic).collect();
    assert_eq!(
        topics,
        [inbox(1), inbox(2), Topic::Author(UserId(5)), inbox(1)]
    );
    assert!(seen.windows(2).all(|w| w[0].sequence < w[1].sequence));
    assert_eq!(*seen[3].event, post(12, 6));
    assert_eq!(log.head().await.unwrap(), seen[3].sequence);
    // The second update of inbox 1 names the first as its predecessor.
    assert_eq!(seen[3].previous_in_topic, Some(seen[0].sequence));
    assert!(
        seen[1]
            .previous_in_topic
            .is_none_or(|p| p < seen[0].sequence)
    );
}

pub async fn a_replay_returns_the_topics_updates_after_a_position<F, Fut>(make: &F)
where
    F: Fn(Duration, usize) -> Fut,
    Fut: std::future::Future<Output = Made>,
{
    let Some((log, _guard)) = make(Duration::from_secs(60), 100).await else {
        return;
    };
    let log = log.as_ref();
    let a1 = sequence_of(log, &[(inbox(1), post(1, 9))]).await;
    let b1 = sequence_of(log, &[(inbox(2), post(2, 9))]).await;
    let a2 = sequence_of(log, &[(inbox(1), post(3, 9))]).await;
    let c1 = sequence_of(log, &[(inbox(3), post(4, 9))]).await;
    let a3 = sequence_of(log, &[(inbox(1), post(5, 9))]).await;

    let replay = log
        .replay(&[inbox(1), inbox(2)], a1, a2, 100)
        .await
        .unwrap();
    assert!(replay.complete);
    let found: Vec<u64> = replay.messages.iter().map(|m| m.sequence).collect();
    assert_eq!(found, [b1, a2], "after a1, through a2, without inbox 3");
    assert_eq!(*replay.messages[1].event, post(3, 9));
    assert_eq!(replay.messages[1].topic, inbox(1));

    let head = log.head().await.unwrap();
    assert_eq!(head, a3);
    let replay = log
        .replay(&[inbox(1), inbox(3)], b1, head, 100)
        .await
        .unwrap();
    assert!(replay.complete);
    let found: Vec<u64> = replay.messages.iter().map(|m| m.sequence).collect();
    assert_eq!(found, [a2, c1, a3]);
    let nothing = log.replay(&[inbox(1)], head, head, 100).await.unwrap();
    assert!(nothing.complete && nothing.messages.is_empty());
}

pub async fn an_update_published_again_is_dropped<F, Fut>(make: &F)
where
    F: Fn(Duration, usize) -> Fut,
    Fut: std::future::Future<Output = Made>,
{
    let Some((log, _guard)) = make(Duration::from_secs(60), 100).await else {
        return;
    };
    let first = sequence_of(log.as_ref(), &[(inbox(1), post(1, 9))]).await;
    // A worker redoing the event: the same update, and one new.
    log.publish(&[(inbox(1), post(1, 9)), (inbox(2), post(1, 9))])
        .await
        .unwrap();
    let head = log.head().await.unwrap();
    let replay = log
        .replay(&[inbox(1), inbox(2)], first - 1, head, 100)
        .await
        .unwrap();
    let topics: Vec<Topic> = replay.messages.iter().map(|m| m.topic).collect();
    assert_eq!(topics, [inbox(1), inbox(2)], "inbox 1 holds the post once");
}

pub async fn positions_the_log_never_gave_replay_incomplete<F, Fut>(make: &F)
where
    F: Fn(Duration, usize) -> Fut,
    Fut: std::future::Future<Output = Made>,
{
    let Some((log, _guard)) = make(Duration::from_secs(60), 100).await else {
        return;
    };
    let head = sequence_of(log.as_ref(), &[(inbox(1), post(1, 9))]).await;
    let future = log
        .replay(&[inbox(1)], head + 1000, head, 100)
        .await
        .unwrap();
    assert!(!future.complete, "a position beyond the log's head");
}

pub async fn expired_updates_make_a_replay_incomplete<F, Fut>(make: &F)
where
    F: Fn(Duration, usize) -> Fut,
    Fut: std::future::Future<Output = Made>,
{
    let Some((log, _guard)) = make(Duration::from_millis(300), 100).await else {
        return;
    };
    let first = sequence_of(log.as_ref(), &[(inbox(1), post(1, 9))]).await;
    let second = sequence_of(log.as_ref(), &[(inbox(1), post(2, 9))]).await;
    let fresh = log.replay(&[inbox(1)], first, second, 100).await.unwrap();
    assert!(fresh.complete);
    assert_eq!(fresh.messages.len(), 1);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let later = sequence_of(log.as_ref(), &[(inbox(2), post(3, 9))]).await;
    let stale = log.replay(&[inbox(1)], first, later, 100).await.unwrap();
    assert!(!stale.complete, "the update after the position expired");
}

pub async fn a_replay_beyond_its_limit_is_incomplete<F, Fut>(make: &F)
where
    F: Fn(Duration, usize) -> Fut,
    Fut: std::future::Future<Output = Made>,
{
    let Some((log, _guard)) = make(Duration::from_secs(60), 100).await else {
        return;
    };
    let start = sequence_of(log.as_ref(), &[(inbox(2), post(1, 9))]).await;
    let updates: Vec<_> = (10..20).map(|id| (inbox(1), post(id, 9))).collect();
    let head = sequence_of(log.as_ref(), &updates).await;
    let replay = log.replay(&[inbox(1)], start, head, 4).await.unwrap();
    assert!(!replay.complete);
    assert_eq!(replay.messages.len(), 4, "the oldest four");
    assert_eq!(*replay.messages[0].event, post(10, 9));
    let all = log.replay(&[inbox(1)], start, head, 10).await.unwrap();
    assert!(all.complete);
    assert_eq!(all.messages.len(), 10);
}
