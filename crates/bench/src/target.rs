//! Load is only ever sent to this machine.

use anyhow::{Context, bail};
use reqwest::Url;

/// Parses `text` as an `http://` URL on the loopback interface.
pub fn loopback_url(text: &str) -> anyhow::Result<Url> {
    let url = Url::parse(text).with_context(|| format!("{text:?} is not a URL"))?;
    if url.scheme() != "http" {
        bail!("only http:// targets are supported, not {}", url.scheme());
    }
    let host = url.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback());
    if !loopback {
        bail!("refusing to send load to {text}: targets must be 127.0.0.1, [::1] or localhost");
    }
    Ok(url)
}

/// `host:port` of a loopback URL, for opening connections.
pub fn socket_address(url: &Url) -> anyhow::Result<String> {
    let host = url.host_str().unwrap_or("127.0.0.1");
    let port = url
        .port_or_known_default()
        .with_context(|| format!("{url} has no port"))?;
    Ok(format!("{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_http_targets_pass() {
        for good in [
            "http://127.0.0.1:8080",
            "http://localhost:1/",
            "http://[::1]:9000",
            "http://127.0.0.2",
        ] {
            assert!(loopback_url(good).is_ok(), "{good}");
        }
        for bad in [
            "http://10.0.0.1:8080",
            "https://127.0.0.1",
            "http://example.org",
            "not a url",
            "http://127.0.0.1.example.org",
        ] {
            assert!(loopback_url(bad).is_err(), "{bad}");
        }
    }
}
