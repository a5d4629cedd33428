//! The records a daemon publishes about itself outside the index, and the checks every
//! received one passes before anything acts on it: the LAN announcement (mDNS TXT record) and
//! the DHT record (a BEP 44 mutable item's value). Both are signed by the daemon's Ed25519 key
//! (the LAN one by us, the DHT one by BEP 44 itself) and carry the UUID, which must be the one
//! derived from that key. The wire formats are in docs/protocol.md.

use std::net::SocketAddr;

use proto::api::{Candidate, CandidateKind, PeerRecord};
use proto::identity::{self, Identity};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

/// Most addresses (candidates) in one announcement.
pub const MAX_ADDRS: usize = 8;
/// Most rooms in one LAN announcement.
pub const MAX_ROOMS: usize = 16;
/// Longest name in an announcement, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Longest TXT value we write (a TXT string holds 255 bytes with its key).
pub const MAX_TXT_VALUE: usize = 240;
/// Largest DHT value (BEP 44 allows 1000 bytes).
pub const MAX_DHT_VALUE: usize = 1000;
/// A DHT record older than this is stale: the peer republishes well within it.
pub const MAX_DHT_AGE_SECS: u64 = 3 * 3600;
/// How far in the future a record's time may be (clock skew).
pub const MAX_SKEW_SECS: u64 = proto::identity::MAX_CLOCK_SKEW_SECS;

/// What we announce about ourselves; a change is announced again at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Me {
    /// Our name, if any.
    pub name: Option<String>,
    /// Where we may be reached: host addresses first.
    pub candidates: Vec<Candidate>,
    /// The rooms we are in.
    pub rooms: Vec<String>,
}

impl Me {
    /// What to announce: our name, our host addresses followed by the gathered candidates
    /// that are not among them, and our rooms.
    pub fn new(
        name: Option<String>,
        host: &[SocketAddr],
        gathered: &[Candidate],
        rooms: Vec<String>,
    ) -> Me {
        let mut candidates: Vec<Candidate> = host
            .iter()
            .map(|addr| Candidate {
                kind: CandidateKind::Host,
                addr: *addr,
            })
            .collect();
        for candidate in gathered {
            if !candidates.iter().any(|c| c.addr == candidate.addr) {
                candidates.push(*candidate);
            }
        }
        Me {
            name,
            candidates,
            rooms,
        }
    }
}

/// Why a received record was ignored.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Rejected {
    /// A field is missing, too large, or not what it should be.
    #[error("malformed: {0}")]
    Malformed(&'static str),
    /// The UUID is not the one derived from the key.
    #[error("the UUID does not belong to the key")]
    WrongUuid,
    /// The signature does not verify against the key.
    #[error("the signature does not verify")]
    BadSignature,
    /// Older than what we know, or too old (or too far in the future) to be current.
    #[error("stale")]
    Stale,
}

/// A peer as a verified announcement describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announced {
    /// Its UUID (checked against the key).
    pub uuid: Uuid,
    /// Its Ed25519 public key.
    pub public_key: [u8; 32],
    /// The name it chose (LAN only).
    pub name: Option<String>,
    /// Where it may be reached.
    pub candidates: Vec<Candidate>,
    /// The rooms it is in (LAN only).
    pub rooms: Vec<String>,
    /// When it signed this (Unix seconds).
    pub at: u64,
}

impl Announced {
    /// The record the chat core takes: the best address first (`prefer` kind), every
    /// candidate, the name when `name` is given.
    pub fn record(&self, prefer: CandidateKind, name: Option<String>) -> PeerRecord {
        let best = self
            .candidates
            .iter()
            .find(|c| c.kind == prefer)
            .or_else(|| self.candidates.first())
            .map_or_else(String::new, |c| c.addr.to_string());
        let at = chrono::DateTime::from_timestamp(self.at.min(i64::MAX as u64) as i64, 0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default();
        PeerRecord {
            uuid: self.uuid,
            addr: best,
            name,
            public_key: Some(hex::encode(self.public_key)),
            registered_at: at.clone(),
            last_seen: Some(at),
            ttl_secs: None,
            record_ttl_secs: None,
            cache_ttl_secs: None,
            token: None,
            candidates: self.candidates.clone(),
            ice_servers: Vec::new(),
        }
    }
}

/// Whether a name from outside may be shown and used as one.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && !name.chars().any(proto::display::is_unsafe)
        && name.trim() == name
}

/// Addresses a peer elsewhere could send to.
fn usable(addr: &SocketAddr) -> bool {
    addr.port() != 0 && !addr.ip().is_unspecified() && !addr.ip().is_multicast()
}

/// Our candidates as a comma-separated list that fits one TXT value, host addresses first.
fn addr_list(candidates: &[Candidate]) -> String {
    let mut list = String::new();
    let mut sorted: Vec<&Candidate> = candidates.iter().collect();
    sorted.sort_by_key(|c| c.kind != CandidateKind::Host);
    for candidate in sorted.into_iter().take(MAX_ADDRS) {
        let item = format!("{}/{}", candidate.kind.as_str(), candidate.addr);
        if list.len() + item.len() + 1 > MAX_TXT_VALUE {
            break;
        }
        if !list.is_empty() {
            list.push(',');
        }
        list.push_str(&item);
    }
    list
}

fn room_list(rooms: &[String]) -> String {
    let mut list = String::new();
    for room in rooms.iter().take(MAX_ROOMS) {
        if list.len() + room.len() + 1 > MAX_TXT_VALUE {
            break;
        }
        if !list.is_empty() {
            list.push(',');
        }
        list.push_str(room);
    }
    list
}

fn name_of(me: &Me) -> String {
    me.name
        .as_deref()
        .filter(|n| valid_name(n) && n.len() <= MAX_TXT_VALUE)
        .unwrap_or("")
        .to_owned()
}

/// Our LAN announcement as TXT properties, signed at `now` (Unix seconds).
pub fn lan_txt(identity: &Identity, me: &Me, now: u64) -> Vec<(&'static str, String)> {
    let key = identity.public_key();
    let (name, addrs, rooms) = (name_of(me), addr_list(&me.candidates), room_list(&me.rooms));
    let signature = identity.sign(&identity::lan_message(&key, &name, &addrs, &rooms, now));
    vec![
        ("v", "1".to_owned()),
        ("id", identity.uuid().simple().to_string()),
        ("pk", hex::encode(key)),
        ("n", name),
        ("a", addrs),
        ("r", rooms),
        ("t", now.to_string()),
        ("s", hex::encode(signature)),
    ]
}

fn parse_candidates(list: &str) -> Result<Vec<Candidate>, Rejected> {
    let mut candidates = Vec::new();
    for item in list.split(',').filter(|s| !s.is_empty()) {
        if candidates.len() == MAX_ADDRS {
            return Err(Rejected::Malformed("too many addresses"));
        }
        let (kind, addr) = item
            .split_once('/')
            .ok_or(Rejected::Malformed("an address without its kind"))?;
        let kind = match kind {
            "host" => CandidateKind::Host,
            "srflx" => CandidateKind::Srflx,
            "relay" => CandidateKind::Relay,
            _ => return Err(Rejected::Malformed("an unknown address kind")),
        };
        let addr: SocketAddr = addr
            .parse()
            .map_err(|_| Rejected::Malformed("an address that does not parse"))?;
        if !usable(&addr) {
            return Err(Rejected::Malformed("an address nobody can send to"));
        }
        candidates.push(Candidate { kind, addr });
    }
    if candidates.is_empty() {
        return Err(Rejected::Malformed("no address"));
    }
    Ok(candidates)
}

/// Checks a LAN announcement (`get` reads a TXT property) and returns the peer it describes.
pub fn parse_lan<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Announced, Rejected> {
    let field = |key: &'static str| get(key).ok_or(Rejected::Malformed(key));
    if field("v")? != "1" {
        return Err(Rejected::Malformed("v"));
    }
    let public_key =
        identity::parse_public_key(field("pk")?).map_err(|_| Rejected::Malformed("pk"))?;
    let uuid = Uuid::try_parse(field("id")?).map_err(|_| Rejected::Malformed("id"))?;
    if identity::uuid_for_key(&public_key) != uuid {
        return Err(Rejected::WrongUuid);
    }
    let (name, addrs, rooms) = (field("n")?, field("a")?, field("r")?);
    let at: u64 = field("t")?.parse().map_err(|_| Rejected::Malformed("t"))?;
    let message = identity::lan_message(&public_key, name, addrs, rooms, at);
    identity::verify_signature(&public_key, &message, field("s")?)
        .map_err(|_| Rejected::BadSignature)?;
    if !name.is_empty() && !valid_name(name) {
        return Err(Rejected::Malformed("n"));
    }
    let rooms: Vec<String> = rooms
        .split(',')
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .collect();
    if rooms.len() > MAX_ROOMS || !rooms.iter().all(|r| proto::chat::valid_room(r)) {
        return Err(Rejected::Malformed("r"));
    }
    Ok(Announced {
        uuid,
        public_key,
        name: (!name.is_empty()).then(|| name.to_owned()),
        candidates: parse_candidates(addrs)?,
        rooms,
        at,
    })
}

/// The DHT record's value (JSON; BEP 44 signs it with `seq` = `t`).
#[derive(Debug, Serialize, Deserialize)]
struct DhtValue {
    /// Format version: 1.
    v: u8,
    /// The UUID, which must belong to the item's key.
    id: Uuid,
    /// Candidates as `kind/ip:port`, comma-separated (the LAN format).
    c: String,
    /// When it was signed (Unix seconds), also the item's `seq`.
    t: u64,
}

/// Our DHT record's value, as of `now`.
pub fn dht_value(identity: &Identity, me: &Me, now: u64) -> Vec<u8> {
    let value = DhtValue {
        v: 1,
        id: identity.uuid(),
        c: addr_list(&me.candidates),
        t: now,
    };
    serde_json::to_vec(&value).expect("a plain struct serialises")
}

/// Checks a DHT record's value, found under `public_key` (whose BEP 44 signature the DHT
/// library verified), as of `now`.
pub fn parse_dht(public_key: &[u8; 32], value: &[u8], now: u64) -> Result<Announced, Rejected> {
    if value.len() > MAX_DHT_VALUE {
        return Err(Rejected::Malformed("too large"));
    }
    let value: DhtValue =
        serde_json::from_slice(value).map_err(|_| Rejected::Malformed("not our JSON"))?;
    if value.v != 1 {
        return Err(Rejected::Malformed("v"));
    }
    if identity::uuid_for_key(public_key) != value.id {
        return Err(Rejected::WrongUuid);
    }
    if value.t > now + MAX_SKEW_SECS || value.t + MAX_DHT_AGE_SECS < now {
        return Err(Rejected::Stale);
    }
    Ok(Announced {
        uuid: value.id,
        public_key: *public_key,
        name: None,
        candidates: parse_candidates(&value.c)?,
        rooms: Vec::new(),
        at: value.t,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn me() -> Me {
        Me {
            name: Some("alice".into()),
            candidates: vec![
                Candidate {
                    kind: CandidateKind::Srflx,
                    addr: "203.0.113.5:4000".parse().unwrap(),
                },
                Candidate {
                    kind: CandidateKind::Host,
                    addr: "192.0.2.10:4000".parse().unwrap(),
                },
            ],
            rooms: vec!["lobby".into(), "rust".into()],
        }
    }

    fn parse(props: &HashMap<&'static str, String>) -> Result<Announced, Rejected> {
        parse_lan(|key| props.get(key).map(String::as_str))
    }

    #[test]
    fn a_lan_announcement_round_trips_and_binds_every_field() {
        let alice = Identity::from_secret([1; 32]);
        let props: HashMap<_, _> = lan_txt(&alice, &me(), 1_000).into_iter().collect();
        let peer = parse(&props).unwrap();
        assert_eq!(peer.uuid, alice.uuid());
        assert_eq!(peer.name.as_deref(), Some("alice"));
        assert_eq!(peer.rooms, ["lobby", "rust"]);
        assert_eq!(peer.candidates[0].kind, CandidateKind::Host, "host first");
        assert_eq!(
            peer.record(CandidateKind::Host, None).addr,
            "192.0.2.10:4000"
        );
        for (key, value) in [
            ("n", "mallory"),
            ("a", "host/198.51.100.66:4000"),
            ("r", "secret"),
            ("t", "1001"),
        ] {
            let mut forged = props.clone();
            forged.insert(key, value.into());
            assert_eq!(parse(&forged), Err(Rejected::BadSignature), "{key}");
        }
        // Another key's valid announcement under alice's UUID.
        let mallory = Identity::from_secret([2; 32]);
        let mut forged: HashMap<_, _> = lan_txt(&mallory, &me(), 1_000).into_iter().collect();
        forged.insert("id", alice.uuid().simple().to_string());
        assert_eq!(parse(&forged), Err(Rejected::WrongUuid));
        let mut missing = props.clone();
        missing.remove("s");
        assert_eq!(parse(&missing), Err(Rejected::Malformed("s")));
    }

    #[test]
    fn hostile_lan_fields_are_refused_even_when_signed() {
        let mallory = Identity::from_secret([3; 32]);
        let sign = |name: &str, addrs: &str, rooms: &str| {
            let key = mallory.public_key();
            let sig = mallory.sign(&identity::lan_message(&key, name, addrs, rooms, 5));
            let props: HashMap<&'static str, String> = [
                ("v", "1".to_owned()),
                ("id", mallory.uuid().to_string()),
                ("pk", hex::encode(key)),
                ("n", name.to_owned()),
                ("a", addrs.to_owned()),
                ("r", rooms.to_owned()),
                ("t", "5".to_owned()),
                ("s", hex::encode(sig)),
            ]
            .into_iter()
            .collect();
            parse(&props)
        };
        let ok = "host/192.0.2.1:5000";
        assert!(sign("m", ok, "lobby").is_ok());
        assert!(sign("\u{1b}[2Jx", ok, "").is_err(), "escape in the name");
        assert!(sign(&"x".repeat(65), ok, "").is_err(), "long name");
        assert!(sign("m", "host/0.0.0.0:5000", "").is_err());
        assert!(sign("m", "host/192.0.2.1:0", "").is_err());
        assert!(sign("m", "", "").is_err(), "no address");
        assert!(sign("m", "magic/192.0.2.1:5000", "").is_err());
        assert!(sign("m", &[ok; 9].join(","), "").is_err(), "too many");
        assert!(sign("m", ok, "UPPER").is_err(), "not a room name");
    }

    #[test]
    fn long_lists_are_cut_to_fit_a_txt_string() {
        let alice = Identity::from_secret([1; 32]);
        let mut me = me();
        me.rooms = (0..40)
            .map(|i| format!("room-with-a-long-name-{i}"))
            .collect();
        let props: HashMap<_, _> = lan_txt(&alice, &me, 1).into_iter().collect();
        assert!(props.values().all(|v| v.len() <= MAX_TXT_VALUE));
        assert!(parse(&props).is_ok());
    }

    #[test]
    fn a_dht_value_is_checked_against_its_key_and_its_age() {
        let bob = Identity::from_secret([4; 32]);
        let value = dht_value(&bob, &me(), 10_000);
        assert!(value.len() <= MAX_DHT_VALUE);
        let peer = parse_dht(&bob.public_key(), &value, 10_000).unwrap();
        assert_eq!(peer.uuid, bob.uuid());
        assert_eq!(
            peer.record(CandidateKind::Srflx, None).addr,
            "203.0.113.5:4000"
        );
        let carol = Identity::from_secret([5; 32]);
        assert_eq!(
            parse_dht(&carol.public_key(), &value, 10_000),
            Err(Rejected::WrongUuid),
            "bob's value under carol's key"
        );
        assert_eq!(
            parse_dht(&bob.public_key(), &value, 10_000 + MAX_DHT_AGE_SECS + 1),
            Err(Rejected::Stale)
        );
        assert_eq!(
            parse_dht(&bob.public_key(), &value, 1),
            Err(Rejected::Stale)
        );
        assert!(parse_dht(&bob.public_key(), b"{\"v\":1", 1).is_err());
        assert!(parse_dht(&bob.public_key(), &vec![b' '; 2000], 1).is_err());
    }
}
