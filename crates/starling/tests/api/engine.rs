//! Below the HTTP surface: the application driven directly, with the fan-out
//! worker stepped by hand, to pin down orderings that HTTP tests cannot force.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use starling::{Application, Config};
use starling_app::accounts::RegisterInput;
use starling_app::auth::{AccessTokens, PasswordHashing, PasswordParams};
use starling_app::ports::{EventLog, TimelineEntry, TimelineError, TimelineRead, TimelineStore};
use starling_app::workers::{EventHandler, FanoutWorker};
use starling_app::{App, Caches, Ports, Settings};
use starling_domain::{EventEnvelope, IdGenerator, PostId, UserId};
use starling_local::{MemoryCache, OutboxEventLog};
use starling_sql::{SqliteOptions, SqliteStore};

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

/// An application on a fresh SQLite store, with the given timeline store and settings.
async fn assemble(
    dir: &std::path::Path,
    timelines: Arc<dyn TimelineStore>,
    settings: Settings,
) -> App {
    let store = SqliteStore::open(&dir.join("starling.db"), &SqliteOptions::default())
        .await
        .unwrap();
    let ttl = Duration::from_secs(60);
    fn cache<K, V>(name: &'static str) -> Arc<MemoryCache<K, V>>
    where
        K: std::hash::Hash + Eq + Send + Sync + Clone + 'static,
        V: Clone + Send + Sync + 'static,
    {
        Arc::new(MemoryCache::new(name, 1_000, Duration::from_secs(60)))
    }
    App::new(
        Ports {
            store: Arc::new(store.clone()),
            timelines,
            events: Arc::new(OutboxEventLog::new(Arc::new(store), ttl)),
            live: Arc::new(starling_local::LocalLiveLog::new(ttl, 100)),
            blobs: Arc::new(starling_objects::ObjectBlobs::local(&dir.join("media")).unwrap()),
            caches: Caches {
                posts: cache("posts"),
                users: cache("users"),
                high_fanout_followees: cache("high_fanout_followees"),
                author_recent: cache("author_recent"),
                likes: cache("likes"),
                hidden: cache("hidden"),
            },
            login_failures: Arc::new(starling_local::LocalLoginFailures::default()),
        },
        IdGenerator::new(1),
        PasswordHashing::new(PasswordParams {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        })
        .unwrap(),
        AccessTokens::from_pem(
            &starling_app::auth::tokens::generate_signing_key_pem().unwrap(),
            60,
        )
        .unwrap(),
        settings,
    )
}

async fn register(app: &App, handle: &str) -> UserId {
    app.accounts()
        .register(RegisterInput {
            handle: handle.to_owned(),
            email: format!("{handle}@example.org"),
            password: "correct horse".to_owned(),
            display_name: None,
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

/// A timeline store whose every call fails, as when its engine is down.
struct BrokenTimelines;

fn down() -> TimelineError {
    TimelineError::Unavailable("injected failure".into())
}

#[async_trait]
impl TimelineStore for BrokenTimelines {
    async fn read(
        &self,
        _: UserId,
        _: Option<PostId>,
        _: usize,
    ) -> Result<TimelineRead, TimelineError> {
        Err(down())
    }
    async fn insert(&self, _: &[UserId], _: TimelineEntry) -> Result<(), TimelineError> {
        Err(down())
    }
    async fn insert_many(
        &self,
        _: UserId,
        _: &[TimelineEntry],
        _: Option<PostId>,
    ) -> Result<(), TimelineError> {
        Err(down())
    }
    async fn remove_post(&self, _: &[UserId], _: PostId) -> Result<(), TimelineError> {
        Err(down())
    }
    async fn remove_author(&self, _: UserId, _: UserId) -> Result<(), TimelineError> {
        Err(down())
    }
    async fn begin_rebuild(&self, _: UserId) -> Result<(), TimelineError> {
        Err(down())
    }
    async fn finish_rebuild(
        &self,
        _: UserId,
        _: &[TimelineEntry],
        _: Option<PostId>,
    ) -> Result<(), TimelineError> {
        Err(down())
    }
    async fn evict(&self, _: UserId) -> Result<(), TimelineError> {
        Err(down())
    }
    async fn materialised_count(&self) -> Result<u64, TimelineError> {
        Err(down())
    }
}

#[tokio::test]
async fn feeds_come_from_sql_when_the_timeline_store_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let app = assemble(dir.path(), Arc::new(BrokenTimelines), Settings::default()).await;
    let author = register(&app, "author").await;
    let reader = register(&app, "reader").await;
    // Accepted writes stay accepted: the timeline store is a projection.
    app.graph().follow(reader, author).await.unwrap();
    let first = app.posts().create(author, "one", None, &[]).await.unwrap();
    let second = app.posts().create(reader, "two", None, &[]).await.unwrap();
    assert_eq!(
        feed(&app, reader).await,
        vec![second.post.id, first.post.id]
    );
    let page = app.feed().home_feed(reader, None, 1).await.unwrap();
    assert_eq!(page.items.len(), 1);
    let rest = app
        .feed()
        .home_feed(reader, page.next.map(PostId), 1)
        .await
        .unwrap();
    assert_eq!(rest.items[0].post.id, first.post.id);
    assert!(rest.next.is_none());
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

#[tokio::test]
async fn liked_by_me_is_right_on_both_sides_of_the_remembered_window() {
    let dir = tempfile::tempdir().unwrap();
    let app = assemble(
        dir.path(),
        Arc::new(starling_local::LocalTimelines::new(800, 100)),
        Settings {
            liked_window: 3,
            ..Settings::default()
        },
    )
    .await;
    let author = register(&app, "author").await;
    let reader = register(&app, "reader").await;
    let mut posts = Vec::new();
    for index in 0..6 {
        posts.push(
            app.posts()
                .create(author, &format!("post {index}"), None, &[])
                .await
                .unwrap()
                .post
                .id,
        );
    }
    // Liked: the oldest (below the remembered window) and the three newest.
    for post in [posts[0], posts[3], posts[4], posts[5]] {
        app.posts().like(reader, post).await.unwrap();
    }
    let liked = |page: starling_app::Page<starling_app::PostView>| -> Vec<bool> {
        page.items
            .iter()
            .rev()
            .map(|view| view.liked_by_me)
            .collect()
    };
    let page = app
        .posts()
        .user_posts(Some(reader), author, None, 10)
        .await
        .unwrap();
    assert_eq!(liked(page), vec![true, false, false, true, true, true]);
    // Read-your-writes through the cache, inside and below the window.
    app.posts().unlike(reader, posts[5]).await.unwrap();
    app.posts().unlike(reader, posts[0]).await.unwrap();
    app.posts().like(reader, posts[1]).await.unwrap();
    let page = app
        .posts()
        .user_posts(Some(reader), author, None, 10)
        .await
        .unwrap();
    assert_eq!(liked(page), vec![false, true, false, true, true, false]);
}

#[tokio::test]
async fn a_committed_post_answers_success_whatever_fails_after_the_commit() {
    use sqlx::Connection;

    let dir = tempfile::tempdir().unwrap();
    // The timeline store is down, and the moment a post is committed its
    // author's row turns unreadable (a trigger writes a display name SQL
    // cannot decode: not UTF-8): every read of it after the commit fails.
    let app = assemble(dir.path(), Arc::new(BrokenTimelines), Settings::default()).await;
    let author = register(&app, "author").await;
    let mut sabotage = sqlx::SqliteConnection::connect(&format!(
        "sqlite://{}",
        dir.path().join("starling.db").display()
    ))
    .await
    .unwrap();
    sqlx::query(
        "CREATE TRIGGER unreadable_after_post AFTER INSERT ON posts BEGIN \
         UPDATE users SET display_name = CAST(X'FF00' AS TEXT) WHERE id = NEW.author_id; END",
    )
    .execute(&mut sabotage)
    .await
    .unwrap();

    let posted = app.posts().create(author, "committed", None, &[]).await;
    let posted = posted.expect("the post was committed: its answer is a success");
    assert_eq!(posted.post.text, "committed");
    assert_eq!(posted.author.handle, "author");
    // Once, and only once, in the store.
    let stored = app
        .ports()
        .store
        .posts_by_author(author, None, 10)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    // Reads of the author do fail now: the injection took.
    assert!(app.ports().store.user_summaries(&[author]).await.is_err());
}
