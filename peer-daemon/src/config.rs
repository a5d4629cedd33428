//! Command-line and environment configuration of the daemon.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Parser};

use crate::nat::servers::IceUrl;

/// Longest heartbeat interval or message deadline accepted, in seconds (one day): anything
/// longer is a typo, and a huge value would overflow the clock arithmetic.
pub const MAX_SECS: u64 = 86_400;

/// peerlink peer daemon: registers with the index and chats with other peers directly over UDP.
///
/// Commands on stdin, one per line: /msg <peer> <text>, /join <room>, /sessions, /help, /quit.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Config {
    /// Base URL of the index service: http:// or https://, a host, an optional port and path;
    /// `none` runs without an index (peers are found on the LAN and in the DHT only).
    #[arg(long, env = "PEER_INDEX_URL", default_value = "http://127.0.0.1:8080", value_parser = index_url)]
    pub index: String,

    /// UDP address to listen on for peers (port 0 picks a free one).
    #[arg(long, env = "PEER_LISTEN", default_value = "0.0.0.0:0")]
    pub listen: SocketAddr,

    /// UDP port to register instead of the bound one, when a NAT or proxy forwards another
    /// port to --listen.
    #[arg(long, env = "PEER_PUBLIC_PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub public_port: Option<u16>,

    /// Display name registered with the index.
    #[arg(long, env = "PEER_NAME")]
    pub name: Option<String>,

    /// Print one JSON object per line on stdout instead of human-readable text.
    #[arg(long)]
    pub json: bool,

    /// Directory holding this daemon's identity key [default: the platform data directory,
    /// e.g. ~/.local/share/peerlink/<name>].
    #[arg(long, env = "PEER_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// Longest interval between heartbeats to the index, in seconds (shortened to a third of
    /// the TTL the index announces).
    #[arg(long, env = "PEER_HEARTBEAT_SECS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..=MAX_SECS))]
    pub heartbeat_secs: u64,

    /// Seconds before an unacknowledged message is reported as failed.
    #[arg(long, env = "PEER_DEADLINE_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=MAX_SECS))]
    pub deadline_secs: u64,

    /// Serve the local control API (HTTP + server-sent events, see docs/control.md) on this
    /// loopback address, e.g. 127.0.0.1:7878; port 0 picks a free one, announced in the
    /// `control` event. Requests need the bearer token from <state-dir>/control.token.
    #[arg(long, env = "PEER_CONTROL", value_parser = loopback_addr)]
    pub control: Option<SocketAddr>,

    /// Keep no message history: nothing is written to <state-dir>/messages.db (which is not
    /// even created), nothing is restored at the next start, and /history has nothing to show.
    #[arg(long, env = "PEER_NO_HISTORY", value_parser = BoolishValueParser::new(), action = ArgAction::SetTrue)]
    pub no_history: bool,

    /// Use no mailbox on the index: a private message the peer does not acknowledge fails
    /// instead of waiting, sealed, in its mailbox, and nobody's letters are taken from ours.
    #[arg(long, env = "PEER_NO_MAILBOX", value_parser = BoolishValueParser::new(), action = ArgAction::SetTrue)]
    pub no_mailbox: bool,

    /// STUN/TURN servers to gather candidates from instead of the ones the index hands out:
    /// `stun:HOST[:PORT]` or `turn:USER:PASSWORD@HOST[:PORT]` (USER may contain colons, as TURN
    /// REST usernames do; PASSWORD may not) (repeatable; the environment
    /// variable takes a comma-separated list). `none` turns NAT traversal off: no STUN, no
    /// TURN, no candidates; peers reach this daemon only at the address the index observes.
    #[arg(long = "ice-server", env = "PEER_ICE_SERVERS", value_delimiter = ',',
          value_parser = ice_server)]
    pub ice_servers: Vec<IceChoice>,

    /// Do not announce this daemon on the LAN nor look for peers there (mDNS/DNS-SD service
    /// `_peerlink._udp`, multicast on every interface).
    #[arg(long, env = "PEER_NO_MDNS", value_parser = BoolishValueParser::new(), action = ArgAction::SetTrue)]
    pub no_mdns: bool,

    /// Do not publish our addresses in the BitTorrent mainline DHT nor look contacts up there
    /// when the index cannot answer.
    #[arg(long, env = "PEER_NO_DHT", value_parser = BoolishValueParser::new(), action = ArgAction::SetTrue)]
    pub no_dht: bool,

    /// A DHT node to join the DHT through, HOST:PORT (repeatable; the environment variable
    /// takes a comma-separated list) [default: the public mainline bootstrap nodes].
    #[arg(long = "dht-bootstrap", env = "PEER_DHT_BOOTSTRAP", value_delimiter = ',',
          value_parser = host_port)]
    pub dht_bootstrap: Vec<String>,
}

/// The value of `--index` that means "no index".
pub const NO_INDEX: &str = "none";

/// One `--ice-server`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IceChoice {
    /// A server to use.
    Server(IceUrl),
    /// `none`: no NAT traversal.
    None,
}

fn ice_server(text: &str) -> Result<IceChoice, String> {
    if text == "none" {
        return Ok(IceChoice::None);
    }
    crate::nat::servers::parse_override(text).map(IceChoice::Server)
}

impl Config {
    /// The user's choice of ICE servers: `None` to take the index's, `Some(empty)` for no NAT
    /// traversal at all.
    pub fn ice_override(&self) -> Option<Vec<IceUrl>> {
        if self.ice_servers.is_empty() {
            return None;
        }
        if self.ice_servers.contains(&IceChoice::None) {
            return Some(Vec::new());
        }
        let servers = self.ice_servers.iter().filter_map(|choice| match choice {
            IceChoice::Server(url) => Some(url.clone()),
            IceChoice::None => None,
        });
        Some(servers.collect())
    }

    /// The index's base URL, unless `--index none`.
    pub fn index_url(&self) -> Option<&str> {
        (self.index != NO_INDEX).then_some(self.index.as_str())
    }

    /// The state directory: `--state-dir`, or the per-name default.
    pub fn state_dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(|| crate::state::default_state_dir(self.name.as_deref()))
    }
}

/// Accepts an index base URL the daemon can talk to: http or https with a host. Anything else
/// (`localhost:8080` without a scheme, `ftp://…`, a bare word) would only fail at every retry.
fn index_url(text: &str) -> Result<String, String> {
    if text == NO_INDEX {
        return Ok(text.to_owned());
    }
    let hint = "use http://HOST:PORT, e.g. http://127.0.0.1:8080, or `none`";
    let url =
        reqwest::Url::parse(text).map_err(|e| format!("`{text}` is not a URL ({e}); {hint}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "`{text}` is not an http:// or https:// URL (the index speaks HTTP); {hint}"
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{text}` names no host; {hint}"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "`{text}` has a query or fragment; give only the base URL"
        ));
    }
    Ok(text.to_owned())
}

/// Accepts `HOST:PORT` with a port (the host is resolved when the DHT starts).
fn host_port(text: &str) -> Result<String, String> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("`{text}` has no port; use HOST:PORT, e.g. 192.0.2.1:6881"))?;
    if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(format!("`{text}` is not HOST:PORT, e.g. 192.0.2.1:6881"));
    }
    Ok(text.to_owned())
}

/// Accepts only loopback addresses: the control API must not be reachable from other hosts.
fn loopback_addr(text: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = text
        .parse()
        .map_err(|e| format!("{e} (expected ip:port, e.g. 127.0.0.1:7878)"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "{} is not a loopback address; use 127.0.0.1 or [::1]",
            addr.ip()
        ));
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_urls() {
        assert!(index_url("http://127.0.0.1:8080").is_ok());
        assert!(index_url("https://index.example.org/peerlink/").is_ok());
        assert!(index_url("none").is_ok());
        assert!(host_port("router.example.org:6881").is_ok());
        for bad in ["6881", "host:", ":6881", "host:0", "host:99999"] {
            assert!(host_port(bad).is_err(), "{bad}");
        }
        // "localhost:8081" parses as a URL with the scheme "localhost".
        for bad in [
            "localhost:8081",
            "ftp://x",
            "index",
            "http://",
            "http://h/?q=1",
            "",
        ] {
            let error = index_url(bad).expect_err(bad);
            assert!(error.contains("http"), "{bad}: {error}");
        }
    }

    #[test]
    fn zero_and_huge_durations_are_refused() {
        for args in [
            ["--deadline-secs", "0"],
            ["--heartbeat-secs", "0"],
            ["--deadline-secs", "18446744073709551615"],
            ["--heartbeat-secs", "86401"],
        ] {
            let parsed = Config::try_parse_from(std::iter::once("peer-daemon").chain(args));
            assert!(parsed.is_err(), "{args:?} was accepted");
        }
        assert!(Config::try_parse_from(["peer-daemon", "--deadline-secs", "86400"]).is_ok());
    }
}
