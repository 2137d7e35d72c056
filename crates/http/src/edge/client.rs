//! The client's address: the peer, or, when the peer is a proxy we trust,
//! the address it says it forwarded for. Trusting `X-Forwarded-For` from
//! anyone would let every client pick its own rate-limit bucket.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use axum::extract::ConnectInfo;
use axum::http::Request;
use ipnet::IpNet;

/// One address (`10.0.0.5`) or a network (`10.0.0.0/24`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressRange(IpNet);

impl AddressRange {
    pub fn contains(&self, address: IpAddr) -> bool {
        self.0.contains(&address.to_canonical())
    }
}

impl From<IpAddr> for AddressRange {
    fn from(address: IpAddr) -> Self {
        Self(IpNet::from(address.to_canonical()))
    }
}

impl FromStr for AddressRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if let Ok(address) = text.parse::<IpAddr>() {
            return Ok(address.into());
        }
        text.parse::<IpNet>()
            .map(|network| Self(network.trunc()))
            .map_err(|_| {
                format!("`{text}` is neither an IP address nor a network like 10.0.0.0/24")
            })
    }
}

impl fmt::Display for AddressRange {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.prefix_len() == self.0.max_prefix_len() {
            write!(formatter, "{}", self.0.addr())
        } else {
            write!(formatter, "{}", self.0)
        }
    }
}

impl serde::Serialize for AddressRange {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for AddressRange {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Peers whose `X-Forwarded-For` / `X-Real-IP` is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(pub Vec<AddressRange>);

impl TrustedProxies {
    fn trusts(&self, peer: IpAddr) -> bool {
        self.0.iter().any(|range| range.contains(peer))
    }
}

/// The bucket an address is counted in: itself for IPv4, its /64 for IPv6
/// (one subscriber gets a whole /64, and could otherwise change address per
/// request). An IPv4 address written as IPv6 (`::ffff:a.b.c.d`) is IPv4.
pub(crate) fn rate_key(address: IpAddr) -> String {
    match address.to_canonical() {
        IpAddr::V4(v4) => format!("ip:{v4}"),
        IpAddr::V6(v6) => {
            let network = Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX));
            format!("ip:{network}/64")
        }
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
        let Some(peer) = peer.map(|peer| peer.to_canonical()) else {
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
            .map(|address| address.to_canonical())
            .collect::<Vec<_>>();
        if let Some(client) = forwarded.iter().rev().find(|ip| !trusted.trusts(**ip)) {
            return Self(Some(*client));
        }
        let real_ip = request
            .headers()
            .get("x-real-ip")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<IpAddr>().ok())
            .map(|address| address.to_canonical());
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

    #[test]
    fn proxies_are_addresses_or_networks() {
        let proxies = TrustedProxies(vec![
            "10.0.0.0/24".parse().unwrap(),
            "fd00::/8".parse().unwrap(),
            " 192.0.2.7 ".parse().unwrap(),
        ]);
        let forwarded = [("x-forwarded-for", "198.51.100.9")];
        for peer in [
            "10.0.0.77:1",
            "[fd12::3]:1",
            "192.0.2.7:1",
            "[::ffff:10.0.0.9]:1",
        ] {
            assert_eq!(
                ClientIp::of(&request(peer, &forwarded), &proxies).0,
                ip("198.51.100.9"),
                "{peer}"
            );
        }
        assert_eq!(
            ClientIp::of(&request("10.0.1.1:1", &forwarded), &proxies).0,
            ip("10.0.1.1")
        );
        assert_eq!(
            "10.0.0.9/24".parse::<AddressRange>().unwrap().to_string(),
            "10.0.0.0/24"
        );
        assert_eq!("::1".parse::<AddressRange>().unwrap().to_string(), "::1");
        assert!("10.0.0.0/33".parse::<AddressRange>().is_err());
        assert!("nginx.internal".parse::<AddressRange>().is_err());
    }

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        let key = |text: &str| rate_key(text.parse().unwrap());
        assert_eq!(key("2001:db8:1:2::1"), "ip:2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:ffff:1:2:3"), key("2001:db8:1:2::1"));
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
        assert_eq!(key("198.51.100.7"), "ip:198.51.100.7");
        assert_eq!(key("::ffff:198.51.100.7"), "ip:198.51.100.7");
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
