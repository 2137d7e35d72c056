//! Notifications: made by the notifier from events, read by their recipient.

use reqwest::Method;
use serde_json::{Value, json};
use starling_app::workers::{EventHandler, Notifier};

use starling_test_macros::both_modes;

use crate::helpers::Mode;
use crate::helpers::{FANOUT_WAIT, TestApp, TestUser, eventually, spawn_app};

/// The recipient's notifications as `(type, actor handle)`, newest first.
async fn summary(app: &TestApp, user: &TestUser, query: &str) -> Vec<(String, String)> {
    let reply = app
        .get(
            &format!("/api/v1/notifications{query}"),
            Some(&user.access_token),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["type"].as_str().unwrap().to_owned(),
                n["actor"]["handle"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn notifications(app: &TestApp, user: &TestUser) -> Vec<Value> {
    let reply = app
        .get("/api/v1/notifications?limit=100", Some(&user.access_token))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body["data"].as_array().unwrap().clone()
}

/// Waits until `user` has exactly `count` notifications.
async fn wait_for(app: &TestApp, user: &TestUser, count: usize) -> Vec<Value> {
    eventually(
        &format!("{count} notifications arrive"),
        FANOUT_WAIT,
        || async { notifications(app, user).await.len() == count },
    )
    .await;
    notifications(app, user).await
}

async fn unread(app: &TestApp, user: &TestUser) -> u64 {
    let me = app.get("/api/v1/me", Some(&user.access_token)).await;
    assert_eq!(me.status, 200, "{}", me.text);
    me.body["unread_notifications"].as_u64().unwrap()
}

async fn like(app: &TestApp, user: &TestUser, post: &str, method: Method) {
    let reply = app
        .call(
            method,
            &format!("/api/v1/posts/{post}/like"),
            Some(&user.access_token),
            None,
        )
        .await;
    assert_eq!(reply.status, 204, "{}", reply.text);
}

async fn reply_to(app: &TestApp, author: &TestUser, parent: &str, text: &str) -> String {
    let reply = app
        .post(
            "/api/v1/posts",
            Some(&author.access_token),
            json!({"text": text, "reply_to": parent}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    reply.body["id"].as_str().unwrap().to_owned()
}

#[both_modes]
async fn follows_likes_and_replies_notify_with_who_and_what(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    let post = app.create_post(&ada, "notify me").await;
    assert_eq!(unread(&app, &ada).await, 0);

    app.follow(&bob, &ada).await;
    let listed = wait_for(&app, &ada, 1).await;
    like(&app, &bob, &post, Method::POST).await;
    wait_for(&app, &ada, 2).await;
    let answer = reply_to(&app, &bob, &post, "an answer").await;
    let listed_now = wait_for(&app, &ada, 3).await;
    assert_eq!(listed[0]["type"], "follow");
    assert_eq!(listed[0]["post"], Value::Null);

    let [reply, liked, follow] = &listed_now[..] else {
        panic!("three notifications: {listed_now:?}");
    };
    assert_eq!(reply["type"], "reply");
    assert_eq!(reply["actor"]["handle"], "bob");
    assert_eq!(reply["actor"]["id"], bob.id.as_str());
    assert_eq!(reply["post"]["id"], answer.as_str());
    assert_eq!(reply["post"]["reply_to"], post.as_str());
    assert_eq!(liked["type"], "like");
    assert_eq!(liked["post"]["id"], post.as_str());
    assert_eq!(liked["post"]["like_count"], 1);
    assert_eq!(follow["type"], "follow");
    for notification in &listed_now {
        assert_eq!(notification["read"], false);
        assert!(notification["id"].is_string());
        assert!(notification["created_at"].as_str().unwrap().ends_with('Z'));
    }
    assert_eq!(unread(&app, &ada).await, 3);
    // Nobody else hears of it.
    assert!(notifications(&app, &bob).await.is_empty());
}

#[both_modes]
async fn your_own_actions_never_notify_you(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    let post = app.create_post(&ada, "talking to myself").await;
    like(&app, &ada, &post, Method::POST).await;
    reply_to(&app, &ada, &post, "and answering").await;
    // Something that does notify, to know the notifier got this far.
    app.follow(&bob, &ada).await;
    let listed = wait_for(&app, &ada, 1).await;
    assert_eq!(listed[0]["type"], "follow");
}

#[both_modes]
async fn reading_moves_the_unread_count_and_never_back(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    let mut fans = Vec::new();
    for index in 0..4 {
        let fan = app.register(&format!("fan{index}")).await;
        app.follow(&fan, &ada).await;
        fans.push(fan);
    }
    let listed = wait_for(&app, &ada, 4).await;
    assert_eq!(unread(&app, &ada).await, 4);
    let token = Some(ada.access_token.as_str());

    // Up to the second oldest.
    let second_oldest = listed[2]["id"].as_str().unwrap();
    let marked = app
        .post(
            "/api/v1/notifications/read",
            token,
            json!({"up_to": second_oldest}),
        )
        .await;
    assert_eq!(marked.status, 200, "{}", marked.text);
    assert_eq!(marked.body["read_through"], second_oldest);
    assert_eq!(marked.body["unread_count"], 2);
    assert_eq!(unread(&app, &ada).await, 2);
    let reads: Vec<bool> = notifications(&app, &ada)
        .await
        .iter()
        .map(|n| n["read"].as_bool().unwrap())
        .collect();
    assert_eq!(reads, vec![false, false, true, true]);

    // An older position changes nothing.
    let oldest = listed[3]["id"].as_str().unwrap();
    let marked = app
        .post(
            "/api/v1/notifications/read",
            token,
            json!({"up_to": oldest}),
        )
        .await;
    assert_eq!(marked.body["read_through"], second_oldest);
    assert_eq!(marked.body["unread_count"], 2);

    // No position: all of them.
    let marked = app
        .post("/api/v1/notifications/read", token, json!({}))
        .await;
    assert_eq!(marked.body["read_through"], listed[0]["id"]);
    assert_eq!(marked.body["unread_count"], 0);
    assert_eq!(unread(&app, &ada).await, 0);

    // Bad input is a clear error.
    let bad = app
        .post(
            "/api/v1/notifications/read",
            token,
            json!({"up_to": "yesterday"}),
        )
        .await;
    bad.assert_problem(422);
    assert_eq!(bad.field_errors(), vec!["up_to"]);
    app.post("/api/v1/notifications/read", token, json!({"since": "1"}))
        .await
        .assert_problem(422);
    app.post("/api/v1/notifications/read", None, json!({}))
        .await
        .assert_problem(401);
    app.get("/api/v1/notifications", None)
        .await
        .assert_problem(401);
}

#[both_modes]
async fn notifications_page_with_a_cursor_and_filter_by_type(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    let post = app.create_post(&ada, "popular").await;
    for index in 0..3 {
        let fan = app.register(&format!("fan{index}")).await;
        app.follow(&fan, &ada).await;
    }
    like(&app, &bob, &post, Method::POST).await;
    reply_to(&app, &bob, &post, "me too").await;
    wait_for(&app, &ada, 5).await;

    let token = Some(ada.access_token.as_str());
    let every = app.all_pages("/api/v1/notifications", token, 2).await;
    assert_eq!(every.len(), 5);
    let mut unique = every.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 5, "no notification on two pages");

    assert_eq!(
        summary(&app, &ada, "?type=like").await,
        vec![("like".to_owned(), "bob".to_owned())]
    );
    let answers = summary(&app, &ada, "?type=reply,like").await;
    assert_eq!(
        answers,
        vec![
            ("reply".to_owned(), "bob".to_owned()),
            ("like".to_owned(), "bob".to_owned())
        ]
    );
    assert_eq!(summary(&app, &ada, "?type=follow").await.len(), 3);
    assert!(summary(&app, &ada, "?type=mention").await.is_empty());

    for query in [
        "?type=likes",
        "?type=",
        "?type=like,,follow",
        "?limit=0",
        "?kind=like",
    ] {
        let reply = app
            .get(&format!("/api/v1/notifications{query}"), token)
            .await;
        reply.assert_problem(400);
    }
}

#[both_modes]
async fn a_like_taken_back_at_once_withdraws_its_notification(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    let cat = app.register("cat").await;
    let post = app.create_post(&ada, "like me").await;
    like(&app, &bob, &post, Method::POST).await;
    like(&app, &bob, &post, Method::DELETE).await;
    // A like given twice, or given again, notifies once.
    like(&app, &cat, &post, Method::POST).await;
    like(&app, &cat, &post, Method::POST).await;
    app.follow(&cat, &ada).await;
    // Sorted: their order is the order the notifier got to them, and when
    // scaled out likes and follows travel in different partitions.
    let expected = vec![
        ("follow".to_owned(), "cat".to_owned()),
        ("like".to_owned(), "cat".to_owned()),
    ];
    eventually(
        "only cat's like and follow are left",
        FANOUT_WAIT,
        || async {
            let mut left = summary(&app, &ada, "").await;
            left.sort();
            left == expected
        },
    )
    .await;
}

#[both_modes]
async fn a_deleted_post_takes_its_notifications_with_it(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    let post = app.create_post(&ada, "answer me").await;
    let answer = reply_to(&app, &bob, &post, "soon deleted").await;
    wait_for(&app, &ada, 1).await;
    assert_eq!(unread(&app, &ada).await, 1);
    let deleted = app.delete_post(&bob, &answer).await;
    assert_eq!(deleted.status, 204);
    // Gone from the list at once, and from the store soon after.
    assert!(notifications(&app, &ada).await.is_empty());
    eventually("the unread count drops", FANOUT_WAIT, || async {
        unread(&app, &ada).await == 0
    })
    .await;
}

/// A broker delivers at least once: after a crash, events come again. The
/// notifier must then notify nobody twice.
#[both_modes]
async fn events_delivered_again_notify_nobody_twice(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    let post = app.create_post(&ada, "once").await;
    app.follow(&bob, &ada).await;
    like(&app, &bob, &post, Method::POST).await;
    reply_to(&app, &bob, &post, "only once").await;
    let before = wait_for(&app, &ada, 3).await;

    // Every event so far, handled again by a second notifier.
    let store = app.core.ports().store.clone();
    let events = store.events_after(0, 10_000).await.unwrap();
    assert!(events.len() >= 6);
    let notifier = Notifier::new(&app.core);
    for event in events {
        notifier.handle(&event.unwrap()).await.unwrap();
    }
    assert_eq!(notifications(&app, &ada).await, before);
    assert_eq!(unread(&app, &ada).await, 3);
}

#[both_modes]
async fn mentions_notify_each_account_once_and_a_reply_wins_over_a_mention(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    let cat = app.register("cat").await;
    let dan = app.register("dan").await;
    // Bob twice, ada (the author) herself, and nobody.
    app.create_post(&ada, "@bob @BOB @ada @nobody look").await;
    let listed = wait_for(&app, &bob, 1).await;
    assert_eq!(listed[0]["type"], "mention");
    assert_eq!(listed[0]["actor"]["handle"], "ada");
    assert_eq!(listed[0]["post"]["text"], "@bob @BOB @ada @nobody look");

    // A reply to cat that mentions cat and dan: cat hears of the reply only.
    let post = app.create_post(&cat, "thoughts?").await;
    let answer = reply_to(&app, &bob, &post, "@cat @dan agreed").await;
    let dan_heard = wait_for(&app, &dan, 1).await;
    assert_eq!(dan_heard[0]["type"], "mention");
    assert_eq!(dan_heard[0]["post"]["id"], answer.as_str());
    let cat_heard = wait_for(&app, &cat, 1).await;
    assert_eq!(cat_heard[0]["type"], "reply");
    assert!(notifications(&app, &ada).await.is_empty());
    assert_eq!(
        summary(&app, &dan, "?type=mention").await,
        vec![("mention".to_owned(), "bob".to_owned())]
    );
}
