//! nginx in front of two API instances, with the relay and a fan-out worker,
//! on PostgreSQL, Redis and JetStream: the configuration in `deploy/nginx/`
//! as shipped (only addresses and paths changed), a client's flow through
//! it, and one instance killed in the middle of a load.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use starling_bench::nginx::Nginx;

use crate::helpers::Mode;
use crate::helpers::{FANOUT_WAIT, TestUser, eventually, read};
use crate::process::{feed, register};
use crate::roles::Deployment;

async fn create_post(
    client: &reqwest::Client,
    base: &str,
    user: &TestUser,
    text: &str,
) -> (StatusCode, Option<String>) {
    match client
        .post(format!("{base}/api/v1/posts"))
        .bearer_auth(&user.access_token)
        .json(&json!({ "text": text }))
        .send()
        .await
    {
        Ok(response) => {
            let reply = read(response).await;
            let id = reply.body["id"].as_str().map(str::to_owned);
            (reply.status, id)
        }
        Err(_) => (StatusCode::from_u16(599).unwrap(), None),
    }
}

#[tokio::test]
async fn two_instances_behind_nginx_lose_no_accepted_write_when_one_dies() {
    let Some(nginx_binary) = starling_testing::service_url("STARLING_TEST_NGINX", "nginx") else {
        return;
    };
    let Some(mut deployment) = Deployment::start().await else {
        return;
    };
    let upstreams = [&deployment.api_a, &deployment.api_b]
        .map(|server| server.base.trim_start_matches("http://").to_owned());
    let nginx = Nginx::start(&nginx_binary, &upstreams).await.unwrap();
    let base = nginx.base.clone();
    let client = reqwest::Client::new();

    // A client's flow, through nginx.
    let ada = register(&client, &base, "ada").await;
    let bob = register(&client, &base, "bob").await;
    let followed = client
        .post(format!("{base}/api/v1/users/{}/follow", bob.id))
        .bearer_auth(&ada.access_token)
        .header("X-Request-Id", "e2e-follow-1")
        .send()
        .await
        .unwrap();
    assert!(followed.status().is_success());
    assert_eq!(
        followed.headers()["x-request-id"],
        "e2e-follow-1",
        "the request id passes through nginx both ways"
    );
    assert_eq!(feed(&client, &base, &ada).await.0, StatusCode::OK);
    let (status, first) = create_post(&client, &base, &bob, "through nginx").await;
    assert_eq!(status, StatusCode::CREATED);
    let first = first.unwrap();
    eventually("the post reaches ada's feed", FANOUT_WAIT, || async {
        feed(&client, &base, &ada).await.1.contains(&first)
    })
    .await;
    let invalid = read(
        client
            .post(format!("{base}/api/v1/posts"))
            .bearer_auth(&bob.access_token)
            .json(&json!({ "text": "" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    invalid.assert_problem(422);
    let too_large = read(
        client
            .post(format!("{base}/api/v1/posts"))
            .bearer_auth(&bob.access_token)
            .header("content-type", "application/json")
            .body(format!("{{\"text\":\"{}\"}}", "x".repeat(100 * 1024)))
            .send()
            .await
            .unwrap(),
    )
    .await;
    too_large.assert_problem(413);
    let metrics = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), StatusCode::NOT_FOUND);

    // A load of writes and reads; one instance dies in the middle of it.
    let client = Arc::new(client);
    let (ada, bob) = (Arc::new(ada), Arc::new(bob));
    let stop_at = Instant::now() + Duration::from_secs(3);
    let mut workers = Vec::new();
    for worker in 0..8 {
        let (client, base, ada, bob) = (client.clone(), base.clone(), ada.clone(), bob.clone());
        workers.push(tokio::spawn(async move {
            let mut accepted = Vec::new();
            let mut write_errors: BTreeMap<u16, u32> = BTreeMap::new();
            let mut read_errors: BTreeMap<u16, u32> = BTreeMap::new();
            let mut sequence = 0;
            while Instant::now() < stop_at {
                sequence += 1;
                let text = format!("load {worker}-{sequence}");
                match create_post(&client, &base, &bob, &text).await {
                    (StatusCode::CREATED, Some(id)) => accepted.push(id),
                    (status, _) => *write_errors.entry(status.as_u16()).or_default() += 1,
                }
                let (status, _) = feed(&client, &base, &ada).await;
                if status != StatusCode::OK {
                    *read_errors.entry(status.as_u16()).or_default() += 1;
                }
            }
            (accepted, write_errors, read_errors)
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    deployment.api_b.child.start_kill().unwrap();
    deployment.api_b.child.wait().await.unwrap();

    let mut accepted = Vec::new();
    let mut write_errors: BTreeMap<u16, u32> = BTreeMap::new();
    let mut read_errors: BTreeMap<u16, u32> = BTreeMap::new();
    for worker in workers {
        let (posts, writes, reads) = worker.await.unwrap();
        accepted.extend(posts);
        for (status, count) in writes {
            *write_errors.entry(status).or_default() += count;
        }
        for (status, count) in reads {
            *read_errors.entry(status).or_default() += count;
        }
    }
    eprintln!(
        "nginx failover: {} posts accepted, write errors {write_errors:?}, read errors {read_errors:?}",
        accepted.len()
    );
    assert!(
        accepted.len() > 50,
        "the load barely ran: {}",
        accepted.len()
    );
    // Reads are idempotent: nginx moves them to the live instance.
    assert!(read_errors.is_empty(), "reads failed: {read_errors:?}");
    // A write can fail only if it was in flight on the instance that died
    // (nginx does not resend a POST it already sent): at most one per client.
    let failed_writes: u32 = write_errors.values().sum();
    assert!(failed_writes <= 8, "write errors: {write_errors:?}");
    assert!(
        write_errors.keys().all(|status| *status == 502),
        "write errors other than 502: {write_errors:?}"
    );
    // Every accepted write is there, and reaches the follower's feed.
    for id in &accepted {
        let status = client
            .get(format!("{base}/api/v1/posts/{id}"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::OK, "accepted post {id} is lost");
    }
    let last = accepted
        .iter()
        .max_by_key(|id| id.parse::<i64>().unwrap())
        .unwrap()
        .clone();
    eventually(
        "the last accepted post reaches ada",
        FANOUT_WAIT,
        || async { feed(&client, &base, &ada).await.1.first() == Some(&last) },
    )
    .await;
}

/// One client, from its own loopback address (all of 127/8 is this host).
fn client_from(address: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(address))
        .build()
        .unwrap()
}

#[tokio::test]
async fn behind_the_shipped_nginx_each_client_has_its_own_quota_everywhere() {
    let Some(nginx_binary) = starling_testing::service_url("STARLING_TEST_NGINX", "nginx") else {
        return;
    };
    let Some(app) = crate::helpers::spawn_app_with(Mode::Embedded, |config| {
        config.rate_limits.enabled = true;
        config.rate_limits.read.limit = 3;
        config.rate_limits.write.limit = 3;
    })
    .await
    else {
        return;
    };
    let ada = app.register("ada").await;
    // In front of this instance, whatever is in front of it already.
    let upstream = app.direct.trim_start_matches("http://").to_owned();
    let nginx = Nginx::start(&nginx_binary, &[upstream]).await.unwrap();
    let base = nginx.base.clone();

    // Each location of the shipped file, asked anonymously (so counted per
    // address) by two clients in turn: the first spends its quota, the
    // second still has its own. A location that forwarded no address
    // would count both as nginx.
    let locations: [(&str, [u8; 4], [u8; 4]); 4] = [
        ("GET /api/v1/users/{ada}", [127, 0, 0, 2], [127, 0, 0, 3]),
        ("GET /media/{n}.png", [127, 0, 0, 4], [127, 0, 0, 5]),
        ("GET /api/v1/stream", [127, 0, 0, 6], [127, 0, 0, 7]),
        ("POST /api/v1/media", [127, 0, 0, 8], [127, 0, 0, 9]),
    ];
    let mut sent = 0;
    for (location, first, second) in locations {
        let (method, path) = location.split_once(' ').unwrap();
        let mut ask = |client: &reqwest::Client| {
            sent += 1;
            // A new file name each time: nginx caches a 404 of /media/.
            let path = path
                .replace("{ada}", &ada.id)
                .replace("{n}", &format!("missing-{sent}"));
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            client.request(method, format!("{base}{path}")).send()
        };
        let (first, second) = (client_from(first), client_from(second));
        let mut statuses = Vec::new();
        for _ in 0..4 {
            statuses.push(ask(&first).await.unwrap().status().as_u16());
        }
        assert!(!statuses[..3].contains(&429), "{location}: {statuses:?}");
        assert_eq!(statuses[3], 429, "{location}: the first client's quota");
        let other = ask(&second).await.unwrap().status().as_u16();
        assert_ne!(
            other, 429,
            "{location}: the second client shares the first's quota"
        );
    }

    // A token in a query string (EventSource) never reaches nginx's log.
    let secret = "eyJzZWNyZXQiOiJ0b2tlbiJ9.never-logged";
    let refused = client_from([127, 0, 0, 10])
        .get(format!("{base}/api/v1/stream?access_token={secret}"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    // nginx writes a request's log line after its answer has gone: wait
    // for the line rather than read the file at once.
    let started = std::time::Instant::now();
    let log = loop {
        let log = std::fs::read_to_string(nginx.access_log()).unwrap();
        if log.contains("127.0.0.10 ") || started.elapsed() > std::time::Duration::from_secs(10) {
            break log;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(!log.contains(secret), "{log}");
    assert!(
        log.contains("GET /api/v1/stream?[query withheld: it carries a token]"),
        "{log}"
    );
    assert!(log.contains("127.0.0.10 "), "{log}");
}
