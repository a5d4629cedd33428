//! Command-line and environment configuration of the index.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

/// peerlink index: an HTTP phone book where peers register and look each other up.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Config {
    /// Address to serve HTTP on.
    #[arg(long, env = "INDEX_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// SQLite database URL; the file is created if missing.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://index.db")]
    pub database_url: String,

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "INDEX_MAX_BODY_BYTES", default_value_t = 16 * 1024)]
    pub max_body_bytes: usize,

    /// A request taking longer than this (e.g. "10s", "500ms") is answered with 503.
    #[arg(long, env = "INDEX_REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// A record not refreshed (re-registration, PUT or heartbeat) within this long ("2h", "90s")
    /// disappears from lookups and is purged.
    #[arg(long, env = "INDEX_PEER_TTL", default_value = "2h", value_parser = parse_duration)]
    pub peer_ttl: Duration,

    /// How often expired records are purged from the database; default: a tenth of the TTL,
    /// at most one minute.
    #[arg(long, env = "INDEX_PURGE_INTERVAL", value_parser = parse_duration)]
    pub purge_interval: Option<Duration>,

    /// Longest time a lookup answer may be cached (`Cache-Control: max-age` and `ttl_secs`),
    /// in seconds; the record's remaining lifetime is used when shorter.
    #[arg(long, env = "INDEX_MAX_CACHE_AGE", default_value_t = 300)]
    pub max_cache_age: u64,

    /// Writes (POST, PUT, DELETE) each client IP may make per second, on average; 0 turns the
    /// write limit off.
    #[arg(long, env = "INDEX_WRITE_RATE_PER_SEC", default_value_t = 20.0, value_parser = parse_rate)]
    pub write_rate_per_sec: f64,

    /// Writes a client IP may make in a burst before the per-second rate applies.
    #[arg(long, env = "INDEX_WRITE_BURST", default_value_t = 200)]
    pub write_burst: u32,

    /// Reads (GET) each client IP may make per second, on average; 0 turns the read limit off.
    #[arg(long, env = "INDEX_READ_RATE_PER_SEC", default_value_t = 200.0, value_parser = parse_rate)]
    pub read_rate_per_sec: f64,

    /// Reads a client IP may make in a burst before the per-second rate applies.
    #[arg(long, env = "INDEX_READ_BURST", default_value_t = 1000)]
    pub read_burst: u32,

    /// A client must send a request's complete line and headers within this long after its
    /// first byte (or after connecting); slower connections are closed.
    #[arg(long, env = "INDEX_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,

    /// A connection with no request in flight is closed after this long without a new request
    /// (or without the client reading the last answer).
    #[arg(long, env = "INDEX_IDLE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Connections served at once; further ones are answered 503 and closed. Never more than
    /// the open-file limit (RLIMIT_NOFILE) allows, less a reserve for the database.
    #[arg(long, env = "INDEX_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: u32,

    /// Connections served at once per client IP (IPv6: per /64); further ones are answered
    /// 429 and closed.
    #[arg(long, env = "INDEX_MAX_CONNECTIONS_PER_IP", default_value_t = 256)]
    pub max_connections_per_ip: u32,
}

impl Config {
    /// Defaults, as if started with no flags and no environment.
    pub fn for_database(database_url: impl Into<String>) -> Self {
        let mut config = Config::parse_from(["index-service"]);
        config.database_url = database_url.into();
        config
    }

    /// How often the background task purges expired records.
    pub fn purge_every(&self) -> Duration {
        self.purge_interval
            .unwrap_or_else(|| (self.peer_ttl / 10).min(Duration::from_secs(60)))
            .max(Duration::from_millis(10))
    }
}

/// Parses "250ms", "10s", "5m" or "2h".
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 10s"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("unknown unit in `{text}`: use ms, s, m or h")),
    }
}

/// Parses a request rate: a finite number ≥ 0 (0 means unlimited).
pub fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate >= 0.0 => Ok(rate),
        _ => Err(format!(
            "`{text}` is not a rate: give requests per second, e.g. 20 or 0.5 (0 turns the limit off)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_purge_interval() {
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("2d").is_err());
        assert_eq!(parse_rate("0.5"), Ok(0.5));
        assert!(parse_rate("-1").is_err() && parse_rate("inf").is_err());
        let mut config = Config::for_database("sqlite::memory:");
        assert_eq!(config.peer_ttl, Duration::from_secs(7200));
        assert_eq!(config.purge_every(), Duration::from_secs(60));
        config.peer_ttl = Duration::from_secs(90);
        assert_eq!(config.purge_every(), Duration::from_secs(9));
        config.purge_interval = Some(Duration::from_millis(200));
        assert_eq!(config.purge_every(), Duration::from_millis(200));
    }
}
