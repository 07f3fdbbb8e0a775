//! Requests that came through a reverse proxy: who the client is (`X-Forwarded-For`, trusted
//! only from `--trusted-proxies`), and what shows that a proxy carried the request.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use actix_web::http::header::HeaderMap;

/// Finds a request's client address: the TCP peer, or, when the peer is a trusted proxy, the
/// last address of `X-Forwarded-For` that is not one (each proxy appends the peer it saw, so
/// the addresses left of an untrusted one may be anything its sender wrote).
#[derive(Debug, Clone, Default)]
pub struct ClientAddr {
    trusted: Arc<[IpAddr]>,
}

impl ClientAddr {
    pub fn new(trusted: &[IpAddr]) -> Self {
        Self {
            trusted: trusted.into(),
        }
    }

    /// The client of a request from `peer` with `headers`.
    pub fn ip(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> IpAddr {
        let peer = peer.map_or(IpAddr::from([0, 0, 0, 0]), |peer| peer.ip());
        if !self.trusted.contains(&peer) {
            return peer;
        }
        let mut client = peer;
        let forwarded = headers
            .get_all("x-forwarded-for")
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .collect::<Vec<_>>();
        for hop in forwarded.iter().rev() {
            let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                // Not an address: nothing left of it can be trusted either.
                break;
            };
            client = ip;
            if !self.trusted.contains(&ip) {
                break;
            }
        }
        client
    }
}

/// The header that shows a proxy carried the request (`Via`, `Forwarded`, `X-Forwarded-For`),
/// or `None`. A proxy that adds none of them (nginx's `proxy_pass` alone) shows only in what
/// it rewrote: the `Host` the page named, which the page compares with its own.
pub fn evidence(headers: &HeaderMap) -> Option<&'static str> {
    ["via", "forwarded", "x-forwarded-for"]
        .into_iter()
        .find(|name| headers.contains_key(*name))
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderName, HeaderValue};

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        map
    }

    const PROXY: &str = "10.0.0.1:40000";

    #[test]
    fn a_trusted_proxy_names_the_client_and_anyone_else_is_the_client() {
        let clients = ClientAddr::new(&["10.0.0.1".parse().unwrap()]);
        let forwarded = headers(&[("x-forwarded-for", "203.0.113.7")]);
        assert_eq!(
            clients.ip(Some(PROXY.parse().unwrap()), &forwarded),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        // Not from the proxy: the header is the client's own writing.
        assert_eq!(
            clients.ip(Some("198.51.100.2:5000".parse().unwrap()), &forwarded),
            "198.51.100.2".parse::<IpAddr>().unwrap()
        );
        // Only the last untrusted hop counts; what a client put before it does not.
        let spoofed = headers(&[("x-forwarded-for", "1.2.3.4, 203.0.113.7, 10.0.0.1")]);
        assert_eq!(
            clients.ip(Some(PROXY.parse().unwrap()), &spoofed),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        // From the proxy with no header, or garbage: the proxy is all there is to count.
        assert_eq!(
            clients.ip(Some(PROXY.parse().unwrap()), &headers(&[])),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            clients.ip(
                Some(PROXY.parse().unwrap()),
                &headers(&[("x-forwarded-for", "unknown")])
            ),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn a_proxy_shows_in_the_headers_it_adds() {
        assert_eq!(evidence(&headers(&[])), None);
        assert_eq!(evidence(&headers(&[("via", "1.1 caddy")])), Some("via"));
        assert_eq!(
            evidence(&headers(&[("x-forwarded-for", "127.0.0.1")])),
            Some("x-forwarded-for")
        );
    }
}
