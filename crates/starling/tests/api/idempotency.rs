//! Idempotency keys: a retried create answers what its first attempt did.

use reqwest::Method;
use serde_json::{Value, json};

use starling_test_macros::both_modes;

use crate::helpers::Mode;
use crate::helpers::{Reply, TestApp, TestUser, read, spawn_app};

async fn post_with_key(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    key: &str,
    body: Option<Value>,
) -> Reply {
    let mut request = app
        .client
        .request(Method::POST, app.url(path))
        .header("idempotency-key", key);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    read(request.send().await.unwrap()).await
}

/// Ada's registration under the key `signup`.
async fn sign_up_with_key(app: &TestApp) -> Reply {
    let body =
        json!({"handle": "ada", "email": "ada@example.org", "password": "correct horse battery"});
    post_with_key(app, "/api/v1/auth/register", None, "signup", Some(body)).await
}

async fn posts_of(app: &TestApp, user: &TestUser) -> Vec<String> {
    app.all_pages(&format!("/api/v1/users/{}/posts", user.id), None, 100)
        .await
}

#[both_modes]
async fn a_retried_post_is_created_once_and_answered_the_same(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    let token = Some(ada.access_token.as_str());
    let body = json!({"text": "exactly once"});
    let first = post_with_key(&app, "/api/v1/posts", token, "key-1", Some(body.clone())).await;
    assert_eq!(first.status, 201, "{}", first.text);
    assert!(first.headers.get("idempotent-replayed").is_none());
    let again = post_with_key(&app, "/api/v1/posts", token, "key-1", Some(body.clone())).await;
    assert_eq!(again.status, 201);
    assert_eq!(again.body, first.body);
    assert_eq!(again.headers["location"], first.headers["location"]);
    assert_eq!(again.headers["content-type"], "application/json");
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(posts_of(&app, &ada).await.len(), 1);

    // Another key is another post; no key at all is as before.
    let other = post_with_key(&app, "/api/v1/posts", token, "key-2", Some(body.clone())).await;
    assert_ne!(other.body["id"], first.body["id"]);
    assert_eq!(app.post("/api/v1/posts", token, body).await.status, 201);
    assert_eq!(posts_of(&app, &ada).await.len(), 3);
}

#[both_modes]
async fn concurrent_retries_create_one_post(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    let attempts = (0..20)
        .map(|_| {
            let (client, url, token) = (
                app.client.clone(),
                app.url("/api/v1/posts"),
                ada.access_token.clone(),
            );
            tokio::spawn(async move {
                read(
                    client
                        .post(url)
                        .bearer_auth(token)
                        .header("idempotency-key", "burst")
                        .json(&json!({"text": "once, however many times it is sent"}))
                        .send()
                        .await
                        .unwrap(),
                )
                .await
            })
        })
        .collect::<Vec<_>>();
    let mut ids = Vec::new();
    for attempt in attempts {
        let reply = attempt.await.unwrap();
        assert_eq!(reply.status, 201, "{}", reply.text);
        ids.push(reply.body["id"].as_str().unwrap().to_owned());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "every attempt answered with the one post");
    assert_eq!(posts_of(&app, &ada).await, ids);
}

#[both_modes]
async fn a_key_belongs_to_one_request_and_one_caller(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    let token = Some(ada.access_token.as_str());
    let first = post_with_key(
        &app,
        "/api/v1/posts",
        token,
        "mine",
        Some(json!({"text": "one"})),
    )
    .await;
    assert_eq!(first.status, 201);
    let reused = post_with_key(
        &app,
        "/api/v1/posts",
        token,
        "mine",
        Some(json!({"text": "two"})),
    )
    .await;
    reused.assert_problem(422);
    assert_eq!(reused.field_errors(), vec!["Idempotency-Key"]);
    // Bob's "mine" is his own.
    let bobs = post_with_key(
        &app,
        "/api/v1/posts",
        Some(&bob.access_token),
        "mine",
        Some(json!({"text": "one"})),
    )
    .await;
    assert_eq!(bobs.status, 201);
    assert_ne!(bobs.body["id"], first.body["id"]);

    for bad in ["", &"k".repeat(256), "has space"] {
        let reply = app
            .client
            .post(app.url("/api/v1/posts"))
            .bearer_auth(&ada.access_token)
            .header("idempotency-key", bad)
            .json(&json!({"text": "x"}))
            .send()
            .await
            .unwrap();
        read(reply).await.assert_problem(400);
    }
    // A refused create is answered the same way again, and creates nothing.
    let invalid = post_with_key(
        &app,
        "/api/v1/posts",
        token,
        "empty",
        Some(json!({"text": " "})),
    )
    .await;
    invalid.assert_problem(422);
    let again = post_with_key(
        &app,
        "/api/v1/posts",
        token,
        "empty",
        Some(json!({"text": " "})),
    )
    .await;
    again.assert_problem(422);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    // An unauthenticated attempt does not use the key up.
    let unauthenticated = post_with_key(
        &app,
        "/api/v1/posts",
        None,
        "later",
        Some(json!({"text": "x"})),
    )
    .await;
    unauthenticated.assert_problem(401);
    let later = post_with_key(
        &app,
        "/api/v1/posts",
        token,
        "later",
        Some(json!({"text": "x"})),
    )
    .await;
    assert_eq!(later.status, 201);
}

#[both_modes]
async fn registration_likes_and_follows_take_keys_too(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let first = sign_up_with_key(&app).await;
    assert_eq!(first.status, 201, "{}", first.text);
    // Without the key, the retry would be a 409 (handle taken).
    let again = sign_up_with_key(&app).await;
    assert_eq!(again.status, 201, "{}", again.text);
    assert_eq!(again.body["user"]["id"], first.body["user"]["id"]);

    let ada = crate::helpers::session_user(&first.body);
    let bob = app.register("bob").await;
    let post = app.create_post(&bob, "like me once").await;
    for _ in 0..2 {
        let liked = post_with_key(
            &app,
            &format!("/api/v1/posts/{post}/like"),
            Some(&ada.access_token),
            "like-1",
            None,
        )
        .await;
        assert_eq!(liked.status, 204, "{}", liked.text);
        let followed = post_with_key(
            &app,
            &format!("/api/v1/users/{}/follow", bob.id),
            Some(&ada.access_token),
            "follow-1",
            None,
        )
        .await;
        assert_eq!(followed.status, 204, "{}", followed.text);
    }
    let profile = app.get(&format!("/api/v1/users/{}", bob.id), None).await;
    assert_eq!(profile.body["followers_count"], 1);
    let liked = app.get(&format!("/api/v1/posts/{post}"), None).await;
    assert_eq!(liked.body["like_count"], 1);
}

/// A registration's answer holds a session: it is not kept to be replayed
/// (tokens at rest would be a session for whoever reads the table). A retry
/// with the key gets a new session for the same account; both work; no
/// token answer may be stored by a cache on the way.
#[both_modes]
async fn a_replayed_registration_opens_a_new_session_and_tokens_are_never_cached(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let no_store = |reply: &Reply| {
        assert_eq!(
            reply.headers["cache-control"], "no-store",
            "{:?}",
            reply.headers
        );
        assert_eq!(reply.headers["pragma"], "no-cache");
    };
    let first = sign_up_with_key(&app).await;
    assert_eq!(first.status, 201, "{}", first.text);
    no_store(&first);
    let again = sign_up_with_key(&app).await;
    assert_eq!(again.status, 201, "{}", again.text);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    no_store(&again);
    assert_eq!(again.body["user"], first.body["user"]);
    // A new session, not the first answer again (access tokens issued to
    // one account within one second are the same bytes; refresh tokens
    // are random).
    assert_ne!(again.body["refresh_token"], first.body["refresh_token"]);
    // Both sessions are live and the account's own.
    for answer in [&first, &again] {
        let token = answer.body["access_token"].as_str().unwrap();
        let me = read(
            app.client
                .get(app.url("/api/v1/me"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(me.status, 200, "{}", me.text);
        assert_eq!(me.body["id"], first.body["user"]["id"]);
        let refreshed = post_with_key(
            &app,
            "/api/v1/auth/refresh",
            None,
            "unused",
            Some(json!({"refresh_token": answer.body["refresh_token"]})),
        )
        .await;
        assert_eq!(refreshed.status, 200, "{}", refreshed.text);
        no_store(&refreshed);
    }
    let login = read(
        app.client
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({"login": "ada", "password": "correct horse battery"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(login.status, 200, "{}", login.text);
    no_store(&login);
}
