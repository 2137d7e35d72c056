//! Reliability scenarios: a bounded write and read load while a fault is
//! injected into a dependency the test owns (its own redis-server,
//! nats-server, S3 server or PostgreSQL replica on a spare port, killed or
//! frozen mid-load; or its own database behind a fault proxy that delays
//! or cuts its connections). Each scenario asserts what users
//! must keep getting and prints its figures; RELIABILITY.md records them.

//!
//! Each app runs embedded (SQLite) except for the dependency under test.

mod load;

use std::time::{Duration, Instant};

use crate::helpers::{self, TestApp, TestUser, restart, spawn_app_on};
use load::{Load, summarise};
use starling_testing::OwnServer;

const FOLLOWERS: usize = 20;

/// The scenarios measure latency and throughput: one at a time, so that
/// they do not measure each other.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// An app on SQLite with timelines, caches and rate limits in `redis`,
/// and an author with `FOLLOWERS` followers whose timelines exist.
async fn app_on(redis: &OwnServer, response_timeout_ms: u64) -> (TestApp, TestUser, Vec<TestUser>) {
    let url = redis.url.clone();
    let app = spawn_app_on(None, move |config| {
        config.redis_url = Some(url);
        config.redis.key_prefix = starling_testing::unique_name("rel") + ":";
        config.redis.response_timeout_ms = response_timeout_ms;
    })
    .await;
    let (author, followers) = audience(&app).await;
    (app, author, followers)
}

/// An author with `FOLLOWERS` followers whose timelines exist.
async fn audience(app: &TestApp) -> (TestUser, Vec<TestUser>) {
    let author = app.register("author").await;
    let mut followers = Vec::new();
    for index in 0..FOLLOWERS {
        let follower = app.register(&format!("reader{index}")).await;
        app.follow(&follower, &author).await;
        // Materialise the timeline, so posts reach it by fan-out.
        assert_eq!(app.feed_page(&follower, None, 5).await.status, 200);
        followers.push(follower);
    }
    (author, followers)
}

/// Every acknowledged post is stored, and shows in every follower's feed;
/// the time it took after `since` for the feeds to show them all. A write
/// that got no 201 (a 503 from the request timeout, say) may still have
/// made its post: feeds may hold at most that many posts more.
async fn assert_converged(
    app: &TestApp,
    followers: &[TestUser],
    recorded: &load::Recorded,
    since: Instant,
) -> Duration {
    let acknowledged = &recorded.acknowledged;
    let unanswered = recorded
        .samples
        .iter()
        .filter(|sample| sample.kind == "write" && sample.status != 201)
        .count();
    for id in acknowledged {
        let reply = app.get(&format!("/api/v1/posts/{id}"), None).await;
        assert_eq!(reply.status, 200, "acknowledged post {id} was lost");
    }
    let expected: std::collections::BTreeSet<&String> = acknowledged.iter().collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    for follower in followers {
        loop {
            let feed = app
                .all_pages("/api/v1/feed", Some(&follower.access_token), 100)
                .await;
            let shown: std::collections::BTreeSet<&String> = feed.iter().collect();
            if shown.is_superset(&expected) {
                let extra = shown.len() - expected.len();
                assert!(
                    extra <= unanswered,
                    "{extra} posts in a feed that no write made ({unanswered} writes unanswered)"
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "a follower's feed never converged: {} of {} posts",
                shown.intersection(&expected).count(),
                expected.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    since.elapsed()
}

fn print_figures(scenario: &str, lines: &[String]) {
    println!("\n== {scenario}");
    for line in lines {
        println!("   {line}");
    }
}

/// Scenario 1: Redis killed mid-load. Feeds keep answering (from SQL), no
/// acknowledged post is lost, and timelines converge once Redis is back.
#[tokio::test]
async fn redis_killed_mid_load() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let Some(mut redis) = OwnServer::redis() else {
        return;
    };
    let (app, author, followers) = app_on(&redis, 500).await;
    let load = Load::usual(&app, &author, &followers, Duration::from_secs(6));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed_at = load.started.elapsed();
    redis.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.restart();
    let back_at = load.started.elapsed();
    let back = Instant::now();
    let recorded = load.finish().await;

    let reads = summarise(&recorded.samples, "read", None);
    let writes = summarise(&recorded.samples, "write", None);
    let outage = summarise(&recorded.samples, "read", Some((killed_at, back_at)));
    reads.assert_only(200);
    writes.assert_only(201);
    assert!(outage.requests > 0, "reads ran during the outage");
    let recovery = assert_converged(&app, &followers, &recorded, back).await;
    print_figures(
        "scenario 1: Redis killed for 2 s of a 6 s load",
        &[
            format!("reads:  {reads}"),
            format!("  while Redis was down: {outage}"),
            format!("writes: {writes}"),
            format!("posts acknowledged {}, lost 0", recorded.acknowledged.len()),
            format!(
                "every follower's feed complete {:.1} s after Redis came back",
                recovery.as_secs_f64()
            ),
        ],
    );
}

/// The relay's outbox backlog, as `/metrics` shows it.
async fn relay_backlog(app: &TestApp) -> f64 {
    let metrics = app.metrics().await;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("starling_outbox_backlog_events{consumer=\"relay\"} "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Waits (at most 30 s) until the relay has published every outbox event.
async fn wait_for_the_outbox_to_drain(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while relay_backlog(app).await > 0.0 {
        assert!(Instant::now() < deadline, "the outbox never drained");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Scenario 2: NATS killed mid-load. Writes keep succeeding, the outbox
/// keeps every event while the broker is gone and drains when it is back,
/// and every follower's timeline converges.
#[tokio::test]
async fn nats_killed_mid_load() {
    nats_killed_mid_load_on(None).await;
}

/// Scenario 2 with PostgreSQL as the write model (its outbox and relay).
#[tokio::test]
async fn nats_killed_mid_load_on_postgres() {
    let Some(database) = starling_testing::test_database().await else {
        return;
    };
    nats_killed_mid_load_on(Some(&database)).await;
}

async fn nats_killed_mid_load_on(database: Option<&starling_testing::TestDatabase>) {
    let _alone = ONE_AT_A_TIME.lock().await;
    let Some(mut nats) = OwnServer::nats() else {
        return;
    };
    let url = nats.url.clone();
    let database_url = database.map(|database| database.url.clone());
    let app = spawn_app_on(None, move |config| {
        config.nats_url = Some(url);
        config.database_url = database_url;
        // A delivery whose acknowledgement died with the broker is sent
        // again after this; it bounds the convergence measured below.
        config.nats.ack_wait_secs = 5;
    })
    .await;
    let (author, followers) = audience(&app).await;
    let load = Load::usual(&app, &author, &followers, Duration::from_secs(6));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed_at = load.started.elapsed();
    nats.kill();
    let mut backlog_peak: f64 = 0.0;
    let mut scrape_max = Duration::ZERO;
    while load.started.elapsed() < killed_at + Duration::from_secs(2) {
        let scrape = Instant::now();
        backlog_peak = backlog_peak.max(relay_backlog(&app).await);
        scrape_max = scrape_max.max(scrape.elapsed());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    nats.restart();
    let back_at = load.started.elapsed();
    let back = Instant::now();
    let recorded = load.finish().await;

    let reads = summarise(&recorded.samples, "read", None);
    let writes = summarise(&recorded.samples, "write", None);
    let outage = summarise(&recorded.samples, "write", Some((killed_at, back_at)));
    reads.assert_only(200);
    writes.assert_only(201);
    assert!(outage.requests > 0, "posts were written during the outage");
    assert!(
        backlog_peak > 0.0,
        "the outbox kept the events the broker could not take"
    );
    let recovery = assert_converged(&app, &followers, &recorded, back).await;
    wait_for_the_outbox_to_drain(&app).await;
    let drained = back.elapsed();
    print_figures(
        &format!(
            "scenario 2: NATS killed for 2 s of a 6 s load ({} outbox, JetStream, relay)",
            if database.is_some() {
                "PostgreSQL"
            } else {
                "SQLite"
            }
        ),
        &[
            format!("reads:  {reads}"),
            format!("writes: {writes}"),
            format!("  while NATS was down: {outage}"),
            format!(
                "outbox backlog at its peak: {backlog_peak:.0} events; /metrics answered within {:.0} ms",
                scrape_max.as_secs_f64() * 1000.0
            ),
            format!("posts acknowledged {}, lost 0", recorded.acknowledged.len()),
            format!(
                "every follower's feed complete {:.1} s after NATS came back; outbox drained at {:.1} s",
                recovery.as_secs_f64(),
                drained.as_secs_f64()
            ),
        ],
    );
}

/// Scenario 2b: NATS frozen (SIGSTOP) mid-load. Requests never wait on the
/// broker; the relay's publishes time out until NATS's breaker opens, the
/// outbox keeps every event, and it drains once NATS thaws.
#[tokio::test]
async fn nats_frozen_mid_load() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let Some(nats) = OwnServer::nats() else {
        return;
    };
    let url = nats.url.clone();
    let app = spawn_app_on(None, move |config| {
        config.nats_url = Some(url);
        config.nats.ack_wait_secs = 5;
        config.nats.call_timeout_ms = 300;
    })
    .await;
    let (author, followers) = audience(&app).await;
    let load = Load::usual(&app, &author, &followers, Duration::from_secs(7));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let frozen_at = load.started.elapsed();
    nats.pause();
    let (mut opened, mut backlog_unknown) = (false, false);
    while load.started.elapsed() < frozen_at + Duration::from_secs(3) {
        let metrics = app.metrics().await;
        opened |= metrics.lines().any(|line| {
            line.starts_with("starling_breaker_state{dependency=\"nats\"}") && line.ends_with(" 2")
        });
        // What a frozen broker cannot tell is unknown, not its last value.
        backlog_unknown |= metrics.lines().any(|line| {
            line.starts_with("starling_stream_backlog_events{consumer=\"fanout\"}")
                && line.ends_with(" NaN")
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    nats.resume();
    let thawed_at = load.started.elapsed();
    let thawed = Instant::now();
    let recorded = load.finish().await;

    let reads = summarise(&recorded.samples, "read", None);
    let writes = summarise(&recorded.samples, "write", None);
    let frozen = summarise(&recorded.samples, "write", Some((frozen_at, thawed_at)));
    reads.assert_only(200);
    writes.assert_only(201);
    assert!(opened, "NATS's breaker opened while it was frozen");
    assert!(
        backlog_unknown,
        "the stream backlog read as unknown while the broker could not tell"
    );
    assert!(
        frozen.max < Duration::from_millis(500),
        "writes never wait on the broker: {frozen}"
    );
    let recovery = assert_converged(&app, &followers, &recorded, thawed).await;
    print_figures(
        "scenario 2b: NATS frozen (SIGSTOP) for 3 s of a 7 s load, 300 ms NATS timeout",
        &[
            format!("reads:  {reads}"),
            format!("writes: {writes}"),
            format!("  while frozen: {frozen}"),
            "NATS's circuit breaker opened while frozen".to_owned(),
            format!("posts acknowledged {}, lost 0", recorded.acknowledged.len()),
            format!(
                "every follower's feed complete {:.1} s after NATS thawed",
                recovery.as_secs_f64()
            ),
        ],
    );
}

/// Scenario 3: Redis hangs (SIGSTOP) mid-load. Its breaker opens, so after
/// the first calls' timeouts nobody waits on it; no request waits longer
/// than Redis's timeout plus the request's own work.
#[tokio::test]
async fn redis_hanging_mid_load() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let Some(redis) = OwnServer::redis() else {
        return;
    };
    let timeout_ms = 300;
    let (app, author, followers) = app_on(&redis, timeout_ms).await;
    let load = Load::usual(&app, &author, &followers, Duration::from_secs(7));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let frozen_at = load.started.elapsed();
    redis.pause();
    // A route that needs no Redis answers at once all along.
    let mut health = Vec::new();
    while load.started.elapsed() < frozen_at + Duration::from_secs(3) {
        let started = Instant::now();
        assert_eq!(app.get("/healthz", None).await.status, 200);
        health.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    redis.resume();
    let thawed_at = load.started.elapsed();
    let thawed = Instant::now();
    health.sort();
    let health_p99 = health[(health.len() * 99).div_ceil(100) - 1];
    assert!(
        health_p99 < Duration::from_millis(100),
        "/healthz p99 {health_p99:?}"
    );
    let recorded = load.finish().await;

    let reads = summarise(&recorded.samples, "read", None);
    let writes = summarise(&recorded.samples, "write", None);
    let frozen = summarise(&recorded.samples, "read", Some((frozen_at, thawed_at)));
    // After the breaker opened (the first second of the freeze at most).
    let settled = summarise(
        &recorded.samples,
        "read",
        Some((frozen_at + Duration::from_secs(1), thawed_at)),
    );
    reads.assert_only(200);
    writes.assert_only(201);
    let bound = Duration::from_millis(timeout_ms * 3 + 500);
    assert!(reads.max < bound, "a read waited {:?}: {reads}", reads.max);
    assert!(
        writes.max < bound,
        "a write waited {:?}: {writes}",
        writes.max
    );
    assert!(
        settled.p99 < Duration::from_millis(timeout_ms),
        "with the breaker open, reads stop waiting on Redis: {settled}"
    );
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("starling_breaker_transitions_total{dependency=\"redis\",to=\"open\"}"),
        "the breaker's opening is in the metrics"
    );
    let recovery = assert_converged(&app, &followers, &recorded, thawed).await;
    print_figures(
        "scenario 3: Redis frozen (SIGSTOP) for 3 s of a 7 s load, 300 ms Redis timeout",
        &[
            format!("reads:  {reads}"),
            format!("  while frozen: {frozen}"),
            format!("  frozen, after the first second: {settled}"),
            format!("writes: {writes}"),
            format!(
                "/healthz while frozen: {} probes, p99 {:.1} ms",
                health.len(),
                health_p99.as_secs_f64() * 1000.0
            ),
            format!("posts acknowledged {}, lost 0", recorded.acknowledged.len()),
            format!(
                "every follower's feed complete {:.1} s after Redis thawed",
                recovery.as_secs_f64()
            ),
        ],
    );
}

/// A counter's value in Prometheus text (0 when absent).
fn counter(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Scenario 3c: the read replica hangs (SIGSTOP) mid-load. Reads routed to
/// it (others' profiles and post lists) wait at most its 1 s timeout once,
/// then go to the primary; none fails; once it thaws, reads go back to it.
#[tokio::test]
async fn replica_frozen_mid_load() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let Some(database) = starling_testing::test_database().await else {
        return;
    };
    let Some(replica) = starling_testing::OwnReplica::start(&database) else {
        return;
    };
    let (primary, replica_url) = (database.url.clone(), replica.url.clone());
    let app = spawn_app_on(None, move |config| {
        config.database_url = Some(primary);
        config.replica_urls = Some(replica_url);
    })
    .await;
    let (author, followers) = audience(&app).await;
    for index in 0..20 {
        app.create_post(&author, &format!("before {index}")).await;
    }
    let on_replica = "starling_db_reads_total{pool=\"replica\"}";
    let profile = format!("/api/v1/users/{}/posts?limit=10", author.id);
    helpers::eventually(
        "reads reach the replica",
        Duration::from_secs(15),
        || async {
            let _ = app.get(&profile, None).await;
            counter(&app.metrics().await, on_replica) > 0.0
        },
    )
    .await;

    let load = Load::start(
        &app,
        &author,
        &followers,
        1,
        2,
        Duration::from_millis(20),
        Duration::from_secs(8),
    );
    // Anonymous readers of another account's posts: the replica's reads.
    let started = load.started;
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (client, url) = (app.client.clone(), app.url(&profile));
            tokio::spawn(async move {
                let mut samples = Vec::new();
                while started.elapsed() < Duration::from_secs(8) {
                    let sent = Instant::now();
                    let at = started.elapsed();
                    let status = match client.get(&url).send().await {
                        Ok(response) => response.status().as_u16(),
                        Err(_) => 0,
                    };
                    samples.push((at, status, sent.elapsed()));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                samples
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let frozen_at = load.started.elapsed();
    replica.pause();
    tokio::time::sleep(Duration::from_secs(3)).await;
    replica.resume();
    let thawed_at = load.started.elapsed();
    let replica_reads_at_thaw = counter(&app.metrics().await, on_replica);
    let mut samples = Vec::new();
    for reader in readers {
        samples.extend(reader.await.unwrap());
    }
    let recorded = load.finish().await;
    let writes = summarise(&recorded.samples, "write", None);
    writes.assert_only(201);
    assert!(
        samples.iter().all(|(_, status, _)| *status == 200),
        "every read answered 200"
    );
    let during: Vec<Duration> = samples
        .iter()
        .filter(|(at, ..)| *at >= frozen_at && *at < thawed_at)
        .map(|(.., latency)| *latency)
        .collect();
    let mut settled: Vec<Duration> = samples
        .iter()
        .filter(|(at, ..)| *at >= frozen_at + Duration::from_millis(1500) && *at < thawed_at)
        .map(|(.., latency)| *latency)
        .collect();
    settled.sort();
    let worst = during.iter().max().copied().unwrap_or_default();
    let settled_p99 = settled
        .get((settled.len() * 99).div_ceil(100).saturating_sub(1))
        .copied()
        .unwrap_or_default();
    assert!(!during.is_empty() && !settled.is_empty());
    assert!(
        worst < Duration::from_millis(1_600),
        "no read waits much past the replica's 1 s timeout: {worst:?}"
    );
    assert!(
        settled_p99 < Duration::from_millis(250),
        "once the replica is set aside, reads go to the primary: p99 {settled_p99:?}"
    );
    helpers::eventually(
        "reads return to the thawed replica",
        Duration::from_secs(15),
        || async {
            let _ = app.get(&profile, None).await;
            counter(&app.metrics().await, on_replica) > replica_reads_at_thaw
        },
    )
    .await;
    print_figures(
        "scenario 3c: the read replica frozen (SIGSTOP) for 3 s of an 8 s load, 1 s replica timeout",
        &[
            format!(
                "replica-routed reads: {} requests, all 200; while frozen {} requests, slowest {:.0} ms",
                samples.len(),
                during.len(),
                worst.as_secs_f64() * 1000.0
            ),
            format!(
                "  frozen, after the first 1.5 s: p99 {:.1} ms (primary)",
                settled_p99.as_secs_f64() * 1000.0
            ),
            format!("writes: {writes}"),
            "reads went back to the replica after it thawed".to_owned(),
        ],
    );
    drop(replica);
}

/// A small PNG to upload.
fn png() -> Vec<u8> {
    let image = image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(64, 48, |x, y| {
        image::Rgb([(x * 4) as u8, (y * 5) as u8, 100])
    }));
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

async fn upload(app: &TestApp, user: &TestUser) -> (u16, Duration) {
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(png()).file_name("a.png"),
    );
    let sent = Instant::now();
    let status = app
        .client
        .post(app.url("/api/v1/media"))
        .bearer_auth(&user.access_token)
        .multipart(form)
        .send()
        .await
        .map_or(0, |response| response.status().as_u16());
    (status, sent.elapsed())
}

/// Scenario 8: object storage down (the S3 server killed). Uploads fail at
/// once with 503 (not a 500, not after minutes of retries); the object
/// store's breaker opens; posts and feeds never notice; uploads work again
/// once it is back.
#[tokio::test]
async fn object_storage_down() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let Some(mut s3) = starling_testing::S3Server::start().await else {
        return;
    };
    let (endpoint, bucket) = (s3.endpoint.clone(), s3.bucket.clone());
    let app = spawn_app_on(None, move |config| {
        config.media.s3_bucket = Some(bucket);
        config.media.s3_endpoint = Some(endpoint);
        config.media.s3_access_key_id = "test".to_owned();
        config.media.s3_secret_access_key = "test".to_owned();
    })
    .await;
    let (author, followers) = audience(&app).await;
    assert_eq!(upload(&app, &author).await.0, 201);

    s3.kill();
    let down = Instant::now();
    let mut failed = Vec::new();
    let mut opened = false;
    while down.elapsed() < Duration::from_secs(3) {
        let (status, latency) = upload(&app, &author).await;
        assert_eq!(
            status, 503,
            "an upload without storage is refused, not a 500"
        );
        failed.push(latency);
        // Meanwhile everything that needs no storage goes on.
        app.create_post(&author, "no pictures today").await;
        assert_eq!(app.feed_page(&followers[0], None, 5).await.status, 200);
        opened |= app.metrics().await.lines().any(|line| {
            line.starts_with("starling_breaker_state{dependency=\"object_store\"}")
                && line.ends_with(" 2")
        });
    }
    assert!(opened, "the object store's breaker opened");
    failed.sort();
    let slowest = *failed.last().unwrap();
    assert!(
        slowest < Duration::from_secs(2),
        "failed uploads fail fast: {slowest:?}"
    );

    s3.restart();
    let back = Instant::now();
    helpers::eventually("uploads work again", Duration::from_secs(30), || async {
        upload(&app, &author).await.0 == 201
    })
    .await;
    let recovery = back.elapsed();
    print_figures(
        "scenario 8: object storage (S3 on moto) killed for 3 s",
        &[
            format!(
                "uploads while down: {} × 503, slowest {:.0} ms, p50 {:.1} ms",
                failed.len(),
                slowest.as_secs_f64() * 1000.0,
                failed[failed.len() / 2].as_secs_f64() * 1000.0
            ),
            "object_store's circuit breaker opened; posts and feeds answered throughout".to_owned(),
            format!(
                "uploads accepted again {:.1} s after storage came back",
                recovery.as_secs_f64()
            ),
        ],
    );
}

/// An app on a PostgreSQL database of its own reached through a fault
/// proxy, with a 1 s request timeout.
async fn app_behind_fault_proxy() -> Option<(
    starling_testing::TestDatabase,
    starling_testing::FaultProxy,
    TestApp,
)> {
    let database = starling_testing::test_database().await?;
    let proxy = starling_testing::FaultProxy::start(database.server_address()).await;
    let url = database.url_through(proxy.port);
    let app = spawn_app_on(None, move |config| {
        config.database_url = Some(url);
        config.http.request_timeout_secs = 1;
    })
    .await;
    Some((database, proxy, app))
}

/// Scenario 9: the PostgreSQL primary behind a fault proxy: first every
/// packet delayed 3 s (longer than the 1 s request timeout), then every
/// connection cut and new ones refused for 1 s. Requests that need the
/// database answer 503 + `Retry-After` within the request timeout, never a
/// 500 and never a hang; routes that need no database keep answering;
/// no acknowledged post is lost; the pool reconnects by itself once the
/// path heals.
#[tokio::test]
async fn primary_database_slow_then_cut() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let Some((_database, proxy, app)) = app_behind_fault_proxy().await else {
        return;
    };
    let (author, followers) = audience(&app).await;
    let load = Load::usual(&app, &author, &followers, Duration::from_secs(10));
    let probe = |until: Duration| {
        let app = &app;
        let started = load.started;
        async move {
            let mut probes = Vec::new();
            while started.elapsed() < until {
                let sent = Instant::now();
                assert_eq!(app.get("/healthz", None).await.status, 200);
                probes.push(sent.elapsed());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            probes
        }
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let slow_at = load.started.elapsed();
    proxy.set_latency(Duration::from_secs(3));
    let mut health = probe(slow_at + Duration::from_millis(2500)).await;
    proxy.heal();
    let fast_at = load.started.elapsed();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let cut_at = load.started.elapsed();
    proxy.cut();
    health.extend(probe(cut_at + Duration::from_secs(1)).await);
    proxy.heal();
    let healed_at = load.started.elapsed();
    let healed = Instant::now();
    let recorded = load.finish().await;

    health.sort();
    let health_max = *health.last().unwrap();
    assert!(
        health_max < Duration::from_millis(200),
        "/healthz needs no database: {health_max:?}"
    );
    let reads = summarise(&recorded.samples, "read", None);
    let writes = summarise(&recorded.samples, "write", None);
    for summary in [&reads, &writes] {
        summary.assert_success_or_503();
        assert!(
            summary.max < Duration::from_millis(1600),
            "no request waits much past its 1 s timeout: {summary}"
        );
    }
    let slow_writes = summarise(&recorded.samples, "write", Some((slow_at, fast_at)));
    let slow_reads = summarise(&recorded.samples, "read", Some((slow_at, fast_at)));
    let cut_writes = summarise(&recorded.samples, "write", Some((cut_at, healed_at)));
    let cut_reads = summarise(&recorded.samples, "read", Some((cut_at, healed_at)));
    assert!(
        slow_writes.by_status.contains_key(&503) && cut_writes.by_status.contains_key(&503),
        "writes that cannot reach the database are refused: {slow_writes} / {cut_writes}"
    );
    // Back to normal: everything after the path healed (and a second to
    // reconnect) succeeds.
    let after = |kind| {
        summarise(
            &recorded.samples,
            kind,
            Some((healed_at + Duration::from_secs(1), Duration::MAX)),
        )
    };
    after("write").assert_only(201);
    after("read").assert_only(200);
    let first_write = recorded
        .first_write_accepted_after(healed_at)
        .expect("writes succeed again");
    let recovery = assert_converged(&app, &followers, &recorded, healed).await;
    print_figures(
        "scenario 9: PostgreSQL primary behind a fault proxy, 3 s latency for 2.5 s, then cut for 1 s; 1 s request timeout",
        &[
            format!("reads:  {reads}"),
            format!("  while slow: {slow_reads}"),
            format!("  while cut:  {cut_reads}"),
            format!("writes: {writes}"),
            format!("  while slow: {slow_writes}"),
            format!("  while cut:  {cut_writes}"),
            format!(
                "/healthz throughout: {} probes, max {:.1} ms",
                health.len(),
                health_max.as_secs_f64() * 1000.0
            ),
            format!(
                "first write accepted {:.0} ms after the path healed",
                first_write.as_secs_f64() * 1000.0
            ),
            format!("posts acknowledged {}, lost 0", recorded.acknowledged.len()),
            format!(
                "every follower's feed complete {:.1} s after the path healed",
                recovery.as_secs_f64()
            ),
        ],
    );
}

/// Scenario 9b: a create with an `Idempotency-Key` that the request
/// timeout cuts short still runs to its end (the database behind the fault
/// proxy answers slowly), so its retry gets the post it made, not a second
/// one and not "still running" for a minute.
#[tokio::test]
async fn a_create_cut_short_by_the_timeout_finishes_for_its_retry() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let Some((_database, proxy, app)) = app_behind_fault_proxy().await else {
        return;
    };
    let author = app.register("author").await;
    let send = |key: String, text: String| {
        let request = app
            .client
            .post(app.url("/api/v1/posts"))
            .bearer_auth(&author.access_token)
            .header("Idempotency-Key", key)
            .json(&serde_json::json!({ "text": text }));
        async move {
            let sent = Instant::now();
            let reply = helpers::read(request.send().await.unwrap()).await;
            (reply, sent.elapsed())
        }
    };
    // The delay at which the key's claim still fits in the timeout but the
    // create does not depends on the round trips each makes: try a few.
    let mut outcomes = Vec::new();
    let mut replayed = false;
    for (attempt, latency_ms) in [40_u64, 55, 70, 85, 100, 120].into_iter().enumerate() {
        let (key, text) = (format!("slow-{attempt}"), format!("slow post {attempt}"));
        proxy.set_latency(Duration::from_millis(latency_ms));
        let (first, took) = send(key.clone(), text.clone()).await;
        proxy.heal();
        let (retry, _) = send(key, text.clone()).await;
        assert_eq!(retry.status, 201, "the retry gets the post: {}", retry.text);
        let replay = retry.headers.get("idempotent-replayed").is_some();
        if first.status == 201 {
            assert_eq!(retry.body["id"], first.body["id"]);
        } else {
            assert_eq!(first.status, 503, "{}", first.text);
            assert!(took < Duration::from_millis(1500), "{took:?}");
        }
        let posts = app
            .all_pages(&format!("/api/v1/users/{}/posts", author.id), None, 100)
            .await;
        let copies = futures::future::join_all(posts.iter().map(|id| {
            let (app, text) = (&app, &text);
            async move {
                app.get(&format!("/api/v1/posts/{id}"), None).await.body["text"] == text.as_str()
            }
        }))
        .await
        .into_iter()
        .filter(|same| *same)
        .count();
        assert_eq!(copies, 1, "one post per key");
        outcomes.push(format!(
            "{latency_ms} ms each way: first {} in {:.0} ms, retry 201{}",
            first.status.as_u16(),
            took.as_secs_f64() * 1000.0,
            if replay { " replayed" } else { "" }
        ));
        if first.status == 503 && replay {
            replayed = true;
            break;
        }
    }
    assert!(
        replayed,
        "a create cut short by the timeout finished, and its retry replayed it: {outcomes:?}"
    );
    print_figures(
        "scenario 9b: a create cut short by the 1 s request timeout (database 2 × latency away)",
        &outcomes,
    );
}

/// Scenario 7: three times the load the server can take at once. It sheds
/// the excess with 503 + `Retry-After` at once, keeps serving at its
/// sustainable rate, keeps answering its probes, and is itself again when
/// the load drops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_shed_and_the_server_recovers() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let app = spawn_app_on(None, |config| {
        config.http.max_in_flight = 2;
        config.http.max_queue_wait_ms = 0;
    })
    .await;
    let (author, followers) = audience(&app).await;
    // What it sustains: as many writers as it has slots. (Writes, because a
    // feed read served from memory never yields, so reads alone hardly
    // ever overlap in one process.)
    let span = Duration::from_secs(2);
    let sustained = Load::start(&app, &author, &followers, 2, 0, Duration::ZERO, span)
        .finish()
        .await;
    let baseline = summarise(&sustained.samples, "write", None);
    baseline.assert_only(201);
    let sustainable_rate = baseline.requests as f64 / span.as_secs_f64();

    // Three times that.
    let load = Load::start(&app, &author, &followers, 6, 0, Duration::ZERO, span);
    let mut health = Vec::new();
    while load.started.elapsed() < span {
        let started = Instant::now();
        assert_eq!(app.get("/healthz", None).await.status, 200);
        health.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recorded = load.finish().await;
    let ended = Instant::now();
    let writes = summarise(&recorded.samples, "write", None);
    let shed = writes.by_status.get(&503).copied().unwrap_or(0);
    let served = writes.by_status.get(&201).copied().unwrap_or(0);
    assert!(shed > 0, "nothing was shed: {writes}");
    assert_eq!(
        shed + served,
        writes.requests,
        "only 201s and 503s: {writes}"
    );
    let served_rate = served as f64 / span.as_secs_f64();
    assert!(
        served_rate > sustainable_rate * 0.5,
        "overload must not collapse throughput: {served_rate:.0}/s served vs {sustainable_rate:.0}/s sustainable"
    );
    assert!(
        writes.max < Duration::from_secs(1),
        "nobody waited long: {writes}"
    );
    health.sort();
    let health_max = *health.last().unwrap();
    assert!(
        health_max < Duration::from_millis(500),
        "health answered slowly: {health_max:?}"
    );
    // Load gone: answered at once.
    let reply = app.feed_page(&followers[0], None, 20).await;
    assert_eq!(reply.status, 200);
    let recovery = ended.elapsed();
    print_figures(
        "scenario 7: 6 writers without pause (3x) against max_in_flight = 2, no queueing, 2 s",
        &[
            format!("sustained with 2 writers: {baseline} ({sustainable_rate:.0} posts/s)"),
            format!("at 3x: {writes}"),
            format!(
                "shed {shed} of {} at once with 503 + Retry-After; served {served_rate:.0} posts/s",
                writes.requests
            ),
            format!(
                "/healthz during the overload: {} probes, max {:.1} ms",
                health.len(),
                health_max.as_secs_f64() * 1000.0
            ),
            format!(
                "first request after the load: 200 in {:.1} ms",
                recovery.as_secs_f64() * 1000.0
            ),
        ],
    );
}

/// Graceful shutdown under load: what was in flight finishes, what comes
/// after is refused at the door (never a 5xx), no acknowledged post is
/// lost, and what the fan-out worker had not done is done after the
/// restart.
#[tokio::test]
async fn shutdown_under_load_loses_nothing() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let app = spawn_app_on(None, |_| {}).await;
    let (author, followers) = audience(&app).await;
    let load = Load::usual(&app, &author, &followers, Duration::from_secs(4));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stopping = Instant::now();
    let stopped_at = load.started.elapsed();
    let stopped = app.stop().await;
    let drained = stopping.elapsed();
    let recorded = load.finish().await;

    let before = summarise(
        &recorded.samples,
        "write",
        Some((Duration::ZERO, stopped_at)),
    );
    let writes = summarise(&recorded.samples, "write", None);
    let reads = summarise(&recorded.samples, "read", None);
    for summary in [&writes, &reads] {
        assert!(
            summary
                .by_status
                .keys()
                .all(|status| matches!(status, 0 | 200 | 201)),
            "answers are complete or refused at the door, never a server error: {summary}"
        );
    }
    assert!(before.requests > 0);
    let app = restart(stopped, |_| {}).await;
    let restarted = Instant::now();
    let recovery = assert_converged(&app, &followers, &recorded, restarted).await;
    print_figures(
        "graceful shutdown: stopped 1.5 s into a 4 s load, then restarted",
        &[
            format!("writes: {writes} (0 = refused after the stop)"),
            format!("reads:  {reads}"),
            format!(
                "drained and stopped in {:.0} ms",
                drained.as_secs_f64() * 1000.0
            ),
            format!("posts acknowledged {}, lost 0", recorded.acknowledged.len()),
            format!(
                "every follower's feed complete {:.1} s after the restart",
                recovery.as_secs_f64()
            ),
        ],
    );
}

/// Scenario 10: the PostgreSQL primary lost under load, as a machine is
/// lost (its pg_auto_failover keeper and its server killed at once), with
/// a synchronous standby that the monitor promotes. Starling is given both
/// hosts in one URL and finds the writable one by itself; writes in flight
/// get 503 (never a 500), writes succeed again once the standby is
/// promoted, and every post acknowledged before, during or after is on the
/// new primary.
#[tokio::test]
async fn postgres_primary_lost_mid_load() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let Some(cluster) = starling_testing::OwnPostgresHa::start() else {
        return;
    };
    assert_eq!(
        cluster.writable_node().await,
        Some(0),
        "the first node is the primary: {}",
        cluster.state()
    );
    let url = cluster.url.clone();
    let app = spawn_app_on(None, move |config| {
        config.database_url = Some(url);
        config.http.request_timeout_secs = 2;
    })
    .await;
    let (author, followers) = audience(&app).await;
    let load = Load::usual(&app, &author, &followers, Duration::from_secs(14));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let lost_at = load.started.elapsed();
    cluster.kill_node(0);
    let promoted_at = loop {
        if cluster.writable_node().await == Some(1) {
            break load.started.elapsed();
        }
        assert!(
            load.started.elapsed() < lost_at + Duration::from_secs(30),
            "the standby was never promoted: {}",
            cluster.state()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let recorded = load.finish().await;

    let reads = summarise(&recorded.samples, "read", None);
    let writes = summarise(&recorded.samples, "write", None);
    reads.assert_success_or_503();
    writes.assert_success_or_503();
    let failing_over = Some((lost_at, promoted_at));
    let reads_failing_over = summarise(&recorded.samples, "read", failing_over);
    let writes_failing_over = summarise(&recorded.samples, "write", failing_over);
    let first_write = recorded
        .first_write_accepted_after(lost_at)
        .expect("writes succeed again after the failover");
    // A second after the promotion, everything succeeds again.
    let after = |kind| {
        summarise(
            &recorded.samples,
            kind,
            Some((promoted_at + Duration::from_secs(1), Duration::MAX)),
        )
    };
    after("write").assert_only(201);
    after("read").assert_only(200);

    // Every acknowledged post is on the promoted standby, read there
    // directly (no cache in between).
    let ids: Vec<i64> = recorded
        .acknowledged
        .iter()
        .map(|id| id.parse().expect("a post id"))
        .collect();
    let mut new_primary = <sqlx::PgConnection as sqlx::Connection>::connect(&cluster.nodes[1])
        .await
        .expect("connecting to the promoted standby");
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM posts WHERE id = ANY($1)")
        .bind(&ids)
        .fetch_one(&mut new_primary)
        .await
        .unwrap();
    assert_eq!(
        kept,
        i64::try_from(ids.len()).unwrap(),
        "every acknowledged post is on the new primary"
    );
    let changes = counter(&app.metrics().await, "starling_db_primary_changes_total");
    assert!(changes >= 1.0, "the primary's move is counted: {changes}");
    let recovery = assert_converged(&app, &followers, &recorded, Instant::now()).await;
    print_figures(
        "scenario 10: PostgreSQL primary lost (keeper and server SIGKILLed), pg_auto_failover promotes its synchronous standby; 2 s request timeout",
        &[
            format!("reads:  {reads}"),
            format!("  while failing over: {reads_failing_over}"),
            format!("writes: {writes}"),
            format!("  while failing over: {writes_failing_over}"),
            format!(
                "standby writable {:.1} s after the primary was lost; first write accepted {:.1} s after",
                (promoted_at - lost_at).as_secs_f64(),
                first_write.as_secs_f64()
            ),
            format!(
                "posts acknowledged {}, all {} on the new primary: lost 0",
                ids.len(),
                kept
            ),
            format!(
                "every follower's feed complete {:.1} s after the load",
                recovery.as_secs_f64()
            ),
        ],
    );
}

/// Scenario 11: a JetStream cluster of three servers with every stream
/// kept in three copies, and the server leading the event stream killed
/// (SIGKILL) under load. The cluster elects another leader, the relay and
/// the workers carry on through the servers left, and nothing is lost:
/// every acknowledged post reaches every follower's feed and the outbox
/// drains, with the dead server still dead.
#[tokio::test]
async fn nats_server_lost_from_a_cluster_mid_load() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let Some(mut cluster) = starling_testing::OwnNatsCluster::start().await else {
        return;
    };
    let url = cluster.url.clone();
    let app = spawn_app_on(None, move |config| {
        config.nats_url = Some(url);
        config.nats.replicas = 3;
        config.nats.ack_wait_secs = 5;
    })
    .await;
    let (author, followers) = audience(&app).await;
    let stream = starling_nats::JetStreamOptions::default().stream;
    let leader = cluster
        .leader_of(&stream, 0)
        .await
        .expect("the event stream has a leader");
    let load = Load::usual(&app, &author, &followers, Duration::from_secs(8));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed_at = load.started.elapsed();
    let killed = Instant::now();
    cluster.servers[leader].kill();
    let mut backlog_peak: f64 = 0.0;
    let mut new_leader = None;
    while killed.elapsed() < Duration::from_secs(30)
        && (new_leader.is_none() || load.started.elapsed() < Duration::from_secs(8))
    {
        backlog_peak = backlog_peak.max(relay_backlog(&app).await);
        if new_leader.is_none()
            && let Some(found) = cluster.leader_of(&stream, (leader + 1) % 3).await
            && found != leader
        {
            new_leader = Some((found, killed.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (new_leader, elected) = new_leader.expect("the cluster elected another leader");
    let recorded = load.finish().await;
    let ended = Instant::now();

    let reads = summarise(&recorded.samples, "read", None);
    let writes = summarise(&recorded.samples, "write", None);
    let after_kill = summarise(&recorded.samples, "write", Some((killed_at, Duration::MAX)));
    reads.assert_only(200);
    writes.assert_only(201);
    assert!(after_kill.requests > 0, "posts were written after the kill");
    let recovery = assert_converged(&app, &followers, &recorded, ended).await;
    wait_for_the_outbox_to_drain(&app).await;
    let drained = killed.elapsed();
    print_figures(
        "scenario 11: the JetStream server leading the event stream killed (SIGKILL) in a cluster of three, streams in three copies (SQLite outbox, relay)",
        &[
            format!("reads:  {reads}"),
            format!("writes: {writes}"),
            format!("  from the kill on: {after_kill}"),
            format!(
                "server n{leader} killed; n{new_leader} leads the event stream {:.1} s later; outbox backlog at its peak {backlog_peak:.0} events",
                elected.as_secs_f64()
            ),
            format!("posts acknowledged {}, lost 0", recorded.acknowledged.len()),
            format!(
                "every follower's feed complete {:.1} s after the load ended ({:.1} s after the kill); outbox drained",
                recovery.as_secs_f64(),
                drained.as_secs_f64()
            ),
        ],
    );
}

/// Scenario 12: a Redis Cluster master killed (SIGKILL) under load; the
/// cluster promotes its replica by itself. Feed reads keep answering
/// (from SQL while the master's slots are unserved), writes never notice,
/// no post is lost, and every follower's timeline converges, those on the
/// lost master's slots included.
#[tokio::test]
async fn redis_cluster_master_lost_mid_load() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let Some(mut cluster) = starling_testing::OwnRedisCluster::start().await else {
        return;
    };
    let url = cluster.url.clone();
    let app = spawn_app_on(None, move |config| {
        config.redis_url = Some(url);
        config.redis.cluster = true;
        config.redis.key_prefix = starling_testing::unique_name("rel") + ":";
        config.redis.response_timeout_ms = 500;
    })
    .await;
    let (author, followers) = audience(&app).await;
    let masters = cluster.masters().await;
    assert_eq!(masters.len(), 3, "three masters to begin with");
    let lost = masters[0];
    let survivor = masters[1];
    let load = Load::usual(&app, &author, &followers, Duration::from_secs(8));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed_at = load.started.elapsed();
    let killed = Instant::now();
    cluster.nodes[lost].kill();
    // Noticed as failing only after the node timeout: wait until the
    // cluster says so, then until it serves every slot again.
    let mut failing = false;
    let served_again = loop {
        let whole = cluster.serves_every_slot(survivor).await;
        if !whole {
            failing = true;
        } else if failing {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "the cluster never served every slot again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let promoted = cluster.masters().await.len();
    let recorded = load.finish().await;
    let ended = Instant::now();

    let reads = summarise(&recorded.samples, "read", None);
    let writes = summarise(&recorded.samples, "write", None);
    let failing_over = Some((killed_at, killed_at + served_again));
    let reads_failing_over = summarise(&recorded.samples, "read", failing_over);
    reads.assert_only(200);
    writes.assert_only(201);
    assert_eq!(promoted, 3, "a replica took the lost master's place");
    let recovery = assert_converged(&app, &followers, &recorded, ended).await;
    print_figures(
        "scenario 12: a Redis Cluster master killed (SIGKILL) in a cluster of three masters with a replica each, 1 s node timeout",
        &[
            format!("reads:  {reads}"),
            format!("  while failing over: {reads_failing_over}"),
            format!("writes: {writes}"),
            format!(
                "every slot served again {:.1} s after the kill (a replica promoted by the cluster)",
                served_again.as_secs_f64()
            ),
            format!("posts acknowledged {}, lost 0", recorded.acknowledged.len()),
            format!(
                "every follower's feed complete {:.1} s after the load ended",
                recovery.as_secs_f64()
            ),
        ],
    );
}
