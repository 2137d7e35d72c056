//! A person deletes their account (`DELETE /me`): gone for everyone at
//! once, then everything it had removed by a resumable saga: follows both
//! ways (counts corrected), timelines, posts (replies by others stay),
//! likes, blocks, mutes, notifications, uploads with their files; the
//! handle freed after its quarantine. A step that cannot finish (object
//! storage down) retries with back-off, visibly; a process killed between
//! steps leaves a saga the next one finishes.

use std::time::Duration;

use image::ImageFormat;
use reqwest::Method;
use serde_json::{Value, json};
use starling_test_macros::both_modes;

use crate::helpers::{FANOUT_WAIT, Mode, TestApp, TestUser, eventually, read, session_user};
use crate::media::{encode, media_app, picture, ready_upload};
use crate::process;

const PASSWORD: &str = "correct horse battery";

/// The account `id` as an admin sees it.
async fn admin_view(app: &TestApp, admin: &TestUser, id: &str) -> Value {
    let reply = app
        .get(
            &format!("/api/v1/admin/accounts/{id}"),
            Some(&admin.access_token),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body
}

async fn profile(app: &TestApp, id: &str) -> Value {
    let reply = app.get(&format!("/api/v1/users/{id}"), None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body
}

#[both_modes]
async fn a_deleted_account_is_gone_at_once_and_its_data_step_by_step(mode: Mode) {
    let Some((app, mut s3)) = media_app(mode, |config| {
        config.deletion.poll_ms = 50;
        config.deletion.batch_size = 2;
        config.deletion.batch_pause_ms = 0;
        config.deletion.handle_quarantine_secs = 1;
    })
    .await
    else {
        return;
    };
    let root = app.register("root").await;
    let granted = app.grant("root", "admin").await;
    assert!(granted.status.success(), "{granted:?}");
    let carol = app.register("carol").await;
    let bob = app.register("bob").await;
    let dave = app.register("dave").await;
    for (follower, followee) in [(&bob, &carol), (&dave, &carol), (&carol, &bob)] {
        app.follow(follower, followee).await;
    }
    let image = ready_upload(
        &app,
        &carol,
        encode(&picture(40, 30), ImageFormat::Png),
        "a cat",
    )
    .await;
    let with_image = app
        .post(
            "/api/v1/posts",
            Some(&carol.access_token),
            json!({"text": "my cat", "media_ids": [image["id"]]}),
        )
        .await;
    assert_eq!(with_image.status, 201, "{}", with_image.text);
    let with_image = with_image.body["id"].as_str().unwrap().to_owned();
    let file_url = image["url"].as_str().unwrap().to_owned();
    let plain = app.create_post(&carol, "carol was here").await;
    let bobs = app.create_post(&bob, "bob's own").await;
    let like = app
        .post(
            &format!("/api/v1/posts/{bobs}/like"),
            Some(&carol.access_token),
            json!({}),
        )
        .await;
    assert!(like.status.is_success(), "{}", like.text);
    let reply = app
        .post(
            "/api/v1/posts",
            Some(&bob.access_token),
            json!({"text": "nice", "reply_to": plain}),
        )
        .await;
    let bobs_reply = reply.body["id"].as_str().unwrap().to_owned();
    let blocked = app
        .post(
            &format!("/api/v1/users/{}/block", dave.id),
            Some(&carol.access_token),
            json!({}),
        )
        .await;
    assert!(blocked.status.is_success(), "{}", blocked.text);
    eventually("carol's posts reach bob", FANOUT_WAIT, || async {
        app.feed_ids(&bob).await.contains(&plain)
    })
    .await;
    assert_eq!(profile(&app, &bob.id).await["followers_count"], 1);
    assert_eq!(
        app.get(&file_url, None).await.status,
        200,
        "the image is served"
    );

    // Confirmed by the password only.
    let delete = |password: &str| {
        app.call(
            Method::DELETE,
            "/api/v1/me",
            Some(&carol.access_token),
            Some(json!({ "password": password })),
        )
    };
    delete("not the password").await.assert_problem(403);
    assert_eq!(profile(&app, &carol.id).await["handle"], "carol");
    // Object storage is down while it deletes (scaled out: S3).
    if let Some(s3) = s3.as_mut() {
        s3.kill();
    }
    let accepted = delete(PASSWORD).await;
    assert_eq!(accepted.status, 202, "{}", accepted.text);
    assert_eq!(accepted.body["status"], "deleting");

    // Gone for everyone at once; the saga goes on in the background.
    assert_eq!(
        app.get("/api/v1/me", Some(&carol.access_token))
            .await
            .status,
        401
    );
    app.login("carol").await.assert_problem(401);
    app.get(&format!("/api/v1/users/{}", carol.id), None)
        .await
        .assert_problem(404);
    app.get(&format!("/api/v1/posts/{plain}"), None)
        .await
        .assert_problem(404);
    assert!(!app.feed_ids(&bob).await.contains(&plain));

    if let Some(s3) = s3.as_mut() {
        // The step that removes files fails, is retried with back-off,
        // and staff can see where it stands and why.
        eventually("the media step fails visibly", FANOUT_WAIT, || async {
            let view = admin_view(&app, &root, &carol.id).await;
            view["deletion"]["step"] == "delete_media"
                && view["deletion"]["attempts"].as_u64().unwrap_or(0) >= 1
                && view["deletion"]["last_error"].is_string()
        })
        .await;
        assert_eq!(
            admin_view(&app, &root, &carol.id).await["status"],
            "deleting"
        );
        s3.restart();
    }
    eventually("the deletion finishes", Duration::from_secs(30), || async {
        admin_view(&app, &root, &carol.id).await["status"] == "deleted"
    })
    .await;
    let view = admin_view(&app, &root, &carol.id).await;
    assert_eq!(view["deletion"]["step"], "done");
    assert!(view["deletion"]["finished_at"].is_string());
    assert_eq!(view["display_name"], "");
    assert!(
        view["email"]
            .as_str()
            .unwrap()
            .ends_with("@deleted.invalid")
    );

    // Follows both ways, counts corrected.
    let bob_now = profile(&app, &bob.id).await;
    assert_eq!(bob_now["followers_count"], 0);
    assert_eq!(bob_now["following_count"], 0);
    assert_eq!(profile(&app, &dave.id).await["following_count"], 0);
    // Her like, and her notifications to bob.
    let liked = app.get(&format!("/api/v1/posts/{bobs}"), None).await;
    assert_eq!(liked.body["like_count"], 0, "{}", liked.text);
    let notifications = app
        .get("/api/v1/notifications", Some(&bob.access_token))
        .await;
    assert_eq!(
        notifications.body["data"],
        json!([]),
        "{}",
        notifications.text
    );
    // Bob's reply stays, answering a post that is gone.
    let kept = app.get(&format!("/api/v1/posts/{bobs_reply}"), None).await;
    assert_eq!(kept.status, 200, "{}", kept.text);
    assert_eq!(kept.body["reply_to"], plain.as_str());
    app.get(&format!("/api/v1/posts/{with_image}"), None)
        .await
        .assert_problem(404);
    // From the origin: a cache in front (the shipped nginx) keeps an
    // immutable file it served until it expires or is purged.
    let origin = app
        .client
        .get(format!("{}{file_url}", app.direct))
        .send()
        .await
        .unwrap();
    assert_eq!(origin.status(), 404, "the file is gone");
    // After the quarantine, the handle and the email are anyone's.
    let again = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"handle": "carol", "email": "carol@example.org", "password": PASSWORD}),
        )
        .await;
    assert_eq!(again.status, 201, "{}", again.text);
    assert_ne!(session_user(&again.body).id, carol.id);
    let metrics = app.metrics().await;
    assert!(metrics.contains("starling_account_deletion_steps_total{"));
    drop(s3);
}

#[both_modes]
async fn deletion_needs_the_person_and_ends_every_session_and_key(mode: Mode) {
    let Some(app) = crate::helpers::spawn_app_with(mode, |config| {
        config.auth.api_key_recheck_secs = 1;
    })
    .await
    else {
        return;
    };
    let ada = app.register("ada").await;
    let key = app
        .post(
            "/api/v1/me/api-keys",
            Some(&ada.access_token),
            json!({"name": "bot", "scopes": ["read", "write", "follow"]}),
        )
        .await;
    let key = key.body["key"].as_str().unwrap().to_owned();
    let body = Some(json!({ "password": PASSWORD }));
    app.call(Method::DELETE, "/api/v1/me", None, body.clone())
        .await
        .assert_problem(401);
    app.call(Method::DELETE, "/api/v1/me", Some(&key), body.clone())
        .await
        .assert_problem(403);
    app.call(
        Method::DELETE,
        "/api/v1/me",
        Some(&ada.access_token),
        Some(json!({})),
    )
    .await
    .assert_problem(422);
    let other = app.login("ada").await;
    let other = session_user(&other.body);
    let accepted = app
        .call(
            Method::DELETE,
            "/api/v1/me",
            Some(&ada.access_token),
            body.clone(),
        )
        .await;
    assert_eq!(accepted.status, 202, "{}", accepted.text);
    // Every session ended with it, and the key.
    app.call(
        Method::DELETE,
        "/api/v1/me",
        Some(&other.access_token),
        body,
    )
    .await
    .assert_problem(401);
    eventually("the key is refused", Duration::from_secs(15), || async {
        app.get("/api/v1/me", Some(&key)).await.status == 401
    })
    .await;
}

/// `starling admin grant` on a data directory a running server uses.
async fn grant(data_dir: &std::path::Path, handle: &str, role: &str) {
    let data_dir = data_dir.to_owned();
    let (handle, role) = (handle.to_owned(), role.to_owned());
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_starling"))
            .args(["admin", "grant", &handle, &role])
            .env_remove("RUST_LOG")
            .env_remove("STARLING_DATABASE_URL")
            .env("STARLING_DATA_DIR", &data_dir)
            .current_dir(&data_dir)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{output:?}");
}

/// The saga's state through the admin API at `base`.
async fn deletion_state(client: &reqwest::Client, base: &str, admin: &TestUser, id: &str) -> Value {
    let reply = read(
        client
            .get(format!("{base}/api/v1/admin/accounts/{id}"))
            .bearer_auth(&admin.access_token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body
}

/// Paced so that each step takes a while: a kill lands inside one.
const PACED: [(&str, &str); 5] = [
    ("STARLING_DELETION__LEASE_SECS", "2"),
    ("STARLING_DELETION__BATCH_SIZE", "1"),
    ("STARLING_DELETION__BATCH_PAUSE_MS", "150"),
    ("STARLING_DELETION__POLL_MS", "50"),
    ("STARLING_DELETION__HANDLE_QUARANTINE_SECS", "1"),
];

/// Carol, four friends following her and followed by her, six posts of
/// hers (in her friends' timelines), a friend's reply to the first.
struct Scene {
    admin: TestUser,
    carol: TestUser,
    friends: Vec<TestUser>,
    posts: Vec<String>,
    kept_reply: String,
}

async fn set_scene(client: &reqwest::Client, base: &str, admin: TestUser) -> Scene {
    let carol = process::register(client, base, "carol").await;
    let mut friends = Vec::new();
    for index in 0..4 {
        let friend = process::register(client, base, &format!("friend{index}")).await;
        process::follow(client, base, &friend, &carol).await;
        process::follow(client, base, &carol, &friend).await;
        friends.push(friend);
    }
    let mut posts = Vec::new();
    for index in 0..6 {
        posts.push(process::create_post(client, base, &carol, &format!("post {index}")).await);
    }
    let reply = read(
        client
            .post(format!("{base}/api/v1/posts"))
            .bearer_auth(&friends[0].access_token)
            .json(&json!({"text": "a reply", "reply_to": posts[0]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let last = posts.last().unwrap().clone();
    for friend in &friends {
        eventually("carol's posts reach her friends", FANOUT_WAIT, || async {
            process::feed(client, base, friend).await.1.contains(&last)
        })
        .await;
    }
    Scene {
        admin,
        carol,
        friends,
        kept_reply: reply.body["id"].as_str().unwrap().to_owned(),
        posts,
    }
}

/// Carol deletes her account; answers once the saga is inside
/// `delete_posts` (her follows gone, her posts going).
async fn delete_until_mid_posts(client: &reqwest::Client, base: &str, scene: &Scene) {
    let accepted = read(
        client
            .delete(format!("{base}/api/v1/me"))
            .bearer_auth(&scene.carol.access_token)
            .json(&json!({"password": "correct horse"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(accepted.status, 202, "{}", accepted.text);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let state = deletion_state(client, base, &scene.admin, &scene.carol.id).await;
        if state["deletion"]["step"] == "delete_posts" {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline && state["status"] == "deleting",
            "the deletion went past its posts unseen: {state}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The deletion finishes through `base`, and nothing of carol is left.
async fn assert_finished_and_clean(client: &reqwest::Client, base: &str, scene: &Scene) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let state = deletion_state(client, base, &scene.admin, &scene.carol.id).await;
        if state["status"] == "deleted" {
            assert_eq!(state["deletion"]["step"], "done");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not finished: {state}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for friend in &scene.friends {
        let profile = read(
            client
                .get(format!("{base}/api/v1/users/{}", friend.id))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(profile.body["followers_count"], 0, "{}", profile.text);
        assert_eq!(profile.body["following_count"], 0, "{}", profile.text);
        let (status, feed) = process::feed(client, base, friend).await;
        assert_eq!(status, 200);
        for post in &scene.posts {
            assert!(!feed.contains(post), "carol's post in a friend's timeline");
        }
    }
    for post in &scene.posts {
        let gone = client
            .get(format!("{base}/api/v1/posts/{post}"))
            .send()
            .await
            .unwrap();
        assert_eq!(gone.status(), 404);
    }
    let reply = read(
        client
            .get(format!("{base}/api/v1/posts/{}", scene.kept_reply))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["reply_to"], scene.posts[0].as_str());
    let again = process::register(client, base, "carol").await;
    assert_ne!(again.id, scene.carol.id);
}

/// Whether `base`'s metrics show `step` done: the process ran it.
async fn ran_step(client: &reqwest::Client, base: &str, step: &str) -> bool {
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metrics.lines().any(|line| {
        line.starts_with("starling_account_deletion_steps_total{")
            && line.contains(&format!("step=\"{step}\""))
            && line.contains("outcome=\"done\"")
    })
}

#[tokio::test]
async fn a_deletion_killed_mid_step_resumes_where_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = process::start_with(dir.path(), true, &PACED, false).await;
    let client = reqwest::Client::new();
    let admin = process::register(&client, &server.base, "root").await;
    grant(dir.path(), "root", "admin").await;
    let scene = set_scene(&client, &server.base, admin).await;
    delete_until_mid_posts(&client, &server.base, &scene).await;
    server.child.start_kill().unwrap(); // SIGKILL, mid-step
    server.child.wait().await.unwrap();

    let restarted = process::start_with(dir.path(), true, &PACED, false).await;
    assert_finished_and_clean(&client, &restarted.base, &scene).await;
    assert!(
        ran_step(&client, &restarted.base, "delete_posts").await,
        "the restarted process ran the interrupted step again"
    );
}

#[tokio::test]
async fn a_deletion_whose_fanout_process_is_killed_is_finished_by_another() {
    let Some(deployment) = crate::roles::Deployment::start_with(&PACED).await else {
        return;
    };
    let client = reqwest::Client::new();
    let base = deployment.api_a.base.clone();
    let admin = process::register(&client, &base, "root").await;
    let granted = crate::roles::command(&deployment.env)
        .args(["admin", "grant", "root", "admin"])
        .output()
        .unwrap();
    assert!(granted.status.success(), "{granted:?}");
    let scene = set_scene(&client, &base, admin).await;
    let mut deployment = deployment;
    delete_until_mid_posts(&client, &base, &scene).await;
    // The fan-out role runs deletions: its process dies mid-step, and one
    // started in its place takes the deletion over once the lease lapses.
    deployment.fanout.child.start_kill().unwrap();
    deployment.fanout.child.wait().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = crate::roles::with_node(&deployment.env, "6");
    let replacement = process::start_roles(dir.path(), &["fanout"], &env).await;
    assert_finished_and_clean(&client, &base, &scene).await;
    assert!(ran_step(&client, &replacement.base, "delete_posts").await);
}
