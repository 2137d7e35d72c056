//! The operations assets in `deploy/` against what the binary exports.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::json;

use crate::helpers::Engines;
use crate::helpers::{FANOUT_WAIT, eventually, read};
use crate::process::{register, start, start_roles, terminate};
use crate::roles::{deployment_env, with_node};

/// The repository's root, from where the test runs (cargo sets the
/// package's folder at run time too; a shared build directory may hold a
/// test binary built in another checkout).
fn repository_root() -> std::path::PathBuf {
    let package = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
    Path::new(&package).join("../..")
}

fn repository_file(relative: &str) -> String {
    let path = repository_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// Names of our metrics mentioned in `text` (series names; histogram suffixes removed).
fn referenced_metrics(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        let rest = &text[index..];
        let starts_name = index == 0
            || !(bytes[index - 1].is_ascii_alphanumeric()
                || bytes[index - 1] == b'_'
                || bytes[index - 1] == b':');
        if starts_name && (rest.starts_with("http_") || rest.starts_with("starling_")) {
            let length = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let name = &rest[..length];
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(name);
            names.insert(family.to_owned());
            index += length;
        } else {
            index += 1;
        }
    }
    names
}

/// Runs a client's flow against `base` (register, follow, read, post, see
/// it fanned out) and answers the metrics `metrics_base` then exports.
async fn exercise(base: &str, metrics_base: &str) -> String {
    let client = reqwest::Client::new();
    let author = register(&client, base, "author").await;
    let fan = register(&client, base, "fan").await;
    client
        .post(format!("{base}/api/v1/users/{}/follow", author.id))
        .bearer_auth(&fan.access_token)
        .send()
        .await
        .unwrap();
    let feed = || async {
        read(
            client
                .get(format!("{base}/api/v1/feed"))
                .bearer_auth(&fan.access_token)
                .send()
                .await
                .unwrap(),
        )
        .await
        .body
    };
    feed().await;
    client
        .post(format!("{base}/api/v1/posts"))
        .bearer_auth(&author.access_token)
        .json(&json!({"text": "metrics"}))
        .send()
        .await
        .unwrap();
    eventually("the post is fanned out", FANOUT_WAIT, || async {
        feed().await["data"]
            .as_array()
            .is_some_and(|posts| !posts.is_empty())
    })
    .await;
    // Gauges sampled at a scrape (replica health needs its monitor's first
    // round): the second scrape has them all.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    read(
        client
            .get(format!("{metrics_base}/metrics"))
            .send()
            .await
            .unwrap(),
    )
    .await
    .text
}

/// Metrics the operations assets use that only scaled-out processes export:
/// an embedded Starling has no read replica and no event stream.
const SCALED_OUT_ONLY: [&str; 2] = [
    "starling_db_replica_healthy",
    "starling_stream_backlog_events",
];

/// The metrics `deploy/` references (rules and dashboard), by asset.
fn metrics_the_assets_use() -> Vec<(&'static str, BTreeSet<String>)> {
    [
        "deploy/prometheus/starling-rules.yml",
        "deploy/grafana/starling-dashboard.json",
    ]
    .into_iter()
    .map(|asset| {
        let used = referenced_metrics(&repository_file(asset));
        assert!(
            used.len() > 5,
            "{asset} references too few metrics: {used:?}"
        );
        (asset, used)
    })
    .collect()
}

/// The metric names in a Prometheus text, comments left out.
fn exported_metrics(text: &str) -> BTreeSet<String> {
    referenced_metrics(
        &text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// Embedded, the binary exports every metric the assets use but the
/// scaled-out ones; `scaled_out_processes_export_the_metrics_only_they_have`
/// checks those where the engines are.
#[tokio::test]
async fn rules_and_dashboard_use_only_metrics_the_binary_exports() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), true).await;
    let exported_text = exercise(&server.base, &server.base).await;
    assert!(
        exported_text.contains("# HELP starling_fanout_lag_seconds"),
        "metrics carry help text"
    );
    // Every protection of the edge and the caches shows before it acts.
    for metric in [
        "starling_rate_limited_total{class=\"auth\"} 0",
        "starling_requests_shed_total 0",
        "starling_idempotent_replays_total 0",
        "starling_cache_loads_coalesced_total{cache=\"posts\"} 0",
    ] {
        assert!(exported_text.contains(metric), "{metric} is not exported");
    }
    let exported = exported_metrics(&exported_text);
    for metric in SCALED_OUT_ONLY {
        assert!(
            !exported.contains(metric),
            "{metric} is exported embedded too: take it off SCALED_OUT_ONLY"
        );
    }
    for (asset, used) in metrics_the_assets_use() {
        let missing: Vec<&String> = used
            .iter()
            .filter(|name| !exported.contains(*name) && !SCALED_OUT_ONLY.contains(&name.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "{asset} uses metrics the binary does not export: {missing:?}"
        );
    }
    let dashboard: serde_json::Value =
        serde_json::from_str(&repository_file("deploy/grafana/starling-dashboard.json")).unwrap();
    assert!(dashboard["panels"].as_array().unwrap().len() >= 12);
    assert!(terminate(&mut server).await.success());
}

/// Scaled out (PostgreSQL with a replica, Redis, NATS): the metrics only
/// those processes have are exported, and every dependency's guard shows
/// before anything went wrong.
#[tokio::test]
async fn scaled_out_processes_export_the_metrics_only_they_have() {
    let Some(engines) = Engines::new().await else {
        return;
    };
    let Some(replica_url) = engines.database.on_replica() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("jwt.pem");
    let env = deployment_env(&engines, key_file.to_str().unwrap(), &replica_url);
    let mut env = with_node(&env, "1");
    env.push(("STARLING_POSTGRES__MIGRATE_ON_START", "true"));
    let mut scaled = start_roles(dir.path(), &["all"], &env).await;
    let first = exercise(&scaled.base, &scaled.base).await;
    let text = format!(
        "{first}\n{}",
        read(
            reqwest::get(format!("{}/metrics", scaled.base))
                .await
                .unwrap()
        )
        .await
        .text
    );
    let exported = exported_metrics(&text);
    for metric in SCALED_OUT_ONLY {
        assert!(exported.contains(metric), "{metric} is not exported");
    }
    for dependency in ["redis", "nats"] {
        assert!(
            text.contains(&format!(
                "starling_breaker_state{{dependency=\"{dependency}\"}} 0"
            )),
            "{dependency}'s breaker is exported, closed"
        );
        assert!(text.contains(&format!(
            "starling_breaker_transitions_total{{dependency=\"{dependency}\",to=\"open\"}} 0"
        )));
    }
    // Scaled out too, every metric the assets use is there.
    for (asset, used) in metrics_the_assets_use() {
        let missing: Vec<&String> = used.difference(&exported).collect();
        assert!(
            missing.is_empty(),
            "{asset} uses metrics scaled-out processes do not export: {missing:?}"
        );
    }
    assert!(terminate(&mut scaled).await.success());
}

#[test]
fn the_example_role_configs_load_and_each_unit_runs_a_real_role() {
    use clap::ValueEnum;
    use starling::config::{Overrides, Role};

    let root = repository_root();
    let common = root.join("deploy/config/common.toml");
    let config = starling::Config::load(Some(&common), &Overrides::default())
        .expect("deploy/config/common.toml is a valid configuration");
    assert!(config.database_url.is_some() && config.redis_url.is_some());
    assert!(config.nats_url.is_some());
    // The API instances believe the nginx hosts of deploy/README.md (and
    // only them: not the instances' own network, whose machines could then
    // claim any address).
    let trusts = |address: &str| {
        let address = address.parse().unwrap();
        config
            .http
            .trusted_proxies
            .iter()
            .any(|range| range.contains(address))
    };
    let readme = repository_file("deploy/README.md");
    for nginx in ["nginx-1 10.0.0.5", "nginx-2 10.0.0.6"] {
        assert!(
            readme.contains(nginx),
            "deploy/README.md no longer names {nginx}"
        );
        assert!(
            trusts(nginx.split(' ').nth(1).unwrap()),
            "{nginx} is not trusted"
        );
    }
    let upstreams = repository_file("deploy/nginx/starling.conf");
    for instance in upstreams
        .lines()
        .filter_map(|line| line.trim().strip_prefix("server 10."))
    {
        let address = format!("10.{}", instance.split(':').next().unwrap());
        assert!(
            !trusts(&address),
            "the API instance {address} is trusted as a proxy"
        );
    }
    for role in ["api", "relay", "fanout", "notifier"] {
        let parsed = Role::from_str(role, false).expect("a role the binary knows");
        let unit = repository_file(&format!("deploy/systemd/starling-{role}.service"));
        assert!(
            unit.contains(&format!("serve --role {role}")),
            "starling-{role}.service runs another role"
        );
        assert!(unit.contains(&format!("EnvironmentFile=/etc/starling/{role}.env")));
        let env = repository_file(&format!("deploy/config/{role}.env"));
        assert!(
            env.contains("STARLING_NODE_ID="),
            "{role}.env sets no node id"
        );
        // Every role's unit runs a role the shared config does not rule out.
        assert!(config.runs(parsed));
    }
    // Every process writing the database has its own id part.
    let ids: BTreeSet<String> = ["api", "relay", "fanout", "notifier"]
        .iter()
        .map(|role| {
            repository_file(&format!("deploy/config/{role}.env"))
                .lines()
                .find_map(|line| line.strip_prefix("STARLING_NODE_ID=").map(str::to_owned))
                .unwrap()
        })
        .collect();
    assert_eq!(ids.len(), 4);
}
