//! The STUN and TURN servers the index hands every registered peer, so a daemon needs only
//! `--index` to gather its candidates: the URLs come from `--turn-url`, and each owner answer
//! carries fresh time-limited TURN credentials per the TURN REST API convention coturn
//! implements with `use-auth-secret`:
//!
//! - `username` = `<expiry unix seconds>:<uuid>` (expiry = now + `--turn-credential-ttl`);
//! - `credential` = base64(HMAC-SHA1(`--turn-secret`, username)).
//!
//! coturn, sharing the secret (`static-auth-secret`), recomputes the password from the username
//! and refuses it once the expiry has passed; the secret itself never leaves the index (it is
//! not in any answer, log line or metric, and its `Debug` form is redacted).

use std::fmt;
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use proto::api::IceServer;
use sha1::Sha1;
use uuid::Uuid;

/// The port STUN and TURN use when a URL names none (RFC 8489 §18.6, RFC 8656 §19).
pub const DEFAULT_PORT: u16 = 3478;

/// Longest host name a URL may carry (DNS's limit).
const MAX_HOST_LEN: usize = 253;

/// Which kind of server a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `stun:`: answers Binding requests (server-reflexive candidates).
    Stun,
    /// `turn:`: allocates relayed addresses (and answers Binding requests too); needs the secret.
    Turn,
}

/// A validated `stun:HOST:PORT` or `turn:HOST:PORT` URL (RFC 7064 / RFC 7065), UDP only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceUrl {
    /// STUN or TURN.
    pub scheme: Scheme,
    /// A host name, an IPv4 address, or an IPv6 address in brackets.
    pub host: String,
    /// The UDP port; [`DEFAULT_PORT`] when the URL named none.
    pub port: u16,
}

impl fmt::Display for IceUrl {
    /// The normalised form handed to peers: `turn:HOST:PORT` / `stun:HOST:PORT`, the port
    /// always written, no query (UDP is the default transport of both schemes).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Stun => "stun",
            Scheme::Turn => "turn",
        };
        write!(f, "{scheme}:{}:{}", self.host, self.port)
    }
}

/// Parses a `--turn-url` value: `turn:HOST[:PORT][?transport=udp]` or `stun:HOST[:PORT]`.
/// TCP, TLS and DTLS (`?transport=tcp`, `turns:`, `stuns:`) are refused: peers chat over UDP
/// and relay from their one UDP socket.
pub fn parse_ice_url(text: &str) -> Result<IceUrl, String> {
    let text = text.trim();
    let refuse = |why: &str| {
        format!(
            "--turn-url `{}`: {why}; give turn:HOST:PORT or stun:HOST:PORT (UDP), e.g. \
             turn:turn.example.org:3478",
            text.escape_debug()
        )
    };
    let (scheme, rest) = match text.split_once(':') {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => return Err(refuse("no scheme")),
    };
    let scheme = match scheme.as_str() {
        "turn" => Scheme::Turn,
        "stun" => Scheme::Stun,
        "turns" | "stuns" => return Err(refuse("TLS is not supported, only UDP")),
        _ => return Err(refuse("the scheme must be turn: or stun:")),
    };
    let (authority, query) = match rest.split_once('?') {
        Some((authority, query)) => (authority, Some(query)),
        None => (rest, None),
    };
    match (scheme, query.map(str::to_ascii_lowercase).as_deref()) {
        (_, None) | (Scheme::Turn, Some("transport=udp")) => {}
        (Scheme::Turn, Some("transport=tcp" | "transport=tls")) => {
            return Err(refuse("only UDP is supported (transport=udp)"));
        }
        (Scheme::Turn, Some(_)) => return Err(refuse("the only query allowed is ?transport=udp")),
        (Scheme::Stun, Some(_)) => return Err(refuse("stun: URLs take no query")),
    }
    if authority.starts_with("//") || authority.contains(['/', '@', ' ']) {
        return Err(refuse("a STUN/TURN URL has no //, path or user"));
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((ip, after)) = bracketed.split_once(']') else {
            return Err(refuse("an IPv6 address needs its closing ]"));
        };
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(refuse("not an IPv6 address inside [ ]"));
        }
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| refuse("junk after ]"))?,
            ),
        };
        (format!("[{}]", ip.to_ascii_lowercase()), port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if !valid_host(host) {
            return Err(refuse("not a host name or IPv4 address"));
        }
        (host.to_ascii_lowercase(), port)
    };
    let port = match port {
        None => DEFAULT_PORT,
        Some(port) => match port.parse::<u16>() {
            Ok(port) if port != 0 => port,
            _ => return Err(refuse("the port must be a number from 1 to 65535")),
        },
    };
    Ok(IceUrl { scheme, host, port })
}

/// The URLs of one `--turn-url` value: one URL, or (as `INDEX_TURN_URLS` gives them) a
/// comma-separated list. An empty value is an empty list, so `INDEX_TURN_URLS=` in a compose
/// file means "no servers", as leaving it out does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceUrlList(pub Vec<IceUrl>);

/// Parses one `--turn-url` value into its URLs ([`parse_ice_url`] each).
pub fn parse_ice_urls(text: &str) -> Result<IceUrlList, String> {
    text.split(',')
        .filter(|url| !url.trim().is_empty())
        .map(parse_ice_url)
        .collect::<Result<_, _>>()
        .map(IceUrlList)
}

/// A DNS name or dotted IPv4 address: labels of letters, digits and inner hyphens.
fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= MAX_HOST_LEN
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// coturn's `static-auth-secret`, shared with the index. Its `Debug` form is redacted so the
/// configuration can be logged without it.
#[derive(Clone, PartialEq, Eq)]
pub struct TurnSecret(String);

impl TurnSecret {
    /// The secret's bytes, the HMAC key.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Whether it is empty: given as `INDEX_TURN_SECRET=`, which means no secret.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for TurnSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TurnSecret(<redacted>)")
    }
}

/// Parses `--turn-secret`: any text without outer white space (which an `.env` file adds by
/// accident and coturn would not). Empty text (`INDEX_TURN_SECRET=`) means no secret.
pub fn parse_secret(text: &str) -> Result<TurnSecret, String> {
    if text.trim() != text {
        return Err(
            "--turn-secret starts or ends with white space, which coturn's static-auth-secret \
             would not: remove it"
                .into(),
        );
    }
    Ok(TurnSecret(text.to_owned()))
}

/// base64(HMAC-SHA1(`secret`, `username`)): the TURN REST API password for `username`.
pub fn turn_credential(secret: &[u8], username: &str) -> String {
    let mut mac =
        <Hmac<Sha1> as KeyInit>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The TURN REST API username of `uuid` for credentials valid until `expires_at` (Unix
/// seconds): `<expires_at>:<uuid>`.
pub fn turn_username(expires_at: u64, uuid: Uuid) -> String {
    format!("{expires_at}:{}", uuid.hyphenated())
}

/// The ICE servers of this index, ready to hand out: built once from the configuration.
#[derive(Debug, Clone, Default)]
pub struct IceServers {
    turn: Vec<String>,
    stun: Vec<String>,
    secret: Option<TurnSecret>,
    ttl: Duration,
}

impl IceServers {
    /// The servers of `urls`, with TURN credentials from `secret` valid for `ttl`. TURN URLs
    /// without a secret are dropped ([`crate::Config::validate`] refuses that configuration).
    pub fn new<'a>(
        urls: impl IntoIterator<Item = &'a IceUrl>,
        secret: Option<TurnSecret>,
        ttl: Duration,
    ) -> IceServers {
        let urls: Vec<&IceUrl> = urls.into_iter().collect();
        let secret = secret.filter(|secret| !secret.is_empty());
        let of = |scheme| {
            let mut urls: Vec<String> = urls
                .iter()
                .filter(|url| url.scheme == scheme)
                .map(|url| url.to_string())
                .collect();
            let mut seen = std::collections::HashSet::new();
            urls.retain(|url| seen.insert(url.clone()));
            urls
        };
        IceServers {
            turn: if secret.is_some() {
                of(Scheme::Turn)
            } else {
                Vec::new()
            },
            stun: of(Scheme::Stun),
            secret,
            ttl,
        }
    }

    /// Whether no server is configured (the answers then carry no `ice_servers`).
    pub fn is_empty(&self) -> bool {
        self.turn.is_empty() && self.stun.is_empty()
    }

    /// What the owner of `uuid` gets at `now_unix` (Unix seconds): one entry for the TURN
    /// URLs with credentials expiring `ttl` from now, one for the STUN URLs; empty without
    /// servers.
    pub fn for_peer(&self, uuid: Uuid, now_unix: u64) -> Vec<IceServer> {
        let mut servers = Vec::with_capacity(2);
        if let (false, Some(secret)) = (self.turn.is_empty(), &self.secret) {
            let username = turn_username(now_unix.saturating_add(self.ttl.as_secs()), uuid);
            let credential = turn_credential(secret.expose(), &username);
            servers.push(IceServer {
                urls: self.turn.clone(),
                username: Some(username),
                credential: Some(credential),
            });
        }
        if !self.stun.is_empty() {
            servers.push(IceServer {
                urls: self.stun.clone(),
                username: None,
                credential: None,
            });
        }
        servers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected values computed independently, with Python's hmac module:
    /// `base64.b64encode(hmac.new(SECRET, USERNAME, hashlib.sha1).digest())`.
    #[test]
    fn credentials_are_base64_hmac_sha1_of_the_username() {
        assert_eq!(
            turn_credential(
                b"north-wind-secret",
                "1767225600:01234567-89ab-cdef-0123-456789abcdef"
            ),
            "30ECqW5UToNGMG/5fLPC96DuEWY="
        );
        let username = turn_username(1_700_000_000, Uuid::from_u128(7));
        assert_eq!(username, "1700000000:00000000-0000-0000-0000-000000000007");
        assert_eq!(
            turn_credential(b"s3cr3t", &username),
            "JIDwKeJTwPTrZFb5J9CTyFJtN7c="
        );
        assert_ne!(
            turn_credential(b"s3cr3u", &username),
            "JIDwKeJTwPTrZFb5J9CTyFJtN7c="
        );
    }

    #[test]
    fn urls_are_validated_and_normalised() {
        for (text, normal) in [
            ("turn:turn.example.org:3478", "turn:turn.example.org:3478"),
            ("turn:192.0.2.1", "turn:192.0.2.1:3478"),
            (
                "TURN:Relay.Example.org:5349?transport=udp",
                "turn:relay.example.org:5349",
            ),
            ("stun:[2001:DB8::1]:3479", "stun:[2001:db8::1]:3479"),
            ("stun:[2001:db8::1]", "stun:[2001:db8::1]:3478"),
            (" stun:127.0.0.1:40000 ", "stun:127.0.0.1:40000"),
        ] {
            assert_eq!(
                parse_ice_url(text).map(|u| u.to_string()).as_deref(),
                Ok(normal)
            );
        }
        for (bad, says) in [
            ("", "no scheme"),
            ("turn.example.org:3478", "scheme must be"),
            ("http://x", "scheme must be"),
            ("turns:x:5349", "TLS"),
            ("stuns:x", "TLS"),
            ("turn:x:3478?transport=tcp", "only UDP"),
            ("turn:x?foo=bar", "only query"),
            ("stun:x?transport=udp", "no query"),
            ("turn://x:3478", "no //"),
            ("turn:user@x:3478", "no //"),
            ("turn:x:0", "port"),
            ("turn:x:65536", "port"),
            ("turn:x:", "port"),
            ("turn:x:3478:1", "port"),
            ("turn:", "host"),
            ("turn:-x-.org", "host"),
            ("turn:x_y", "host"),
            ("stun:[2001:db8::1", "closing ]"),
            ("stun:[x]:1", "IPv6"),
            ("stun:[::1]1", "junk"),
        ] {
            let error = parse_ice_url(bad).unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
            assert!(error.contains("--turn-url"), "{error}");
        }
    }

    #[test]
    fn a_value_may_list_urls() {
        let list = parse_ice_urls("turn:192.0.2.1:3478, stun:192.0.2.1")
            .unwrap()
            .0;
        assert_eq!(list.len(), 2);
        assert_eq!(list[1].to_string(), "stun:192.0.2.1:3478");
        assert_eq!(parse_ice_urls("").unwrap().0, []);
        assert_eq!(parse_ice_urls(" , ").unwrap().0, []);
        assert!(
            parse_ice_urls("turn:192.0.2.1,turns:x")
                .unwrap_err()
                .contains("TLS")
        );
    }

    #[test]
    fn answers_carry_one_entry_per_kind() {
        let urls: Vec<IceUrl> = [
            "turn:192.0.2.1:3478",
            "stun:192.0.2.1:3478",
            "turn:192.0.2.2",
        ]
        .into_iter()
        .map(|u| parse_ice_url(u).unwrap())
        .collect();
        let secret = parse_secret("s3cr3t").unwrap();
        let ice = IceServers::new(&urls, Some(secret), Duration::from_secs(86_400));
        let servers = ice.for_peer(Uuid::from_u128(7), 1_699_913_600);
        assert_eq!(servers.len(), 2);
        assert_eq!(
            servers[0].urls,
            ["turn:192.0.2.1:3478", "turn:192.0.2.2:3478"]
        );
        assert_eq!(
            servers[0].username.as_deref(),
            Some("1700000000:00000000-0000-0000-0000-000000000007")
        );
        assert_eq!(
            servers[0].credential.as_deref(),
            Some("JIDwKeJTwPTrZFb5J9CTyFJtN7c=")
        );
        assert_eq!(servers[1].urls, ["stun:192.0.2.1:3478"]);
        assert_eq!(
            (&servers[1].username, &servers[1].credential),
            (&None, &None)
        );
        assert!(IceServers::default().for_peer(Uuid::nil(), 0).is_empty());
        assert!(IceServers::default().is_empty());
    }

    #[test]
    fn the_secret_stays_out_of_debug_output() {
        let secret = parse_secret("hunter2").unwrap();
        assert!(!format!("{secret:?}").contains("hunter2"));
        let ice = IceServers::new(&[], Some(secret), Duration::from_secs(1));
        assert!(!format!("{ice:?}").contains("hunter2"));
        assert!(parse_secret("").unwrap().is_empty());
        assert!(parse_secret(" x").is_err());
        // An empty secret is no secret: TURN URLs are then left out.
        let turn = parse_ice_url("turn:192.0.2.1").unwrap();
        let ice = IceServers::new([&turn], parse_secret("").ok(), Duration::from_secs(1));
        assert!(ice.is_empty());
    }
}
