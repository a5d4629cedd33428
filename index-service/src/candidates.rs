//! The candidates a keyed registration lists (where its peer may be reached besides `addr`):
//! which lists the index accepts ([`check`]) and how they are stored ([`encode`], [`decode`]:
//! a JSON array in the `candidates` column, `NULL` for none).
//!
//! The signature proves the list is the key holder's, not that the addresses are: peers still
//! prove an address by answering an authenticated probe before sending anything else to it.
//! What the index refuses is what no peer can be reached at and could only serve to point
//! probes at whole networks: the unspecified address, port 0, multicast and broadcast.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

use proto::api::{Candidate, MAX_CANDIDATES};

/// Why a candidate list was refused; the text says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CandidateError {
    /// More than [`MAX_CANDIDATES`].
    #[error("{0} candidates is too many: list at most {MAX_CANDIDATES}")]
    TooMany(usize),
    /// The same kind and address twice.
    #[error("candidate {0} ({1}) is listed twice: list each candidate once")]
    Duplicate(SocketAddr, &'static str),
    /// An address no peer can be reached at.
    #[error("candidate {0} ({1}) cannot reach a peer: {2}")]
    Unreachable(SocketAddr, &'static str, &'static str),
}

/// Accepts at most [`MAX_CANDIDATES`] candidates, each listed once, none on port 0 nor at an
/// unspecified (`0.0.0.0`, `::`, `0.0.0.0/8`), multicast or broadcast address. The same
/// address may appear under two kinds (a peer with a public address finds its host address
/// again as server-reflexive).
pub fn check(candidates: &[Candidate]) -> Result<(), CandidateError> {
    if candidates.len() > MAX_CANDIDATES {
        return Err(CandidateError::TooMany(candidates.len()));
    }
    let mut seen = HashSet::with_capacity(candidates.len());
    for candidate in candidates {
        let kind = candidate.kind.as_str();
        if let Some(why) = unreachable(candidate.addr) {
            return Err(CandidateError::Unreachable(candidate.addr, kind, why));
        }
        if !seen.insert((candidate.kind, candidate.addr)) {
            return Err(CandidateError::Duplicate(candidate.addr, kind));
        }
    }
    Ok(())
}

/// Why nobody can be reached at `addr`, if so.
fn unreachable(addr: SocketAddr) -> Option<&'static str> {
    if addr.port() == 0 {
        return Some("port 0");
    }
    match addr.ip().to_canonical() {
        ip if ip.is_unspecified() => Some("an unspecified address"),
        ip if ip.is_multicast() => Some("a multicast address"),
        IpAddr::V4(ip) if ip.is_broadcast() => Some("the broadcast address"),
        IpAddr::V4(ip) if ip.octets()[0] == 0 => Some("an address of 0.0.0.0/8 (this network)"),
        _ => None,
    }
}

/// The `candidates` column for `candidates`: `None` (SQL `NULL`) for an empty list.
pub fn encode(candidates: &[Candidate]) -> Option<String> {
    (!candidates.is_empty())
        .then(|| serde_json::to_string(candidates).expect("candidates serialise to JSON"))
}

/// The list in a `candidates` column; a value that is not a list of candidates (written by
/// another program) reads as none, so it can never fail a lookup.
pub fn decode(column: Option<&str>) -> Vec<Candidate> {
    column
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use proto::api::CandidateKind;

    use super::*;

    fn candidate(kind: CandidateKind, addr: &str) -> Candidate {
        Candidate {
            kind,
            addr: addr.parse().unwrap(),
        }
    }

    #[test]
    fn accepts_distinct_reachable_candidates() {
        let list = [
            candidate(CandidateKind::Host, "192.0.2.10:4000"),
            candidate(CandidateKind::Srflx, "192.0.2.10:4000"),
            candidate(CandidateKind::Relay, "[2001:db8::5]:49152"),
            candidate(CandidateKind::Host, "127.0.0.1:4000"),
        ];
        assert_eq!(check(&list), Ok(()));
        assert_eq!(check(&[]), Ok(()));
        let full: Vec<_> = (1..=MAX_CANDIDATES as u16)
            .map(|port| candidate(CandidateKind::Host, &format!("198.51.100.1:{port}")))
            .collect();
        assert_eq!(check(&full), Ok(()));
    }

    #[test]
    fn refuses_what_reaches_nobody() {
        let too_many: Vec<_> = (1..=MAX_CANDIDATES as u16 + 1)
            .map(|port| candidate(CandidateKind::Host, &format!("198.51.100.1:{port}")))
            .collect();
        assert_eq!(check(&too_many), Err(CandidateError::TooMany(9)));
        let twice = [
            candidate(CandidateKind::Relay, "203.0.113.5:49152"),
            candidate(CandidateKind::Relay, "203.0.113.5:49152"),
        ];
        assert!(matches!(check(&twice), Err(CandidateError::Duplicate(..))));
        for bad in [
            "0.0.0.0:4000",
            "[::]:4000",
            "[::ffff:0.0.0.0]:4000",
            "192.0.2.1:0",
            "224.0.0.251:5353",
            "[ff02::1]:4000",
            "[::ffff:239.1.1.1]:4000",
            "255.255.255.255:4000",
            "0.1.2.3:4000",
        ] {
            let error = check(&[candidate(CandidateKind::Host, bad)]).unwrap_err();
            assert!(
                matches!(error, CandidateError::Unreachable(..)),
                "{bad}: {error}"
            );
            assert!(error.to_string().contains("cannot reach a peer"), "{error}");
        }
    }

    #[test]
    fn the_column_round_trips_and_tolerates_garbage() {
        let list = vec![
            candidate(CandidateKind::Host, "192.0.2.10:4000"),
            candidate(CandidateKind::Relay, "[2001:db8::5]:49152"),
        ];
        let column = encode(&list).unwrap();
        assert_eq!(
            column,
            r#"[{"kind":"host","addr":"192.0.2.10:4000"},{"kind":"relay","addr":"[2001:db8::5]:49152"}]"#
        );
        assert_eq!(decode(Some(&column)), list);
        assert_eq!(encode(&[]), None);
        assert_eq!(decode(None), []);
        for garbage in [
            "",
            "null",
            "{}",
            "[1]",
            r#"[{"kind":"x","addr":"1.2.3.4:5"}]"#,
        ] {
            assert_eq!(decode(Some(garbage)), [], "{garbage}");
        }
    }
}
