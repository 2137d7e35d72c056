//! A fresh PostgreSQL database per test, dropped afterwards, on the server
//! named by `STARLING_TEST_DATABASE_URL`.

use sqlx::Connection;
use sqlx::postgres::PgConnection;

pub struct TestDatabase {
    pub url: String,
    admin_url: String,
    name: String,
}

impl TestDatabase {
    /// The server's address, for a [`crate::FaultProxy`] in front of it.
    pub fn server_address(&self) -> std::net::SocketAddr {
        let options: sqlx::postgres::PgConnectOptions = self.url.parse().expect("a PostgreSQL URL");
        let host = match options.get_host() {
            "localhost" => "127.0.0.1",
            host => host,
        };
        format!("{host}:{}", options.get_port())
            .parse()
            .expect("the test PostgreSQL at an IP address")
    }

    /// The database's URL with the server at `127.0.0.1:port` instead (a
    /// proxy in front of it).
    pub fn url_through(&self, port: u16) -> String {
        let (scheme, rest) = self.url.split_once("://").expect("a PostgreSQL URL");
        let (authority, path) = rest.split_once('/').expect("a PostgreSQL URL");
        let user = authority
            .rsplit_once('@')
            .map(|(user, _)| format!("{user}@"))
            .unwrap_or_default();
        format!("{scheme}://{user}127.0.0.1:{port}/{path}")
    }

    /// The same database on the streaming replica named by
    /// `STARLING_TEST_REPLICA_URL` (started by `.ci/start-pg-replica`), or
    /// `None` (skip).
    pub fn on_replica(&self) -> Option<String> {
        let replica = crate::service_url("STARLING_TEST_REPLICA_URL", "PostgreSQL replica")?;
        Some(with_database(&replica, &self.name))
    }
}

/// A streaming replica of the test PostgreSQL that a test owns: started on
/// a spare port by `.ci/start-pg-replica`, frozen and thawed by the test,
/// stopped when dropped.
pub struct OwnReplica {
    /// The replica, on the test database's name.
    pub url: String,
    dir: std::path::PathBuf,
}

impl OwnReplica {
    /// A replica holding `database` (made before it, so copied with the
    /// rest), or `None` (skip) where replicas cannot be made here.
    pub fn start(database: &TestDatabase) -> Option<Self> {
        let script = ci_script("start-pg-replica")?;
        crate::program("STARLING_TEST_PG_BASEBACKUP", "pg_basebackup")?;
        let port = crate::spare_port();
        let dir = std::path::PathBuf::from(format!("/var/tmp/starling-pg-replica-{port}"));
        let output = std::process::Command::new("bash")
            .arg(&script)
            .arg(port.to_string())
            .arg(&dir)
            .output()
            .expect("running .ci/start-pg-replica");
        assert!(
            output.status.success(),
            "starting a replica: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let url = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        Some(Self {
            url: with_database(&url, &database.name),
            dir,
        })
    }

    fn processes(&self) -> Vec<String> {
        postmaster_and_backends(&self.dir)
    }

    fn signal(&self, signal: &str) {
        for pid in self.processes() {
            let _ = std::process::Command::new("kill")
                .args([&format!("-{signal}"), &pid])
                .status();
        }
    }

    /// Freezes the postmaster and every backend (SIGSTOP): connections stay
    /// open and nothing answers.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    pub fn resume(&self) {
        self.signal("CONT");
    }
}

impl Drop for OwnReplica {
    fn drop(&mut self) {
        self.resume();
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|versions| {
                versions
                    .filter_map(Result::ok)
                    .map(|entry| entry.path().join("bin/pg_ctl"))
                    .filter(|path| path.is_file())
                    .max()
            });
        if let Some(pg_ctl) = bin {
            let _ = std::process::Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(pg_ctl)
                .arg("-D")
                .arg(&self.dir)
                .args(["stop", "-m", "immediate"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The repository's script `.ci/{name}`, found from where the test runs
/// (cargo sets the package's folder), not where this crate was built: a
/// shared build directory may hold a build made in another checkout.
pub(crate) fn ci_script(name: &str) -> Option<std::path::PathBuf> {
    let base = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::current_dir().ok())?;
    let script = base
        .ancestors()
        .map(|dir| dir.join(".ci").join(name))
        .find(|script| script.exists())
        .unwrap_or_else(|| panic!("the test runs inside the Starling repository (.ci/{name})"));
    Some(script)
}

/// The process ids of the PostgreSQL server on data directory `dir`: its
/// postmaster and every process it started.
pub(crate) fn postmaster_and_backends(dir: &std::path::Path) -> Vec<String> {
    let Ok(pid_file) = std::fs::read_to_string(dir.join("postmaster.pid")) else {
        return Vec::new();
    };
    let Some(postmaster) = pid_file.lines().next().map(str::trim).map(str::to_owned) else {
        return Vec::new();
    };
    let children = std::process::Command::new("pgrep")
        .args(["-P", &postmaster])
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
        .unwrap_or_default();
    std::iter::once(postmaster)
        .chain(children.lines().map(str::to_owned))
        .collect()
}

/// `url` with its database replaced by `name`, keeping any query.
fn with_database(url: &str, name: &str) -> String {
    match url.rsplit_once('/') {
        Some((server, rest)) => {
            let query = rest
                .split_once('?')
                .map(|(_, query)| format!("?{query}"))
                .unwrap_or_default();
            format!("{server}/{name}{query}")
        }
        None => panic!("a PostgreSQL URL must name a database: {url}"),
    }
}

/// A new empty database, or `None` (with the reason printed) when no server
/// is configured; with `STARLING_REQUIRE_SERVICES=1` a missing server fails.
pub async fn test_database() -> Option<TestDatabase> {
    let admin_url = crate::service_url("STARLING_TEST_DATABASE_URL", "PostgreSQL")?;
    let name = crate::unique_name("starling_test");
    let mut admin = PgConnection::connect(&admin_url)
        .await
        .expect("connect to STARLING_TEST_DATABASE_URL");
    // The name is ours: letters, digits and underscores only.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create a test database");
    admin.close().await.ok();
    let url = with_database(&admin_url, &name);
    Some(TestDatabase {
        url,
        admin_url,
        name,
    })
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        crate::run_detached(async move {
            if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await;
                let _ = admin.close().await;
            }
        });
    }
}
