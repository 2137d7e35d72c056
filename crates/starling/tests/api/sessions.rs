//! A person's sessions: listed with their device, ended one by one, all at
//! once, or by a password change; refresh retries within the grace window;
//! the absolute lifetime. An ended session's access tokens are refused
//! although their signatures are good.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use starling_test_macros::both_modes;

use crate::helpers::{FANOUT_WAIT, Mode, Reply, TestApp, TestUser, read, session_user};
use crate::helpers::{spawn_app, spawn_app_with};
use crate::stream::end_reason;

const PASSWORD: &str = "correct horse battery";

/// `POST /auth/login` as the device `user_agent`.
async fn login_as(app: &TestApp, handle: &str, user_agent: &str) -> TestUser {
    let reply = read(
        app.client
            .post(app.url("/api/v1/auth/login"))
            .header("user-agent", user_agent)
            .json(&json!({"login": handle, "password": PASSWORD}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    session_user(&reply.body)
}

async fn sessions(app: &TestApp, user: &TestUser) -> Reply {
    app.get("/api/v1/me/sessions", Some(&user.access_token))
        .await
}

async fn end(app: &TestApp, user: &TestUser, session: &str) -> Reply {
    app.call(
        Method::DELETE,
        &format!("/api/v1/me/sessions/{session}"),
        Some(&user.access_token),
        None,
    )
    .await
}

/// The caller's own profile answers 200 to a live token, 401 to an ended one.
async fn me_status(app: &TestApp, user: &TestUser) -> u16 {
    app.get("/api/v1/me", Some(&user.access_token))
        .await
        .status
        .as_u16()
}

#[both_modes]
async fn sessions_are_listed_with_their_device_and_end_one_by_one(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    app.register("ada").await;
    let phone = login_as(&app, "ada", "Starling for Phones/1.0").await;
    let laptop = login_as(&app, "ada", "Mozilla/5.0 (X11; Linux) Firefox/130").await;
    let bob = app.register("bob").await;

    let listed = sessions(&app, &phone).await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let list = listed.body["data"].as_array().unwrap();
    // The registration's, the phone's and the laptop's: newest first.
    assert_eq!(list.len(), 3, "{}", listed.text);
    assert_eq!(
        list[0]["user_agent"],
        "Mozilla/5.0 (X11; Linux) Firefox/130"
    );
    assert_eq!(list[1]["user_agent"], "Starling for Phones/1.0");
    assert_eq!(list[1]["current"], true);
    assert_eq!(list[0]["current"], false);
    assert!(
        list[0]["address"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1")
    );
    for session in list {
        for field in ["created_at", "last_used_at", "expires_at"] {
            assert!(session[field].as_str().unwrap().ends_with('Z'), "{session}");
        }
    }
    let laptop_session = list[0]["id"].as_str().unwrap().to_owned();

    // Nobody else can see or end them.
    assert_eq!(
        sessions(&app, &bob).await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    end(&app, &bob, &laptop_session).await.assert_problem(404);
    app.get("/api/v1/me/sessions", None)
        .await
        .assert_problem(401);

    // Ended from the phone: the laptop's access token, refresh token and
    // live stream end with it, at once.
    let mut stream = app.open_stream(&laptop, None).await;
    let ended = end(&app, &phone, &laptop_session).await;
    assert_eq!(ended.status, 204, "{}", ended.text);
    assert_eq!(me_status(&app, &laptop).await, 401);
    let refused = app.get("/api/v1/me", Some(&laptop.access_token)).await;
    refused.assert_problem(401);
    assert!(refused.body["detail"].as_str().unwrap().contains("ended"));
    app.spend_refresh_token("refresh", &laptop.refresh_token)
        .await
        .assert_problem(401);
    assert_eq!(end_reason(&mut stream, FANOUT_WAIT).await, "session_ended");
    assert_eq!(me_status(&app, &phone).await, 200);

    let left = sessions(&app, &phone).await;
    assert_eq!(left.body["data"].as_array().unwrap().len(), 2);
    end(&app, &phone, &laptop_session).await.assert_problem(404);
    end(&app, &phone, "not-a-session").await.assert_problem(404);
}

#[both_modes]
async fn changing_the_password_ends_every_other_session(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    let other = login_as(&app, "ada", "another device").await;
    let change = |current: &str, new: &str| {
        let body = json!({"current_password": current, "new_password": new});
        let app = &app;
        let token = ada.access_token.clone();
        async move { app.post("/api/v1/me/password", Some(&token), body).await }
    };

    change("wrong password", "a new good password")
        .await
        .assert_problem(403);
    let invalid = change(PASSWORD, "short").await;
    invalid.assert_problem(422);
    assert_eq!(invalid.field_errors(), ["new_password"]);
    assert_eq!(
        me_status(&app, &other).await,
        200,
        "refused changes end nothing"
    );

    let changed = change(PASSWORD, "a new good password").await;
    assert_eq!(changed.status, 204, "{}", changed.text);
    assert_eq!(me_status(&app, &other).await, 401);
    app.spend_refresh_token("refresh", &other.refresh_token)
        .await
        .assert_problem(401);
    // The session that changed it goes on.
    assert_eq!(me_status(&app, &ada).await, 200);
    let refreshed = app.spend_refresh_token("refresh", &ada.refresh_token).await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.text);

    app.login("ada").await.assert_problem(401);
    let signed_in = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "ada", "password": "a new good password"}),
        )
        .await;
    assert_eq!(signed_in.status, 200, "{}", signed_in.text);
}

#[both_modes]
async fn wrong_current_passwords_back_off_like_failed_logins(mode: Mode) {
    let Some(app) = spawn_app_with(mode, |config| {
        config.auth.login_free_failures = 2;
    })
    .await
    else {
        return;
    };
    let ada = app.register("ada").await;
    let wrong = json!({"current_password": "guess", "new_password": "a new good password"});
    for _ in 0..2 {
        app.post(
            "/api/v1/me/password",
            Some(&ada.access_token),
            wrong.clone(),
        )
        .await
        .assert_problem(403);
    }
    // The third guess is refused unchecked, the right password too.
    let right = json!({"current_password": PASSWORD, "new_password": "a new good password"});
    let refused = app
        .post("/api/v1/me/password", Some(&ada.access_token), right)
        .await;
    refused.assert_problem(429);
    assert!(refused.headers.contains_key("retry-after"));
}

#[both_modes]
async fn logout_ends_one_session_or_every_one(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    let second = login_as(&app, "ada", "second").await;
    let third = login_as(&app, "ada", "third").await;

    // An access token alone signs its own session out.
    let alone = app
        .post("/api/v1/auth/logout", Some(&second.access_token), json!({}))
        .await;
    assert_eq!(alone.status, 204, "{}", alone.text);
    assert_eq!(me_status(&app, &second).await, 401);
    assert_eq!(me_status(&app, &ada).await, 200);
    // Neither token: nothing names a session.
    app.post("/api/v1/auth/logout", None, json!({}))
        .await
        .assert_problem(422);

    let everywhere = app
        .post(
            "/api/v1/auth/logout",
            Some(&ada.access_token),
            json!({"everywhere": true}),
        )
        .await;
    assert_eq!(everywhere.status, 204, "{}", everywhere.text);
    for user in [&ada, &third] {
        assert_eq!(me_status(&app, user).await, 401);
        app.spend_refresh_token("refresh", &user.refresh_token)
            .await
            .assert_problem(401);
    }

    // With a refresh token (no access token) everywhere works too.
    let fourth = login_as(&app, "ada", "fourth").await;
    let fifth = login_as(&app, "ada", "fifth").await;
    let by_refresh = app
        .post(
            "/api/v1/auth/logout",
            None,
            json!({"refresh_token": fourth.refresh_token, "everywhere": true}),
        )
        .await;
    assert_eq!(by_refresh.status, 204, "{}", by_refresh.text);
    assert_eq!(me_status(&app, &fifth).await, 401);
}

/// A client signing out sends its refresh token and, often, the access token
/// it holds, which may have expired or belong to a session already ended:
/// the refresh token decides, and the stale access token is no reason to
/// refuse.
#[both_modes]
async fn logout_with_a_refresh_token_ignores_a_stale_access_token(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    let other = login_as(&app, "ada", "other").await;
    // Ended from the other device: ada's access token is refused now.
    let listed = sessions(&app, &other).await;
    let first = listed.body["data"][1]["id"].as_str().unwrap().to_owned();
    assert_eq!(end(&app, &other, &first).await.status, 204);
    assert_eq!(me_status(&app, &ada).await, 401, "stale by now");
    let stale = app
        .post(
            "/api/v1/auth/logout",
            Some(&ada.access_token),
            json!({"refresh_token": ada.refresh_token}),
        )
        .await;
    assert_eq!(stale.status, 204, "{}", stale.text);
    app.spend_refresh_token("refresh", &ada.refresh_token)
        .await
        .assert_problem(401);
    // Everywhere, by the refresh token, with an access token of a session
    // that ended: still the refresh token's account.
    let everywhere = app
        .post(
            "/api/v1/auth/logout",
            Some(&ada.access_token),
            json!({"refresh_token": other.refresh_token, "everywhere": true}),
        )
        .await;
    assert_eq!(everywhere.status, 204, "{}", everywhere.text);
    app.spend_refresh_token("refresh", &other.refresh_token)
        .await
        .assert_problem(401);
}

#[both_modes]
async fn a_refresh_retried_within_the_grace_window_keeps_the_session(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    // The answer of this refresh is lost on the way to the client...
    let lost = app.spend_refresh_token("refresh", &ada.refresh_token).await;
    assert_eq!(lost.status, 200);
    let lost = session_user(&lost.body);
    // ... which retries with the same token, and gets a working pair.
    let retried = app.spend_refresh_token("refresh", &ada.refresh_token).await;
    assert_eq!(retried.status, 200, "{}", retried.text);
    let retried = session_user(&retried.body);
    assert_ne!(retried.refresh_token, lost.refresh_token);
    assert_eq!(me_status(&app, &retried).await, 200);
    let next = app
        .spend_refresh_token("refresh", &retried.refresh_token)
        .await;
    assert_eq!(next.status, 200, "{}", next.text);
    let next = session_user(&next.body);

    // Once the retry's token has been used, the first token again is
    // theft: the session ends.
    app.spend_refresh_token("refresh", &ada.refresh_token)
        .await
        .assert_problem(401);
    app.spend_refresh_token("refresh", &next.refresh_token)
        .await
        .assert_problem(401);
    assert_eq!(me_status(&app, &next).await, 401);
}

#[both_modes]
async fn past_the_grace_window_a_spent_token_ends_the_session(mode: Mode) {
    let Some(app) = spawn_app_with(mode, |config| {
        config.auth.refresh_retry_grace_secs = 1;
    })
    .await
    else {
        return;
    };
    let ada = app.register("ada").await;
    let rotated = app.spend_refresh_token("refresh", &ada.refresh_token).await;
    let rotated = session_user(&rotated.body);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    app.spend_refresh_token("refresh", &ada.refresh_token)
        .await
        .assert_problem(401);
    app.spend_refresh_token("refresh", &rotated.refresh_token)
        .await
        .assert_problem(401);
}

#[both_modes]
async fn a_session_ends_at_its_absolute_lifetime_however_often_refreshed(mode: Mode) {
    let Some(app) = spawn_app_with(mode, |config| {
        config.auth.session_max_age_secs = 2;
    })
    .await
    else {
        return;
    };
    let ada = app.register("ada").await;
    let refreshed = app.spend_refresh_token("refresh", &ada.refresh_token).await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.text);
    let refreshed = session_user(&refreshed.body);
    let listed = sessions(&app, &refreshed).await;
    assert_eq!(listed.body["data"].as_array().unwrap().len(), 1);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    app.spend_refresh_token("refresh", &refreshed.refresh_token)
        .await
        .assert_problem(401);
    let listed = sessions(&app, &refreshed).await;
    assert_eq!(
        listed.status, 200,
        "the access token outlives the session's end by design"
    );
    assert!(listed.body["data"].as_array().unwrap().is_empty());
}
