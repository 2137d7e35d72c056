use crate::helpers::Mode;
use crate::helpers::spawn_app;

#[tokio::test]
async fn health_and_readiness_answer() {
    let Some(app) = spawn_app(Mode::Embedded).await else {
        return;
    };
    let health = app.get("/healthz", None).await;
    assert_eq!((health.status.as_u16(), health.text.as_str()), (200, "ok"));
    let ready = app.get("/readyz", None).await;
    assert_eq!((ready.status.as_u16(), ready.text.as_str()), (200, "ready"));
}

/// Counts are exact only in a process of their own: the metrics recorder is
/// per process, so this test runs the real binary.
#[tokio::test]
async fn metrics_count_requests_per_route_template_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = crate::process::start(dir.path(), true).await;
    let client = reqwest::Client::new();
    let base = server.base.clone();
    let user = crate::process::register(&client, &base, "ada").await;
    let created = client
        .post(format!("{base}/api/v1/posts"))
        .bearer_auth(&user.access_token)
        .json(&serde_json::json!({"text": "hi"}))
        .send()
        .await
        .unwrap();
    let post = crate::helpers::read(created).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for path in [
        format!("/api/v1/posts/{post}"),
        format!("/api/v1/posts/{post}"),
        "/api/v1/posts/12345".to_owned(),
    ] {
        client.get(format!("{base}{path}")).send().await.unwrap();
    }
    let reply =
        crate::helpers::read(client.get(format!("{base}/metrics")).send().await.unwrap()).await;
    assert_eq!(reply.status, 200);
    assert!(reply.content_type().starts_with("text/plain"));
    let text = reply.text;
    for expected in [
        r#"http_requests_total{method="GET",route="/api/v1/posts/{post}",status="200"} 2"#,
        r#"http_requests_total{method="GET",route="/api/v1/posts/{post}",status="404"} 1"#,
        r#"http_requests_total{method="POST",route="/api/v1/posts",status="201"} 1"#,
        r#"http_requests_total{method="POST",route="/api/v1/auth/register",status="201"} 1"#,
        r#"http_request_duration_seconds_count{method="POST",route="/api/v1/posts",status="201"} 1"#,
        r#"http_request_duration_seconds_bucket{method="POST",route="/api/v1/posts",status="201",le="+Inf"} 1"#,
    ] {
        assert!(text.contains(expected), "/metrics lacks {expected}\n{text}");
    }
    assert!(!text.contains(&post), "ids must not become label values");
    assert!(crate::process::terminate(&mut server).await.success());
}

#[tokio::test]
async fn the_openapi_document_describes_every_endpoint() {
    let Some(app) = spawn_app(Mode::Embedded).await else {
        return;
    };
    let reply = app.get("/openapi.json", None).await;
    assert_eq!(reply.status, 200);
    let document = &reply.body;
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/v1/auth/register", "post"),
        ("/api/v1/auth/login", "post"),
        ("/api/v1/auth/refresh", "post"),
        ("/api/v1/auth/logout", "post"),
        ("/api/v1/me", "get"),
        ("/api/v1/me", "patch"),
        ("/api/v1/users/{user}", "get"),
        ("/api/v1/users/{user}/follow", "post"),
        ("/api/v1/users/{user}/follow", "delete"),
        ("/api/v1/users/{user}/followers", "get"),
        ("/api/v1/users/{user}/following", "get"),
        ("/api/v1/users/{user}/posts", "get"),
        ("/api/v1/posts", "post"),
        ("/api/v1/posts/{post}", "get"),
        ("/api/v1/posts/{post}", "delete"),
        ("/api/v1/posts/{post}/like", "post"),
        ("/api/v1/posts/{post}/like", "delete"),
        ("/api/v1/posts/{post}/replies", "get"),
        ("/api/v1/feed", "get"),
        ("/api/v1/notifications", "get"),
        ("/api/v1/users/{user}/block", "post"),
        ("/api/v1/users/{user}/block", "delete"),
        ("/api/v1/users/{user}/mute", "post"),
        ("/api/v1/users/{user}/mute", "delete"),
        ("/api/v1/me/blocks", "get"),
        ("/api/v1/me/mutes", "get"),
        ("/api/v1/notifications/read", "post"),
    ] {
        assert!(
            paths.get(path).and_then(|item| item.get(method)).is_some(),
            "{method} {path} is undocumented"
        );
    }
    assert!(document["components"]["securitySchemes"]["bearer"].is_object());
    // Creates say they take an idempotency key.
    for (path, method) in [
        ("/api/v1/posts", "post"),
        ("/api/v1/posts/{post}/like", "post"),
        ("/api/v1/users/{user}/follow", "post"),
        ("/api/v1/auth/register", "post"),
    ] {
        let parameters = document["paths"][path][method]["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            parameters
                .iter()
                .any(|parameter| parameter["name"] == "Idempotency-Key"
                    && parameter["in"] == "header"),
            "{method} {path} does not document Idempotency-Key"
        );
    }
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let Some(app) = spawn_app(Mode::Embedded).await else {
        return;
    };
    let response = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-me-123");
    let generated = app.get("/api/v1/nowhere", None).await;
    let id = generated.headers["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 32);
}

#[tokio::test]
async fn metrics_show_fan_out_caches_pools_backlog_and_runtime() {
    let Some(app) = spawn_app(Mode::Embedded).await else {
        return;
    };
    let author = app.register("author").await;
    let fan = app.register("fan").await;
    app.follow(&fan, &author).await;
    app.feed_ids(&fan).await;
    let post = app.create_post(&author, "measured").await;
    crate::helpers::eventually(
        "the post reached the fan",
        crate::helpers::FANOUT_WAIT,
        || async { app.feed_ids(&fan).await.contains(&post) },
    )
    .await;
    app.feed_ids(&fan).await;

    let text = app.get("/metrics", None).await.text;
    for expected in [
        "starling_fanout_lag_seconds_bucket{le=\"0.005\"}",
        "starling_fanout_timeline_inserts_total",
        "starling_fanout_posts_total",
        r#"starling_cache_hits_total{cache="posts"}"#,
        r#"starling_cache_misses_total{cache="users"}"#,
        r#"starling_db_pool_connections{pool="reader",state="idle"}"#,
        r#"starling_db_pool_connections{pool="writer",state="in_use"}"#,
        r#"starling_db_pool_acquire_seconds_bucket{pool="writer",le="0.001"}"#,
        r#"starling_outbox_backlog_events{consumer="fanout"}"#,
        r#"starling_outbox_oldest_unhandled_age_seconds{consumer="fanout"}"#,
        "starling_timelines_materialised",
        "starling_runtime_workers",
        "starling_runtime_busy_ratio",
        "starling_runtime_global_queue_depth",
        "http_requests_in_flight",
        r#"starling_events_handled_total{consumer="fanout",kind="post_created"}"#,
    ] {
        assert!(text.contains(expected), "/metrics lacks {expected}\n{text}");
    }
}

fn readiness_checks(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with("starling_readiness_checks_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn a_flood_of_readiness_probes_asks_the_store_now_and_then() {
    let Some(app) = spawn_app(Mode::Embedded).await else {
        return;
    };
    let before = readiness_checks(&app.metrics().await);
    let started = std::time::Instant::now();
    let probes = (0..300).map(|_| {
        let (client, url) = (app.client.clone(), format!("{}/readyz", app.direct));
        tokio::spawn(async move { client.get(url).send().await.unwrap().status().as_u16() })
    });
    for probe in probes {
        assert_eq!(probe.await.unwrap(), 200);
    }
    let asked = readiness_checks(&app.metrics().await) - before;
    // One per second at most, and another test of this process probes once
    // (the recorder is the process's).
    let allowed = started.elapsed().as_secs_f64().ceil() + 2.0;
    assert!(
        (1.0..=allowed).contains(&asked),
        "300 probes in {:?} asked the store {asked} times",
        started.elapsed()
    );
}
