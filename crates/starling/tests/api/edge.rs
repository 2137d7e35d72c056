//! The edge: rate limits with their headers, and load shedding.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use starling_test_macros::both_modes;

use crate::helpers::Mode;
use crate::helpers::{Reply, TestApp, read, spawn_app_with};

/// An app whose reads allow `read` per minute, writes 100, auth `auth`.
async fn limited(mode: Mode, read: u32, auth: u32) -> Option<TestApp> {
    spawn_app_with(mode, |config| {
        config.rate_limits.enabled = true;
        config.rate_limits.read.limit = read;
        config.rate_limits.auth.limit = auth;
        config.rate_limits.write.limit = 100;
    })
    .await
}

fn header(reply: &Reply, name: &str) -> String {
    reply
        .headers
        .get(name)
        .unwrap_or_else(|| panic!("{name} is missing; {:?}", reply.headers))
        .to_str()
        .unwrap()
        .to_owned()
}

async fn get_as(app: &TestApp, path: &str, forwarded_for: Option<&str>) -> Reply {
    let mut request = app.client.get(app.url(path));
    if let Some(address) = forwarded_for {
        request = request.header("x-forwarded-for", address);
    }
    read(request.send().await.unwrap()).await
}

#[both_modes]
async fn headers_count_down_and_the_refusal_says_when_to_retry(mode: Mode) {
    let Some(app) = limited(mode, 5, 100).await else {
        return;
    };
    let ada = app.register("ada").await;
    let path = format!("/api/v1/users/{}", ada.id);
    for remaining in (0..5).rev() {
        let reply = app.get(&path, None).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(header(&reply, "ratelimit-limit"), "5");
        assert_eq!(header(&reply, "ratelimit-remaining"), remaining.to_string());
        assert_eq!(header(&reply, "ratelimit-policy"), "5;w=60");
        assert_eq!(header(&reply, "x-ratelimit-limit"), "5");
        assert_eq!(
            header(&reply, "x-ratelimit-remaining"),
            remaining.to_string()
        );
        // Full again after one interval (12 s) per request spent.
        let reset: u64 = header(&reply, "ratelimit-reset").parse().unwrap();
        let spent = 5 - remaining;
        assert!(
            (12 * spent - 1..=12 * spent).contains(&reset),
            "reset {reset} after {spent}"
        );
        let reset_at: u64 = header(&reply, "x-ratelimit-reset").parse().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(reset_at >= now && reset_at <= now + 61);
    }
    let refused = app.get(&path, None).await;
    refused.assert_problem(429);
    assert_eq!(refused.body["type"], "/problems/rate-limited");
    let retry_after: u64 = header(&refused, "retry-after").parse().unwrap();
    assert!((1..=12).contains(&retry_after), "retry after {retry_after}");
    assert_eq!(header(&refused, "ratelimit-remaining"), "0");
    // Operations endpoints are never limited.
    for _ in 0..10 {
        let health = app.get("/healthz", None).await;
        assert_eq!(health.status, 200);
        assert!(health.headers.get("ratelimit-limit").is_none());
    }
}

#[both_modes]
async fn accounts_and_addresses_have_quotas_of_their_own(mode: Mode) {
    let Some(app) = limited(mode, 3, 2).await else {
        return;
    };
    // Auth routes count per address, whoever registers.
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    let third = app
        .post(
            "/api/v1/auth/register",
            None,
            serde_json::json!({"handle": "cat", "email": "cat@example.org", "password": "correct horse battery"}),
        )
        .await;
    third.assert_problem(429);

    // Reads with a token count per account, not per address.
    let path = format!("/api/v1/users/{}", ada.id);
    for _ in 0..3 {
        assert_eq!(app.get(&path, Some(&ada.access_token)).await.status, 200);
    }
    app.get(&path, Some(&ada.access_token))
        .await
        .assert_problem(429);
    let bobs = app.get(&path, Some(&bob.access_token)).await;
    assert_eq!(bobs.status, 200);
    assert_eq!(header(&bobs, "ratelimit-remaining"), "2");
    // Anonymous reads from this address have their own bucket too.
    let anonymous = app.get(&path, None).await;
    assert_eq!(anonymous.status, 200);
    assert_eq!(header(&anonymous, "ratelimit-remaining"), "2");
    // Writes are another class.
    let posted = app
        .post(
            "/api/v1/posts",
            Some(&ada.access_token),
            serde_json::json!({"text": "still allowed"}),
        )
        .await;
    assert_eq!(posted.status, 201);
    assert_eq!(header(&posted, "ratelimit-limit"), "100");
}

#[both_modes]
async fn forwarded_addresses_count_only_from_a_trusted_proxy(mode: Mode) {
    let Some(app) = limited(mode, 2, 100).await else {
        return;
    };
    let ada = app.register("ada").await;
    let path = format!("/api/v1/users/{}", ada.id);
    // The test connects from 127.0.0.1, a trusted proxy by default: each
    // forwarded client has its own bucket.
    for client in ["198.51.100.1", "198.51.100.2"] {
        for _ in 0..2 {
            assert_eq!(get_as(&app, &path, Some(client)).await.status, 200);
        }
        get_as(&app, &path, Some(client)).await.assert_problem(429);
    }
    // Not trusting the peer, a forged header buys nothing.
    let Some(strict) = spawn_app_with(mode, |config| {
        config.rate_limits.enabled = true;
        config.rate_limits.read.limit = 2;
        config.http.trusted_proxies = Vec::new();
    })
    .await
    else {
        return;
    };
    let ada = strict.register("ada").await;
    let path = format!("/api/v1/users/{}", ada.id);
    for forged in ["203.0.113.1", "203.0.113.2"] {
        assert_eq!(get_as(&strict, &path, Some(forged)).await.status, 200);
    }
    get_as(&strict, &path, Some("203.0.113.3"))
        .await
        .assert_problem(429);
}

/// Opens a request whose body never finishes: it holds an API slot until
/// the connection closes.
async fn stalled_post(app: &TestApp, token: &str) -> TcpStream {
    let address = app.direct.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /api/v1/posts HTTP/1.1\r\nhost: starling\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"text\":"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

#[both_modes]
async fn past_its_capacity_the_api_sheds_at_once_and_recovers(mode: Mode) {
    let Some(app) = spawn_app_with(mode, |config| {
        config.http.max_in_flight = 2;
        config.http.max_queue_wait_ms = 20;
    })
    .await
    else {
        return;
    };
    let ada = app.register("ada").await;
    let path = format!("/api/v1/users/{}", ada.id);
    let stalled = vec![
        stalled_post(&app, &ada.access_token).await,
        stalled_post(&app, &ada.access_token).await,
    ];
    // Let both reach the handler and take their slots.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    let shed = app.get(&path, None).await;
    shed.assert_problem(503);
    assert_eq!(shed.body["type"], "/problems/overloaded");
    assert_eq!(header(&shed, "retry-after"), "1");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "shed at once, not after a timeout: {:?}",
        started.elapsed()
    );
    // Health and metrics still answer.
    assert_eq!(app.get("/healthz", None).await.status, 200);
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("starling_requests_shed_total"),
        "{metrics}"
    );

    drop(stalled);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = app.get(&path, None).await;
        if reply.status == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the API did not recover: {}",
            reply.text
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every answer, whatever its type or whoever made it (a handler, a
/// refusal at the edge, the fallback), tells browsers not to sniff it.
#[both_modes]
async fn every_answer_forbids_content_sniffing(mode: Mode) {
    let Some(app) = spawn_app_with(mode, |_| {}).await else {
        return;
    };
    let mut answers = Vec::new();
    for path in [
        "/healthz",
        "/openapi.json",
        "/api/v1/feed",
        "/no/such/thing",
    ] {
        answers.push((path, get_as(&app, path, None).await));
    }
    let malformed = read(
        app.client
            .post(app.url("/api/v1/auth/register"))
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    answers.push(("malformed register", malformed));
    let statuses: Vec<u16> = answers
        .iter()
        .map(|(_, reply)| reply.status.as_u16())
        .collect();
    assert_eq!(statuses, [200, 200, 401, 404, 400], "{statuses:?}");
    for (what, reply) in &answers {
        assert_eq!(
            reply
                .headers
                .get("x-content-type-options")
                .map(|v| v.to_str().unwrap()),
            Some("nosniff"),
            "{what}: {:?}",
            reply.headers
        );
    }
}

#[both_modes]
async fn an_ipv6_client_is_counted_by_its_64(mode: Mode) {
    let Some(app) = limited(mode, 2, 100).await else {
        return;
    };
    let ada = app.register("ada").await;
    let path = format!("/api/v1/users/{}", ada.id);
    // Two addresses of one /64: one quota between them.
    assert_eq!(
        get_as(&app, &path, Some("2001:db8:1:2::1")).await.status,
        200
    );
    assert_eq!(
        get_as(&app, &path, Some("2001:db8:1:2::99")).await.status,
        200
    );
    get_as(&app, &path, Some("2001:db8:1:2:ffff::7"))
        .await
        .assert_problem(429);
    // The next /64 is someone else.
    assert_eq!(
        get_as(&app, &path, Some("2001:db8:1:3::1")).await.status,
        200
    );
}

#[both_modes]
async fn each_documented_rate_limit_header_comes_once(mode: Mode) {
    let Some(app) = limited(mode, 2, 100).await else {
        return;
    };
    let ada = app.register("ada").await;
    let path = format!("/api/v1/users/{}", ada.id);
    let documented = [
        "ratelimit-limit",
        "ratelimit-remaining",
        "ratelimit-reset",
        "ratelimit-policy",
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
    ];
    let mut replies = Vec::new();
    for _ in 0..3 {
        replies.push(app.get(&path, None).await);
    }
    assert_eq!(replies[2].status, 429);
    // A replayed create too: its stored answer carries none of its own.
    for _ in 0..2 {
        let posted = app
            .client
            .post(app.url("/api/v1/posts"))
            .bearer_auth(&ada.access_token)
            .header("idempotency-key", "once-only")
            .json(&serde_json::json!({"text": "hello"}))
            .send()
            .await
            .unwrap();
        replies.push(crate::helpers::read(posted).await);
    }
    for reply in &replies {
        for name in documented {
            assert_eq!(
                reply.headers.get_all(name).iter().count(),
                1,
                "{name} on a {}: {:?}",
                reply.status,
                reply.headers
            );
        }
        let others: Vec<&str> = reply
            .headers
            .keys()
            .map(|name| name.as_str())
            .filter(|name| name.contains("ratelimit") && !documented.contains(name))
            .collect();
        assert!(others.is_empty(), "undocumented: {others:?}");
    }
}
