//! Types of the index's HTTP API, shared by the index and the daemon so both sides agree on
//! field names by construction.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub mod mailbox;

/// Most candidates one registration may list.
pub const MAX_CANDIDATES: usize = 8;

/// How a candidate address reaches its peer (the ICE vocabulary of RFC 8445).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum CandidateKind {
    /// An address of one of the peer's own interfaces (reachable on its LAN, or anywhere when
    /// it has a public address).
    Host,
    /// Server-reflexive: the address a STUN server saw the peer's socket as, outside its NAT.
    Srflx,
    /// An address on a TURN server that relays to the peer.
    Relay,
}

impl CandidateKind {
    /// The name used on the wire and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            CandidateKind::Host => "host",
            CandidateKind::Srflx => "srflx",
            CandidateKind::Relay => "relay",
        }
    }
}

/// One address where a peer may be reachable, all of them from its one chat socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Candidate {
    /// What kind of address it is.
    pub kind: CandidateKind,
    /// `ip:port`: a dotted IPv4 address, or an IPv6 address in brackets (the schema's pattern
    /// spells out the full eight-group form; the shorter forms of RFC 5952 are accepted too).
    #[cfg_attr(
        feature = "openapi",
        schema(
            value_type = String,
            example = "198.51.100.7:50001",
            pattern = r"^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9]):([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$|^\[[0-9a-f]{1,4}(:[0-9a-f]{1,4}){7}\]:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$"
        )
    )]
    pub addr: SocketAddr,
}

/// A STUN or TURN server the index hands its registered peers, in the shape of WebRTC's
/// `RTCIceServer`. TURN credentials follow the TURN REST API convention (coturn's
/// `use-auth-secret`): `username` is `<expiry unix time>:<uuid>`, `credential` is
/// base64(HMAC-SHA1(shared secret, username)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IceServer {
    /// `turn:HOST:PORT` or `stun:HOST:PORT` URIs (RFC 7065 / RFC 7064), UDP only.
    pub urls: Vec<String>,
    /// TURN username; absent for STUN-only servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN password; absent for STUN-only servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// Body of `POST /register`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegisterRequest {
    /// The UDP port the peer listens on (1..=65535); the IP is the one the index observes.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 65535))]
    #[serde(deserialize_with = "port_number")]
    pub udp_port: u16,
    /// A display name for people: 1 to 64 characters, nothing invisible (no control, format,
    /// zero-width or bidi control characters), no outer spaces; only with a key (keyed
    /// registration, keyed record). Unique among live records by its confusable skeleton.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 64,
            pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$"
        )
    )]
    pub name: Option<String>,
    /// Ed25519 public key, 64 hex digits. With it the UUID is derived from the key
    /// (see `proto::identity`) and `timestamp` and `signature` are required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[0-9a-fA-F]{64}$"))]
    pub public_key: Option<String>,
    /// Unix seconds when the registration was signed.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "unix_seconds"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 0))]
    pub timestamp: Option<u64>,
    /// Ed25519 signature (128 hex digits) over `proto::identity::register_message`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[0-9a-fA-F]{128}$"))]
    pub signature: Option<String>,
    /// Where the peer may be reached besides `addr` (at most [`MAX_CANDIDATES`], no
    /// duplicates); only with a key, and covered by the signature.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(max_items = 8))]
    pub candidates: Vec<Candidate>,
}

/// Body of `PUT /peers/{uuid}`: the record's new UDP port (the IP is the one the index
/// observes) and display name. A name left out is removed from the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PeerUpdate {
    /// The UDP port the peer listens on (1..=65535).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 65535))]
    #[serde(deserialize_with = "port_number")]
    pub udp_port: u16,
    /// A display name for people: 1 to 64 characters, nothing invisible (no control, format,
    /// zero-width or bidi control characters), no outer spaces; only with a key (keyed
    /// registration, keyed record). Unique among live records by its confusable skeleton.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 64,
            pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$"
        )
    )]
    pub name: Option<String>,
}

/// A registration as the index returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PeerRecord {
    /// The peer's UUID, lowercase hyphenated.
    pub uuid: Uuid,
    /// `ip:port` where other peers reach it over UDP.
    #[cfg_attr(feature = "openapi", schema(example = "203.0.113.7:50001"))]
    pub addr: String,
    /// Display name, when the peer gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Ed25519 public key (64 hex digits) for keyed registrations; the UUID is derived from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// When the peer registered (RFC 3339, UTC).
    pub registered_at: String,
    /// When the owner last registered, updated or heartbeated the record (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
    /// Deprecated: the older name of `record_ttl_secs` on the owner's own answers
    /// (registration, update, heartbeat) and of `cache_ttl_secs` on lookups and room member
    /// lists, always with the same value. Read the field that says what it means.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, deprecated))]
    pub ttl_secs: Option<u64>,
    /// On the owner's own answers only (registration, update, heartbeat): seconds the record
    /// stays live without a heartbeat; heartbeat well within it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, example = 7200))]
    pub record_ttl_secs: Option<u64>,
    /// On lookups and room member lists only: seconds this answer may be cached (the record's
    /// remaining lifetime, capped), the same as `Cache-Control: max-age` where that header is
    /// sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, example = 300))]
    pub cache_ttl_secs: Option<u64>,
    /// Keyless registrations only, in the registration answer only: the bearer token that
    /// authorises `PUT`, heartbeat and `DELETE` on this record (`Authorization: Bearer <token>`).
    /// The index keeps only its hash; it cannot be shown again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The candidates the owner registered, as it signed them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<Candidate>,
    /// In the owner's own answers only (registration, heartbeat): the STUN and TURN servers
    /// to gather candidates from, with fresh time-limited TURN credentials.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ice_servers: Vec<IceServer>,
}

impl PeerRecord {
    /// Marks this as the owner's own answer: the record lives `secs` without a heartbeat.
    /// Sets `record_ttl_secs` and, for older clients, `ttl_secs`.
    pub fn set_record_ttl(&mut self, secs: u64) {
        self.record_ttl_secs = Some(secs);
        self.cache_ttl_secs = None;
        self.ttl_secs = Some(secs);
    }

    /// Marks this as a lookup answer that may be cached `secs`. Sets `cache_ttl_secs` and, for
    /// older clients, `ttl_secs`.
    pub fn set_cache_ttl(&mut self, secs: u64) {
        self.cache_ttl_secs = Some(secs);
        self.record_ttl_secs = None;
        self.ttl_secs = Some(secs);
    }

    /// How long the owner's record lives without a heartbeat, from an owner answer:
    /// `record_ttl_secs`, or `ttl_secs` from an index that predates it.
    pub fn record_ttl(&self) -> Option<u64> {
        self.record_ttl_secs.or(self.ttl_secs)
    }

    /// How long a lookup answer may be cached: `cache_ttl_secs`, or `ttl_secs` from an index
    /// that predates it.
    pub fn cache_ttl(&self) -> Option<u64> {
        self.cache_ttl_secs.or(self.ttl_secs)
    }
}

/// A room and its live members (`GET /rooms/{room}`, `PUT /rooms/{room}/members/{uuid}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoomMembers {
    /// Room name: 1 to 32 of `a-z 0-9 - _`.
    pub room: String,
    /// Its members' records.
    pub members: Vec<PeerRecord>,
}

/// One room in `GET /rooms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoomSummary {
    /// Room name.
    pub room: String,
    /// Live members.
    pub members: usize,
}

/// Body of `GET /rooms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoomList {
    /// Rooms with at least one live member, by name.
    pub rooms: Vec<RoomSummary>,
}

/// Body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// What went wrong and what to do about it.
    pub error: String,
}

/// Reads a port from any JSON number with an integral value (JSON Schema counts `1.0` as an
/// integer, so the API must too); the range check to 1..=65535 is the caller's.
fn port_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u16, D::Error> {
    struct Port;
    impl serde::de::Visitor<'_> for Port {
        type Value = u16;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an integer port number between 1 and 65535")
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u16, E> {
            u16::try_from(v).map_err(|_| E::custom(format!("{v} is not a port number (1..=65535)")))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u16, E> {
            u16::try_from(v).map_err(|_| E::custom(format!("{v} is not a port number (1..=65535)")))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<u16, E> {
            if v.fract() == 0.0 && (0.0..=65535.0).contains(&v) {
                Ok(v as u16)
            } else {
                Err(E::custom(format!("{v} is not a port number (1..=65535)")))
            }
        }
    }
    deserializer.deserialize_any(Port)
}

/// Reads an optional timestamp from any JSON number with a non-negative integral value, for
/// the same reason as [`port_number`].
fn unix_seconds<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u64>, D::Error> {
    struct Seconds;
    impl serde::de::Visitor<'_> for Seconds {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("Unix seconds as a non-negative integer")
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Option<u64>, E> {
            Ok(None)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Option<u64>, E> {
            Ok(Some(v))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Option<u64>, E> {
            u64::try_from(v)
                .map(Some)
                .map_err(|_| E::custom(format!("{v} is not a Unix time in seconds")))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Option<u64>, E> {
            if v.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(&v) {
                Ok(Some(v as u64))
            } else {
                Err(E::custom(format!(
                    "{v} is not a Unix time in whole seconds"
                )))
            }
        }
    }
    deserializer.deserialize_any(Seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_integral_json_numbers() {
        let port = |json: &str| serde_json::from_str::<RegisterRequest>(json).map(|r| r.udp_port);
        assert_eq!(port(r#"{"udp_port": 8080}"#).unwrap(), 8080);
        assert_eq!(port(r#"{"udp_port": 8080.0}"#).unwrap(), 8080);
        for bad in [
            r#"{"udp_port": 1.5}"#,
            r#"{"udp_port": 65536}"#,
            r#"{"udp_port": -1}"#,
            r#"{"udp_port": "1"}"#,
        ] {
            assert!(port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn timestamps_are_integral_json_numbers() {
        let ts = |json: &str| serde_json::from_str::<RegisterRequest>(json).map(|r| r.timestamp);
        assert_eq!(ts(r#"{"udp_port": 1}"#).unwrap(), None);
        assert_eq!(ts(r#"{"udp_port": 1, "timestamp": null}"#).unwrap(), None);
        assert_eq!(ts(r#"{"udp_port": 1, "timestamp": 17}"#).unwrap(), Some(17));
        assert_eq!(
            ts(r#"{"udp_port": 1, "timestamp": 8107452558.0}"#).unwrap(),
            Some(8107452558)
        );
        // Large integral floats parse exactly (serde_json's `float_roundtrip`), so they are
        // judged as the integers they are rather than refused as fractions.
        assert_eq!(
            ts(r#"{"udp_port": 1, "timestamp": 3676982719518098.0}"#).unwrap(),
            Some(3676982719518098)
        );
        for bad in [r#"1.5"#, r#"-1"#, r#""1""#] {
            assert!(
                ts(&format!(r#"{{"udp_port": 1, "timestamp": {bad}}}"#)).is_err(),
                "{bad}"
            );
        }
    }
}
