use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use starling_test_macros::both_modes;

use crate::helpers::Mode;
use crate::helpers::{
    FANOUT_WAIT, TestApp, TestUser, eventually, restart, spawn_app, spawn_app_with,
};

async fn feed_contains(app: &TestApp, reader: &TestUser, post: &str) -> bool {
    app.feed_ids(reader).await.iter().any(|id| id == post)
}

#[both_modes]
async fn the_author_sees_a_new_post_at_once(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    // Read first, so the timeline is materialised before posting.
    assert!(app.feed_ids(&ada).await.is_empty());
    let post = app.create_post(&ada, "first!").await;
    let page = app.feed_page(&ada, None, 20).await;
    assert_eq!(page.body["data"][0]["id"], post.as_str());
    assert_eq!(page.body["data"][0]["text"], "first!");
    assert_eq!(page.body["pagination"]["has_more"], false);
    assert_eq!(
        page.body["pagination"]["next_cursor"],
        serde_json::Value::Null
    );
}

#[both_modes]
async fn followers_get_new_posts_through_fan_out(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    let fans: Vec<TestUser> =
        futures::future::join_all((0..3).map(|index| app.register_owned(format!("fan{index}"))))
            .await;
    let stranger = app.register("stranger").await;
    for fan in &fans {
        app.follow(fan, &ada).await;
        app.feed_ids(fan).await; // materialise the timeline
    }
    app.feed_ids(&stranger).await;
    let post = app.create_post(&ada, "news").await;
    // The product promise: followers see a post within a second.
    for fan in &fans {
        eventually(
            "the follower sees the post within a second",
            Duration::from_secs(1),
            || feed_contains(&app, fan, &post),
        )
        .await;
    }
    assert!(!feed_contains(&app, &stranger, &post).await);
}

#[both_modes]
async fn the_feed_merges_own_and_followed_posts_newest_first(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    let cy = app.register("cy").await;
    app.follow(&ada, &bob).await;
    app.follow(&ada, &cy).await;
    let mut expected = Vec::new();
    for (author, text) in [
        (&bob, "b1"),
        (&ada, "a1"),
        (&cy, "c1"),
        (&bob, "b2"),
        (&ada, "a2"),
    ] {
        expected.push(app.create_post(author, text).await);
    }
    expected.reverse();
    // Not materialised before: this read rebuilds the timeline from SQL.
    eventually("the feed holds every post", FANOUT_WAIT, || async {
        app.feed_ids(&ada).await == expected
    })
    .await;
    let page = app.feed_page(&ada, None, 5).await;
    let authors: Vec<&str> = page.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|post| post["author"]["handle"].as_str().unwrap())
        .collect();
    assert_eq!(authors, vec!["ada", "bob", "cy", "ada", "bob"]);
}

#[both_modes]
async fn following_backfills_and_unfollowing_removes_at_once(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    let older: Vec<String> = vec![
        app.create_post(&bob, "b1").await,
        app.create_post(&bob, "b2").await,
    ];
    assert!(app.feed_ids(&ada).await.is_empty());
    app.follow(&ada, &bob).await;
    let feed = app.feed_ids(&ada).await;
    assert_eq!(
        feed,
        vec![older[1].clone(), older[0].clone()],
        "follow backfills immediately"
    );
    app.unfollow(&ada, &bob).await;
    assert!(
        app.feed_ids(&ada).await.is_empty(),
        "unfollow removes immediately"
    );
    // And the worker, replaying the same events, does not bring them back.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(app.feed_ids(&ada).await.is_empty());
}

#[both_modes]
async fn deleted_posts_leave_every_feed(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    let fan = app.register("fan").await;
    app.follow(&fan, &ada).await;
    app.feed_ids(&fan).await;
    let keep = app.create_post(&ada, "keep").await;
    let doomed = app.create_post(&ada, "doomed").await;
    eventually("the fan sees both posts", FANOUT_WAIT, || async {
        app.feed_ids(&fan).await.len() == 2
    })
    .await;
    assert_eq!(app.delete_post(&ada, &doomed).await.status, 204);
    // Right away, whether or not the worker has caught up.
    assert_eq!(app.feed_ids(&fan).await, vec![keep.clone()]);
    assert_eq!(app.feed_ids(&ada).await, vec![keep]);
}

#[both_modes]
async fn high_fan_out_accounts_are_merged_at_read_time(mode: Mode) {
    // At 2 followers an account counts as high-fan-out in this test.
    let Some(app) = spawn_app_with(mode, |config| config.timeline.fanout_threshold = 2).await
    else {
        return;
    };
    let star = app.register("star").await;
    let friend = app.register("friend").await;
    let fan1 = app.register("fan1").await;
    let fan2 = app.register("fan2").await;
    app.follow(&fan1, &star).await;
    app.follow(&fan2, &star).await;
    app.follow(&fan1, &friend).await;
    app.feed_ids(&fan1).await;

    let mut expected = Vec::new();
    for (author, text) in [
        (&star, "s1"),
        (&friend, "f1"),
        (&star, "s2"),
        (&fan1, "own"),
        (&star, "s3"),
    ] {
        expected.push(app.create_post(author, text).await);
    }
    expected.reverse();
    eventually(
        "the fan's feed merges the star's posts",
        FANOUT_WAIT,
        || async { app.feed_ids(&fan1).await == expected },
    )
    .await;
    // Paging through the merge gives the same order, one post a page.
    let paged = app
        .all_pages("/api/v1/feed", Some(&fan1.access_token), 1)
        .await;
    assert_eq!(paged, expected);
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("starling_fanout_skipped_high_fanout_total"),
        "the star's posts were not fanned out"
    );
}

#[both_modes]
async fn an_account_dropping_below_the_threshold_is_written_into_timelines(mode: Mode) {
    let Some(app) = spawn_app_with(mode, |config| config.timeline.fanout_threshold = 3).await
    else {
        return;
    };
    let star = app.register("star").await;
    let fans: Vec<TestUser> =
        futures::future::join_all((0..3).map(|index| app.register_owned(format!("fan{index}"))))
            .await;
    for fan in &fans {
        app.follow(fan, &star).await;
        app.feed_ids(fan).await;
    }
    let post = app.create_post(&star, "while famous").await;
    eventually("read-time merge shows the post", FANOUT_WAIT, || {
        feed_contains(&app, &fans[0], &post)
    })
    .await;
    app.unfollow(&fans[2], &star).await;
    // fan0's cached list of high-fan-out accounts may be stale for a while,
    // but the star's post must stay visible throughout and after.
    for _ in 0..10 {
        assert!(feed_contains(&app, &fans[0], &post).await);
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    assert!(feed_contains(&app, &fans[1], &post).await);
}

#[both_modes]
async fn paging_goes_past_the_timeline_cap_down_to_the_oldest_post(mode: Mode) {
    let Some(app) = spawn_app_with(mode, |config| config.timeline.cap = 5).await else {
        return;
    };
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    app.follow(&ada, &bob).await;
    app.feed_ids(&ada).await;
    let mut expected = Vec::new();
    for index in 0..13 {
        let author = if index % 3 == 0 { &ada } else { &bob };
        expected.push(app.create_post(author, &format!("post {index}")).await);
    }
    expected.reverse();
    eventually("the whole history is readable", FANOUT_WAIT, || async {
        app.all_pages("/api/v1/feed", Some(&ada.access_token), 4)
            .await
            == expected
    })
    .await;
    let paged = app
        .all_pages("/api/v1/feed", Some(&ada.access_token), 3)
        .await;
    assert_eq!(paged, expected);
}

#[both_modes]
async fn paging_while_posts_arrive_has_no_duplicates_and_no_gaps(mode: Mode) {
    let Some(app) = spawn_app_with(mode, |config| config.timeline.cap = 20).await else {
        return;
    };
    let app = Arc::new(app);
    let reader = app.register("reader").await;
    let writers: Vec<TestUser> =
        futures::future::join_all((0..3).map(|index| app.register_owned(format!("writer{index}"))))
            .await;
    for writer in &writers {
        app.follow(&reader, writer).await;
    }
    for round in 0..15 {
        for writer in &writers {
            app.create_post(writer, &format!("old {round}")).await;
        }
    }
    eventually("the history reached the reader", FANOUT_WAIT, || async {
        app.feed_ids(&reader).await.len() == 45
    })
    .await;
    let history: Vec<String> = app.feed_ids(&reader).await;

    let writing = Arc::new(AtomicBool::new(true));
    let writer_task = {
        let (app, writers, writing) = (app.clone(), writers.clone(), writing.clone());
        tokio::spawn(async move {
            let mut round = 0;
            while writing.load(Ordering::SeqCst) {
                let writer = &writers[round % writers.len()];
                app.create_post(writer, &format!("new {round}")).await;
                round += 1;
            }
        })
    };
    let paged = app
        .all_pages("/api/v1/feed", Some(&reader.access_token), 4)
        .await;
    writing.store(false, Ordering::SeqCst);
    writer_task.await.unwrap();

    let unique: HashSet<&String> = paged.iter().collect();
    assert_eq!(unique.len(), paged.len(), "a post was served twice");
    let mut sorted = paged.clone();
    sorted.sort_by_key(|id| std::cmp::Reverse(id.parse::<i64>().unwrap()));
    assert_eq!(sorted, paged, "pages are not newest first");
    for post in &history {
        assert!(
            paged.contains(post),
            "post {post} that existed before paging was skipped"
        );
    }
}

#[both_modes]
async fn timelines_are_rebuilt_after_a_restart(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    app.follow(&ada, &bob).await;
    let mut expected = Vec::new();
    for index in 0..4 {
        expected.push(app.create_post(&bob, &format!("b{index}")).await);
        expected.push(app.create_post(&ada, &format!("a{index}")).await);
    }
    expected.reverse();
    eventually("the feed is complete", FANOUT_WAIT, || async {
        app.feed_ids(&ada).await == expected
    })
    .await;

    let stopped = app.stop().await;
    let app = restart(stopped, |_| {}).await;
    // Tokens survive: the signing key lives in the data directory.
    assert_eq!(app.feed_ids(&ada).await, expected);
    let post = app.create_post(&bob, "after restart").await;
    eventually("fan-out works after the restart", FANOUT_WAIT, || {
        feed_contains(&app, &ada, &post)
    })
    .await;
}

#[both_modes]
async fn feed_cursors_belong_to_their_reader(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    for index in 0..3 {
        app.create_post(&ada, &format!("{index}")).await;
    }
    let page = app.feed_page(&ada, None, 1).await;
    let cursor = page.body["pagination"]["next_cursor"].as_str().unwrap();
    let reply = app
        .get(
            &format!("/api/v1/feed?limit=1&cursor={cursor}"),
            Some(&bob.access_token),
        )
        .await;
    reply.assert_problem(400);
    assert_eq!(reply.field_errors(), vec!["cursor"]);
}

impl TestApp {
    async fn register_owned(&self, handle: String) -> TestUser {
        self.register(&handle).await
    }
}

#[both_modes]
async fn a_muted_prolific_account_costs_a_bounded_scan_per_feed_page(mode: Mode) {
    use futures::StreamExt;

    let Some(app) = spawn_app(mode).await else {
        return;
    };
    // The scan budget is the use case's, the same on every engine; scaled
    // out, writing 10,000 posts through PostgreSQL and JetStream would load
    // the two cores under the rest of that suite's timing-sensitive tests.
    if app.scaled_out() {
        return;
    }
    let reader = app.register("reader").await;
    let friend = app.register("friend").await;
    let loud = app.register("loud").await;
    let oldest = app.create_post(&friend, "from long ago").await;
    // Ten thousand posts of the account the reader will mute, written
    // through the use case (HTTP would only make the test slow).
    let loud_id = starling_domain::UserId(loud.id.parse().unwrap());
    let core = app.core.clone();
    let written = futures::stream::iter(0..10_000)
        .map(|n| {
            let core = core.clone();
            async move {
                core.posts()
                    .create(loud_id, &format!("noise {n}"), None, &[])
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(32)
        .filter(|written| std::future::ready(written.is_ok()))
        .count()
        .await;
    assert_eq!(written, 10_000);
    let mut newest = Vec::new();
    for n in 0..3 {
        newest.push(app.create_post(&friend, &format!("news {n}")).await);
    }
    app.follow(&reader, &friend).await;
    app.follow(&reader, &loud).await;
    eventually(
        "both accounts' posts reach the reader",
        FANOUT_WAIT,
        || async {
            feed_contains(&app, &reader, &newest[2]).await
                && app.feed_page(&reader, None, 20).await.body["data"]
                    .as_array()
                    .is_some_and(|page| page.iter().any(|post| post["author"]["handle"] == "loud"))
        },
    )
    .await;
    let mute = app
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/users/{}/mute", loud.id),
            Some(&reader.access_token),
            None,
        )
        .await;
    assert_eq!(mute.status, 204);

    // The first page shows the friend's news, then stops looking: a short
    // page, and a cursor below what it looked at.
    let first = app.feed_page(&reader, None, 20).await;
    let shown: Vec<&str> = first.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|post| post["id"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = newest.iter().rev().map(String::as_str).collect();
    assert_eq!(shown, expected);
    assert_eq!(first.body["pagination"]["has_more"], true);
    // Each further page looks at a bounded number of the muted posts; the
    // friend's oldest post comes after the cursor has walked past them all.
    let mut cursor = first.body["pagination"]["next_cursor"]
        .as_str()
        .map(str::to_owned);
    let mut pages = 1;
    let mut rest = Vec::new();
    while let Some(position) = cursor {
        let page = app.feed_page(&reader, Some(&position), 20).await;
        pages += 1;
        assert!(pages < 200, "the cursor does not get anywhere");
        for post in page.body["data"].as_array().unwrap() {
            rest.push(post["id"].as_str().unwrap().to_owned());
        }
        cursor = page.body["pagination"]["next_cursor"]
            .as_str()
            .map(str::to_owned);
    }
    assert_eq!(rest, vec![oldest]);
    // 10,000 hidden posts at no more than a few hundred per page.
    assert!(
        pages >= 10_000 / 400,
        "{pages} pages: a page scanned too much"
    );
}
