//! Command-line and environment configuration of the daemon.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// peerlink peer daemon: registers with the index and chats with other peers directly over UDP.
///
/// Commands on stdin, one per line: /msg <peer> <text>, /join <room>, /sessions, /help, /quit.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Config {
    /// Base URL of the index service.
    #[arg(long, env = "PEER_INDEX_URL", default_value = "http://127.0.0.1:8080")]
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
    #[arg(long, env = "PEER_HEARTBEAT_SECS", default_value_t = 600)]
    pub heartbeat_secs: u64,

    /// Seconds before an unacknowledged message is reported as failed.
    #[arg(long, env = "PEER_DEADLINE_SECS", default_value_t = 30)]
    pub deadline_secs: u64,

    /// Serve the local control API (HTTP + server-sent events, see docs/control.md) on this
    /// loopback address, e.g. 127.0.0.1:7878; port 0 picks a free one, announced in the
    /// `control` event. Requests need the bearer token from <state-dir>/control.token.
    #[arg(long, env = "PEER_CONTROL", value_parser = loopback_addr)]
    pub control: Option<SocketAddr>,
}

impl Config {
    /// The state directory: `--state-dir`, or the per-name default.
    pub fn state_dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(|| crate::state::default_state_dir(self.name.as_deref()))
    }
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
