//! Highly available deployments of a test's own, made of real engines on
//! spare ports, for the scenarios that lose a node: PostgreSQL with
//! pg_auto_failover (a primary and its synchronous standby), a JetStream
//! cluster of three servers, a Redis Cluster of three masters with a
//! replica each.

use std::path::PathBuf;
use std::process::Command;

use sqlx::Connection;
use sqlx::postgres::PgConnection;

use crate::postgres::{ci_script, postmaster_and_backends};

/// A PostgreSQL primary with a synchronous standby under pg_auto_failover
/// (`.ci/start-pg-ha`): the monitor promotes the standby when the primary
/// is lost. Everything stops when dropped.
pub struct OwnPostgresHa {
    /// Both nodes, as one multi-host URL (primary first).
    pub url: String,
    /// Each node's own URL, in the order of `url`.
    pub nodes: Vec<String>,
    dir: PathBuf,
}

impl OwnPostgresHa {
    /// Starts one, or `None` (skip) where pg_auto_failover is not installed.
    pub fn start() -> Option<Self> {
        crate::program("STARLING_TEST_PG_AUTOCTL", "pg_autoctl")?;
        let script = ci_script("start-pg-ha")?;
        let ports: Vec<u16> = (0..3).map(|_| crate::spare_port()).collect();
        let dir = PathBuf::from(format!("/var/tmp/starling-pg-ha-{}", ports[0]));
        let output = Command::new("bash")
            .arg(&script)
            .arg(&dir)
            .args(ports.iter().map(u16::to_string))
            .output()
            .expect("running .ci/start-pg-ha");
        let started = Self {
            url: String::from_utf8_lossy(&output.stdout).trim().to_owned(),
            nodes: ports[1..]
                .iter()
                .map(|port| format!("postgres://postgres@127.0.0.1:{port}/postgres"))
                .collect(),
            dir,
        };
        assert!(
            output.status.success(),
            "starting PostgreSQL with pg_auto_failover: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Some(started)
    }

    /// The node that takes writes now, if one does.
    pub async fn writable_node(&self) -> Option<usize> {
        for (index, url) in self.nodes.iter().enumerate() {
            let Ok(Ok(mut connection)) = tokio::time::timeout(
                std::time::Duration::from_secs(1),
                PgConnection::connect(url),
            )
            .await
            else {
                continue;
            };
            let read_only: Result<String, _> = sqlx::query_scalar("SHOW transaction_read_only")
                .fetch_one(&mut connection)
                .await;
            let _ = connection.close().await;
            if read_only.is_ok_and(|value| value == "off") {
                return Some(index);
            }
        }
        None
    }

    /// Loses node `index` as a machine would: its keeper (every process of
    /// its session) and its PostgreSQL killed at once (SIGKILL), nothing
    /// flushed or handed over.
    pub fn kill_node(&self, index: usize) {
        self.kill_part(&format!("node{}", index + 1));
    }

    fn kill_part(&self, part: &str) {
        let mut pids = postmaster_and_backends(&self.dir.join(part));
        if let Ok(session) = std::fs::read_to_string(self.dir.join(format!("{part}.sid"))) {
            pids.extend(processes_of_session(session.trim()));
        }
        kill(&pids);
        // A keeper's subprocess may have restarted the server between the
        // two: once the session is gone, nothing restarts it.
        kill(&postmaster_and_backends(&self.dir.join(part)));
    }

    /// What the monitor says of the nodes (for a failing test's message).
    pub fn state(&self) -> String {
        let output = Command::new("runuser")
            .args([
                "-u",
                "postgres",
                "--",
                "pg_autoctl",
                "show",
                "state",
                "--pgdata",
            ])
            .arg(self.dir.join("monitor"))
            .output();
        output
            .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for OwnPostgresHa {
    fn drop(&mut self) {
        for part in ["node1", "node2", "monitor"] {
            self.kill_part(part);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The processes of session `session`.
fn processes_of_session(session: &str) -> Vec<String> {
    Command::new("pgrep")
        .args(["-s", session])
        .output()
        .map(|output| {
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn kill(pids: &[String]) {
    if pids.is_empty() {
        return;
    }
    // Some may have gone already (a backend that saw its postmaster die).
    let _ = Command::new("kill")
        .arg("-KILL")
        .args(pids)
        .stderr(std::process::Stdio::null())
        .status();
}

/// A JetStream cluster of three `nats-server`s of the test's own on spare
/// ports, each with its own store, named `n0`, `n1`, `n2`.
pub struct OwnNatsCluster {
    /// Every server, comma-separated (as `nats_url` takes a cluster).
    pub url: String,
    pub servers: Vec<crate::OwnServer>,
}

impl OwnNatsCluster {
    /// Starts one and waits until it can make replicated streams, or `None`
    /// (skip) when nats-server is missing.
    pub async fn start() -> Option<Self> {
        let program = crate::program("STARLING_TEST_NATS_SERVER", "nats-server")?;
        let ports: Vec<u16> = (0..3).map(|_| crate::spare_port()).collect();
        let routes: Vec<u16> = (0..3).map(|_| crate::spare_port()).collect();
        let servers: Vec<crate::OwnServer> = (0..3)
            .map(|index| {
                let dir = tempfile::tempdir().expect("a JetStream store directory");
                let others: Vec<String> = (0..3)
                    .filter(|other| *other != index)
                    .map(|other| format!("nats://127.0.0.1:{}", routes[other]))
                    .collect();
                let args = vec![
                    "-js".to_owned(),
                    "-a".to_owned(),
                    "127.0.0.1".to_owned(),
                    "-p".to_owned(),
                    ports[index].to_string(),
                    "-sd".to_owned(),
                    dir.path().display().to_string(),
                    "-n".to_owned(),
                    format!("n{index}"),
                    "--cluster_name".to_owned(),
                    format!("starling-{}", ports[0]),
                    "--cluster".to_owned(),
                    format!("nats://127.0.0.1:{}", routes[index]),
                    "--routes".to_owned(),
                    others.join(","),
                ];
                crate::OwnServer::launch(
                    program.clone(),
                    ports[index],
                    format!("nats://127.0.0.1:{}", ports[index]),
                    args,
                    Some(dir),
                )
            })
            .collect();
        let cluster = Self {
            url: servers
                .iter()
                .map(|server| server.url.as_str())
                .collect::<Vec<_>>()
                .join(","),
            servers,
        };
        cluster.wait_ready().await;
        Some(cluster)
    }

    async fn client(&self) -> async_nats::Client {
        let servers: Vec<async_nats::ServerAddr> = self
            .servers
            .iter()
            .map(|server| server.url.parse().expect("a NATS URL"))
            .collect();
        async_nats::connect(servers)
            .await
            .expect("connecting to the test's NATS cluster")
    }

    /// Until the servers have elected their JetStream leader and can make a
    /// stream of three copies.
    async fn wait_ready(&self) {
        let jetstream = async_nats::jetstream::new(self.client().await);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let made = jetstream
                .get_or_create_stream(async_nats::jetstream::stream::Config {
                    name: "READY".to_owned(),
                    subjects: vec!["ready".to_owned()],
                    num_replicas: 3,
                    ..Default::default()
                })
                .await;
            if made.is_ok() {
                let _ = jetstream.delete_stream("READY").await;
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the NATS cluster never became ready: {made:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    /// The server (its index) leading `stream` now, as server `via` sees
    /// it (a live one: a client of a dead server waits to reconnect), or
    /// `None` when it does not answer within 500 ms (between leaders).
    pub async fn leader_of(&self, stream: &str, via: usize) -> Option<usize> {
        let asked = async {
            let client = async_nats::connect(&self.servers[via].url).await.ok()?;
            let watcher = async_nats::jetstream::new(client);
            let mut found = watcher.get_stream(stream).await.ok()?;
            found.info().await.ok().cloned()
        };
        let info = tokio::time::timeout(std::time::Duration::from_millis(500), asked)
            .await
            .ok()??;
        let leader = info.cluster.as_ref()?.leader.as_deref()?;
        leader.strip_prefix('n')?.parse().ok()
    }
}

/// A Redis Cluster of the test's own: three masters, each with a replica,
/// on spare ports, noticing a lost node within a second
/// (`cluster-node-timeout 1000`), so that a replica is promoted by the
/// cluster itself.
pub struct OwnRedisCluster {
    /// Every node, comma-separated (as `redis_url` takes a cluster).
    pub url: String,
    pub nodes: Vec<crate::OwnServer>,
}

impl OwnRedisCluster {
    /// Starts one and waits until every slot is served and every replica
    /// is in sync, or `None` (skip) when redis-server is missing.
    pub async fn start() -> Option<Self> {
        let program = crate::program("STARLING_TEST_REDIS_SERVER", "redis-server")?;
        let cli = crate::program("STARLING_TEST_REDIS_CLI", "redis-cli")?;
        let nodes: Vec<crate::OwnServer> = (0..6)
            .map(|_| {
                let dir = tempfile::tempdir().expect("a Redis Cluster node's directory");
                let extra = [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    "1000",
                    "--cluster-config-file",
                    &dir.path().join("nodes.conf").display().to_string(),
                    "--dir",
                    &dir.path().display().to_string(),
                ]
                .map(str::to_owned)
                .to_vec();
                crate::OwnServer::redis_with(program.clone(), extra, Some(dir))
            })
            .collect();
        let created = Command::new(&cli)
            .args(["--cluster", "create"])
            .args(nodes.iter().map(|node| format!("127.0.0.1:{}", node.port)))
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("running redis-cli --cluster create");
        assert!(
            created.status.success(),
            "creating the Redis Cluster: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        let cluster = Self {
            url: nodes
                .iter()
                .map(|node| node.url.as_str())
                .collect::<Vec<_>>()
                .join(","),
            nodes,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !cluster.ready().await {
            assert!(
                std::time::Instant::now() < deadline,
                "the Redis Cluster never became ready"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Some(cluster)
    }

    async fn info(&self, node: usize, section: &str) -> Option<String> {
        let client = redis::Client::open(self.nodes[node].url.as_str()).ok()?;
        let mut connection = tokio::time::timeout(
            std::time::Duration::from_millis(500),
            client.get_multiplexed_async_connection(),
        )
        .await
        .ok()?
        .ok()?;
        let command = if section == "cluster" {
            redis::cmd("CLUSTER").arg("INFO").clone()
        } else {
            redis::cmd("INFO").arg(section).clone()
        };
        command.query_async(&mut connection).await.ok()
    }

    /// Every node sees every slot served, and every replica is in sync.
    async fn ready(&self) -> bool {
        for node in 0..self.nodes.len() {
            let Some(cluster) = self.info(node, "cluster").await else {
                return false;
            };
            let Some(replication) = self.info(node, "replication").await else {
                return false;
            };
            if !cluster.contains("cluster_state:ok")
                || (replication.contains("role:slave")
                    && !replication.contains("master_link_status:up"))
            {
                return false;
            }
        }
        true
    }

    /// The nodes (their indices) that are masters now.
    pub async fn masters(&self) -> Vec<usize> {
        let mut masters = Vec::new();
        for node in 0..self.nodes.len() {
            if self
                .info(node, "replication")
                .await
                .is_some_and(|replication| replication.contains("role:master"))
            {
                masters.push(node);
            }
        }
        masters
    }

    /// Whether node `via` sees every slot served again.
    pub async fn serves_every_slot(&self, via: usize) -> bool {
        self.info(via, "cluster")
            .await
            .is_some_and(|cluster| cluster.contains("cluster_state:ok"))
    }
}
