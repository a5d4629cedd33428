//! Host candidates: the addresses of this machine a peer on the same network can send to.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use nix::ifaddrs::getifaddrs;
use nix::net::if_::InterfaceFlags;

/// The host candidates for a socket bound to `bound`: when it is bound to an unspecified
/// address, the IPv4 addresses of the machine's interfaces that are up (without loopback and
/// link-local ones) with the bound port; otherwise just `bound`. Empty when the interfaces
/// cannot be listed.
pub fn host_candidates(bound: SocketAddr) -> Vec<SocketAddr> {
    if !bound.ip().is_unspecified() {
        return vec![bound];
    }
    let interfaces = match getifaddrs() {
        Ok(interfaces) => interfaces,
        Err(error) => {
            tracing::debug!(%error, "could not list the network interfaces");
            return Vec::new();
        }
    };
    let mut candidates = Vec::new();
    for interface in interfaces {
        if !interface.flags.contains(InterfaceFlags::IFF_UP)
            || interface.flags.contains(InterfaceFlags::IFF_LOOPBACK)
        {
            continue;
        }
        let Some(ip) = interface
            .address
            .as_ref()
            .and_then(|a| a.as_sockaddr_in())
            .map(|a| a.ip())
        else {
            continue;
        };
        let candidate = SocketAddr::new(IpAddr::V4(ip), bound.port());
        if usable(ip) && !candidates.contains(&candidate) {
            candidates.push(candidate);
        }
    }
    candidates
}

/// Whether a peer could ever reach us at `ip`.
fn usable(ip: Ipv4Addr) -> bool {
    !(ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_specific_address_is_its_own_candidate() {
        let bound: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert_eq!(host_candidates(bound), vec![bound]);
    }

    #[test]
    fn an_unspecified_address_lists_usable_interfaces_with_the_port() {
        let candidates = host_candidates("0.0.0.0:4321".parse().unwrap());
        for candidate in &candidates {
            assert_eq!(candidate.port(), 4321);
            let IpAddr::V4(ip) = candidate.ip() else {
                panic!("not IPv4: {candidate}");
            };
            assert!(usable(ip), "{candidate} should have been skipped");
        }
        assert!(!usable(Ipv4Addr::LOCALHOST));
        assert!(!usable(Ipv4Addr::new(169, 254, 1, 1)));
        assert!(usable(Ipv4Addr::new(192, 0, 2, 1)));
    }
}
