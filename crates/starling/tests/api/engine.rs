//! Below the HTTP surface: the application driven directly, with the fan-out
//! worker stepped by hand, to pin down orderings that HTTP tests cannot force.

use std::sync::Arc;
use std::time::Duration;

use starling::{Application, Config};
use starling_app::App;
use starling_app::accounts::RegisterInput;
use starling_app::ports::{EventLog, TimelineRead};
use starling_app::workers::{EventHandler, FanoutWorker};
use starling_domain::{EventEnvelope, PostId, UserId};
use starling_local::OutboxEventLog;

/// Delivers and handles what the fan-out worker has not yet seen; returns it.
async fn step_worker(app: &Arc<App>, events: &Arc<OutboxEventLog>) -> Vec<EventEnvelope> {
    let mut subscription = events.subscribe(FanoutWorker::CONSUMER).await.unwrap();
    let worker = FanoutWorker::new(app);
    let Ok(batch) =
        tokio::time::timeout(Duration::from_millis(300), subscription.next_batch(10_000)).await
    else {
        return Vec::new();
    };
    let batch = batch.unwrap();
    for envelope in &batch {
        worker.handle(envelope).await.unwrap();
    }
    if let Some(last) = batch.last() {
        subscription.ack_through(last).await.unwrap();
    }
    subscription.close().await.unwrap();
    batch
}

async fn register(app: &App, handle: &str) -> UserId {
    app.accounts()
        .register(RegisterInput {
            handle: handle.to_owned(),
            email: format!("{handle}@example.org"),
            password: "correct horse".to_owned(),
            display_name: None,
            device: Default::default(),
        })
        .await
        .unwrap()
        .user
        .id
}

async fn feed(app: &App, reader: UserId) -> Vec<PostId> {
    app.feed()
        .home_feed(reader, None, 100)
        .await
        .unwrap()
        .items
        .iter()
        .map(|view| view.post.id)
        .collect()
}

#[tokio::test]
async fn a_deleted_post_is_hidden_before_the_worker_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let application = Application::build(Config::for_test(dir.path()))
        .await
        .unwrap();
    let (app, events) = (application.app(), application.event_log());
    let author = register(&app, "author").await;
    let reader = register(&app, "reader").await;
    app.graph().follow(reader, author).await.unwrap();
    feed(&app, reader).await;
    let post = app
        .posts()
        .create(author, "soon gone", None, &[])
        .await
        .unwrap();
    step_worker(&app, &events).await;
    assert_eq!(feed(&app, reader).await, vec![post.post.id]);

    app.posts().delete(author, post.post.id).await.unwrap();
    // The worker has not run: the id is still in the reader's stored timeline.
    assert!(feed(&app, reader).await.is_empty());
    let removed = step_worker(&app, &events).await;
    assert_eq!(removed.len(), 1);
    assert!(feed(&app, reader).await.is_empty());
}

#[tokio::test]
async fn events_not_acknowledged_before_a_crash_are_delivered_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let first = Application::build(Config::for_test(dir.path()))
        .await
        .unwrap();
    let (app, events) = (first.app(), first.event_log());
    let author = register(&app, "author").await;
    let reader = register(&app, "reader").await;
    app.graph().follow(reader, author).await.unwrap();
    app.posts()
        .create(author, "handled", None, &[])
        .await
        .unwrap();
    assert_eq!(step_worker(&app, &events).await.len(), 4);
    let unhandled = app
        .posts()
        .create(author, "in flight at the crash", None, &[])
        .await
        .unwrap();
    drop((app, events, first));

    let second = Application::build(Config::for_test(dir.path()))
        .await
        .unwrap();
    let (app, events) = (second.app(), second.event_log());
    feed(&app, reader).await;
    let replayed = step_worker(&app, &events).await;
    assert_eq!(
        replayed.len(),
        1,
        "exactly the unacknowledged event comes back"
    );
    assert_eq!(
        replayed[0].event,
        starling_domain::Event::PostCreated {
            post_id: unhandled.post.id,
            author_id: author,
            reply_to: None,
            mentions: Vec::new(),
        }
    );
    assert_eq!(feed(&app, reader).await.len(), 2);
    assert!(step_worker(&app, &events).await.is_empty());
}

/// The post ids in `reader`'s stored timeline (not the merged feed).
async fn stored(app: &App, reader: UserId) -> Vec<PostId> {
    match app
        .ports()
        .timelines
        .read(reader, None, 1_000)
        .await
        .unwrap()
    {
        TimelineRead::Ready(slice) => slice.entries.iter().map(|entry| entry.post_id).collect(),
        TimelineRead::NotMaterialised => Vec::new(),
    }
}

fn with_threshold(dir: &std::path::Path, threshold: i64) -> Config {
    let mut config = Config::for_test(dir);
    config.timeline.fanout_threshold = threshold;
    config
}

#[tokio::test]
async fn the_worker_keeps_the_followers_it_remembers_up_to_date() {
    let dir = tempfile::tempdir().unwrap();
    let application = Application::build(Config::for_test(dir.path()))
        .await
        .unwrap();
    let (app, events) = (application.app(), application.event_log());
    let author = register(&app, "author").await;
    let early = register(&app, "early").await;
    let late = register(&app, "late").await;
    app.graph().follow(early, author).await.unwrap();
    feed(&app, early).await;
    feed(&app, late).await;
    // One worker for the whole test, so its remembered followers carry over.
    let mut subscription = events.subscribe(FanoutWorker::CONSUMER).await.unwrap();
    let worker = FanoutWorker::new(&app);
    let mut step = async || {
        while let Ok(Ok(batch)) =
            tokio::time::timeout(Duration::from_millis(200), subscription.next_batch(1_000)).await
        {
            for envelope in &batch {
                worker.handle(envelope).await.unwrap();
            }
        }
    };
    let first = app
        .posts()
        .create(author, "one", None, &[])
        .await
        .unwrap()
        .post
        .id;
    step().await;
    // The author's followers are now remembered; a follow and an unfollow change them.
    app.graph().follow(late, author).await.unwrap();
    app.graph().unfollow(early, author).await.unwrap();
    let second = app
        .posts()
        .create(author, "two", None, &[])
        .await
        .unwrap()
        .post
        .id;
    step().await;
    assert_eq!(
        stored(&app, late).await,
        vec![second, first],
        "late got the backfill and the new post"
    );
    assert!(
        stored(&app, early).await.is_empty(),
        "early unfollowed: nothing stays or arrives"
    );
}

#[tokio::test]
async fn posts_of_high_fan_out_accounts_are_merged_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let application = Application::build(with_threshold(dir.path(), 2))
        .await
        .unwrap();
    let (app, events) = (application.app(), application.event_log());
    let star = register(&app, "star").await;
    let fans = [register(&app, "fan1").await, register(&app, "fan2").await];
    for fan in fans {
        app.graph().follow(fan, star).await.unwrap();
        feed(&app, fan).await;
    }
    step_worker(&app, &events).await;
    let post = app
        .posts()
        .create(star, "to the many", None, &[])
        .await
        .unwrap();
    step_worker(&app, &events).await;
    for fan in fans {
        assert!(
            !stored(&app, fan).await.contains(&post.post.id),
            "fanned out despite the threshold"
        );
        assert_eq!(
            feed(&app, fan).await,
            vec![post.post.id],
            "but merged into the feed"
        );
    }
}

#[tokio::test]
async fn dropping_below_the_threshold_writes_recent_posts_into_timelines() {
    let dir = tempfile::tempdir().unwrap();
    let application = Application::build(with_threshold(dir.path(), 3))
        .await
        .unwrap();
    let (app, events) = (application.app(), application.event_log());
    let star = register(&app, "star").await;
    let fans = [
        register(&app, "fan0").await,
        register(&app, "fan1").await,
        register(&app, "fan2").await,
    ];
    for fan in fans {
        app.graph().follow(fan, star).await.unwrap();
        feed(&app, fan).await;
    }
    step_worker(&app, &events).await;
    let post = app
        .posts()
        .create(star, "while famous", None, &[])
        .await
        .unwrap();
    step_worker(&app, &events).await;
    assert!(!stored(&app, fans[0]).await.contains(&post.post.id));
    app.graph().unfollow(fans[2], star).await.unwrap();
    step_worker(&app, &events).await;
    for fan in &fans[..2] {
        assert_eq!(stored(&app, *fan).await, vec![post.post.id]);
        assert_eq!(feed(&app, *fan).await, vec![post.post.id]);
    }
    assert!(feed(&app, fans[2]).await.is_empty());
}
