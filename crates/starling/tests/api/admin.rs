//! Staff and the admin API: the first admin made at the command line,
//! roles granted through the API, the account listing (offset pages,
//! filters, sort, search, fields), suspension and reinstatement, a
//! moderator's removal of a post, the audit log, and the role check on
//! every admin route.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use starling_test_macros::both_modes;

use crate::helpers::{
    FANOUT_WAIT, Mode, Reply, TestApp, TestUser, eventually, spawn_app, spawn_app_with,
};
use crate::stream::end_reason;

/// `handle` registered and given `role` with `starling admin grant`.
async fn staff(app: &TestApp, handle: &str, role: &str) -> TestUser {
    let user = app.register(handle).await;
    let output = app.grant(handle, role).await;
    assert!(
        output.status.success(),
        "starling admin grant: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    user
}

async fn admin_call(
    app: &TestApp,
    method: Method,
    path: &str,
    caller: &TestUser,
    body: Option<Value>,
) -> Reply {
    app.call(method, path, Some(&caller.access_token), body)
        .await
}

async fn suspend(app: &TestApp, moderator: &TestUser, target: &TestUser, reason: &str) -> Reply {
    admin_call(
        app,
        Method::POST,
        &format!("/api/v1/admin/accounts/{}/suspend", target.id),
        moderator,
        Some(json!({ "reason": reason })),
    )
    .await
}

async fn audit(app: &TestApp, caller: &TestUser, query: &str) -> Value {
    let reply = app
        .get(
            &format!("/api/v1/admin/audit{query}"),
            Some(&caller.access_token),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body
}

fn handles(body: &Value) -> Vec<String> {
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|account| account["handle"].as_str().unwrap().to_owned())
        .collect()
}

#[both_modes]
async fn the_first_admin_is_made_at_the_command_line_and_grants_the_others(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    let me = app.get("/api/v1/me", Some(&ada.access_token)).await;
    assert_eq!(me.body["role"], "user");

    let output = app.grant("@ada", "admin").await;
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "@ada is now admin (was user)"
    );
    let again = app.grant("ada", "admin").await;
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).trim(),
        "@ada is admin already"
    );
    let nobody = app.grant("nobody", "admin").await;
    assert!(!nobody.status.success());
    assert!(String::from_utf8_lossy(&nobody.stderr).contains("no account @nobody"));
    let bad_role = app.grant("ada", "emperor").await;
    assert!(!bad_role.status.success());

    // The role is read fresh: the token ada had already works as admin's.
    let me = app.get("/api/v1/me", Some(&ada.access_token)).await;
    assert_eq!(me.body["role"], "admin");
    let path = format!("/api/v1/admin/accounts/{}/role", bob.id);
    let granted = admin_call(
        &app,
        Method::PUT,
        &path,
        &ada,
        Some(json!({"role": "moderator"})),
    )
    .await;
    assert_eq!(granted.status, 200, "{}", granted.text);
    assert_eq!(granted.body["role"], "moderator");
    assert_eq!(granted.body["email"], "bob@example.org");
    admin_call(
        &app,
        Method::PUT,
        &path,
        &ada,
        Some(json!({"role": "emperor"})),
    )
    .await
    .assert_problem(422);
    // Nobody changes their own role (an installation keeps its admin).
    let own = format!("/api/v1/admin/accounts/{}/role", ada.id);
    admin_call(&app, Method::PUT, &own, &ada, Some(json!({"role": "user"})))
        .await
        .assert_problem(403);
    // A moderator grants nothing.
    admin_call(&app, Method::PUT, &own, &bob, Some(json!({"role": "user"})))
        .await
        .assert_problem(403);

    let log = audit(&app, &ada, "?action=grant_role").await;
    let entries = log["data"].as_array().unwrap();
    assert_eq!(log["pagination"]["total"], 2, "{log}");
    assert_eq!(entries[0]["target_user_id"], bob.id.as_str());
    assert_eq!(entries[0]["actor_id"], ada.id.as_str());
    assert_eq!(
        entries[0]["details"],
        json!({"from": "user", "to": "moderator"})
    );
    assert_eq!(entries[1]["target_user_id"], ada.id.as_str());
    assert_eq!(entries[1]["actor_id"], Value::Null, "the command line");
}

/// Every admin route with a body it accepts.
fn admin_routes(someone: &str, post: &str) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (Method::GET, "/api/v1/admin/accounts".to_owned(), None),
        (
            Method::GET,
            format!("/api/v1/admin/accounts/{someone}"),
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/admin/accounts/{someone}/suspend"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("/api/v1/admin/accounts/{someone}/unsuspend"),
            Some(json!({})),
        ),
        (
            Method::PUT,
            format!("/api/v1/admin/accounts/{someone}/role"),
            Some(json!({"role": "moderator"})),
        ),
        (
            Method::DELETE,
            format!("/api/v1/admin/posts/{post}"),
            Some(json!({"reason": "spam"})),
        ),
        (Method::GET, "/api/v1/admin/audit".to_owned(), None),
    ]
}

#[both_modes]
async fn every_admin_route_refuses_users_with_403_and_anonymous_callers_with_401(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let admin = staff(&app, "root", "admin").await;
    let moderator = staff(&app, "mo", "moderator").await;
    let user = app.register("ada").await;
    let post = app.create_post(&user, "still here").await;
    let key = app
        .post(
            "/api/v1/me/api-keys",
            Some(&admin.access_token),
            json!({"name": "admin's bot", "scopes": ["read", "write", "follow"]}),
        )
        .await;
    let key = key.body["key"].as_str().unwrap().to_owned();
    for id in [user.id.as_str(), "not-an-id"] {
        for (method, path, body) in admin_routes(id, &post) {
            let anonymous = app.call(method.clone(), &path, None, body.clone()).await;
            anonymous.assert_problem(401);
            assert!(
                anonymous.headers.contains_key("www-authenticate"),
                "{method} {path}"
            );
            let refused = app
                .call(
                    method.clone(),
                    &path,
                    Some(&user.access_token),
                    body.clone(),
                )
                .await;
            refused.assert_problem(403);
            // Not through an API key, even the admin's.
            app.call(method.clone(), &path, Some(&key), body.clone())
                .await
                .assert_problem(403);
        }
    }
    // The user's post and account are as they were.
    assert_eq!(
        app.get(&format!("/api/v1/posts/{post}"), None).await.status,
        200
    );
    assert_eq!(app.login("ada").await.status, 200);
    // A moderator may do all but grant roles; what they did is audited.
    for (method, path, body) in admin_routes(&user.id, &post) {
        let reply = admin_call(&app, method.clone(), &path, &moderator, body).await;
        if path.ends_with("/role") {
            reply.assert_problem(403);
        } else {
            assert!(reply.status.is_success(), "{method} {path}: {}", reply.text);
        }
    }
    let log = audit(&app, &admin, "").await;
    let actions: Vec<&str> = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "remove_post",
            "unsuspend",
            "suspend",
            "grant_role",
            "grant_role"
        ]
    );
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("starling_admin_refusals_total"),
        "refusals are counted"
    );
}

#[both_modes]
async fn staff_act_only_on_accounts_of_a_lower_role(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let root = staff(&app, "root", "admin").await;
    let other_admin = staff(&app, "chief", "admin").await;
    let mo = staff(&app, "mo", "moderator").await;
    let other_mo = staff(&app, "mia", "moderator").await;
    for (actor, target) in [
        (&mo, &root),
        (&mo, &other_mo),
        (&mo, &mo),
        (&root, &other_admin),
        (&root, &root),
    ] {
        suspend(&app, actor, target, "testing")
            .await
            .assert_problem(403);
    }
    // An admin suspends a moderator; nobody suspends a missing account.
    assert_eq!(suspend(&app, &root, &mo, "testing").await.status, 200);
    let missing = admin_call(
        &app,
        Method::POST,
        "/api/v1/admin/accounts/12345/suspend",
        &root,
        None,
    )
    .await;
    missing.assert_problem(404);
    let long = "x".repeat(1001);
    suspend(&app, &root, &other_mo, &long)
        .await
        .assert_problem(422);
    admin_call(
        &app,
        Method::POST,
        &format!("/api/v1/admin/accounts/{}/suspend", other_mo.id),
        &root,
        Some(json!({"because": "typo"})),
    )
    .await
    .assert_problem(422);
}

#[both_modes]
async fn a_suspended_account_and_its_posts_are_gone_until_it_is_reinstated(mode: Mode) {
    let Some(app) = spawn_app_with(mode, |config| {
        config.auth.api_key_recheck_secs = 1;
    })
    .await
    else {
        return;
    };
    let mo = staff(&app, "mo", "moderator").await;
    let carol = app.register("carol").await;
    let bob = app.register("bob").await;
    app.follow(&bob, &carol).await;
    app.follow(&carol, &bob).await;
    let post = app.create_post(&carol, "carol was here").await;
    let bobs = app.create_post(&bob, "bob's own").await;
    let reply = app
        .post(
            "/api/v1/posts",
            Some(&carol.access_token),
            json!({"text": "nice", "reply_to": bobs}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let carol_reply = reply.body["id"].as_str().unwrap().to_owned();
    let liked = app
        .post(
            &format!("/api/v1/posts/{bobs}/like"),
            Some(&carol.access_token),
            json!({}),
        )
        .await;
    assert!(liked.status.is_success(), "{}", liked.text);
    let key = app
        .post(
            "/api/v1/me/api-keys",
            Some(&carol.access_token),
            json!({"name": "carol's bot", "scopes": ["read"]}),
        )
        .await;
    let key = key.body["key"].as_str().unwrap().to_owned();
    assert_eq!(app.get("/api/v1/me", Some(&key)).await.status, 200);
    eventually("carol's post reaches bob", FANOUT_WAIT, || async {
        app.feed_ids(&bob).await.contains(&post)
    })
    .await;
    eventually("carol's like notifies bob", FANOUT_WAIT, || async {
        notification_actors(&app, &bob)
            .await
            .contains(&"carol".to_owned())
    })
    .await;
    let mut stream = app.open_stream(&carol, None).await;
    let carols_pages = [
        "/api/v1/users/@carol".to_owned(),
        format!("/api/v1/users/{}", carol.id),
        "/api/v1/users/@carol/posts".to_owned(),
        format!("/api/v1/posts/{post}"),
        "/api/v1/users/@carol/followers".to_owned(),
    ];
    for path in &carols_pages {
        let before = app.get(path, Some(&bob.access_token)).await;
        assert_eq!(before.status, 200, "{path}: {}", before.text);
    }
    let thread = app
        .get(&format!("/api/v1/posts/{bobs}/replies"), None)
        .await;
    assert!(thread.text.contains(&carol_reply));
    let mention = app.create_post(&bob, "hello @carol").await;
    let shown = app.get(&format!("/api/v1/posts/{mention}"), None).await;
    assert_eq!(shown.body["mentions"][0]["handle"], "carol");

    let suspended = suspend(&app, &mo, &carol, "spam waves").await;
    assert_eq!(suspended.status, 200, "{}", suspended.text);
    assert_eq!(suspended.body["status"], "suspended");
    assert!(suspended.body["suspended_at"].is_string());

    // Carol is signed out everywhere, and cannot sign in again.
    assert_eq!(end_reason(&mut stream, FANOUT_WAIT).await, "session_ended");
    assert_eq!(
        app.get("/api/v1/me", Some(&carol.access_token))
            .await
            .status,
        401
    );
    app.spend_refresh_token("refresh", &carol.refresh_token)
        .await
        .assert_problem(401);
    let login = app.login("carol").await;
    login.assert_problem(403);
    assert!(login.body["detail"].as_str().unwrap().contains("suspended"));
    let wrong = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "carol", "password": "not the password"}),
        )
        .await;
    wrong.assert_problem(401);
    eventually("carol's key is refused", Duration::from_secs(5), || async {
        app.get("/api/v1/me", Some(&key)).await.status == 401
    })
    .await;

    // ... and gone for everyone else: feed, profile, posts, thread,
    // follower lists, notifications, follows.
    assert!(!app.feed_ids(&bob).await.contains(&post));
    for path in &carols_pages {
        app.get(path, Some(&bob.access_token))
            .await
            .assert_problem(404);
    }
    let thread = app
        .get(&format!("/api/v1/posts/{bobs}/replies"), None)
        .await;
    assert_eq!(thread.status, 200);
    assert!(!thread.text.contains(&carol_reply));
    let followers = app
        .get("/api/v1/users/@bob/followers", Some(&bob.access_token))
        .await;
    assert_eq!(followers.status, 200, "{}", followers.text);
    assert_eq!(handles(&followers.body), Vec::<String>::new());
    assert!(
        !notification_actors(&app, &bob)
            .await
            .contains(&"carol".to_owned())
    );
    let dave = app.register("dave").await;
    app.post(
        &format!("/api/v1/users/{}/follow", carol.id),
        Some(&dave.access_token),
        json!({}),
    )
    .await
    .assert_problem(404);
    let mention = app.create_post(&bob, "hello @carol").await;
    let shown = app.get(&format!("/api/v1/posts/{mention}"), None).await;
    assert_eq!(
        shown.body["mentions"],
        json!([]),
        "no link to a suspended account"
    );

    // Staff still see it, and find it by its status.
    let seen = admin_call(
        &app,
        Method::GET,
        &format!("/api/v1/admin/accounts/{}", carol.id),
        &mo,
        None,
    )
    .await;
    assert_eq!(seen.body["status"], "suspended");
    let listed = app
        .get(
            "/api/v1/admin/accounts?status=suspended",
            Some(&mo.access_token),
        )
        .await;
    assert_eq!(handles(&listed.body), ["carol"]);

    // Reinstated: everything is back, and carol signs in again.
    let back = admin_call(
        &app,
        Method::POST,
        &format!("/api/v1/admin/accounts/{}/unsuspend", carol.id),
        &mo,
        None,
    )
    .await;
    assert_eq!(back.status, 200, "{}", back.text);
    assert_eq!(back.body["status"], "active");
    assert_eq!(back.body["suspended_at"], Value::Null);
    assert!(app.feed_ids(&bob).await.contains(&post));
    for path in &carols_pages {
        let after = app.get(path, Some(&bob.access_token)).await;
        assert_eq!(after.status, 200, "{path}: {}", after.text);
    }
    let followers = app
        .get("/api/v1/users/@bob/followers", Some(&bob.access_token))
        .await;
    assert_eq!(handles(&followers.body), ["carol"]);
    assert!(
        notification_actors(&app, &bob)
            .await
            .contains(&"carol".to_owned())
    );
    assert_eq!(app.login("carol").await.status, 200);
    eventually(
        "carol's key works again",
        Duration::from_secs(5),
        || async { app.get("/api/v1/me", Some(&key)).await.status == 200 },
    )
    .await;

    let log = audit(&app, &mo, &format!("?target={}", carol.id)).await;
    let entries = log["data"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{log}");
    assert_eq!(entries[0]["action"], "unsuspend");
    assert_eq!(entries[1]["action"], "suspend");
    assert_eq!(entries[1]["reason"], "spam waves");
    assert_eq!(entries[1]["actor_id"], mo.id.as_str());
}

async fn notification_actors(app: &TestApp, user: &TestUser) -> Vec<String> {
    let reply = app
        .get("/api/v1/notifications", Some(&user.access_token))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|notification| notification["actor"]["handle"].as_str().unwrap().to_owned())
        .collect()
}

#[both_modes]
async fn moderators_remove_posts_with_a_reason_the_audit_log_keeps(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let mo = staff(&app, "mo", "moderator").await;
    let bob = app.register("bob").await;
    let ada = app.register("ada").await;
    app.follow(&ada, &bob).await;
    let spam = app.create_post(&bob, "buy cheap watches").await;
    eventually("the post reaches ada", FANOUT_WAIT, || async {
        app.feed_ids(&ada).await.contains(&spam)
    })
    .await;
    let path = format!("/api/v1/admin/posts/{spam}");
    // Others than staff delete only their own posts.
    app.delete_post(&ada, &spam).await.assert_problem(403);
    let no_reason = admin_call(
        &app,
        Method::DELETE,
        &path,
        &mo,
        Some(json!({"reason": " "})),
    )
    .await;
    no_reason.assert_problem(422);
    assert_eq!(no_reason.field_errors(), ["reason"]);
    admin_call(&app, Method::DELETE, &path, &mo, None)
        .await
        .assert_problem(415);

    let removed = admin_call(
        &app,
        Method::DELETE,
        &path,
        &mo,
        Some(json!({"reason": "spam"})),
    )
    .await;
    assert_eq!(removed.status, 204, "{}", removed.text);
    app.get(&format!("/api/v1/posts/{spam}"), None)
        .await
        .assert_problem(404);
    assert!(!app.feed_ids(&ada).await.contains(&spam));
    let me = app.get("/api/v1/me", Some(&bob.access_token)).await;
    assert_eq!(me.body["posts_count"], 0);
    admin_call(
        &app,
        Method::DELETE,
        &path,
        &mo,
        Some(json!({"reason": "spam"})),
    )
    .await
    .assert_problem(404);

    let log = audit(&app, &mo, "?action=remove_post").await;
    assert_eq!(log["pagination"]["total"], 1);
    let entry = &log["data"][0];
    assert_eq!(entry["target_post_id"], spam.as_str());
    assert_eq!(entry["target_user_id"], bob.id.as_str());
    assert_eq!(entry["reason"], "spam");
    assert_eq!(entry["details"]["text"], "buy cheap watches");
    let by_mo = audit(&app, &mo, &format!("?actor={}", mo.id)).await;
    assert_eq!(by_mo["pagination"]["total"], 1);
    let moderated = app.metrics().await;
    assert!(moderated.contains("starling_admin_actions_total{action=\"remove_post\"}"));
}

#[both_modes]
async fn staff_page_filter_sort_search_and_select_fields_of_accounts(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let root = staff(&app, "root", "admin").await;
    for handle in ["ada", "bob", "carol", "dave"] {
        app.register(handle).await;
    }
    let list = |query: &str| {
        let (app, token) = (&app, root.access_token.clone());
        let path = format!("/api/v1/admin/accounts{query}");
        async move { app.get(&path, Some(&token)).await }
    };
    let newest = list("").await;
    assert_eq!(newest.status, 200, "{}", newest.text);
    assert_eq!(
        handles(&newest.body),
        ["dave", "carol", "bob", "ada", "root"]
    );
    assert_eq!(
        newest.body["pagination"],
        json!({"page": 1, "limit": 20, "total": 5, "total_pages": 1})
    );
    let second = list("?sort=handle&limit=2&page=2").await;
    assert_eq!(handles(&second.body), ["carol", "dave"]);
    assert_eq!(
        second.body["pagination"],
        json!({"page": 2, "limit": 2, "total": 5, "total_pages": 3})
    );
    let past = list("?sort=handle&limit=2&page=4").await;
    assert_eq!(handles(&past.body), Vec::<String>::new());
    assert_eq!(past.body["pagination"]["total"], 5);
    assert_eq!(handles(&list("?sort=-handle&limit=1").await.body), ["root"]);
    assert_eq!(handles(&list("?role=admin").await.body), ["root"]);
    assert_eq!(
        handles(&list("?role=user&search=D").await.body),
        ["dave", "ada"]
    );
    assert_eq!(
        handles(&list("?search=CAROL%40example").await.body),
        ["carol"]
    );
    assert_eq!(list("?status=active").await.body["pagination"]["total"], 5);
    let selected = list("?fields=handle,email&search=bob").await;
    assert_eq!(
        selected.body["data"],
        json!([{"id": selected.body["data"][0]["id"], "handle": "bob", "email": "bob@example.org"}])
    );
    for (query, field) in [
        ("?sort=password_hash", "sort"),
        ("?sort=handle,handle", "sort"),
        ("?status=gone", "status"),
        ("?role=emperor", "role"),
        ("?page=0", "page"),
        ("?limit=101", "limit"),
        ("?fields=password_hash", "fields"),
    ] {
        let refused = list(query).await;
        refused.assert_problem(400);
        assert_eq!(refused.field_errors(), [field], "{query}");
    }
    list("?color=blue").await.assert_problem(400);
    let long = format!("?search={}", "a".repeat(101));
    list(&long).await.assert_problem(400);
}
