//! Starting the real `starling` binary (this very executable) as a child
//! process for a benchmark, on a free loopback port.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

pub struct Spawned {
    pub child: Child,
    /// `http://127.0.0.1:port`
    pub base: String,
    /// `127.0.0.1:port`
    pub address: String,
}

impl Spawned {
    /// SIGKILL, as a crash or `kill -9` ends it, and wait.
    pub async fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    /// SIGTERM, then wait (killed after 20 s).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        if tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .is_err()
        {
            self.child.kill().await?;
        }
        Ok(())
    }
}

/// A fresh data directory that only this user may open, as Starling asks of
/// one (it holds password hashes and the signing key); removed on drop.
pub fn data_dir() -> std::io::Result<tempfile::TempDir> {
    let mut builder = tempfile::Builder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o700));
    }
    builder.tempdir()
}

/// A read-only connection to the server's database in `data_dir`, to count
/// what it stored.
pub async fn read_only_database(data_dir: &Path) -> anyhow::Result<sqlx::SqlitePool> {
    use std::str::FromStr;
    Ok(sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            sqlx::sqlite::SqliteConnectOptions::from_str("sqlite://")?
                .filename(data_dir.join("starling.db"))
                .read_only(true),
        )
        .await?)
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Runs the server (`starling-bench serve`, the same code as `starling
/// serve`) on `data_dir` with `env`, and waits until ready.
pub async fn start_starling(data_dir: &Path, env: &[(&str, String)]) -> anyhow::Result<Spawned> {
    let listen = format!("127.0.0.1:{}", free_port()?);
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args(["serve", "--listen", &listen, "--data-dir"])
        .arg(data_dir)
        .env("STARLING_LOG_LEVEL", "warn")
        // A benchmark drives each seeded account far past any per-client
        // quota: it measures the engine, not the limiter.
        .env("STARLING_RATE_LIMITS__ENABLED", "false")
        .env_remove("RUST_LOG");
    // What the servers log, as a RUST_LOG filter, when a run is to be
    // looked into (their default is warnings and errors).
    if let Ok(filter) = std::env::var("STARLING_BENCH_SERVER_LOG") {
        command.env("RUST_LOG", filter);
    }
    for (key, value) in env {
        command.env(key, value);
    }
    let child = command
        .current_dir(data_dir)
        // Its log shows with the benchmark's.
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting starling")?;
    let base = format!("http://{listen}");
    wait_ready(&format!("{base}/readyz")).await?;
    Ok(Spawned {
        child,
        base,
        address: listen,
    })
}

/// Runs `starling-bench baseline-server` answering `body_bytes`-long JSON.
pub async fn start_baseline(body_bytes: usize) -> anyhow::Result<Spawned> {
    let listen = format!("127.0.0.1:{}", free_port()?);
    let child = Command::new(std::env::current_exe()?)
        .args(["baseline-server", "--listen", &listen, "--body-bytes"])
        .arg(body_bytes.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting the baseline server")?;
    let base = format!("http://{listen}");
    wait_ready(&format!("{base}/feed")).await?;
    Ok(Spawned {
        child,
        base,
        address: listen,
    })
}

async fn wait_ready(url: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(response) = client.get(url).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{url} did not become ready");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
