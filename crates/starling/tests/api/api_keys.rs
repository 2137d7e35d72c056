//! API keys for scripts and bots: made once and shown once, listed by
//! prefix, scoped, rate limited on their own, revoked, expired; never able
//! to manage credentials.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use starling_test_macros::both_modes;

use crate::helpers::{Mode, Reply, TestApp, TestUser, spawn_app, spawn_app_with};

/// `POST /me/api-keys` by `owner` (a session's token).
async fn make_key(app: &TestApp, owner: &TestUser, body: Value) -> Reply {
    app.post("/api/v1/me/api-keys", Some(&owner.access_token), body)
        .await
}

/// A key of `owner` with `scopes`, and its id.
async fn key_with(app: &TestApp, owner: &TestUser, scopes: &[&str]) -> (String, String) {
    let made = make_key(app, owner, json!({"name": "a bot", "scopes": scopes})).await;
    assert_eq!(made.status, 201, "{}", made.text);
    (
        made.body["key"].as_str().unwrap().to_owned(),
        made.body["api_key"]["id"].as_str().unwrap().to_owned(),
    )
}

async fn with_key(
    app: &TestApp,
    method: Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> Reply {
    app.call(method, path, Some(key), body).await
}

#[both_modes]
async fn a_key_is_shown_once_listed_by_its_prefix_and_acts_for_its_owner(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    let made = make_key(
        &app,
        &ada,
        json!({"name": "nightly backup", "scopes": ["write", "read"]}),
    )
    .await;
    assert_eq!(made.status, 201, "{}", made.text);
    assert_eq!(made.headers["cache-control"], "no-store");
    let key = made.body["key"].as_str().unwrap().to_owned();
    let prefix = made.body["api_key"]["prefix"].as_str().unwrap().to_owned();
    assert!(key.starts_with(&format!("sk_{prefix}_")), "{key}");
    assert_eq!(key.len(), 3 + 12 + 1 + 43);
    assert_eq!(made.body["api_key"]["scopes"], json!(["read", "write"]));
    assert_eq!(made.body["api_key"]["last_used_at"], Value::Null);

    // It acts for ada.
    let me = with_key(&app, Method::GET, "/api/v1/me", &key, None).await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.body["id"], ada.id.as_str());
    let posted = with_key(
        &app,
        Method::POST,
        "/api/v1/posts",
        &key,
        Some(json!({"text": "posted by a script"})),
    )
    .await;
    assert_eq!(posted.status, 201, "{}", posted.text);
    assert_eq!(posted.body["author"]["id"], ada.id.as_str());

    // Listed without the key, with its last use.
    let listed = app
        .get("/api/v1/me/api-keys", Some(&ada.access_token))
        .await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let keys = listed.body["data"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["name"], "nightly backup");
    assert_eq!(keys[0]["prefix"], prefix.as_str());
    assert!(keys[0]["last_used_at"].as_str().unwrap().ends_with('Z'));
    assert!(
        !listed.text.contains(&key[16..]),
        "the secret is never listed"
    );

    // Another account neither sees nor revokes it.
    let bob = app.register("bob").await;
    let bobs = app
        .get("/api/v1/me/api-keys", Some(&bob.access_token))
        .await;
    assert!(bobs.body["data"].as_array().unwrap().is_empty());
    let id = keys[0]["id"].as_str().unwrap();
    app.call(
        Method::DELETE,
        &format!("/api/v1/me/api-keys/{id}"),
        Some(&bob.access_token),
        None,
    )
    .await
    .assert_problem(404);
}

#[both_modes]
async fn a_key_does_only_what_its_scopes_allow(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    let (reader, _) = key_with(&app, &ada, &["read"]).await;

    assert_eq!(
        with_key(&app, Method::GET, "/api/v1/feed", &reader, None)
            .await
            .status,
        200
    );
    let refused = with_key(
        &app,
        Method::POST,
        "/api/v1/posts",
        &reader,
        Some(json!({"text": "not allowed"})),
    )
    .await;
    refused.assert_problem(403);
    assert_eq!(
        refused.headers["www-authenticate"],
        "Bearer error=\"insufficient_scope\", scope=\"write\""
    );
    let follow = format!("/api/v1/users/{}/follow", bob.id);
    with_key(&app, Method::POST, &follow, &reader, None)
        .await
        .assert_problem(403);
    with_key(&app, Method::GET, "/api/v1/notifications", &reader, None)
        .await
        .assert_problem(403);

    let (follower, _) = key_with(&app, &ada, &["follow"]).await;
    let followed = with_key(&app, Method::POST, &follow, &follower, None).await;
    assert_eq!(followed.status, 204, "{}", followed.text);
    with_key(&app, Method::GET, "/api/v1/feed", &follower, None)
        .await
        .assert_problem(403);
    let (notified, _) = key_with(&app, &ada, &["notifications"]).await;
    assert_eq!(
        with_key(&app, Method::GET, "/api/v1/notifications", &notified, None)
            .await
            .status,
        200
    );
}

#[both_modes]
async fn keys_cannot_manage_credentials_or_open_streams(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    let (key, id) = key_with(
        &app,
        &ada,
        &["read", "write", "follow", "notifications", "media"],
    )
    .await;
    for (method, path, body) in [
        (Method::GET, "/api/v1/me/api-keys".to_owned(), None),
        (
            Method::POST,
            "/api/v1/me/api-keys".to_owned(),
            Some(json!({"name": "child", "scopes": ["read"]})),
        ),
        (Method::DELETE, format!("/api/v1/me/api-keys/{id}"), None),
        (Method::GET, "/api/v1/me/sessions".to_owned(), None),
        (
            Method::POST,
            "/api/v1/me/password".to_owned(),
            Some(
                json!({"current_password": "correct horse battery", "new_password": "taken over!"}),
            ),
        ),
        (
            Method::POST,
            "/api/v1/auth/logout".to_owned(),
            Some(json!({"everywhere": true})),
        ),
        (Method::GET, "/api/v1/stream".to_owned(), None),
    ] {
        let refused = with_key(&app, method.clone(), &path, &key, body).await;
        refused.assert_problem(403);
        assert!(
            refused.body["detail"].as_str().unwrap().contains("sign in"),
            "{method} {path}: {}",
            refused.text
        );
    }
    // The session the key was made in is untouched.
    assert_eq!(
        app.get("/api/v1/me", Some(&ada.access_token)).await.status,
        200
    );
}

#[both_modes]
async fn a_revoked_or_expired_key_is_refused(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    let (key, id) = key_with(&app, &ada, &["read"]).await;
    assert_eq!(
        with_key(&app, Method::GET, "/api/v1/me", &key, None)
            .await
            .status,
        200
    );
    let revoked = app
        .call(
            Method::DELETE,
            &format!("/api/v1/me/api-keys/{id}"),
            Some(&ada.access_token),
            None,
        )
        .await;
    assert_eq!(revoked.status, 204, "{}", revoked.text);
    let refused = with_key(&app, Method::GET, "/api/v1/me", &key, None).await;
    refused.assert_problem(401);
    assert!(refused.body["detail"].as_str().unwrap().contains("revoked"));
    app.call(
        Method::DELETE,
        &format!("/api/v1/me/api-keys/{id}"),
        Some(&ada.access_token),
        None,
    )
    .await
    .assert_problem(404);

    // Made to expire in two seconds: it works, then it does not.
    let soon = starling_domain::Timestamp::now()
        .plus_seconds(2)
        .to_rfc3339();
    let made = make_key(
        &app,
        &ada,
        json!({"name": "short-lived", "scopes": ["read"], "expires_at": soon}),
    )
    .await;
    assert_eq!(made.status, 201, "{}", made.text);
    let short = made.body["key"].as_str().unwrap().to_owned();
    assert_eq!(
        with_key(&app, Method::GET, "/api/v1/me", &short, None)
            .await
            .status,
        200
    );
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    with_key(&app, Method::GET, "/api/v1/me", &short, None)
        .await
        .assert_problem(401);

    // Keys never made, and keys of the right shape never made.
    for fake in [
        "sk_short".to_owned(),
        format!("sk_abcdefghijkl_{}", "A".repeat(43)),
    ] {
        with_key(&app, Method::GET, "/api/v1/me", &fake, None)
            .await
            .assert_problem(401);
    }
}

#[both_modes]
async fn keys_are_made_only_with_a_name_known_scopes_and_a_future_expiry(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    let cases = [
        (json!({"name": "", "scopes": ["read"]}), "name"),
        (json!({"name": "x".repeat(65), "scopes": ["read"]}), "name"),
        (json!({"name": "bot", "scopes": []}), "scopes"),
        (json!({"name": "bot", "scopes": ["admin"]}), "scopes"),
        (
            json!({"name": "bot", "scopes": ["read"], "expires_at": "2001-01-01T00:00:00Z"}),
            "expires_at",
        ),
        (
            json!({"name": "bot", "scopes": ["read"], "expires_at": "next week"}),
            "expires_at",
        ),
    ];
    for (body, field) in cases {
        let refused = make_key(&app, &ada, body.clone()).await;
        refused.assert_problem(422);
        assert_eq!(refused.field_errors(), [field], "{body}: {}", refused.text);
    }
    app.post(
        "/api/v1/me/api-keys",
        None,
        json!({"name": "bot", "scopes": ["read"]}),
    )
    .await
    .assert_problem(401);
}

#[both_modes]
async fn a_key_counts_against_its_own_quota(mode: Mode) {
    let Some(app) = spawn_app_with(mode, |config| {
        config.rate_limits.enabled = true;
        config.rate_limits.api_key.limit = 3;
        config.rate_limits.api_key.window_secs = 60;
    })
    .await
    else {
        return;
    };
    let ada = app.register("ada").await;
    let (key, _) = key_with(&app, &ada, &["read"]).await;
    for remaining in (0..3).rev() {
        let reply = with_key(&app, Method::GET, "/api/v1/feed", &key, None).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.headers["ratelimit-limit"], "3");
        assert_eq!(
            reply.headers["ratelimit-remaining"].to_str().unwrap(),
            remaining.to_string()
        );
    }
    let refused = with_key(&app, Method::GET, "/api/v1/feed", &key, None).await;
    refused.assert_problem(429);
    // Its owner's own reads count apart.
    let own = app.get("/api/v1/feed", Some(&ada.access_token)).await;
    assert_eq!(own.status, 200, "{}", own.text);
    assert_ne!(own.headers["ratelimit-limit"], "3");
}
