//! Blocks and mutes, as the people on both sides see them.

use reqwest::Method;
use serde_json::json;

use starling_test_macros::both_modes;

use crate::helpers::Mode;
use crate::helpers::{FANOUT_WAIT, TestApp, TestUser, eventually, spawn_app};

async fn act(app: &TestApp, method: Method, who: &TestUser, path: &str) -> u16 {
    app.call(method, path, Some(&who.access_token), None)
        .await
        .status
        .as_u16()
}

async fn block(app: &TestApp, blocker: &TestUser, blocked: &TestUser) {
    let path = format!("/api/v1/users/{}/block", blocked.id);
    assert_eq!(act(app, Method::POST, blocker, &path).await, 204);
}

async fn counts(app: &TestApp, user: &TestUser) -> (i64, i64) {
    let profile = app.get(&format!("/api/v1/users/{}", user.id), None).await;
    (
        profile.body["followers_count"].as_i64().unwrap(),
        profile.body["following_count"].as_i64().unwrap(),
    )
}

fn ids(body: &serde_json::Value) -> Vec<String> {
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_owned())
        .collect()
}

#[both_modes]
async fn a_block_ends_follows_both_ways_and_stops_new_ones(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    app.follow(&ada, &bob).await;
    app.follow(&bob, &ada).await;
    assert_eq!(counts(&app, &ada).await, (1, 1));

    block(&app, &ada, &bob).await;
    block(&app, &ada, &bob).await; // idempotent
    assert_eq!(counts(&app, &ada).await, (0, 0));
    assert_eq!(counts(&app, &bob).await, (0, 0));
    // Neither can follow the other; the blocked one learns nothing from it.
    let follow = |whom: &TestUser| format!("/api/v1/users/{}/follow", whom.id);
    assert_eq!(act(&app, Method::POST, &bob, &follow(&ada)).await, 404);
    assert_eq!(act(&app, Method::POST, &ada, &follow(&bob)).await, 404);
    assert_eq!(counts(&app, &ada).await, (0, 0));

    let unblock = format!("/api/v1/users/{}/block", bob.id);
    assert_eq!(act(&app, Method::DELETE, &ada, &unblock).await, 204);
    assert_eq!(act(&app, Method::DELETE, &ada, &unblock).await, 204);
    app.follow(&bob, &ada).await;
    assert_eq!(counts(&app, &ada).await, (1, 0));
}

#[both_modes]
async fn blocked_accounts_disappear_for_each_other(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    let cat = app.register("cat").await;
    let bobs_post = app.create_post(&bob, "hello from bob").await;
    let cats_post = app.create_post(&cat, "a thread").await;
    let bobs_reply = app
        .post(
            "/api/v1/posts",
            Some(&bob.access_token),
            json!({"text": "bob answers", "reply_to": cats_post}),
        )
        .await;
    let bobs_reply = bobs_reply.body["id"].as_str().unwrap().to_owned();
    let adas_post = app.create_post(&ada, "ada's").await;
    // A like from bob before the block: ada was notified.
    let like = format!("/api/v1/posts/{adas_post}/like");
    assert_eq!(act(&app, Method::POST, &bob, &like).await, 204);
    eventually("ada hears of bob's like", FANOUT_WAIT, || async {
        let listed = app
            .get("/api/v1/notifications", Some(&ada.access_token))
            .await;
        listed.body["data"]
            .as_array()
            .is_some_and(|data| !data.is_empty())
    })
    .await;

    block(&app, &ada, &bob).await;
    let (ada_token, bob_token) = (
        Some(ada.access_token.as_str()),
        Some(bob.access_token.as_str()),
    );
    // Profiles, posts and post lists: 404 for both of them, as if gone.
    for (token, path) in [
        (ada_token, format!("/api/v1/users/{}", bob.id)),
        (ada_token, "/api/v1/users/@bob".to_owned()),
        (ada_token, format!("/api/v1/posts/{bobs_post}")),
        (ada_token, format!("/api/v1/users/{}/posts", bob.id)),
        (ada_token, format!("/api/v1/users/{}/followers", bob.id)),
        (bob_token, format!("/api/v1/users/{}/following", ada.id)),
        (bob_token, format!("/api/v1/users/{}", ada.id)),
        (bob_token, format!("/api/v1/posts/{adas_post}")),
    ] {
        app.get(&path, token).await.assert_problem(404);
    }
    // Others, and anonymous readers, still see everything.
    assert_eq!(
        app.get(&format!("/api/v1/posts/{bobs_post}"), None)
            .await
            .status,
        200
    );
    assert_eq!(
        app.get(
            &format!("/api/v1/users/{}", bob.id),
            Some(&cat.access_token)
        )
        .await
        .status,
        200
    );
    // A third party's follower and following lists: bob is not in them
    // for ada (nor ada for bob); for anyone else he is.
    app.follow(&bob, &cat).await;
    app.follow(&ada, &cat).await;
    app.follow(&cat, &bob).await;
    let (cats_followers, cats_following) = (
        format!("/api/v1/users/{}/followers", cat.id),
        format!("/api/v1/users/{}/following", cat.id),
    );
    assert_eq!(
        ids(&app.get(&cats_followers, ada_token).await.body),
        vec![ada.id.clone()]
    );
    assert_eq!(
        ids(&app.get(&cats_followers, bob_token).await.body),
        vec![bob.id.clone()]
    );
    assert_eq!(
        ids(&app.get(&cats_followers, None).await.body),
        vec![ada.id.clone(), bob.id.clone()]
    );
    assert!(ids(&app.get(&cats_following, ada_token).await.body).is_empty());
    assert_eq!(
        ids(&app.get(&cats_following, None).await.body),
        vec![bob.id.clone()]
    );
    // Replies in a third party's thread: hidden from ada only.
    let thread = format!("/api/v1/posts/{cats_post}/replies");
    assert!(ids(&app.get(&thread, ada_token).await.body).is_empty());
    assert_eq!(
        ids(&app.get(&thread, None).await.body),
        vec![bobs_reply.clone()]
    );
    // Notifications from bob are gone, and no new ones come.
    assert!(
        app.get("/api/v1/notifications", ada_token).await.body["data"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    app.post(
        "/api/v1/posts",
        bob_token,
        json!({"text": "@ada are you there?"}),
    )
    .await;
    app.follow(&cat, &ada).await;
    eventually("cat's follow is notified", FANOUT_WAIT, || async {
        let listed = app.get("/api/v1/notifications", ada_token).await;
        listed.body["data"]
            .as_array()
            .is_some_and(|data| !data.is_empty())
    })
    .await;
    let listed = app.get("/api/v1/notifications", ada_token).await;
    let actors: Vec<&str> = listed.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["actor"]["handle"].as_str().unwrap())
        .collect();
    assert_eq!(actors, vec!["cat"], "bob's mention never reached ada");

    // Unblocked, all is visible again.
    let unblock = format!("/api/v1/users/{}/block", bob.id);
    assert_eq!(act(&app, Method::DELETE, &ada, &unblock).await, 204);
    assert_eq!(
        app.get(&format!("/api/v1/posts/{bobs_post}"), ada_token)
            .await
            .status,
        200
    );
    assert_eq!(
        ids(&app.get(&thread, ada_token).await.body),
        vec![bobs_reply]
    );
}

#[both_modes]
async fn a_mute_hides_posts_already_in_the_feed_for_the_muter_only(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    let cat = app.register("cat").await;
    app.follow(&ada, &bob).await;
    app.follow(&cat, &bob).await;
    let post = app.create_post(&bob, "noise").await;
    eventually("the post reaches both feeds", FANOUT_WAIT, || async {
        app.feed_ids(&ada).await.contains(&post) && app.feed_ids(&cat).await.contains(&post)
    })
    .await;

    let mute = format!("/api/v1/users/{}/mute", bob.id);
    assert_eq!(act(&app, Method::POST, &ada, &mute).await, 204);
    assert!(
        !app.feed_ids(&ada).await.contains(&post),
        "gone from the muter's feed"
    );
    assert!(
        app.feed_ids(&cat).await.contains(&post),
        "still in everyone else's"
    );
    // Still following, and the profile and post are still there for ada.
    assert_eq!(counts(&app, &bob).await.0, 2);
    assert_eq!(
        app.get(&format!("/api/v1/posts/{post}"), Some(&ada.access_token))
            .await
            .status,
        200
    );
    // A mute silences notifications too.
    let adas_post = app.create_post(&ada, "mine").await;
    let like = format!("/api/v1/posts/{adas_post}/like");
    assert_eq!(act(&app, Method::POST, &bob, &like).await, 204);
    assert_eq!(act(&app, Method::POST, &cat, &like).await, 204);
    eventually("cat's like is notified", FANOUT_WAIT, || async {
        let listed = app
            .get("/api/v1/notifications", Some(&ada.access_token))
            .await;
        listed.body["data"]
            .as_array()
            .is_some_and(|data| !data.is_empty())
    })
    .await;
    let listed = app
        .get("/api/v1/notifications", Some(&ada.access_token))
        .await;
    let actors: Vec<&str> = listed.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["actor"]["handle"].as_str().unwrap())
        .collect();
    assert_eq!(actors, vec!["cat"]);

    assert_eq!(act(&app, Method::DELETE, &ada, &mute).await, 204);
    assert!(
        app.feed_ids(&ada).await.contains(&post),
        "back after the unmute"
    );
}

#[both_modes]
async fn blocks_and_mutes_are_listed_and_checked(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    let cat = app.register("cat").await;
    block(&app, &ada, &bob).await;
    block(&app, &ada, &cat).await;
    let mute = format!("/api/v1/users/{}/mute", bob.id);
    assert_eq!(act(&app, Method::POST, &ada, &mute).await, 204);
    let token = Some(ada.access_token.as_str());
    let blocks = app.all_pages("/api/v1/me/blocks", token, 1).await;
    assert_eq!(blocks, vec![cat.id.clone(), bob.id.clone()], "newest first");
    assert_eq!(
        app.all_pages("/api/v1/me/mutes", token, 10).await,
        vec![bob.id.clone()]
    );
    assert!(
        app.all_pages("/api/v1/me/blocks", Some(&bob.access_token), 10)
            .await
            .is_empty()
    );

    let own = format!("/api/v1/users/{}/block", ada.id);
    let reply = app.call(Method::POST, &own, token, None).await;
    reply.assert_problem(422);
    let reply = app
        .call(
            Method::POST,
            &format!("/api/v1/users/{}/mute", ada.id),
            token,
            None,
        )
        .await;
    reply.assert_problem(422);
    app.call(Method::POST, "/api/v1/users/12345/block", token, None)
        .await
        .assert_problem(404);
    app.call(
        Method::POST,
        &format!("/api/v1/users/{}/block", bob.id),
        None,
        None,
    )
    .await
    .assert_problem(401);
    app.get("/api/v1/me/mutes", None).await.assert_problem(401);
}

#[both_modes]
async fn a_block_refuses_replies_likes_and_mentions_across_it_as_if_the_post_were_gone(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    let adas_post = app.create_post(&ada, "ada's").await;
    let bobs_post = app.create_post(&bob, "bob's").await;
    let post_path = |post: &str| format!("/api/v1/posts/{post}");
    // Liked before the block: the like stays counted, but bob cannot undo
    // it through a post he can no longer see either.
    let bobs_like = format!("{}/like", post_path(&adas_post));
    assert_eq!(act(&app, Method::POST, &bob, &bobs_like).await, 204);
    block(&app, &ada, &bob).await;

    // Either side of the block, each refusal is the answer for a post that
    // does not exist, so the blocked one learns nothing from it.
    let gone = app
        .post(
            "/api/v1/posts",
            Some(&bob.access_token),
            json!({"text": "answer", "reply_to": "123456789"}),
        )
        .await;
    gone.assert_problem(404);
    for (who, post) in [(&bob, &adas_post), (&ada, &bobs_post)] {
        let reply = app
            .post(
                "/api/v1/posts",
                Some(&who.access_token),
                json!({"text": "answer", "reply_to": post}),
            )
            .await;
        reply.assert_problem(404);
        assert_eq!(reply.body["detail"], gone.body["detail"]);
        let like = format!("{}/like", post_path(post));
        app.call(Method::POST, &like, Some(&who.access_token), None)
            .await
            .assert_problem(404);
        app.call(Method::DELETE, &like, Some(&who.access_token), None)
            .await
            .assert_problem(404);
    }
    // Counts did not move.
    for (post, likes) in [(&adas_post, 1), (&bobs_post, 0)] {
        let seen = app.get(&post_path(post), None).await;
        assert_eq!(seen.body["like_count"], likes, "{}", seen.text);
        assert_eq!(seen.body["reply_count"], 0, "{}", seen.text);
    }

    // A mention across the block is plain text: no link, no notification,
    // whichever side writes it.
    let cat = app.register("cat").await;
    for (author, text) in [(&bob, "@ada @cat hello"), (&ada, "@bob @cat hello")] {
        let posted = app
            .post(
                "/api/v1/posts",
                Some(&author.access_token),
                json!({"text": text}),
            )
            .await;
        assert_eq!(posted.status, 201, "{}", posted.text);
        let handles: Vec<&str> = posted.body["mentions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|mention| mention["handle"].as_str().unwrap())
            .collect();
        assert_eq!(handles, vec!["cat"], "{text}");
    }
    eventually("cat hears of both mentions", FANOUT_WAIT, || async {
        let listed = app
            .get("/api/v1/notifications", Some(&cat.access_token))
            .await;
        listed.body["data"]
            .as_array()
            .is_some_and(|data| data.len() == 2)
    })
    .await;
    // Unblocked, the mention would notify: nothing was stored to show now.
    let unblock = format!("/api/v1/users/{}/block", bob.id);
    assert_eq!(act(&app, Method::DELETE, &ada, &unblock).await, 204);
    for (name, who) in [("ada", &ada), ("bob", &bob)] {
        let listed = app
            .get("/api/v1/notifications", Some(&who.access_token))
            .await;
        let kinds: Vec<&str> = listed.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert!(!kinds.contains(&"mention"), "{name}: {kinds:?}");
    }
}
