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
        if std::env::var("STARLING_REQUIRE_SERVICES").as_deref() == Ok("1") {
            panic!(
                "{name} is not installed (nor named by {variable}) and STARLING_REQUIRE_SERVICES=1"
            );
        }
        eprintln!("skipped: install {name} (or set {variable}) to run this test");
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

/// A `redis-server` of the test's own, keeping nothing on disk.
pub struct RedisServer {
    pub port: u16,
    pub url: String,
    program: PathBuf,
    child: Option<Child>,
}

impl RedisServer {
    /// Started and answering, or `None` (skip) when redis-server is missing.
    pub fn start() -> Option<Self> {
        let program = program("STARLING_TEST_REDIS_SERVER", "redis-server")?;
        let port = spare_port();
        let mut server = Self {
            port,
            url: format!("redis://127.0.0.1:{port}"),
            program,
            child: None,
        };
        server.restart();
        Some(server)
    }

    /// Starts it again on the same port (empty: it keeps nothing).
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new(&self.program)
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        assert!(
            wait_for_port(self.port, Duration::from_secs(10)),
            "redis-server listens on {}",
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

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.resume();
        self.kill();
    }
}
