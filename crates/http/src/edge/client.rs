//! The client's address: the peer, or, when the peer is a proxy we trust,
//! the address it says it forwarded for. Trusting `X-Forwarded-For` from
//! anyone would let every client pick its own rate-limit bucket.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::Request;

/// Peers whose `X-Forwarded-For` / `X-Real-IP` is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(pub Vec<IpAddr>);

impl TrustedProxies {
    fn trusts(&self, peer: IpAddr) -> bool {
        self.0.contains(&peer)
    }
}

/// The client address as the edge decided it (in the request's extensions).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientIp(pub Option<IpAddr>);

impl ClientIp {
    pub(crate) fn of<B>(request: &Request<B>, trusted: &TrustedProxies) -> Self {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(address)| address.ip());
        let Some(peer) = peer else {
            return Self(None);
        };
        if !trusted.trusts(peer) {
            return Self(Some(peer));
        }
        // Rightmost address that is not itself a trusted proxy: everything
        // left of it was written by the client and proves nothing.
        let forwarded = request
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|part| part.trim().parse::<IpAddr>().ok())
            .collect::<Vec<_>>();
        if let Some(client) = forwarded.iter().rev().find(|ip| !trusted.trusts(**ip)) {
            return Self(Some(*client));
        }
        let real_ip = request
            .headers()
            .get("x-real-ip")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<IpAddr>().ok());
        Self(Some(real_ip.unwrap_or(peer)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(peer: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut request = Request::builder();
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut request = request.body(()).unwrap();
        request
            .extensions_mut()
            .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        request
    }

    fn proxies() -> TrustedProxies {
        TrustedProxies(vec![
            "127.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
        ])
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let forged = [("x-forwarded-for", "1.2.3.4")];
        assert_eq!(
            ClientIp::of(&request("203.0.113.5:40000", &forged), &proxies()).0,
            ip("203.0.113.5")
        );
        assert_eq!(
            ClientIp::of(&request("127.0.0.1:40000", &forged), &proxies()).0,
            ip("1.2.3.4")
        );
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        // The client forged the first entry; our two proxies added the rest.
        let chain = [("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.0.0.2")];
        assert_eq!(
            ClientIp::of(&request("127.0.0.1:1", &chain), &proxies()).0,
            ip("198.51.100.7")
        );
        let real = [("x-real-ip", "198.51.100.8")];
        assert_eq!(
            ClientIp::of(&request("127.0.0.1:1", &real), &proxies()).0,
            ip("198.51.100.8")
        );
        let garbage = [("x-forwarded-for", "not an address")];
        assert_eq!(
            ClientIp::of(&request("127.0.0.1:1", &garbage), &proxies()).0,
            ip("127.0.0.1")
        );
        let no_peer = Request::builder().body(()).unwrap();
        assert_eq!(ClientIp::of(&no_peer, &proxies()).0, None);
    }
}
