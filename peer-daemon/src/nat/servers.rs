//! Which STUN and TURN servers to gather candidates from: the ones the index hands out with
//! each registration, or the user's own (`--ice-server`). The index is outside our trust, so
//! its list is capped, every URL is checked, and names resolve under a time limit.

use std::net::SocketAddr;
use std::time::Duration;

use proto::api::IceServer;

use super::turn::{MAX_SERVERS, ServerConfig, TurnCredentials};

/// Longest URL, username or credential taken from the index.
const MAX_FIELD: usize = 256;
/// Longest wait for one server name to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);
/// The port of `stun:` and `turn:` URLs that name none (RFC 7064, RFC 7065).
const DEFAULT_PORT: u16 = 3478;

/// One server before its name is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceUrl {
    /// Host name or IP address.
    pub host: String,
    /// UDP port.
    pub port: u16,
    /// Credentials for a TURN server; `None` for STUN.
    pub turn: Option<TurnCredentials>,
}

/// Parses `stun:HOST[:PORT]` or `turn:HOST[:PORT]` (with an optional `?transport=udp`); a
/// `turn:` URL needs credentials. Anything else (TCP, TLS, other schemes) is refused with the
/// reason.
pub fn parse_url(url: &str, credentials: Option<TurnCredentials>) -> Result<IceUrl, String> {
    if url.len() > MAX_FIELD {
        return Err(format!("an ICE server URL longer than {MAX_FIELD} bytes"));
    }
    let (scheme, rest) = url
        .split_once(':')
        .ok_or_else(|| format!("`{}` is not a stun: or turn: URL", url.escape_debug()))?;
    let (address, query) = match rest.split_once('?') {
        Some((address, query)) => (address, Some(query)),
        None => (rest, None),
    };
    if let Some(query) = query
        && query != "transport=udp"
    {
        return Err(format!(
            "`{}`: only UDP is supported (transport=udp)",
            url.escape_debug()
        ));
    }
    let turn = match scheme {
        "stun" => None,
        "turn" => Some(credentials.ok_or_else(|| {
            format!(
                "`{}` comes without a username and credential",
                url.escape_debug()
            )
        })?),
        _ => {
            return Err(format!(
                "`{}`: only stun: and turn: over UDP are supported",
                url.escape_debug()
            ));
        }
    };
    let (host, port) = split_host_port(address)
        .ok_or_else(|| format!("`{}` has no usable host and port", url.escape_debug()))?;
    Ok(IceUrl { host, port, turn })
}

/// `HOST`, `HOST:PORT`, `[V6]` or `[V6]:PORT`.
fn split_host_port(address: &str) -> Option<(String, u16)> {
    let (host, port) = if let Some(v6) = address.strip_prefix('[') {
        let (host, rest) = v6.split_once(']')?;
        let port = match rest.strip_prefix(':') {
            Some(port) => port.parse().ok()?,
            None if rest.is_empty() => DEFAULT_PORT,
            None => return None,
        };
        (host, port)
    } else {
        match address.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().ok()?),
            None => (address, DEFAULT_PORT),
        }
    };
    let valid_host = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
    (valid_host && port != 0).then(|| (host.to_owned(), port))
}

/// The servers in the index's answer, in its order, at most [`MAX_SERVERS`]; returns the
/// reasons for those left out.
pub fn from_index(servers: &[IceServer]) -> (Vec<IceUrl>, Vec<String>) {
    let (mut urls, mut refused) = (Vec::new(), Vec::new());
    for server in servers.iter().take(MAX_SERVERS) {
        let credentials = match (&server.username, &server.credential) {
            (Some(username), Some(password))
                if username.len() <= MAX_FIELD && password.len() <= MAX_FIELD =>
            {
                Some(TurnCredentials {
                    username: username.clone(),
                    password: password.clone(),
                })
            }
            _ => None,
        };
        for url in server.urls.iter().take(MAX_SERVERS) {
            match parse_url(url, credentials.clone()) {
                Ok(url) if urls.len() < MAX_SERVERS => urls.push(url),
                Ok(_) => {}
                Err(reason) => refused.push(reason),
            }
        }
    }
    (urls, refused)
}

/// Parses one `--ice-server`: `stun:HOST[:PORT]` or `turn:USER:PASSWORD@HOST[:PORT]`.
pub fn parse_override(value: &str) -> Result<IceUrl, String> {
    if let Some(rest) = value.strip_prefix("turn:")
        && let Some((credentials, address)) = rest.rsplit_once('@')
    {
        // TURN REST usernames are `<expiry>:<name>`: the password is after the last colon.
        let (username, password) = credentials
            .rsplit_once(':')
            .ok_or("a turn: server needs USER:PASSWORD@ before its address")?;
        let credentials = TurnCredentials {
            username: username.to_owned(),
            password: password.to_owned(),
        };
        return parse_url(&format!("turn:{address}"), Some(credentials));
    }
    parse_url(value, None)
}

/// Resolves every server's name (IPv4 first, as the chat socket is IPv4), each within
/// [`RESOLVE_TIMEOUT`]; returns the servers that resolved and the reasons for the others.
pub async fn resolve(urls: Vec<IceUrl>) -> (Vec<ServerConfig>, Vec<String>) {
    let (mut servers, mut failed) = (Vec::new(), Vec::new());
    for url in urls {
        let lookup = tokio::net::lookup_host((url.host.as_str(), url.port));
        match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
            Ok(Ok(addrs)) => {
                let addrs: Vec<SocketAddr> = addrs.collect();
                match addrs.iter().find(|a| a.is_ipv4()).or(addrs.first()) {
                    Some(&addr) => servers.push(ServerConfig {
                        addr,
                        turn: url.turn,
                    }),
                    None => failed.push(format!("{} has no address", url.host)),
                }
            }
            Ok(Err(error)) => failed.push(format!("cannot resolve {}: {error}", url.host)),
            Err(_) => failed.push(format!("resolving {} took too long", url.host)),
        }
    }
    (servers, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Option<TurnCredentials> {
        Some(TurnCredentials {
            username: "1:u".into(),
            password: "p".into(),
        })
    }

    #[test]
    fn urls_of_the_index_are_checked() {
        let ok = parse_url("turn:203.0.113.20:3478?transport=udp", creds()).unwrap();
        assert_eq!((ok.host.as_str(), ok.port), ("203.0.113.20", 3478));
        assert!(ok.turn.is_some());
        let stun = parse_url("stun:coturn", None).unwrap();
        assert_eq!(
            (stun.host.as_str(), stun.port, stun.turn),
            ("coturn", 3478, None)
        );
        let v6 = parse_url("stun:[2001:db8::1]:9", None).unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("2001:db8::1", 9));
        for bad in [
            "turn:203.0.113.20:3478",  // no credentials
            "turns:203.0.113.20:5349", // TLS
            "turn:h:1?transport=tcp",  // TCP
            "stun:h:0",                // port 0
            "stun:h:99999",            // not a port
            "stun:",                   // no host
            "stun:h\u{1b}[2J:1",       // control characters
            "http://example.com",      // not ICE
        ] {
            assert!(parse_url(bad, None).is_err(), "{bad:?} accepted");
        }
        assert!(parse_url(&format!("stun:{}", "a".repeat(300)), None).is_err());
    }

    #[test]
    fn the_index_list_is_capped_and_bad_entries_reported() {
        let many = IceServer {
            urls: (0..20).map(|i| format!("stun:h{i}:1")).collect(),
            username: None,
            credential: None,
        };
        let bad = IceServer {
            urls: vec!["turn:h:1".into()],
            username: None,
            credential: None,
        };
        let (urls, refused) = from_index(&[bad, many]);
        assert_eq!(urls.len(), MAX_SERVERS);
        assert_eq!(refused.len(), 1, "{refused:?}");
    }

    #[test]
    fn overrides_carry_their_credentials() {
        let turn = parse_override("turn:alice:s3cret@198.51.100.1:3478").unwrap();
        assert_eq!(turn.turn.unwrap().password, "s3cret");
        assert_eq!(turn.host, "198.51.100.1");
        assert!(parse_override("stun:198.51.100.1").unwrap().turn.is_none());
        assert!(parse_override("turn:198.51.100.1").is_err());
        let rest = parse_override("turn:1767225600:alice:c2VjcmV0@turn.example:3478").unwrap();
        let credentials = rest.turn.unwrap();
        assert_eq!(credentials.username, "1767225600:alice");
        assert_eq!(credentials.password, "c2VjcmV0");
    }
}
