use reqwest::Method;
use serde_json::json;

use starling_test_macros::both_modes;

use crate::helpers::Mode;
use crate::helpers::spawn_app;

#[both_modes]
async fn me_shows_the_callers_profile(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let user = app.register("ada").await;
    let reply = app.get("/api/v1/me", Some(&user.access_token)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["id"], user.id.as_str());
    assert_eq!(reply.body["handle"], "ada");
    for field in ["followers_count", "following_count", "posts_count"] {
        assert_eq!(reply.body[field], 0, "{field}");
    }
}

#[both_modes]
async fn profiles_are_edited_field_by_field(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let user = app.register("ada").await;
    let token = Some(user.access_token.as_str());
    let reply = app
        .call(
            Method::PATCH,
            "/api/v1/me",
            token,
            Some(json!({"display_name": "  Ada L.  "})),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["display_name"], "Ada L.");
    let reply = app
        .call(
            Method::PATCH,
            "/api/v1/me",
            token,
            Some(json!({"bio": "Analytical engines"})),
        )
        .await;
    assert_eq!(reply.body["display_name"], "Ada L.");
    assert_eq!(reply.body["bio"], "Analytical engines");
    let reply = app
        .call(
            Method::PATCH,
            "/api/v1/me",
            token,
            Some(json!({"display_name": ""})),
        )
        .await;
    assert_eq!(
        reply.body["display_name"], "ada",
        "an empty name shows the handle"
    );
    let public = app.get(&format!("/api/v1/users/{}", user.id), None).await;
    assert_eq!(public.body["bio"], "Analytical engines");

    let reply = app
        .call(
            Method::PATCH,
            "/api/v1/me",
            token,
            Some(json!({"bio": "b".repeat(161), "display_name": "n".repeat(51)})),
        )
        .await;
    reply.assert_problem(422);
    let mut fields = reply.field_errors();
    fields.sort();
    assert_eq!(fields, vec!["bio", "display_name"]);
    let reply = app
        .call(Method::PATCH, "/api/v1/me", None, Some(json!({"bio": "x"})))
        .await;
    reply.assert_problem(401);
}

#[both_modes]
async fn users_are_found_by_id_or_by_handle_in_any_case(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let user = app.register("Grace_H").await;
    for path in [
        format!("/api/v1/users/{}", user.id),
        "/api/v1/users/@Grace_H".to_owned(),
        "/api/v1/users/@grace_h".to_owned(),
    ] {
        let reply = app.get(&path, None).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text);
        assert_eq!(reply.body["id"], user.id.as_str());
        assert_eq!(reply.body["handle"], "Grace_H");
        assert!(reply.body.get("email").is_none(), "emails are private");
    }
    for path in [
        "/api/v1/users/123",
        "/api/v1/users/@nobody",
        "/api/v1/users/abc",
        "/api/v1/users/@bad%20handle",
        "/api/v1/users/-5",
    ] {
        app.get(path, None).await.assert_problem(404);
    }
}

#[both_modes]
async fn profile_counters_follow_posts_and_follows(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    app.create_post(&ada, "one").await;
    let second = app.create_post(&ada, "two").await;
    app.follow(&bob, &ada).await;
    let profile = app.get(&format!("/api/v1/users/{}", ada.id), None).await;
    assert_eq!(profile.body["posts_count"], 2);
    assert_eq!(profile.body["followers_count"], 1);
    assert_eq!(
        app.get("/api/v1/me", Some(&bob.access_token)).await.body["following_count"],
        1
    );
    app.delete_post(&ada, &second).await;
    let profile = app.get(&format!("/api/v1/users/{}", ada.id), None).await;
    assert_eq!(profile.body["posts_count"], 1);
}
