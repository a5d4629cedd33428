//! Clients behind a reverse proxy or load balancer (`--trusted-proxy`): the TCP peer is the
//! proxy, and the client is what the proxy appended to `X-Forwarded-For`.
//!
//! Only a trusted proxy's header counts, and only its end: anyone can send `X-Forwarded-For`,
//! and a proxy appends the address it saw to whatever the client sent. The client is the
//! rightmost address not itself a trusted proxy (a chain of trusted proxies each appends
//! one); an entry that is not an address stops the walk, and the address before it is used.

use std::net::{IpAddr, SocketAddr};

use axum::extract::connect_info::MockConnectInfo;
use axum::extract::{ConnectInfo, Request};
use axum::http::HeaderMap;
use ipnet::IpNet;

/// Replaces the request's `ConnectInfo` with the client a trusted proxy names, if the TCP peer
/// is one; rate limits, quotas and records then see the client, not the proxy.
pub fn resolve_client(trusted: &[IpNet], request: &mut Request) {
    if trusted.is_empty() {
        return;
    }
    // (Tests give the address as `MockConnectInfo`, which the extractor falls back to.)
    let extensions = request.extensions();
    let peer = match extensions.get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(peer)) => *peer,
        None => match extensions.get::<MockConnectInfo<SocketAddr>>() {
            Some(MockConnectInfo(peer)) => *peer,
            None => return,
        },
    };
    let client = forwarded_client(trusted, peer.ip(), request.headers());
    if client != peer.ip() {
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(client, peer.port())));
    }
}

/// The client of a request whose TCP peer is `peer`.
fn forwarded_client(trusted: &[IpNet], peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(&ip.to_canonical()));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    // Later headers and later entries were appended by proxies nearer to us.
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .collect();
    for entry in entries.iter().rev() {
        let Ok(ip) = entry.trim().parse::<IpAddr>() else {
            break;
        };
        client = ip.to_canonical();
        if !is_trusted(&client) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(trusted: &[&str], peer: &str, forwarded: &[&str]) -> String {
        let trusted: Vec<IpNet> = trusted.iter().map(|t| t.parse().unwrap()).collect();
        let mut headers = HeaderMap::new();
        for value in forwarded {
            headers.append("x-forwarded-for", value.parse().unwrap());
        }
        forwarded_client(&trusted, peer.parse().unwrap(), &headers).to_string()
    }

    #[test]
    fn only_a_trusted_proxy_names_the_client() {
        let lb = ["10.0.0.0/8"];
        assert_eq!(client(&lb, "10.0.0.5", &["198.51.100.7"]), "198.51.100.7");
        // A client's own header is ignored when it connects directly…
        assert_eq!(client(&lb, "203.0.113.9", &["198.51.100.7"]), "203.0.113.9");
        // …and what it sent ahead of the proxy's entry is not believed.
        assert_eq!(
            client(&lb, "10.0.0.5", &["192.0.2.66, 198.51.100.7"]),
            "198.51.100.7"
        );
        // A chain of trusted proxies, in one header or several.
        assert_eq!(
            client(&lb, "10.0.0.5", &["198.51.100.7, 10.0.0.9"]),
            "198.51.100.7"
        );
        assert_eq!(
            client(&lb, "10.0.0.5", &["198.51.100.7", "10.0.0.9"]),
            "198.51.100.7"
        );
        // Nothing usable: the proxy's own address.
        assert_eq!(client(&lb, "10.0.0.5", &[]), "10.0.0.5");
        assert_eq!(client(&lb, "10.0.0.5", &["unknown"]), "10.0.0.5");
        assert_eq!(client(&lb, "10.0.0.5", &["198.51.100.7, junk"]), "10.0.0.5");
        // IPv4-mapped addresses count as IPv4.
        assert_eq!(
            client(&lb, "::ffff:10.0.0.5", &["::ffff:198.51.100.7"]),
            "198.51.100.7"
        );
        // No trusted proxies: the header means nothing.
        assert_eq!(client(&[], "10.0.0.5", &["198.51.100.7"]), "10.0.0.5");
    }
}
