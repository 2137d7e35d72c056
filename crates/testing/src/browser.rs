//! Headless Chromium (Debian's `chromium`) for tests of pages Starling
//! serves, with no network beyond this machine's loopback: every host name
//! but `127.0.0.1` fails to resolve, so a page that needs a CDN shows it.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A page as the browser rendered it, and what its console said.
#[derive(Debug)]
pub struct RenderedPage {
    /// The DOM after the page's scripts ran, serialised.
    pub dom: String,
    /// The console's messages (Content-Security-Policy violations and
    /// failed loads among them), one per line.
    pub console: Vec<String>,
}

pub struct Browser {
    program: PathBuf,
}

impl Browser {
    /// `chromium` on `PATH` (or `STARLING_TEST_CHROMIUM`), or `None` (skip).
    pub fn find() -> Option<Self> {
        Some(Self {
            program: crate::program("STARLING_TEST_CHROMIUM", "chromium")?,
        })
    }

    /// Loads `url`, lets its scripts run (and what they fetch arrive) for
    /// up to `budget` of the page's time, and answers the DOM.
    pub fn render(&self, url: &str, budget: Duration) -> RenderedPage {
        let profile = tempfile::tempdir().expect("a browser profile directory");
        let mut child = Command::new(&self.program)
            .args([
                "--headless",
                // As root in a container: no user namespaces to sandbox in.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                // Chromium's own calls home (updates, sync, field trials).
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-quic",
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--virtual-time-budget={}", budget.as_millis()))
            .arg("--dump-dom")
            .arg(url)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chromium starts");
        let stdout = read_all(child.stdout.take());
        let stderr = read_all(child.stderr.take());
        // The page's time is virtual; the wall clock gets a bound of its own.
        let deadline = Instant::now() + budget + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().expect("waiting for chromium") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium did not finish rendering {url}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let (stdout, stderr) = (
            stdout.join().unwrap_or_default(),
            stderr.join().unwrap_or_default(),
        );
        assert!(status.success(), "chromium failed ({status}): {stderr}");
        RenderedPage {
            dom: stdout,
            console: stderr
                .lines()
                .filter(|line| line.contains(":CONSOLE"))
                .map(str::to_owned)
                .collect(),
        }
    }
}

/// Reads a child's pipe to its end on a thread of its own (a pipe left
/// unread would stop the child once full).
fn read_all(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        text
    })
}
