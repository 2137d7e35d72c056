//! Servers a test owns: started on a spare port, and stopped, paused or
//! restarted by the test to inject a fault. The shared services stay
//! untouched; these are the ones tests may break.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The program `name` on `PATH` (or in `variable`), or `None` (skip) when it
/// is missing; with `STARLING_REQUIRE_SERVICES=1` a missing program fails.
pub fn program(variable: &str, name: &str) -> Option<PathBuf> {
    if let Ok(path) = std::env::var(variable)
        && !path.is_empty()
    {
        return Some(PathBuf::from(path));
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        if crate::services_required() {
            panic!(
                "{name} is not installed (nor named by {variable}) and STARLING_REQUIRE_SERVICES=1"
            );
        }
        eprintln!("skipped: install {name} (or set {variable}) to run this test");
        crate::skips::record(variable, &format!("the program {name}"));
    }
    found
}

/// A port nothing listens on right now.
pub fn spare_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a spare port");
    listener.local_addr().expect("a bound address").port()
}

/// Waits until something accepts connections on `port`.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&address, Duration::from_millis(100)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn signal(child: &Child, name: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status();
}

/// A server of the test's own on a spare port (`redis-server`, or
/// `nats-server` with JetStream), to kill, freeze or restart.
pub struct OwnServer {
    pub port: u16,
    pub url: String,
    program: PathBuf,
    args: Vec<String>,
    /// Kept for the server's life (JetStream's store survives restarts).
    _dir: Option<tempfile::TempDir>,
    child: Option<Child>,
}

impl OwnServer {
    /// A `redis-server` keeping nothing on disk, started and answering, or
    /// `None` (skip) when redis-server is missing.
    pub fn redis() -> Option<Self> {
        let program = program("STARLING_TEST_REDIS_SERVER", "redis-server")?;
        Some(Self::redis_with(program, Vec::new(), None))
    }

    /// A `redis-server` of `program` on a spare port keeping nothing on
    /// disk, with `extra` arguments (a cluster node's) and `dir` kept for
    /// its life.
    pub(crate) fn redis_with(
        program: PathBuf,
        extra: Vec<String>,
        dir: Option<tempfile::TempDir>,
    ) -> Self {
        let port = spare_port();
        let mut args = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        .map(str::to_owned)
        .to_vec();
        args.extend(extra);
        Self::launch(
            program,
            port,
            format!("redis://127.0.0.1:{port}"),
            args,
            dir,
        )
    }

    /// A `nats-server` with JetStream, its store in a directory of its own
    /// that outlives restarts (as a real server's disk would).
    pub fn nats() -> Option<Self> {
        let program = program("STARLING_TEST_NATS_SERVER", "nats-server")?;
        let port = spare_port();
        let dir = tempfile::tempdir().expect("a JetStream store directory");
        let args = vec![
            "-js".to_owned(),
            "-a".to_owned(),
            "127.0.0.1".to_owned(),
            "-p".to_owned(),
            port.to_string(),
            "-sd".to_owned(),
            dir.path().display().to_string(),
        ];
        Some(Self::launch(
            program,
            port,
            format!("nats://127.0.0.1:{port}"),
            args,
            Some(dir),
        ))
    }

    /// An S3-compatible server (moto's `moto_server`, from PyPI), keeping
    /// buckets in memory.
    pub fn s3() -> Option<Self> {
        let program = program("STARLING_TEST_S3_SERVER", "moto_server")?;
        let port = spare_port();
        let args = vec![
            "-H".to_owned(),
            "127.0.0.1".to_owned(),
            "-p".to_owned(),
            port.to_string(),
        ];
        Some(Self::launch(
            program,
            port,
            format!("http://127.0.0.1:{port}"),
            args,
            None,
        ))
    }

    pub(crate) fn launch(
        program: PathBuf,
        port: u16,
        url: String,
        args: Vec<String>,
        dir: Option<tempfile::TempDir>,
    ) -> Self {
        let mut server = Self {
            port,
            url,
            program,
            args,
            _dir: dir,
            child: None,
        };
        server.restart();
        server
    }

    /// Starts it again on the same port (Redis empty; JetStream with its store).
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("{} starts: {error}", self.program.display()));
        self.child = Some(child);
        assert!(
            wait_for_port(self.port, Duration::from_secs(30)),
            "{} listens on {}",
            self.program.display(),
            self.port
        );
    }

    /// Kills it (SIGKILL): connections drop, the port refuses.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes it (SIGSTOP): connections stay open and nothing answers.
    pub fn pause(&self) {
        if let Some(child) = &self.child {
            signal(child, "STOP");
        }
    }

    /// Thaws a paused server (SIGCONT).
    pub fn resume(&self) {
        if let Some(child) = &self.child {
            signal(child, "CONT");
        }
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.resume();
        self.kill();
    }
}

/// A bucket on an S3-compatible server this test started.
pub struct S3Server {
    pub endpoint: String,
    pub bucket: String,
    server: OwnServer,
}

impl S3Server {
    /// A server with one empty bucket, or `None` (skip) when there is no
    /// S3 server program here.
    pub async fn start() -> Option<Self> {
        let server = OwnServer::s3()?;
        let bucket = "starling-test".to_owned();
        create_bucket(server.port, &bucket);
        Some(Self {
            endpoint: server.url.clone(),
            bucket,
            server,
        })
    }

    /// Kills the server (SIGKILL): requests are refused.
    pub fn kill(&mut self) {
        self.server.kill();
    }

    /// Starts it again on the same port, with the bucket (empty: moto
    /// keeps buckets in memory).
    pub fn restart(&mut self) {
        self.server.restart();
        create_bucket(self.server.port, &self.bucket);
    }
}

/// `PUT /<bucket>`: the server's own API (moto does not check signatures).
fn create_bucket(port: u16, bucket: &str) {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let attempt = (|| -> std::io::Result<String> {
            let mut connection = TcpStream::connect(("127.0.0.1", port))?;
            write!(
                connection,
                "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )?;
            let mut answer = String::new();
            connection.read_to_string(&mut answer)?;
            Ok(answer)
        })();
        match attempt {
            Ok(answer)
                if answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200") =>
            {
                return;
            }
            other => {
                assert!(
                    Instant::now() < deadline,
                    "creating bucket {bucket}: {other:?}"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}
