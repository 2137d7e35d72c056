use reqwest::Method;

use starling_test_macros::both_modes;

use crate::helpers::Mode;
use crate::helpers::spawn_app;

#[both_modes]
async fn following_is_idempotent_and_counted_exactly(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    app.follow(&bob, &ada).await;
    app.follow(&bob, &ada).await;
    let ada_profile = app.get(&format!("/api/v1/users/{}", ada.id), None).await;
    assert_eq!(ada_profile.body["followers_count"], 1);
    assert_eq!(
        app.get("/api/v1/me", Some(&bob.access_token)).await.body["following_count"],
        1
    );

    app.unfollow(&bob, &ada).await;
    app.unfollow(&bob, &ada).await;
    let ada_profile = app.get(&format!("/api/v1/users/{}", ada.id), None).await;
    assert_eq!(ada_profile.body["followers_count"], 0);
    assert_eq!(
        app.get("/api/v1/me", Some(&bob.access_token)).await.body["following_count"],
        0
    );
}

#[both_modes]
async fn you_cannot_follow_yourself_nobody_or_anonymously(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    let token = Some(ada.access_token.as_str());
    let own = format!("/api/v1/users/{}/follow", ada.id);
    app.call(Method::POST, &own, token, None)
        .await
        .assert_problem(422);
    app.call(Method::DELETE, &own, token, None)
        .await
        .assert_problem(422);
    app.call(Method::POST, "/api/v1/users/42/follow", token, None)
        .await
        .assert_problem(404);
    app.call(Method::DELETE, "/api/v1/users/42/follow", token, None)
        .await
        .assert_problem(404);
    app.call(Method::POST, "/api/v1/users/@nobody/follow", token, None)
        .await
        .assert_problem(404);
    let bob = app.register("bob").await;
    let reply = app
        .call(
            Method::POST,
            &format!("/api/v1/users/{}/follow", bob.id),
            None,
            None,
        )
        .await;
    reply.assert_problem(401);
}

#[both_modes]
async fn users_can_be_followed_by_handle(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    app.register("Bob").await;
    let reply = app
        .call(
            Method::POST,
            "/api/v1/users/@bob/follow",
            Some(&ada.access_token),
            None,
        )
        .await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    let following = app.get("/api/v1/users/@ada/following", None).await;
    assert_eq!(following.body["data"][0]["handle"], "Bob");
}

#[both_modes]
async fn follower_and_following_lists_page_newest_first(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let star = app.register("star").await;
    let mut fans = Vec::new();
    for index in 0..5 {
        let fan = app.register(&format!("fan{index}")).await;
        app.follow(&fan, &star).await;
        fans.push(fan);
    }
    let first = app
        .get(
            &format!("/api/v1/users/{}/followers?limit=2", star.id),
            None,
        )
        .await;
    assert_eq!(first.status, 200);
    let handles: Vec<&str> = first.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|user| user["handle"].as_str().unwrap())
        .collect();
    assert_eq!(handles, vec!["fan4", "fan3"]);
    assert_eq!(first.body["pagination"]["has_more"], true);
    assert_eq!(first.body["data"][0]["following_count"], 1);

    let all = app
        .all_pages(&format!("/api/v1/users/{}/followers", star.id), None, 2)
        .await;
    let expected: Vec<String> = fans.iter().rev().map(|fan| fan.id.clone()).collect();
    assert_eq!(all, expected);

    app.follow(&fans[0], &fans[1]).await;
    let following = app
        .all_pages(&format!("/api/v1/users/{}/following", fans[0].id), None, 1)
        .await;
    assert_eq!(following, vec![fans[1].id.clone(), star.id.clone()]);

    // A followers cursor is no good for another list.
    let cursor = first.body["pagination"]["next_cursor"].as_str().unwrap();
    let reply = app
        .get(
            &format!("/api/v1/users/{}/followers?cursor={cursor}", fans[0].id),
            None,
        )
        .await;
    reply.assert_problem(400);
    app.get("/api/v1/users/77/followers", None)
        .await
        .assert_problem(404);
    app.get("/api/v1/users/77/following", None)
        .await
        .assert_problem(404);
}
