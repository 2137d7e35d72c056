//! Scaled out for real: separate `starling` processes in separate roles (two
//! API instances, a relay, a fan-out worker, a notifier) on PostgreSQL with a streaming
//! replica, Redis and NATS JetStream, plus the `migrate` and
//! `rebuild-timelines` commands.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{Engines, EventStream, FANOUT_WAIT, TestUser, eventually, read};
use crate::process::{Server, create_post, feed, feed_up_to, follow, register, start_roles};

/// The environment every process of one deployment shares.
pub fn deployment_env(
    engines: &Engines,
    key_file: &str,
    replica_url: &str,
) -> Vec<(String, String)> {
    vec![
        ("STARLING_DATABASE_URL".into(), engines.database.url.clone()),
        ("STARLING_REDIS_URL".into(), engines.redis.url.clone()),
        (
            "STARLING_REDIS__KEY_PREFIX".into(),
            engines.redis.prefix.clone(),
        ),
        ("STARLING_NATS_URL".into(), engines.nats.url.clone()),
        ("STARLING_NATS__STREAM".into(), engines.nats.stream.clone()),
        (
            "STARLING_NATS__SUBJECT_PREFIX".into(),
            engines.nats.subject_prefix.clone(),
        ),
        ("STARLING_NATS__PARTITIONS".into(), "4".into()),
        ("STARLING_AUTH__SIGNING_KEY_FILE".into(), key_file.into()),
        ("STARLING_POSTGRES__MIGRATE_ON_START".into(), "false".into()),
        ("STARLING_REPLICA_URLS".into(), replica_url.into()),
        // The load these tests drive from one address would be limited;
        // `two_instances_enforce_one_rate_limit` turns limits back on.
        ("STARLING_RATE_LIMITS__ENABLED".into(), "false".into()),
    ]
}

pub fn with_node<'a>(env: &'a [(String, String)], node: &'a str) -> Vec<(&'a str, &'a str)> {
    env.iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .chain([("STARLING_NODE_ID", node)])
        .collect()
}

pub fn command(env: &[(String, String)]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_starling"));
    command
        .envs(env.iter().map(|(key, value)| (key, value)))
        .env_remove("RUST_LOG")
        .env("STARLING_LOG_LEVEL", "warn");
    command
}

/// `user`'s feed, which must answer 200.
async fn feed_ids(client: &reqwest::Client, base: &str, user: &TestUser) -> Vec<String> {
    let (status, ids) = feed(client, base, user).await;
    assert_eq!(status, 200);
    ids
}

/// One deployment as separate processes on the test's own engines: two API
/// instances, a relay, a fan-out worker and a notifier, after `starling migrate`.
pub struct Deployment {
    pub engines: Engines,
    pub env: Vec<(String, String)>,
    pub api_a: Server,
    pub api_b: Server,
    pub relay: Server,
    pub fanout: Server,
    pub notifier: Server,
    _dirs: Vec<tempfile::TempDir>,
}

impl Deployment {
    /// `None` (skip) when the engines are not configured.
    pub async fn start() -> Option<Self> {
        Self::start_with(&[]).await
    }

    /// With `extra` settings in every process's environment.
    pub async fn start_with(extra: &[(&str, &str)]) -> Option<Self> {
        let engines = Engines::new().await?;
        let replica_url = engines.database.on_replica()?;
        let dirs: Vec<_> = (0..6).map(|_| tempfile::tempdir().unwrap()).collect();
        let key_file = dirs[5].path().join("jwt.pem");
        let mut env = deployment_env(&engines, key_file.to_str().unwrap(), &replica_url);
        env.extend(
            extra
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned())),
        );
        let migrated = command(&env).arg("migrate").output().unwrap();
        assert!(
            migrated.status.success(),
            "{}",
            String::from_utf8_lossy(&migrated.stderr)
        );
        // The first start creates the shared signing key; the rest read it.
        let api_a = start_roles(dirs[0].path(), &["api"], &with_node(&env, "1")).await;
        let api_b = start_roles(dirs[1].path(), &["api"], &with_node(&env, "2")).await;
        let relay = start_roles(dirs[2].path(), &["relay"], &with_node(&env, "3")).await;
        let fanout = start_roles(dirs[3].path(), &["fanout"], &with_node(&env, "4")).await;
        let notifier = start_roles(dirs[4].path(), &["notifier"], &with_node(&env, "5")).await;
        Some(Self {
            engines,
            env,
            api_a,
            api_b,
            relay,
            fanout,
            notifier,
            _dirs: dirs,
        })
    }
}

#[tokio::test]
async fn separate_roles_serve_one_deployment() {
    let Some(deployment) = Deployment::start().await else {
        return;
    };
    let Deployment {
        engines,
        env,
        api_a,
        api_b,
        relay,
        fanout,
        notifier,
        ..
    } = &deployment;
    let client = reqwest::Client::new();

    // Worker processes serve operations endpoints only.
    for worker in [relay, fanout, notifier] {
        let status = client
            .get(format!("{}/api/v1/feed", worker.base))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 404);
        let metrics = client
            .get(format!("{}/metrics", worker.base))
            .send()
            .await
            .unwrap();
        assert_eq!(metrics.status(), 200);
    }

    let ada = register(&client, &api_a.base, "ada").await;
    let bob = register(&client, &api_b.base, "bob").await;
    follow(&client, &api_b.base, &ada, &bob).await;
    // Ada's timeline exists before the post, so it arrives by fan-out.
    assert!(feed_ids(&client, &api_a.base, &ada).await.is_empty());
    // She listens on instance B; the post is made on A and fanned out by
    // the worker process; its live update reaches B through NATS.
    let mut stream = EventStream::open(&client, &api_b.base, &ada, None).await;
    let post = create_post(&client, &api_a.base, &bob, "hello from instance A").await;
    eventually(
        "the post reaches ada's feed on the other instance",
        FANOUT_WAIT,
        || async { feed_ids(&client, &api_b.base, &ada).await == [post.clone()] },
    )
    .await;
    let live = stream.next_event(FANOUT_WAIT).await;
    assert_eq!(live.event, "post", "{live:?}");
    assert_eq!(live.json()["id"], post.as_str());

    // The notifier process tells bob of the follow, read on either instance.
    let notified = || async {
        let reply = read(
            client
                .get(format!("{}/api/v1/notifications", api_a.base))
                .bearer_auth(&bob.access_token)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| (n["type"].clone(), n["actor"]["id"].clone()))
            .collect::<Vec<_>>()
    };
    eventually("bob is notified of ada's follow", FANOUT_WAIT, || async {
        notified().await == [(json!("follow"), json!(ada.id))]
    })
    .await;

    // A delete on one instance reaches what the other holds in memory at
    // once, not when its cached copy expires.
    let post_url = |base: &str| format!("{base}/api/v1/posts/{post}");
    let cached = client.get(post_url(&api_b.base)).send().await.unwrap();
    assert_eq!(cached.status(), 200);
    let deleted = client
        .delete(post_url(&api_a.base))
        .bearer_auth(&bob.access_token)
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success(), "{}", deleted.status());
    eventually(
        "instance B stops showing the deleted post",
        Duration::from_secs(2),
        || async {
            client
                .get(post_url(&api_b.base))
                .send()
                .await
                .unwrap()
                .status()
                == 404
        },
    )
    .await;
    let post = create_post(&client, &api_a.base, &bob, "another one").await;
    eventually("the new post reaches ada", FANOUT_WAIT, || async {
        feed_ids(&client, &api_b.base, &ada).await == [post.clone()]
    })
    .await;

    // Redis loses ada's timeline; the command rebuilds it from SQL.
    let connection = redis::Client::open(engines.redis.url.as_str()).unwrap();
    let mut connection = connection.get_multiplexed_async_connection().await.unwrap();
    let meta = format!("{}tm:{{{}}}", engines.redis.prefix, ada.id);
    let timeline = format!("{}tl:{{{}}}", engines.redis.prefix, ada.id);
    let _: () = redis::cmd("DEL")
        .arg(&meta)
        .arg(&timeline)
        .query_async(&mut connection)
        .await
        .unwrap();
    let rebuilt = command(env)
        .args(["rebuild-timelines", "--user", &ada.id])
        .output()
        .unwrap();
    assert!(
        rebuilt.status.success(),
        "{}",
        String::from_utf8_lossy(&rebuilt.stderr)
    );
    let entries: Vec<String> = redis::cmd("ZRANGE")
        .arg(&timeline)
        .arg(0)
        .arg(-1)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(entries.len(), 1, "the rebuilt timeline holds bob's post");
    let everyone = command(env).arg("rebuild-timelines").output().unwrap();
    assert!(everyone.status.success());
    assert!(String::from_utf8_lossy(&everyone.stdout).contains("rebuilt 2 timelines"));

    // The post went through the stream, once.
    let nats = async_nats::connect(engines.nats.url.as_str())
        .await
        .unwrap();
    let mut stream = async_nats::jetstream::new(nats)
        .get_stream(&engines.nats.stream)
        .await
        .unwrap();
    let stored = stream.info().await.unwrap().state.messages;
    // Two registrations, a follow, two posts, a delete.
    assert_eq!(stored, 6);
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// The relay is another process than the API instance that commits a post:
/// it reads the outbox when told of the commit, not at its next poll.
#[tokio::test]
async fn a_post_is_relayed_when_committed_not_at_the_next_poll() {
    // A poll so rare that only an announcement explains a prompt delivery.
    let Some(deployment) =
        Deployment::start_with(&[("STARLING_OUTBOX__POLL_INTERVAL_MS", "20000")]).await
    else {
        return;
    };
    let Deployment { api_a, api_b, .. } = &deployment;
    let client = reqwest::Client::new();
    let ada = register(&client, &api_a.base, "ada").await;
    let bob = register(&client, &api_b.base, "bob").await;
    follow(&client, &api_b.base, &ada, &bob).await;
    assert!(feed_ids(&client, &api_a.base, &ada).await.is_empty());
    let posted = std::time::Instant::now();
    let post = create_post(&client, &api_a.base, &bob, "straight through").await;
    eventually(
        "the post reaches ada's feed long before the relay's next poll",
        Duration::from_secs(5),
        || async { feed_ids(&client, &api_b.base, &ada).await == [post.clone()] },
    )
    .await;
    assert!(posted.elapsed() < Duration::from_secs(5));
}

/// Two API instances on one Redis count one client against one quota.
#[tokio::test]
async fn two_instances_enforce_one_rate_limit() {
    let Some(engines) = Engines::new().await else {
        return;
    };
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let key_file = dirs[2].path().join("jwt.pem");
    let env: Vec<(String, String)> = deployment_env(&engines, key_file.to_str().unwrap(), "")
        .into_iter()
        .filter(|(key, _)| key != "STARLING_REPLICA_URLS" && key != "STARLING_RATE_LIMITS__ENABLED")
        .chain([
            (
                "STARLING_RATE_LIMITS__ENABLED".to_owned(),
                "true".to_owned(),
            ),
            (
                "STARLING_RATE_LIMITS__READ__LIMIT".to_owned(),
                "6".to_owned(),
            ),
        ])
        .collect();
    let migrated = command(&env).arg("migrate").output().unwrap();
    assert!(migrated.status.success());
    let api_a = start_roles(dirs[0].path(), &["api"], &with_node(&env, "1")).await;
    let api_b = start_roles(dirs[1].path(), &["api"], &with_node(&env, "2")).await;
    let client = reqwest::Client::new();
    let get = |base: String| {
        let client = client.clone();
        async move {
            read(
                client
                    .get(format!("{base}/api/v1/users/@nobody"))
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    // Alternating instances, one quota: 6 answers (404: nobody is there),
    // counting down across both, then 429 from either.
    for (index, remaining) in (0..6).rev().enumerate() {
        let base = if index % 2 == 0 {
            &api_a.base
        } else {
            &api_b.base
        };
        let reply = get(base.clone()).await;
        assert_eq!(reply.status, 404, "{}", reply.text);
        assert_eq!(
            reply.headers["ratelimit-remaining"].to_str().unwrap(),
            remaining.to_string()
        );
    }
    for base in [&api_a.base, &api_b.base] {
        let refused = get(base.clone()).await;
        assert_eq!(refused.status, 429, "{}", refused.text);
        assert!(refused.headers.contains_key("retry-after"));
    }
}

/// A session ended through one API instance is refused by the other
/// within about a poll (`auth.revocation_poll_ms`, 1 s by default): the
/// other had verified and remembered its access token, whose signature is
/// still good. An API key revoked on one is refused by the other once its
/// memory of the key is due a recheck (`auth.api_key_recheck_secs`).
#[tokio::test]
async fn a_session_or_key_ended_on_one_instance_is_refused_by_the_other_within_seconds() {
    let Some(engines) = Engines::new().await else {
        return;
    };
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let key_file = dirs[2].path().join("jwt.pem");
    let env: Vec<(String, String)> = deployment_env(&engines, key_file.to_str().unwrap(), "")
        .into_iter()
        .filter(|(key, _)| key != "STARLING_REPLICA_URLS")
        .chain([(
            "STARLING_AUTH__API_KEY_RECHECK_SECS".to_owned(),
            "1".to_owned(),
        )])
        .collect();
    let migrated = command(&env).arg("migrate").output().unwrap();
    assert!(migrated.status.success());
    let api_a = start_roles(dirs[0].path(), &["api"], &with_node(&env, "1")).await;
    let api_b = start_roles(dirs[1].path(), &["api"], &with_node(&env, "2")).await;
    let client = reqwest::Client::new();
    let ada = register(&client, &api_a.base, "ada").await;
    let made: serde_json::Value = client
        .post(format!("{}/api/v1/me/api-keys", api_a.base))
        .bearer_auth(&ada.access_token)
        .json(&json!({"name": "bot", "scopes": ["read"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = made["key"].as_str().unwrap().to_owned();
    let key_id = made["api_key"]["id"].as_str().unwrap().to_owned();
    let me = |base: String| {
        status_of(
            client.clone(),
            format!("{base}/api/v1/me"),
            ada.access_token.clone(),
        )
    };
    assert_eq!(me(api_b.base.clone()).await, 200);

    let ended = std::time::Instant::now();
    let logout = client
        .post(format!("{}/api/v1/auth/logout", api_a.base))
        .json(&json!({"refresh_token": ada.refresh_token}))
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);
    assert_eq!(me(api_a.base.clone()).await, 401, "at once where it ended");
    refused_within_seconds("the other instance refuses the token", ended, || {
        me(api_b.base.clone())
    })
    .await;

    let with_key =
        |base: String| status_of(client.clone(), format!("{base}/api/v1/feed"), key.clone());
    assert_eq!(with_key(api_b.base.clone()).await, 200);
    let second = sign_in_again(&client, &api_a.base).await;
    let revoked = std::time::Instant::now();
    let revoke = client
        .delete(format!("{}/api/v1/me/api-keys/{key_id}", api_a.base))
        .bearer_auth(second)
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), 204);
    assert_eq!(
        with_key(api_a.base.clone()).await,
        401,
        "at once where revoked"
    );
    refused_within_seconds("the other instance refuses the key", revoked, || {
        with_key(api_b.base.clone())
    })
    .await;
}

/// Waits until `probe` answers 401, which must come within 3 s of `since`.
async fn refused_within_seconds<F, Fut>(what: &str, since: std::time::Instant, probe: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = u16>,
{
    eventually(what, Duration::from_secs(5), || {
        let status = probe();
        async move { status.await == 401 }
    })
    .await;
    assert!(
        since.elapsed() < Duration::from_secs(3),
        "{what}: refused after {:?}",
        since.elapsed()
    );
}

/// The status of `GET url` with `token`.
async fn status_of(client: reqwest::Client, url: String, token: String) -> u16 {
    client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// ada signs in again (her first session ended): a new access token.
async fn sign_in_again(client: &reqwest::Client, base: &str) -> String {
    let session: serde_json::Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"login": "ada", "password": "correct horse"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    session["access_token"].as_str().unwrap().to_owned()
}

/// A fan-out worker killed (SIGKILL) in the middle of a burst of posts,
/// its successor started once the burst is written: the successor takes
/// the partitions when their leases lapse and fans out every post, each
/// once, into timelines that were materialised before (a read that rebuilt
/// from SQL would hide a fan-out that never happened), within 5 s of its
/// start.
#[tokio::test]
async fn a_fan_out_worker_killed_mid_burst_loses_no_post() {
    let Some(mut deployment) = Deployment::start().await else {
        return;
    };
    let client = reqwest::Client::new();
    let api = deployment.api_a.base.clone();
    let mut authors = Vec::new();
    for index in 0..4 {
        authors.push(register(&client, &api, &format!("author{index}")).await);
    }
    let mut readers = Vec::new();
    for index in 0..3 {
        let reader = register(&client, &api, &format!("reader{index}")).await;
        for author in &authors {
            follow(&client, &api, &reader, author).await;
        }
        // Materialised now, before the posts.
        assert!(feed_ids(&client, &api, &reader).await.is_empty());
        readers.push(reader);
    }

    let mut posted = std::collections::BTreeSet::new();
    for round in 0..10 {
        if round == 3 {
            deployment.fanout.child.start_kill().unwrap();
            deployment.fanout.child.wait().await.unwrap();
        }
        let created = futures::future::join_all((0..8).map(|index| {
            let author = &authors[(round * 8 + index) % authors.len()];
            client
                .post(format!("{api}/api/v1/posts"))
                .bearer_auth(&author.access_token)
                .json(&json!({"text": format!("burst {round}.{index}")}))
                .send()
        }))
        .await;
        for response in created {
            let created = read(response.unwrap()).await;
            assert_eq!(created.status, 201, "{}", created.text);
            posted.insert(created.body["id"].as_str().unwrap().to_owned());
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    deployment.fanout =
        start_roles(dir.path(), &["fanout"], &with_node(&deployment.env, "4")).await;
    let (client, api, readers, posted) = (&client, &api, &readers, &posted);
    eventually(
        "every post reaches every reader's timeline once",
        Duration::from_secs(5),
        || async move {
            for reader in readers {
                let (status, ids) = feed_up_to(client, api, reader, 100).await;
                assert_eq!(status, 200);
                let unique: std::collections::BTreeSet<String> = ids.iter().cloned().collect();
                assert_eq!(unique.len(), ids.len(), "a post twice in a timeline");
                if &unique != posted {
                    return false;
                }
            }
            true
        },
    )
    .await;
    println!(
        "a fan-out worker killed mid-burst: its successor converged {:.1} s after its start",
        started.elapsed().as_secs_f64()
    );
}
