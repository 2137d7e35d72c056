use reqwest::Method;
use serde_json::json;

use starling_test_macros::both_modes;

use crate::helpers::Mode;
use crate::helpers::{read, spawn_app};

#[both_modes]
async fn malformed_json_is_a_400_and_the_wrong_shape_a_422(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let send = |body: &'static str, content_type: Option<&'static str>| {
        let mut request = app.client.post(app.url("/api/v1/auth/register")).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        async move { read(request.send().await.unwrap()).await }
    };
    send("{\"handle\": ", Some("application/json"))
        .await
        .assert_problem(400);
    send("not json at all", Some("application/json"))
        .await
        .assert_problem(400);

    let wrong_type = send(
        r#"{"handle": 5, "email": "a@b.org", "password": "long enough"}"#,
        Some("application/json"),
    )
    .await;
    wrong_type.assert_problem(422);
    assert_eq!(wrong_type.field_errors(), vec!["handle"]);
    let missing = send(r#"{"handle": "ada"}"#, Some("application/json")).await;
    missing.assert_problem(422);
    let unknown = send(
        r#"{"handle": "ada", "email": "a@b.org", "password": "long enough", "admin": true}"#,
        Some("application/json"),
    )
    .await;
    unknown.assert_problem(422);
    send("[]", Some("application/json"))
        .await
        .assert_problem(422);

    send(r#"{"handle": "ada"}"#, None).await.assert_problem(415);
    send(r#"{"handle": "ada"}"#, Some("text/plain"))
        .await
        .assert_problem(415);
}

#[both_modes]
async fn bodies_over_64_kib_are_refused_with_413(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let user = app.register("ada").await;
    let big = json!({"text": "x".repeat(70 * 1024)});
    let reply = app
        .post("/api/v1/posts", Some(&user.access_token), big)
        .await;
    reply.assert_problem(413);
    // Just under the limit is read (and then refused on its merits).
    let near = json!({"text": "x".repeat(60 * 1024)});
    let reply = app
        .post("/api/v1/posts", Some(&user.access_token), near)
        .await;
    reply.assert_problem(422);
}

#[both_modes]
async fn limits_and_cursors_are_checked(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let user = app.register("ada").await;
    let token = Some(user.access_token.as_str());
    for query in [
        "limit=0",
        "limit=101",
        "limit=-3",
        "limit=ten",
        "limit=1.5",
        "limit=",
    ] {
        let reply = app.get(&format!("/api/v1/feed?{query}"), token).await;
        reply.assert_problem(400);
        assert_eq!(reply.field_errors(), vec!["limit"], "{query}");
    }
    for cursor in [
        "garbage",
        "%00%01",
        "djE6ZmVlZDox",
        "bm90IGEgY3Vyc29y",
        "AAAA",
    ] {
        let reply = app
            .get(&format!("/api/v1/feed?cursor={cursor}"), token)
            .await;
        reply.assert_problem(400);
        assert_eq!(reply.field_errors(), vec!["cursor"], "{cursor}");
    }
    app.get("/api/v1/feed?limit=100", token).await;
    let reply = app.get("/api/v1/feed?unknown=1", token).await;
    reply.assert_problem(400);
    let reply = app
        .get(&format!("/api/v1/users/{}/posts?limit=0", user.id), None)
        .await;
    reply.assert_problem(400);
}

#[both_modes]
async fn unknown_routes_and_wrong_methods_answer_problems(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    app.get("/api/v1/nothing-here", None)
        .await
        .assert_problem(404);
    app.get("/nothing-here", None).await.assert_problem(404);
    let reply = app
        .call(Method::PUT, "/api/v1/posts", None, Some(json!({})))
        .await;
    reply.assert_problem(405);
    assert!(reply.headers.contains_key("allow"));
}

#[both_modes]
async fn hostile_input_never_causes_a_server_error(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let user = app.register("ada").await;
    let token = Some(user.access_token.as_str());
    let bodies = [
        json!(null),
        json!({"text": null}),
        json!({"text": ["a"]}),
        json!({"text": "\u{0000}"}),
        json!({"text": "ok", "reply_to": "-1"}),
        json!({"text": "ok", "reply_to": "99999999999999999999999"}),
        json!({"text": "ok", "reply_to": ""}),
        json!({"text": "\u{202e}reversed"}),
    ];
    for body in bodies {
        let reply = app.post("/api/v1/posts", token, body.clone()).await;
        assert!(
            reply.status.is_client_error() || reply.status.is_success(),
            "{body}: {}",
            reply.text
        );
    }
    let paths = [
        "/api/v1/posts/%FF%FE",
        "/api/v1/posts/9223372036854775807",
        "/api/v1/posts/9223372036854775808",
        "/api/v1/users/@",
        "/api/v1/users/@%00",
        "/api/v1/users/0/posts",
        "/api/v1/feed?cursor=%FF",
        "/api/v1/feed?limit=99999999999999999999999",
    ];
    for path in paths {
        let reply = app.get(path, token).await;
        assert!(
            reply.status.is_client_error(),
            "{path}: {} {}",
            reply.status,
            reply.text
        );
        assert_eq!(reply.content_type(), "application/problem+json", "{path}");
    }
    let logins = [
        json!({"login": "\u{0000}", "password": "x"}),
        json!({"login": "a".repeat(10_000), "password": "p".repeat(10_000)}),
    ];
    for body in logins {
        app.post("/api/v1/auth/login", None, body)
            .await
            .assert_problem(401);
    }
}
