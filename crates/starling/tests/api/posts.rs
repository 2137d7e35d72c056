use reqwest::Method;
use serde_json::json;

use starling_test_macros::both_modes;

use crate::helpers::Mode;
use crate::helpers::spawn_app;

#[both_modes]
async fn a_new_post_answers_201_with_its_location(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    let reply = app
        .post(
            "/api/v1/posts",
            Some(&ada.access_token),
            json!({"text": "Hello, world"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let id = reply.body["id"].as_str().unwrap();
    assert_eq!(
        reply.headers["location"],
        format!("/api/v1/posts/{id}").as_str()
    );
    assert_eq!(reply.body["text"], "Hello, world");
    assert_eq!(reply.body["author"]["handle"], "ada");
    assert_eq!(reply.body["author"]["id"], ada.id.as_str());
    assert_eq!(reply.body["reply_to"], serde_json::Value::Null);
    assert_eq!(reply.body["like_count"], 0);
    assert_eq!(reply.body["liked_by_me"], false);

    let fetched = app.get(&format!("/api/v1/posts/{id}"), None).await;
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.body, reply.body);
}

#[both_modes]
async fn post_text_is_validated_in_unicode_scalar_values(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    let token = Some(ada.access_token.as_str());
    for text in ["", "   ", "\n\t", &"a".repeat(281), &"é".repeat(281)] {
        let reply = app
            .post("/api/v1/posts", token, json!({ "text": text }))
            .await;
        reply.assert_problem(422);
        assert_eq!(reply.field_errors(), vec!["text"]);
    }
    let emoji = "🐦".repeat(280);
    let reply = app
        .post("/api/v1/posts", token, json!({ "text": emoji }))
        .await;
    assert_eq!(reply.status, 201);
    assert_eq!(reply.body["text"], emoji.as_str());
    let reply = app
        .post("/api/v1/posts", None, json!({"text": "anonymous"}))
        .await;
    reply.assert_problem(401);
}

#[both_modes]
async fn replies_point_at_a_live_post_and_are_counted(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    let parent = app.create_post(&ada, "question?").await;
    let reply = app
        .post(
            "/api/v1/posts",
            Some(&bob.access_token),
            json!({"text": "answer", "reply_to": parent}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.body["reply_to"], parent.as_str());
    let answer = reply.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.get(&format!("/api/v1/posts/{parent}"), None).await.body["reply_count"],
        1
    );

    for bad in [json!("not-an-id"), json!(5)] {
        let reply = app
            .post(
                "/api/v1/posts",
                Some(&bob.access_token),
                json!({"text": "answer", "reply_to": bad}),
            )
            .await;
        reply.assert_problem(422);
        assert_eq!(reply.field_errors(), vec!["reply_to"]);
    }
    // A well-formed id of no post: what its GET answers.
    let reply = app
        .post(
            "/api/v1/posts",
            Some(&bob.access_token),
            json!({"text": "answer", "reply_to": "12345"}),
        )
        .await;
    reply.assert_problem(404);
    app.delete_post(&bob, &answer).await;
    assert_eq!(
        app.get(&format!("/api/v1/posts/{parent}"), None).await.body["reply_count"],
        0
    );
}

#[both_modes]
async fn only_the_author_deletes_and_deleted_posts_are_gone(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    let post = app.create_post(&ada, "ephemeral").await;
    app.delete_post(&bob, &post).await.assert_problem(403);
    assert_eq!(
        app.get(&format!("/api/v1/posts/{post}"), None).await.status,
        200
    );
    assert_eq!(app.delete_post(&ada, &post).await.status, 204);
    app.get(&format!("/api/v1/posts/{post}"), None)
        .await
        .assert_problem(404);
    app.delete_post(&ada, &post).await.assert_problem(404);
    app.delete_post(&ada, "999").await.assert_problem(404);
    app.get("/api/v1/posts/not-a-number", None)
        .await
        .assert_problem(404);
    let reply = app
        .call(Method::DELETE, &format!("/api/v1/posts/{post}"), None, None)
        .await;
    reply.assert_problem(401);
}

#[both_modes]
async fn likes_are_idempotent_and_personal(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    let post = app.create_post(&ada, "like me").await;
    let like = format!("/api/v1/posts/{post}/like");
    for _ in 0..2 {
        let reply = app
            .call(Method::POST, &like, Some(&bob.access_token), None)
            .await;
        assert_eq!(reply.status, 204);
    }
    let seen_by_bob = app
        .get(&format!("/api/v1/posts/{post}"), Some(&bob.access_token))
        .await;
    assert_eq!(seen_by_bob.body["like_count"], 1);
    assert_eq!(seen_by_bob.body["liked_by_me"], true);
    let seen_by_ada = app
        .get(&format!("/api/v1/posts/{post}"), Some(&ada.access_token))
        .await;
    assert_eq!(seen_by_ada.body["liked_by_me"], false);
    let anonymous = app.get(&format!("/api/v1/posts/{post}"), None).await;
    assert_eq!(anonymous.body["liked_by_me"], false);

    for _ in 0..2 {
        let reply = app
            .call(Method::DELETE, &like, Some(&bob.access_token), None)
            .await;
        assert_eq!(reply.status, 204);
    }
    let after = app
        .get(&format!("/api/v1/posts/{post}"), Some(&bob.access_token))
        .await;
    assert_eq!(after.body["like_count"], 0);
    assert_eq!(after.body["liked_by_me"], false);

    app.delete_post(&ada, &post).await;
    app.call(Method::POST, &like, Some(&bob.access_token), None)
        .await
        .assert_problem(404);
    app.call(
        Method::POST,
        "/api/v1/posts/31337/like",
        Some(&bob.access_token),
        None,
    )
    .await
    .assert_problem(404);
    app.call(Method::POST, &like, None, None)
        .await
        .assert_problem(401);
}

#[both_modes]
async fn concurrent_likes_are_counted_exactly(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let app = std::sync::Arc::new(app);
    let author = app.register("author").await;
    let post = app.create_post(&author, "popular").await;
    let mut fans = Vec::new();
    for index in 0..16 {
        fans.push(app.register(&format!("fan{index}")).await);
    }
    let mut tasks = Vec::new();
    for fan in fans {
        for _ in 0..3 {
            let (app, fan, post) = (app.clone(), fan.clone(), post.clone());
            tasks.push(tokio::spawn(async move {
                let reply = app
                    .call(
                        Method::POST,
                        &format!("/api/v1/posts/{post}/like"),
                        Some(&fan.access_token),
                        None,
                    )
                    .await;
                assert_eq!(reply.status, 204);
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    let reply = app.get(&format!("/api/v1/posts/{post}"), None).await;
    assert_eq!(reply.body["like_count"], 16);
}

#[both_modes]
async fn a_users_posts_page_newest_first(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    let other = app.register("other").await;
    let mut ids = Vec::new();
    for index in 0..7 {
        ids.push(app.create_post(&ada, &format!("post {index}")).await);
        app.create_post(&other, "noise").await;
    }
    app.delete_post(&ada, &ids[3]).await;
    ids.remove(3);
    ids.reverse();
    let listed = app
        .all_pages(&format!("/api/v1/users/{}/posts", ada.id), None, 3)
        .await;
    assert_eq!(listed, ids);
    let by_handle = app.all_pages("/api/v1/users/@ada/posts", None, 100).await;
    assert_eq!(by_handle, ids);
    app.get("/api/v1/users/999/posts", None)
        .await
        .assert_problem(404);
}

/// Where `needle` starts in `haystack`, counted in code points.
fn code_point_offset(haystack: &str, needle: &str) -> u64 {
    let byte = haystack.find(needle).unwrap();
    haystack[..byte].chars().count() as u64
}

#[both_modes]
async fn mentions_are_entities_with_code_point_offsets(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    let cat = app.register("Cat_9").await;
    let text = "é🐦 hi @BOB and @cat_9, not @nobody nor x@bob.org; again @bob";
    let reply = app
        .post(
            "/api/v1/posts",
            Some(&ada.access_token),
            json!({ "text": text }),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let first_bob = code_point_offset(text, "@BOB");
    let cat_at = code_point_offset(text, "@cat_9");
    // The last four code points.
    let second_bob = text.chars().count() as u64 - 4;
    let expected = json!([
        {"id": bob.id, "handle": "bob", "start": first_bob, "end": first_bob + 4},
        {"id": cat.id, "handle": "Cat_9", "start": cat_at, "end": cat_at + 6},
        {"id": bob.id, "handle": "bob", "start": second_bob, "end": second_bob + 4},
    ]);
    assert_eq!(reply.body["mentions"], expected, "{}", reply.text);
    // The offsets pick the mentions out of the text as a client would.
    let chars: Vec<char> = text.chars().collect();
    for mention in expected.as_array().unwrap() {
        let start = mention["start"].as_u64().unwrap() as usize;
        let end = mention["end"].as_u64().unwrap() as usize;
        let written: String = chars[start..end].iter().collect();
        assert_eq!(
            written.to_lowercase(),
            format!("@{}", mention["handle"].as_str().unwrap().to_lowercase())
        );
    }
    let id = reply.body["id"].as_str().unwrap();
    let fetched = app.get(&format!("/api/v1/posts/{id}"), None).await;
    assert_eq!(fetched.body["mentions"], expected);
    let listed = app
        .get(&format!("/api/v1/users/{}/posts", ada.id), None)
        .await;
    assert_eq!(listed.body["data"][0]["mentions"], expected);
    // A post without mentions has an empty list.
    let plain = app.create_post(&ada, "nobody here").await;
    let plain = app.get(&format!("/api/v1/posts/{plain}"), None).await;
    assert_eq!(plain.body["mentions"], json!([]));
}

#[both_modes]
async fn replies_list_in_conversation_order_and_page(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    let parent = app.create_post(&ada, "what do you think?").await;
    let mut answers = Vec::new();
    for (index, author) in [&bob, &ada, &bob, &ada].into_iter().enumerate() {
        let reply = app
            .post(
                "/api/v1/posts",
                Some(&author.access_token),
                json!({"text": format!("answer {index}"), "reply_to": parent}),
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.text);
        answers.push(reply.body["id"].as_str().unwrap().to_owned());
    }
    // A reply to a reply belongs to that reply's thread.
    let nested = app
        .post(
            "/api/v1/posts",
            Some(&ada.access_token),
            json!({"text": "nested", "reply_to": answers[0]}),
        )
        .await;
    assert_eq!(nested.status, 201);
    app.delete_post(&bob, &answers[2]).await;

    let path = format!("/api/v1/posts/{parent}/replies");
    let listed = app.all_pages(&path, None, 1).await;
    assert_eq!(
        listed,
        vec![answers[0].clone(), answers[1].clone(), answers[3].clone()]
    );
    let page = app
        .get(&format!("{path}?limit=2"), Some(&bob.access_token))
        .await;
    assert_eq!(page.status, 200);
    assert_eq!(page.body["data"][0]["text"], "answer 0");
    assert_eq!(page.body["data"][0]["reply_to"], parent.as_str());
    assert_eq!(page.body["data"][0]["reply_count"], 1);
    assert_eq!(page.body["pagination"]["has_more"], true);
    let nested_path = format!("/api/v1/posts/{}/replies", answers[0]);
    assert_eq!(app.all_pages(&nested_path, None, 10).await.len(), 1);

    // The parent deleted, its replies still list; an unknown post is 404.
    app.delete_post(&ada, &parent).await;
    assert_eq!(app.all_pages(&path, None, 10).await.len(), 3);
    app.get("/api/v1/posts/12345/replies", None)
        .await
        .assert_problem(404);
    app.get(&format!("{path}?cursor=bogus"), None)
        .await
        .assert_problem(400);
    // A cursor from another thread is refused.
    let other = app
        .get(&format!("/api/v1/users/{}/posts?limit=1", ada.id), None)
        .await;
    if let Some(cursor) = other.body["pagination"]["next_cursor"].as_str() {
        app.get(&format!("{path}?cursor={cursor}"), None)
            .await
            .assert_problem(400);
    }
}
