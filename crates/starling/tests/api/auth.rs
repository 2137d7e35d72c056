use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use starling_test_macros::both_modes;

use crate::helpers::Mode;
use crate::helpers::{session_user, spawn_app};

fn registration(handle: &str, email: &str, password: &str) -> serde_json::Value {
    json!({"handle": handle, "email": email, "password": password})
}

#[both_modes]
async fn registering_answers_a_session_and_the_new_profile(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let reply = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"handle": "Ada", "email": "Ada@Example.org", "password": "correct horse", "display_name": "Ada Lovelace"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let body = &reply.body;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert!(body["access_token"].as_str().unwrap().split('.').count() == 3);
    assert!(body["refresh_token"].as_str().unwrap().len() >= 32);
    let user = &body["user"];
    assert!(user["id"].as_str().unwrap().parse::<i64>().unwrap() > 0);
    assert_eq!(user["handle"], "Ada");
    assert_eq!(user["display_name"], "Ada Lovelace");
    assert_eq!(user["bio"], "");
    assert_eq!(user["followers_count"], 0);
    assert!(user["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(
        !reply.text.contains("correct horse"),
        "the password must never be echoed"
    );
    assert!(
        !reply.text.contains("argon2"),
        "the hash must never be shown"
    );
}

#[both_modes]
async fn registration_reports_every_invalid_field_at_once(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let reply = app
        .post(
            "/api/v1/auth/register",
            None,
            registration("no spaces!", "not-an-email", "short"),
        )
        .await;
    reply.assert_problem(422);
    let mut fields = reply.field_errors();
    fields.sort();
    assert_eq!(fields, vec!["email", "handle", "password"]);

    for (handle, email, password, field) in [
        ("", "a@example.org", "long enough", "handle"),
        (
            &"x".repeat(31) as &str,
            "a@example.org",
            "long enough",
            "handle",
        ),
        ("ok", "a@example.org", &"p".repeat(129), "password"),
    ] {
        let reply = app
            .post(
                "/api/v1/auth/register",
                None,
                registration(handle, email, password),
            )
            .await;
        reply.assert_problem(422);
        assert_eq!(reply.field_errors(), vec![field]);
    }
    let reply = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"handle": "ok", "email": "a@example.org", "password": "long enough", "display_name": "n".repeat(51)}),
        )
        .await;
    reply.assert_problem(422);
    assert_eq!(reply.field_errors(), vec!["display_name"]);
}

#[both_modes]
async fn taken_handles_ignoring_case_and_taken_emails_conflict(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    app.register("grace").await;
    let reply = app
        .post(
            "/api/v1/auth/register",
            None,
            registration("GRACE", "other@example.org", "long enough"),
        )
        .await;
    reply.assert_problem(409);
    assert_eq!(reply.field_errors(), vec!["handle"]);
    let reply = app
        .post(
            "/api/v1/auth/register",
            None,
            registration("hopper", "Grace@Example.org", "long enough"),
        )
        .await;
    reply.assert_problem(409);
    assert_eq!(reply.field_errors(), vec!["email"]);
}

#[both_modes]
async fn the_display_name_defaults_to_the_handle(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let user = app.register("linus").await;
    let me = app.get("/api/v1/me", Some(&user.access_token)).await;
    assert_eq!(me.body["display_name"], "linus");
}

#[both_modes]
async fn login_accepts_the_handle_in_any_case_or_the_email(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let user = app.register("margaret").await;
    for login in [
        "margaret",
        "MARGARET",
        "margaret@example.org",
        " Margaret@EXAMPLE.org ",
    ] {
        let reply = app
            .post(
                "/api/v1/auth/login",
                None,
                json!({"login": login, "password": "correct horse battery"}),
            )
            .await;
        assert_eq!(reply.status, 200, "{login}: {}", reply.text);
        let session = session_user(&reply.body);
        assert_eq!(session.id, user.id);
        let me = app.get("/api/v1/me", Some(&session.access_token)).await;
        assert_eq!(me.body["handle"], "margaret");
    }
}

#[both_modes]
async fn a_wrong_password_and_an_unknown_account_get_the_same_answer(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    app.register("alan").await;
    let wrong_password = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "alan", "password": "not the password"}),
        )
        .await;
    let unknown_account = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "nobody", "password": "not the password"}),
        )
        .await;
    wrong_password.assert_problem(401);
    unknown_account.assert_problem(401);
    assert_eq!(wrong_password.body, unknown_account.body);
    let empty = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "", "password": ""}),
        )
        .await;
    assert_eq!(empty.body, unknown_account.body);
}

#[both_modes]
async fn refresh_tokens_rotate_and_a_reused_one_revokes_the_session(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let user = app.register("ken").await;
    let first = app
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": user.refresh_token}),
        )
        .await;
    assert_eq!(first.status, 200, "{}", first.text);
    let rotated = session_user(&first.body);
    assert_ne!(rotated.refresh_token, user.refresh_token);
    assert_eq!(rotated.id, user.id);
    let me = app.get("/api/v1/me", Some(&rotated.access_token)).await;
    assert_eq!(me.status, 200);

    // The client goes on with the new token...
    let third = app
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": rotated.refresh_token}),
        )
        .await;
    assert_eq!(third.status, 200, "{}", third.text);
    let third = session_user(&third.body);
    // ... and then the spent token comes again: someone else has it. It
    // fails, and so does the live one (a spent token whose successor is
    // unspent is a retry, within a grace window: see sessions.rs).
    let reuse = app
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": user.refresh_token}),
        )
        .await;
    reuse.assert_problem(401);
    let successor = app
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": third.refresh_token}),
        )
        .await;
    successor.assert_problem(401);

    // Another login's session is a different family and keeps working.
    let login = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "ken", "password": "correct horse battery"}),
        )
        .await;
    let other = session_user(&login.body);
    let refreshed = app
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": other.refresh_token}),
        )
        .await;
    assert_eq!(refreshed.status, 200);
}

#[both_modes]
async fn unknown_or_malformed_refresh_tokens_are_refused(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    for token in ["", "made-up", &"x".repeat(5000)] {
        let reply = app
            .post(
                "/api/v1/auth/refresh",
                None,
                json!({"refresh_token": token}),
            )
            .await;
        reply.assert_problem(401);
    }
}

#[both_modes]
async fn logout_ends_the_session(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let user = app.register("dennis").await;
    let reply = app
        .post(
            "/api/v1/auth/logout",
            None,
            json!({"refresh_token": user.refresh_token}),
        )
        .await;
    assert_eq!(reply.status, 204);
    let refresh = app
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": user.refresh_token}),
        )
        .await;
    refresh.assert_problem(401);
    // Unknown tokens log out quietly: logout reveals nothing.
    let unknown = app
        .post(
            "/api/v1/auth/logout",
            None,
            json!({"refresh_token": "never-issued"}),
        )
        .await;
    assert_eq!(unknown.status, 204);
}

#[both_modes]
async fn missing_malformed_tampered_and_foreign_access_tokens_are_refused(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let user = app.register("barbara").await;

    let missing = app.get("/api/v1/me", None).await;
    missing.assert_problem(401);
    assert!(missing.headers.contains_key("www-authenticate"));

    let mut parts: Vec<String> = user.access_token.split('.').map(str::to_owned).collect();
    let forged_claims = base64_url(&format!(
        r#"{{"sub":"1","iss":"starling","aud":"starling-api","iat":0,"exp":{}}}"#,
        i64::MAX / 2
    ));
    parts[1] = forged_claims;
    let tampered = parts.join(".");
    let reply = app.get("/api/v1/me", Some(&tampered)).await;
    reply.assert_problem(401);

    for header in [
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer    ",
        "token-without-scheme",
    ] {
        let response = app
            .client
            .get(app.url("/api/v1/me"))
            .header("authorization", header)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{header:?}");
    }

    // A token signed by another installation's key.
    let Some(other) = crate::helpers::spawn_app(mode).await else {
        return;
    };
    let stranger = other.register("barbara").await;
    let reply = app.get("/api/v1/me", Some(&stranger.access_token)).await;
    reply.assert_problem(401);

    // A bad token where a token is optional is still refused, not ignored.
    let post = app.create_post(&user, "hi").await;
    let reply = app
        .call(
            Method::GET,
            &format!("/api/v1/posts/{post}"),
            Some("garbage"),
            None,
        )
        .await;
    reply.assert_problem(401);
}

fn base64_url(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

#[both_modes]
async fn a_valid_token_for_an_account_this_database_lacks_is_refused(mode: Mode) {
    // Two installations sharing one signing key (a misconfiguration): a token
    // of one verifies at the other, whose database has no such account.
    let key_dir = tempfile::tempdir().unwrap();
    let key = key_dir.path().join("shared.pem");
    let Some(first) = crate::helpers::spawn_app_with(mode, |config| {
        config.auth.signing_key_file = Some(key.clone())
    })
    .await
    else {
        return;
    };
    let Some(second) = crate::helpers::spawn_app_with(mode, |config| {
        config.auth.signing_key_file = Some(key.clone())
    })
    .await
    else {
        return;
    };
    let stranger = first.register("stranger").await;
    let local = second.register("local").await;
    let token = Some(stranger.access_token.as_str());
    second.get("/api/v1/me", token).await.assert_problem(401);
    second
        .post("/api/v1/posts", token, json!({"text": "from nowhere"}))
        .await
        .assert_problem(401);
    second
        .call(
            Method::POST,
            &format!("/api/v1/users/{}/follow", local.id),
            token,
            None,
        )
        .await
        .assert_problem(401);
}

/// A login attempt from `address` (forwarded by the test, a trusted proxy):
/// status, and `Retry-After` when there is one.
async fn login_from(
    app: &crate::helpers::TestApp,
    address: &str,
    login: &str,
    password: &str,
) -> (u16, Option<u64>) {
    let response = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header("x-forwarded-for", address)
        .json(&json!({"login": login, "password": password}))
        .send()
        .await
        .unwrap();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|value| value.to_str().unwrap().parse().unwrap());
    (response.status().as_u16(), retry_after)
}

#[both_modes]
async fn failed_logins_back_off_per_account_from_any_address(mode: Mode) {
    let Some(app) = crate::helpers::spawn_app_with(mode, |config| {
        config.auth.login_free_failures = 2;
        config.auth.login_max_backoff_secs = 60;
    })
    .await
    else {
        return;
    };
    app.register("ada").await;
    let (right, wrong) = ("correct horse battery", "guess");
    // Two free failures, from two addresses, by both of ada's names.
    assert_eq!(login_from(&app, "198.51.100.1", "ada", wrong).await.0, 401);
    assert_eq!(
        login_from(&app, "198.51.100.2", "ada@example.org", wrong)
            .await
            .0,
        401
    );
    // Then the account waits a second, whoever asks and whatever they send:
    // the right password is not even looked at.
    for (address, password) in [("198.51.100.3", wrong), ("198.51.100.4", right)] {
        let (status, retry_after) = login_from(&app, address, "ADA", password).await;
        assert_eq!((status, retry_after), (429, Some(1)), "{address}");
    }
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    // One more failure doubles the wait.
    assert_eq!(login_from(&app, "198.51.100.5", "ada", wrong).await.0, 401);
    let (status, retry_after) = login_from(&app, "198.51.100.5", "ada", right).await;
    assert_eq!((status, retry_after), (429, Some(2)));
    let refused = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "ada", "password": right}),
        )
        .await;
    refused.assert_problem(429);
    assert_eq!(refused.body["type"], "/problems/throttled");
    // Another account is not held back by ada's.
    app.register("bob").await;
    assert_eq!(login_from(&app, "198.51.100.5", "bob", right).await.0, 200);

    // A name of no account backs off the same way: nothing tells them apart.
    for expected in [401, 401, 429] {
        assert_eq!(
            login_from(&app, "198.51.100.6", "nobody", wrong).await.0,
            expected
        );
    }

    // Once the wait is over, the right password gets in and the count
    // starts again from nothing.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert_eq!(login_from(&app, "198.51.100.7", "ada", right).await.0, 200);
    for _ in 0..2 {
        assert_eq!(login_from(&app, "198.51.100.7", "ada", wrong).await.0, 401);
    }
}
