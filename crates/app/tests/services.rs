//! The services' logic, fast, on the in-process adapters (SQLite in a
//! temporary folder, the process's timelines, caches and event log), with
//! no HTTP: feed paging across the timeline floor, the hybrid merge of
//! high-fan-out accounts, fan-out to followers' timelines, blocks and mutes
//! in what a reader sees, and mention resolution.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use starling_app::accounts::RegisterInput;
use starling_app::auth::{AccessTokens, PasswordHashing, PasswordParams};
use starling_app::ports::{EventLog, TimelineRead, TimelineStore};
use starling_app::workers::{EventHandler, FanoutWorker};
use starling_app::{App, Caches, Ports, Settings};
use starling_domain::{IdGenerator, PostId, UserId};
use starling_local::{LocalTimelines, MemoryCache, OutboxEventLog};
use starling_sql::{SqliteOptions, SqliteStore};

struct World {
    app: App,
    events: Arc<OutboxEventLog>,
    timelines: Arc<LocalTimelines>,
    _dir: tempfile::TempDir,
}

fn cache<K, V>(name: &'static str) -> Arc<MemoryCache<K, V>>
where
    K: std::hash::Hash + Eq + Send + Sync + Clone + 'static,
    V: Clone + Send + Sync + 'static,
{
    Arc::new(MemoryCache::new(name, 10_000, Duration::from_secs(60)))
}

async fn world(settings: Settings) -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("starling.db"), &SqliteOptions::default())
        .await
        .unwrap();
    let events = Arc::new(OutboxEventLog::new(
        Arc::new(store.clone()),
        Duration::from_secs(60),
    ));
    let timelines = Arc::new(LocalTimelines::new(settings.timeline_cap, 10_000));
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
        _dir: dir,
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
    assert_eq!(mentions[0].handle, "Bob");
    // Offsets in code points, covering "@bob".
    let named: String = text
        .chars()
        .skip(mentions[0].start as usize)
        .take((mentions[0].end - mentions[0].start) as usize)
        .collect();
    assert_eq!(named, "@bob");
}
