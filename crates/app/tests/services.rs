//! The services' logic, fast, on the in-process adapters (SQLite in a
//! temporary folder, the process's timelines, caches and event log), with
//! no HTTP: feed paging across the timeline floor, the hybrid merge of
//! high-fan-out accounts, fan-out to followers' timelines, blocks and mutes
//! in what a reader sees, mention resolution, the likes window, and what
//! holds when the timeline store is down (reads from SQL; a committed post
//! answers success).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use starling_app::accounts::RegisterInput;
use starling_app::auth::{AccessTokens, PasswordHashing, PasswordParams};
use starling_app::ports::{EventLog, TimelineEntry, TimelineError, TimelineRead, TimelineStore};
use starling_app::workers::{EventHandler, FanoutWorker};
use starling_app::{App, Caches, Ports, Settings};
use starling_domain::{IdGenerator, PostId, UserId};
use starling_local::{LocalTimelines, MemoryCache, OutboxEventLog};
use starling_sql::{SqliteOptions, SqliteStore};

struct World {
    app: App,
    events: Arc<OutboxEventLog>,
    timelines: Arc<dyn TimelineStore>,
    dir: tempfile::TempDir,
}

fn cache<K, V>(name: &'static str) -> Arc<MemoryCache<K, V>>
where
    K: std::hash::Hash + Eq + Send + Sync + Clone + 'static,
    V: Clone + Send + Sync + 'static,
{
    Arc::new(MemoryCache::new(name, 10_000, Duration::from_secs(60)))
}

async fn world(settings: Settings) -> World {
    let timelines = Arc::new(LocalTimelines::new(settings.timeline_cap, 10_000));
    world_on(timelines, settings).await
}

/// A world on the given timeline store (one that fails, for instance).
async fn world_on(timelines: Arc<dyn TimelineStore>, settings: Settings) -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("starling.db"), &SqliteOptions::default())
        .await
        .unwrap();
    let events = Arc::new(OutboxEventLog::new(
        Arc::new(store.clone()),
        Duration::from_secs(60),
    ));
    let app = App::new(
        Ports {
            store: Arc::new(store),
            timelines: timelines.clone(),
            events: events.clone(),
            live: Arc::new(starling_local::LocalLiveLog::new(
                Duration::from_secs(60),
                100,
            )),
            blobs: Arc::new(
                starling_objects::ObjectBlobs::local(&dir.path().join("media")).unwrap(),
            ),
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
    );
    World {
        app,
        events,
        timelines,
        dir,
    }
}

impl World {
    async fn user(&self, handle: &str) -> UserId {
        self.app
            .accounts()
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

    async fn post(&self, author: UserId, text: &str) -> PostId {
        self.app
            .posts()
            .create(author, text, None, &[])
            .await
            .unwrap()
            .post
            .id
    }

    /// Runs the fan-out worker over every event not handled yet.
    async fn fan_out(&self) {
        let worker = FanoutWorker::new(&self.app);
        let mut subscription = self.events.subscribe(FanoutWorker::CONSUMER).await.unwrap();
        while let Ok(batch) =
            tokio::time::timeout(Duration::from_millis(200), subscription.next_batch(1_000)).await
        {
            let batch = batch.unwrap();
            worker.handle_batch(&batch).await.unwrap();
            if let Some(last) = batch.last() {
                subscription.ack_through(last).await.unwrap();
            }
        }
        subscription.close().await.unwrap();
    }

    /// Every page of `reader`'s feed, `limit` at a time, in order.
    async fn pages(&self, reader: UserId, limit: usize) -> Vec<Vec<PostId>> {
        let mut pages = Vec::new();
        let mut before = None;
        loop {
            let page = self
                .app
                .feed()
                .home_feed(reader, before, limit)
                .await
                .unwrap();
            pages.push(page.items.iter().map(|view| view.post.id).collect());
            match page.next {
                Some(next) => before = Some(PostId(next)),
                None => return pages,
            }
            assert!(pages.len() < 100, "paging does not end");
        }
    }

    async fn feed(&self, reader: UserId) -> Vec<PostId> {
        self.pages(reader, 100).await.concat()
    }

    /// What `reader`'s stored timeline holds (it must be materialised).
    async fn stored(&self, reader: UserId) -> (Vec<PostId>, Option<PostId>) {
        let TimelineRead::Ready(slice) = self.timelines.read(reader, None, 1_000).await.unwrap()
        else {
            panic!("{reader}'s timeline is not materialised");
        };
        (
            slice.entries.iter().map(|entry| entry.post_id).collect(),
            slice.floor,
        )
    }
}

#[tokio::test]
async fn paging_walks_past_the_timeline_floor_without_gaps_or_repeats() {
    let world = world(Settings {
        timeline_cap: 5,
        ..Settings::default()
    })
    .await;
    let author = world.user("author").await;
    let reader = world.user("reader").await;
    world.app.graph().follow(reader, author).await.unwrap();
    let mut posted = Vec::new();
    for n in 0..12 {
        posted.push(world.post(author, &format!("post {n}")).await);
    }
    world.fan_out().await;
    world.feed(reader).await;
    // The stored timeline holds the newest five; the rest come from SQL.
    let (stored, floor) = world.stored(reader).await;
    assert_eq!(stored.len(), 5);
    assert!(floor.is_some());

    let pages = world.pages(reader, 4).await;
    assert!(pages.iter().all(|page| page.len() <= 4));
    posted.reverse();
    assert_eq!(pages.concat(), posted, "newest first, each post once");
}

#[tokio::test]
async fn posts_of_accounts_above_the_threshold_are_merged_at_read_time() {
    let world = world(Settings {
        fanout_threshold: 2,
        ..Settings::default()
    })
    .await;
    let star = world.user("star").await;
    let fans = [world.user("fan1").await, world.user("fan2").await];
    let plain = world.user("plain").await;
    for fan in fans {
        world.app.graph().follow(fan, star).await.unwrap();
    }
    world.app.graph().follow(fans[0], plain).await.unwrap();
    world.fan_out().await;
    // Materialised before the posts come, as an active reader's is.
    assert!(world.feed(fans[0]).await.is_empty());
    let by_star = world.post(star, "to the many").await;
    let by_plain = world.post(plain, "to the few").await;
    world.fan_out().await;

    // Fanned out: only the plain account's post is in the stored timeline.
    assert_eq!(world.stored(fans[0]).await.0, vec![by_plain]);
    // Read: the star's post is merged in, in order.
    assert_eq!(world.feed(fans[0]).await, vec![by_plain, by_star]);
    assert_eq!(world.feed(fans[1]).await, vec![by_star]);
}

#[tokio::test]
async fn fan_out_reaches_every_follower_and_only_followers() {
    let world = world(Settings::default()).await;
    let author = world.user("author").await;
    let followers = [world.user("one").await, world.user("two").await];
    let stranger = world.user("stranger").await;
    for follower in followers {
        world.app.graph().follow(follower, author).await.unwrap();
    }
    for reader in [followers[0], followers[1], stranger] {
        // Materialised, as an active reader's is.
        world.feed(reader).await;
    }
    let post = world.post(author, "hello").await;
    world.fan_out().await;
    for follower in followers {
        assert_eq!(world.stored(follower).await.0, vec![post]);
    }
    assert!(world.stored(stranger).await.0.is_empty());
}

#[tokio::test]
async fn muted_and_blocked_accounts_vanish_from_what_a_reader_sees() {
    let world = world(Settings::default()).await;
    let reader = world.user("reader").await;
    let loud = world.user("loud").await;
    let rude = world.user("rude").await;
    let kind = world.user("kind").await;
    for author in [loud, rude, kind] {
        world.app.graph().follow(reader, author).await.unwrap();
    }
    let by_loud = world.post(loud, "noise").await;
    let by_rude = world.post(rude, "insult").await;
    let by_kind = world.post(kind, "thanks").await;
    world.fan_out().await;
    assert_eq!(world.feed(reader).await, vec![by_kind, by_rude, by_loud]);

    world.app.graph().mute(reader, loud).await.unwrap();
    world.app.graph().block(reader, rude).await.unwrap();
    // Before the worker has run, as after it.
    assert_eq!(world.feed(reader).await, vec![by_kind]);
    world.fan_out().await;
    assert_eq!(world.feed(reader).await, vec![by_kind]);
    // A muted account's post can still be opened; a blocked one's cannot,
    // either way.
    let posts = world.app.posts();
    assert!(posts.post(Some(reader), by_loud).await.is_ok());
    assert!(posts.post(Some(reader), by_rude).await.is_err());
    assert!(posts.post(Some(rude), by_kind).await.is_ok());
    let by_reader = world.post(reader, "mine").await;
    assert!(posts.post(Some(rude), by_reader).await.is_err());
}

#[tokio::test]
async fn mentions_name_existing_accounts_never_blocked_ones() {
    let world = world(Settings::default()).await;
    let author = world.user("author").await;
    let bob = world.user("Bob").await;
    let blocked = world.user("blocked").await;
    world.app.graph().block(author, blocked).await.unwrap();
    let text = "hi @bob, @nobody and @blocked";
    let view = world
        .app
        .posts()
        .create(author, text, None, &[])
        .await
        .unwrap();
    let mentions = &view.post.mentions;
    assert_eq!(mentions.len(), 1, "{mentions:?}");
    assert_eq!(mentions[0].user_id, bob);
    assert_eq!(mentions[0].handle.as_str(), "Bob");
    // Offsets in code points, covering "@bob".
    let named: String = text
        .chars()
        .skip(mentions[0].start as usize)
        .take((mentions[0].end - mentions[0].start) as usize)
        .collect();
    assert_eq!(named, "@bob");
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
    let world = world_on(Arc::new(BrokenTimelines), Settings::default()).await;
    let app = &world.app;
    let author = world.user("author").await;
    let reader = world.user("reader").await;
    // Accepted writes stay accepted: the timeline store is a projection.
    app.graph().follow(reader, author).await.unwrap();
    let first = app.posts().create(author, "one", None, &[]).await.unwrap();
    let second = app.posts().create(reader, "two", None, &[]).await.unwrap();
    assert_eq!(
        world.feed(reader).await,
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

#[tokio::test]
async fn liked_by_me_is_right_on_both_sides_of_the_remembered_window() {
    let world = world(Settings {
        liked_window: 3,
        ..Settings::default()
    })
    .await;
    let app = &world.app;
    let author = world.user("author").await;
    let reader = world.user("reader").await;
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

    // The timeline store is down, and the moment a post is committed its
    // author's row turns unreadable (a trigger writes a display name SQL
    // cannot decode: not UTF-8): every read of it after the commit fails.
    let world = world_on(Arc::new(BrokenTimelines), Settings::default()).await;
    let app = &world.app;
    let author = world.user("author").await;
    let mut sabotage = sqlx::SqliteConnection::connect(&format!(
        "sqlite://{}",
        world.dir.path().join("starling.db").display()
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
    assert_eq!(posted.post.text.as_str(), "committed");
    assert_eq!(posted.author.handle.as_str(), "author");
    // Once, and only once, in the store.
    let stored = app
        .ports()
        .store
        .posts_by_author(None, author, None, 10)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    // Reads of the author do fail now: the injection took.
    assert!(app.ports().store.user_summaries(&[author]).await.is_err());
}
