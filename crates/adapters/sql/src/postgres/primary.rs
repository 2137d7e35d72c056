//! Finding the writable server among several: a primary and its standbys,
//! one of which an HA manager (pg_auto_failover, Patroni) promotes when the
//! primary is lost. The URL names every host the way libpq's does
//! (`postgres://user@host1:5432,host2:5432/db`), and the primary pool
//! connects only to the one that accepts writes, as libpq's
//! `target_session_attrs=read-write` does: sqlx takes one host, so this is
//! Starling's own, and small.
//!
//! - At the start, every host is asked (at once) whether it is writable
//!   (`SHOW transaction_read_only`); the pool connects to the first that is.
//! - Every new connection asks again and is refused when the server is
//!   read-only (a standby, or a node that its HA manager holds read-only
//!   while it promotes it): a write never reaches a server that would
//!   refuse it, or keep it only until the next failover.
//! - A watcher keeps one connection to the current primary and asks it
//!   every [`CHECK_EVERY`]; when it fails or turns read-only, the hosts are
//!   asked again until one is writable, and the pool's new connections go
//!   there (`Pool::set_connect_options`). The old primary's connections
//!   fail and are dropped by the pool.
//!
//! Writes in flight when the primary is lost fail (the client gets 503 and
//! retries, with its `Idempotency-Key`); a write acknowledged before is on
//! the standby too when the primary commits synchronously to it
//! (`synchronous_commit = on` with `synchronous_standby_names`, which
//! pg_auto_failover sets), so the promoted standby has every post
//! Starling acknowledged.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use futures::future::join_all;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::Notify;

/// How often the watcher asks the current primary whether it still is.
const CHECK_EVERY: Duration = Duration::from_millis(500);
/// How often the hosts are asked again while none takes writes (a
/// standby being promoted).
const RETRY_EVERY: Duration = Duration::from_millis(200);
/// How long one host may take to answer whether it is writable.
const ASK_TIMEOUT: Duration = Duration::from_secs(1);

/// The hosts of a PostgreSQL URL, each as its own connection options
/// (every other part of the URL shared).
pub(crate) fn hosts(url: &str) -> anyhow::Result<Vec<PgConnectOptions>> {
    let (scheme, rest) = url
        .split_once("://")
        .context("a PostgreSQL URL starts with postgres://")?;
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (user, hosts) = match authority.rfind('@') {
        Some(at) => authority.split_at(at + 1),
        None => ("", authority),
    };
    let tail = without_session_attrs(tail)?;
    let several = hosts.contains(',');
    hosts
        .split(',')
        .map(|host| {
            // (One host may be none: a socket named in the query.)
            if several && host.is_empty() {
                bail!("an empty host in the PostgreSQL URL");
            }
            format!("{scheme}://{user}{host}{tail}")
                .parse::<PgConnectOptions>()
                .with_context(|| format!("parsing the PostgreSQL URL for host {host:?}"))
        })
        .collect()
}

/// The URL's path and query without `target_session_attrs`, which sqlx does
/// not know: the primary's URL always means the writable host.
fn without_session_attrs(tail: &str) -> anyhow::Result<String> {
    let Some((path, query)) = tail.split_once('?') else {
        return Ok(tail.to_owned());
    };
    let mut kept = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("target_session_attrs", value)) => {
                if !matches!(value, "read-write" | "primary" | "any") {
                    bail!(
                        "target_session_attrs={value}: the database URL is the primary's, \
                         which must be writable (replicas go in replica_urls)"
                    );
                }
            }
            _ => kept.push(pair),
        }
    }
    Ok(if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    })
}

fn host_name(options: &PgConnectOptions) -> String {
    format!("{}:{}", options.get_host(), options.get_port())
}

/// Whether the server on `connection` takes writes.
pub(crate) async fn writable(connection: &mut PgConnection) -> Result<bool, sqlx::Error> {
    let read_only: String = sqlx::query_scalar("SHOW transaction_read_only")
        .fetch_one(connection)
        .await?;
    Ok(read_only == "off")
}

/// The hosts of one primary URL, and which of them is writable.
pub(crate) struct Primary {
    hosts: Vec<PgConnectOptions>,
    current: AtomicUsize,
    /// Woken when a new connection found its server read-only.
    lost: Notify,
}

impl Primary {
    pub(crate) fn new(hosts: Vec<PgConnectOptions>) -> Arc<Self> {
        Arc::new(Self {
            hosts,
            current: AtomicUsize::new(0),
            lost: Notify::new(),
        })
    }

    fn current(&self) -> PgConnectOptions {
        self.hosts[self.current.load(Ordering::Relaxed)].clone()
    }

    /// A new connection found its server read-only: look again now.
    pub(crate) fn read_only_seen(&self) {
        self.lost.notify_one();
    }

    /// The first host (in the URL's order) that answers writable, asking
    /// every host at once.
    async fn find(&self) -> Option<usize> {
        let answers = join_all(self.hosts.iter().map(|host| async move {
            tokio::time::timeout(ASK_TIMEOUT, async {
                let mut connection = host.connect().await?;
                let writable = writable(&mut connection).await;
                let _ = connection.close().await;
                writable
            })
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(false)
        }))
        .await;
        answers.iter().position(|writable| *writable)
    }

    /// Asks the hosts every [`RETRY_EVERY`] until one is writable, while
    /// `go_on()` holds.
    async fn find_writable(&self, go_on: impl Fn() -> bool) -> Option<usize> {
        let mut warned = false;
        loop {
            if let Some(index) = self.find().await {
                return Some(index);
            }
            if !go_on() {
                return None;
            }
            if !warned {
                warned = true;
                let names: Vec<String> = self.hosts.iter().map(host_name).collect();
                tracing::warn!(
                    hosts = %names.join(", "),
                    "no PostgreSQL host takes writes yet; asking again"
                );
            }
            tokio::time::sleep(RETRY_EVERY).await;
        }
    }

    /// Asks the hosts until one is writable, for at most `patience`.
    pub(crate) async fn locate(&self, patience: Duration) -> anyhow::Result<PgConnectOptions> {
        let deadline = tokio::time::Instant::now() + patience;
        let Some(index) = self
            .find_writable(|| tokio::time::Instant::now() < deadline)
            .await
        else {
            let names: Vec<String> = self.hosts.iter().map(host_name).collect();
            bail!("no writable PostgreSQL among {}", names.join(", "));
        };
        self.current.store(index, Ordering::Relaxed);
        Ok(self.current())
    }

    /// Follows the primary for as long as `pool` is open: checks the
    /// current one every [`CHECK_EVERY`] (or at once when a new connection
    /// met a read-only server) and points the pool at the writable host
    /// when it changes.
    pub(crate) fn watch(self: Arc<Self>, pool: PgPool) {
        tokio::spawn(async move {
            let mut probe: Option<PgConnection> = None;
            while !pool.is_closed() {
                tokio::select! {
                    () = tokio::time::sleep(CHECK_EVERY) => {}
                    () = self.lost.notified() => {}
                }
                if pool.is_closed() || self.still_primary(&mut probe).await {
                    continue;
                }
                let before = self.current.load(Ordering::Relaxed);
                let Some(index) = self.find_writable(|| !pool.is_closed()).await else {
                    break;
                };
                if index != before {
                    self.current.store(index, Ordering::Relaxed);
                    pool.set_connect_options(self.current());
                    metrics::counter!(starling_app::metric::DB_PRIMARY_CHANGES_TOTAL).increment(1);
                    tracing::warn!(
                        from = %host_name(&self.hosts[before]),
                        to = %host_name(&self.hosts[index]),
                        "the PostgreSQL primary moved; new connections go to the new one"
                    );
                }
            }
            if let Some(probe) = probe {
                let _ = probe.close().await;
            }
        });
    }

    /// Whether the current host still takes writes, asked on `probe` (made
    /// again when it was lost).
    async fn still_primary(&self, probe: &mut Option<PgConnection>) -> bool {
        let asked = tokio::time::timeout(ASK_TIMEOUT, async {
            if probe.is_none() {
                *probe = Some(self.current().connect().await?);
            }
            match probe.as_mut() {
                Some(connection) => writable(connection).await,
                None => Ok(false),
            }
        })
        .await;
        match asked {
            Ok(Ok(true)) => true,
            _ => {
                *probe = None;
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_host_of_a_url_shares_its_user_database_and_options() {
        let hosts = hosts(
            "postgres://app:secret@db1:5432,db2:6432/starling?sslmode=disable&target_session_attrs=read-write",
        )
        .unwrap();
        let described: Vec<(String, u16, Option<&str>, Option<&str>)> = hosts
            .iter()
            .map(|host| {
                (
                    host.get_host().to_owned(),
                    host.get_port(),
                    host.get_database(),
                    Some(host.get_username()),
                )
            })
            .collect();
        assert_eq!(
            described,
            vec![
                ("db1".to_owned(), 5432, Some("starling"), Some("app")),
                ("db2".to_owned(), 6432, Some("starling"), Some("app")),
            ]
        );
    }

    #[test]
    fn a_url_of_one_host_is_one_host() {
        let hosts = hosts("postgres://postgres@127.0.0.1:5432/postgres").unwrap();
        assert_eq!(hosts.len(), 1);
        assert_eq!(hosts[0].get_port(), 5432);
        let socket = super::hosts("postgres:///starling?host=/var/run/postgresql").unwrap();
        assert_eq!(socket.len(), 1);
        assert_eq!(socket[0].get_database(), Some("starling"));
    }

    #[test]
    fn a_primary_url_that_asks_for_a_standby_is_refused() {
        let error = hosts("postgres://u@a,b/db?target_session_attrs=read-only")
            .expect_err("a read-only primary is refused");
        assert!(error.to_string().contains("replica_urls"), "{error}");
        assert!(hosts("postgres://u@a,,b/db").is_err());
    }
}
