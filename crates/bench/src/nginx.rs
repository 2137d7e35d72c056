//! nginx in front of Starling instances, with the configuration shipped in
//! `deploy/nginx/starling.conf`: only the upstream addresses, the listening
//! port and the paths change. Used by the scaled-out benchmark and the
//! end-to-end test, so both measure and test the file operators install.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

use crate::server::free_port;

/// The shipped configuration, compiled in so that the binary carries it.
pub const SHIPPED: &str = include_str!("../../../deploy/nginx/starling.conf");

/// `SHIPPED` for `upstreams` (`host:port` each), listening on `port`,
/// logging under `dir`.
pub fn render(upstreams: &[String], port: u16, dir: &Path) -> anyhow::Result<String> {
    let mut servers = upstreams.iter();
    let mut template_servers = 0;
    let mut config = String::new();
    for line in SHIPPED.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("server ") && trimmed.contains("max_fails") {
            template_servers += 1;
            // Keep the health parameters; only the address changes.
            let (_, parameters) = trimmed
                .trim_start_matches("server ")
                .split_once(' ')
                .context("an upstream server line without parameters")?;
            if template_servers == 1 {
                for address in servers.by_ref() {
                    config.push_str(&format!("    server {address} {parameters}\n"));
                }
            }
        } else if trimmed == "listen 80;" {
            config.push_str(&format!("    listen 127.0.0.1:{port};\n"));
        } else if let Some(rest) = trimmed.strip_prefix("proxy_cache_path ") {
            // The cache goes in this instance's own folder.
            let (_, parameters) = rest
                .split_once(' ')
                .context("proxy_cache_path without parameters")?;
            config.push_str(&format!(
                "proxy_cache_path {}/media-cache {parameters}\n",
                dir.display()
            ));
        } else if trimmed.starts_with("access_log ") {
            config.push_str(&format!(
                "    access_log {}/access.log starling;\n",
                dir.display()
            ));
        } else {
            config.push_str(line);
            config.push('\n');
        }
    }
    if template_servers == 0 {
        bail!("the shipped nginx configuration lists no upstream server");
    }
    Ok(config)
}

/// A running nginx; stopped gracefully when dropped.
pub struct Nginx {
    child: Child,
    pub base: String,
    /// `127.0.0.1:port`
    pub address: String,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts `binary` in front of `upstreams` on a free loopback port.
    pub async fn start(binary: &str, upstreams: &[String]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        // nginx's workers may run as another user: let them in.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        let port = free_port()?;
        let path = dir.path();
        std::fs::write(path.join("starling.conf"), render(upstreams, port, path)?)?;
        std::fs::write(
            path.join("nginx.conf"),
            format!(
                "worker_processes 1;\nerror_log {0}/error.log warn;\npid {0}/nginx.pid;\n\
                 events {{ worker_connections 4096; }}\n\
                 http {{\n  client_body_temp_path {0}/body;\n  proxy_temp_path {0}/proxy;\n\
                 fastcgi_temp_path {0}/fastcgi;\n  uwsgi_temp_path {0}/uwsgi;\n  scgi_temp_path {0}/scgi;\n\
                 include {0}/starling.conf;\n}}\n",
                path.display()
            ),
        )?;
        let child = Command::new(binary)
            .arg("-p")
            .arg(path)
            .arg("-c")
            .arg(path.join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {binary}"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if Instant::now() > deadline {
                bail!("nginx did not listen; see {}/error.log", path.display());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            address: format!("127.0.0.1:{port}"),
            _dir: dir,
        })
    }
}

impl Nginx {
    /// The access log, in the shipped `starling` format.
    pub fn access_log(&self) -> std::path::PathBuf {
        self._dir.path().join("access.log")
    }
}

impl Drop for Nginx {
    /// A graceful stop: the master takes its workers down with it (killed
    /// outright, it would leave them running).
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-QUIT", &pid.to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.start_kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_config_takes_any_number_of_upstreams() {
        let dir = Path::new("/tmp/x");
        let upstreams = [
            "127.0.0.1:1".to_owned(),
            "127.0.0.1:2".to_owned(),
            "127.0.0.1:3".to_owned(),
        ];
        let config = render(&upstreams, 9000, dir).unwrap();
        for upstream in &upstreams {
            assert!(config.contains(&format!("server {upstream} max_fails=3 fail_timeout=10s;")));
        }
        assert!(!config.contains("10.0.0."));
        assert!(config.contains("listen 127.0.0.1:9000;"));
        assert!(config.contains("access_log /tmp/x/access.log starling;"));
        assert!(config.contains("proxy_next_upstream error timeout http_502 http_504;"));
    }

    /// nginx inherits `proxy_set_header` into a location only when the
    /// location sets none itself: one that set any would stop forwarding
    /// the client's address, and Starling would count everyone as nginx.
    #[test]
    fn every_location_forwards_the_client_the_same_way() {
        let mut depth = 0usize;
        let mut server_headers = Vec::new();
        for (number, line) in SHIPPED.lines().enumerate() {
            let code = line.split('#').next().unwrap_or_default().trim();
            if code.starts_with("proxy_set_header ") {
                assert_eq!(
                    depth,
                    1,
                    "line {}: proxy_set_header inside a location: `{code}`",
                    number + 1
                );
                server_headers.push(code.to_owned());
            }
            depth += code.matches('{').count();
            depth -= code.matches('}').count();
        }
        for expected in [
            "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
            "proxy_set_header X-Request-Id $starling_request_id;",
            "proxy_set_header Connection \"\";",
        ] {
            assert!(
                server_headers.iter().any(|header| header == expected),
                "the server block does not set `{expected}`"
            );
        }
    }

    #[test]
    fn the_access_log_never_holds_a_query_string_as_sent() {
        let format: String = SHIPPED
            .split("log_format starling")
            .nth(1)
            .and_then(|rest| rest.split(';').next())
            .unwrap_or_default()
            .to_owned();
        assert!(format.contains("$starling_logged_uri"), "{format}");
        for raw in [
            "$request ",
            "$request\"",
            "$request_uri",
            "$args",
            "$query_string",
        ] {
            assert!(
                !format.contains(raw),
                "the access log writes {raw}: {format}"
            );
        }
    }
}
