//! Starting the real `starling` binary as a child process.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::process::{Child, Command};

use crate::helpers::{TestUser, read, session_user};

pub struct Server {
    pub child: Child,
    pub base: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `starling` on `data_dir`; with `subcommand`, as `starling serve
/// --listen ... --data-dir ...`, otherwise with no arguments and the
/// address and directory in the environment.
pub async fn start(data_dir: &Path, subcommand: bool) -> Server {
    start_with(data_dir, subcommand, &[], false).await
}

/// Like `start`, with extra environment and, when `capture_stdout`, the
/// server's standard output (its log) piped for the test to read.
pub async fn start_with(
    data_dir: &Path,
    subcommand: bool,
    env: &[(&str, &str)],
    capture_stdout: bool,
) -> Server {
    start_serving(data_dir, subcommand.then_some(&[][..]), env, capture_stdout).await
}

/// Starts `starling serve` with `roles` (`--role` each).
pub async fn start_roles(data_dir: &Path, roles: &[&str], env: &[(&str, &str)]) -> Server {
    start_serving(data_dir, Some(roles), env, false).await
}

async fn start_serving(
    data_dir: &Path,
    roles: Option<&[&str]>,
    env: &[(&str, &str)],
    capture_stdout: bool,
) -> Server {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut command = Command::new(env!("CARGO_BIN_EXE_starling"));
    if let Some(roles) = roles {
        command
            .args(["serve", "--listen", &listen, "--data-dir"])
            .arg(data_dir);
        for role in roles {
            command.args(["--role", role]);
        }
    } else {
        command
            .env("STARLING_LISTEN", &listen)
            .env("STARLING_DATA_DIR", data_dir);
    }
    command
        .env("STARLING_AUTH__PASSWORD_HASHING__MEMORY_KIB", "1024")
        .env("STARLING_AUTH__PASSWORD_HASHING__ITERATIONS", "1")
        .env("STARLING_LOG_LEVEL", "warn")
        // These tests drive one address hard; the rate-limit tests turn
        // limiting back on through `env`.
        .env("STARLING_RATE_LIMITS__ENABLED", "false")
        .env_remove("RUST_LOG");
    for (key, value) in env {
        command.env(key, value);
    }
    // Not the repository (its starling.toml, if any, is not the test's);
    // a data directory the server is to create does not exist yet.
    let working_dir = if data_dir.exists() {
        data_dir
    } else {
        data_dir.parent().unwrap()
    };
    let child = command
        .current_dir(working_dir)
        .stdout(if capture_stdout {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://{listen}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(response) = client.get(format!("{base}/readyz")).send().await
            && response.status() == 200
        {
            return Server { child, base };
        }
        assert!(Instant::now() < deadline, "starling did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends SIGTERM and waits for the exit status.
pub async fn terminate(server: &mut Server) -> std::process::ExitStatus {
    let pid = server.child.id().unwrap();
    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    tokio::time::timeout(Duration::from_secs(20), server.child.wait())
        .await
        .expect("starling exits after SIGTERM")
        .unwrap()
}

pub async fn register(client: &reqwest::Client, base: &str, handle: &str) -> TestUser {
    let response = client
        .post(format!("{base}/api/v1/auth/register"))
        .json(&json!({"handle": handle, "email": format!("{handle}@example.org"), "password": "correct horse"}))
        .send()
        .await
        .unwrap();
    let reply = read(response).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    session_user(&reply.body)
}

/// `follower` follows `followee` through `base`, which must accept it.
pub async fn follow(
    client: &reqwest::Client,
    base: &str,
    follower: &TestUser,
    followee: &TestUser,
) {
    let followed = client
        .post(format!("{base}/api/v1/users/{}/follow", followee.id))
        .bearer_auth(&follower.access_token)
        .send()
        .await
        .unwrap();
    assert!(followed.status().is_success(), "{}", followed.status());
}

/// `author` posts `text` through `base`; answers the new post's id.
pub async fn create_post(
    client: &reqwest::Client,
    base: &str,
    author: &TestUser,
    text: &str,
) -> String {
    let created = read(
        client
            .post(format!("{base}/api/v1/posts"))
            .bearer_auth(&author.access_token)
            .json(&json!({"text": text}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text);
    created.body["id"].as_str().unwrap().to_owned()
}

/// A home-timeline read: its status and post ids (599 when no answer came).
pub async fn feed(
    client: &reqwest::Client,
    base: &str,
    user: &TestUser,
) -> (reqwest::StatusCode, Vec<String>) {
    feed_at(client, &format!("{base}/api/v1/feed"), user).await
}

/// `feed` with a page of up to `limit` posts.
pub async fn feed_up_to(
    client: &reqwest::Client,
    base: &str,
    user: &TestUser,
    limit: usize,
) -> (reqwest::StatusCode, Vec<String>) {
    feed_at(client, &format!("{base}/api/v1/feed?limit={limit}"), user).await
}

async fn feed_at(
    client: &reqwest::Client,
    url: &str,
    user: &TestUser,
) -> (reqwest::StatusCode, Vec<String>) {
    match client.get(url).bearer_auth(&user.access_token).send().await {
        Ok(response) => {
            let reply = read(response).await;
            let ids = reply.body["data"]
                .as_array()
                .map(|posts| {
                    posts
                        .iter()
                        .filter_map(|post| post["id"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            (reply.status, ids)
        }
        Err(_) => (reqwest::StatusCode::from_u16(599).unwrap(), Vec::new()),
    }
}
