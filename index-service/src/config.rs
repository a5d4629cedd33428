//! Command-line and environment configuration of the index, and its validation: a setting
//! that would start a service unable to do its job (a zero TTL, an in-memory database, a
//! duration that overflows) is refused at start-up with one sentence saying what to fix.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;

use crate::ice::{
    IceServers, IceUrl, IceUrlList, Scheme, TurnSecret, parse_ice_urls, parse_secret,
};

/// peerlink index: an HTTP phone book where peers register and look each other up.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Config {
    /// Address to serve HTTP on.
    #[arg(long, env = "INDEX_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Database URL: `sqlite://PATH` (the default; the file is created if missing, and must be
    /// writable; one index process per file) or `postgres://USER:PASSWORD@HOST:PORT/DB` (any
    /// number of index processes on one database; the schema is created if missing).
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://index.db")]
    pub database_url: String,

    /// Database connections for reads (the writer has one more of its own).
    #[arg(long, env = "INDEX_DATABASE_CONNECTIONS", default_value_t = 8)]
    pub database_connections: u32,

    /// Records the lookup cache holds at most (about 450 bytes each); the least used go
    /// first. Records not held are read from the database.
    #[arg(long, env = "INDEX_CACHE_ENTRIES", default_value_t = 1_000_000)]
    pub cache_entries: u64,

    /// Largest request body accepted, in bytes (at least 1024).
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

    /// Longest time a lookup answer may be cached (`Cache-Control: max-age` and
    /// `cache_ttl_secs`), in seconds; the record's remaining lifetime is used when shorter.
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

    /// Most live records registered from one client IP (a household or office behind one NAT
    /// shares it); 0 turns the quota off. A keyed record registering again is not counted twice.
    #[arg(long, env = "INDEX_MAX_RECORDS_PER_IP", default_value_t = 128)]
    pub max_records_per_ip: u32,

    /// Most live records registered from one /24 (IPv4) or /48 (IPv6) subnet; 0: no quota.
    #[arg(long, env = "INDEX_MAX_RECORDS_PER_SUBNET", default_value_t = 1024)]
    pub max_records_per_subnet: u32,

    /// Most live records with a name registered from one client IP; 0: no quota.
    #[arg(long, env = "INDEX_MAX_NAMES_PER_IP", default_value_t = 32)]
    pub max_names_per_ip: u32,

    /// Most live records with a name registered from one /24 or /48 subnet; 0: no quota.
    #[arg(long, env = "INDEX_MAX_NAMES_PER_SUBNET", default_value_t = 256)]
    pub max_names_per_subnet: u32,

    /// Most records the index holds; a registration beyond it is refused with 507 until
    /// records expire or are deleted. 0: no cap.
    #[arg(long, env = "INDEX_MAX_RECORDS", default_value_t = 1_000_000)]
    pub max_records: u64,

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

    /// A reverse proxy or load balancer (an address or a network, e.g. `10.0.0.0/8`) whose
    /// `X-Forwarded-For` header says who the client is: a request from it counts as coming
    /// from the last address in that header not itself a trusted proxy (for the records'
    /// `addr`, quotas and rate limits). Repeatable; the environment variable takes a
    /// comma-separated list. Without it, `X-Forwarded-For` is ignored.
    #[arg(long = "trusted-proxy", env = "INDEX_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_network)]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// A STUN or TURN server handed to every registered peer in `ice_servers`:
    /// `turn:HOST:PORT` or `stun:HOST:PORT` (UDP; the port defaults to 3478). Repeatable; the
    /// environment variable takes a comma-separated list. `turn:` URLs need --turn-secret.
    #[arg(long = "turn-url", env = "INDEX_TURN_URLS", value_parser = parse_ice_urls)]
    pub turn_urls: Vec<IceUrlList>,

    /// coturn's `static-auth-secret` (its `use-auth-secret` mode): the index signs each peer's
    /// time-limited TURN credentials with it. It is never sent, logged or shown in `--help`.
    #[arg(
        long,
        env = "INDEX_TURN_SECRET",
        hide_env_values = true,
        value_parser = parse_secret
    )]
    pub turn_secret: Option<TurnSecret>,

    /// How long the TURN credentials in an owner's answer stay valid ("24h", "90m"); peers
    /// get new ones with every registration and heartbeat.
    #[arg(long, env = "INDEX_TURN_CREDENTIAL_TTL", default_value = "24h", value_parser = parse_duration)]
    pub turn_credential_ttl: Duration,

    /// How long a letter waits in a mailbox ("7d", "48h") before it is deleted unless its
    /// recipient took it first.
    #[arg(long, env = "INDEX_MAILBOX_TTL", default_value = "7d", value_parser = parse_duration)]
    pub mailbox_ttl: Duration,

    /// Most letters waiting in one recipient's mailbox; a deposit beyond it is refused with
    /// 507 until the recipient takes some. 0: no cap.
    #[arg(long, env = "INDEX_MAILBOX_MAX_LETTERS", default_value_t = 1000)]
    pub mailbox_max_letters: u32,

    /// Most bytes (sealed) waiting in one recipient's mailbox; 0: no cap.
    #[arg(long, env = "INDEX_MAILBOX_MAX_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub mailbox_max_bytes: u64,

    /// Most letters one sender may have waiting in all mailboxes together; beyond it its
    /// deposits are refused with 429 until recipients take them or they expire. 0: no cap.
    #[arg(long, env = "INDEX_MAILBOX_MAX_PER_SENDER", default_value_t = 500)]
    pub mailbox_max_per_sender: u32,

    /// Most bytes (sealed) all mailboxes together may hold; 0: no cap.
    #[arg(long, env = "INDEX_MAILBOX_MAX_TOTAL_BYTES", default_value_t = 1024 * 1024 * 1024)]
    pub mailbox_max_total_bytes: u64,

    /// Letters each sender (by UUID, whatever its address) may deposit per second, on
    /// average; 0 turns the limit off.
    #[arg(long, env = "INDEX_MAILBOX_SENDER_RATE_PER_SEC", default_value_t = 2.0, value_parser = parse_rate)]
    pub mailbox_sender_rate_per_sec: f64,

    /// Letters a sender may deposit in a burst before the per-second rate applies.
    #[arg(long, env = "INDEX_MAILBOX_SENDER_BURST", default_value_t = 200)]
    pub mailbox_sender_burst: u32,
}

/// Longest duration any setting accepts: ten years. Longer ones are mistakes (and overflow the
/// clock arithmetic), not intentions.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Smallest `--max-body-bytes`: a signed registration with a long name needs a few hundred.
pub const MIN_BODY_BYTES: usize = 1024;

impl Config {
    /// Refuses settings with which the service could not do its job; the error is one
    /// sentence naming the flag and what to give instead. [`crate::Service::open`] calls it.
    pub fn validate(&self) -> Result<(), String> {
        positive(
            "--peer-ttl",
            self.peer_ttl,
            "every record would expire at once",
            "2h",
        )?;
        positive(
            "--request-timeout",
            self.request_timeout,
            "every request would time out",
            "10s",
        )?;
        if let Some(interval) = self.purge_interval {
            positive(
                "--purge-interval",
                interval,
                "the purge would never pause",
                "1m, or leave it out",
            )?;
        }
        positive(
            "--header-timeout",
            self.header_timeout,
            "every connection would be closed before its request arrived",
            "10s",
        )?;
        positive(
            "--idle-timeout",
            self.idle_timeout,
            "every connection would be closed right after its first answer",
            "30s",
        )?;
        if self.max_connections == 0 || self.max_connections_per_ip == 0 {
            let flag = if self.max_connections == 0 {
                "--max-connections"
            } else {
                "--max-connections-per-ip"
            };
            return Err(format!(
                "{flag} 0 would refuse every connection: give at least 1 (the defaults are \
                 10000 and 256)"
            ));
        }
        if self.max_body_bytes < MIN_BODY_BYTES {
            return Err(format!(
                "--max-body-bytes {} would refuse registrations: give at least {MIN_BODY_BYTES} \
                 (the default is 16384)",
                self.max_body_bytes
            ));
        }
        positive(
            "--turn-credential-ttl",
            self.turn_credential_ttl,
            "every TURN credential would be expired when handed out",
            "24h",
        )?;
        positive(
            "--mailbox-ttl",
            self.mailbox_ttl,
            "every letter would expire as it is deposited",
            "7d",
        )?;
        let no_secret = self.turn_secret.as_ref().is_none_or(TurnSecret::is_empty);
        if no_secret && let Some(url) = self.ice_urls().find(|u| u.scheme == Scheme::Turn) {
            return Err(format!(
                "--turn-url {url} needs --turn-secret (coturn's static-auth-secret) to hand out \
                 TURN credentials: give the secret, or only stun: URLs"
            ));
        }
        if self.database_connections == 0 {
            return Err(
                "--database-connections 0 leaves no connection for reads: give at least 1".into(),
            );
        }
        check_database_url(&self.database_url)
    }

    /// The database URL as it may be shown in messages and logs: without its password.
    pub fn database_shown(&self) -> String {
        match url::Url::parse(&self.database_url) {
            Ok(mut url) if url.password().is_some() => {
                let _ = url.set_password(Some("***"));
                url.to_string()
            }
            _ => self.database_url.clone(),
        }
    }

    /// The ICE servers owner answers carry, from `--turn-url`, `--turn-secret` and
    /// `--turn-credential-ttl`.
    pub fn ice_servers(&self) -> IceServers {
        IceServers::new(
            self.ice_urls(),
            self.turn_secret.clone(),
            self.turn_credential_ttl,
        )
    }

    /// Every `--turn-url`, in the order given.
    pub fn ice_urls(&self) -> impl Iterator<Item = &IceUrl> {
        self.turn_urls.iter().flat_map(|list| &list.0)
    }

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

/// Parses a duration in humantime's syntax ("250ms", "10s", "5m", "2h", "1h 30m", "2d"), or a
/// bare number of seconds ("30"), at most [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let too_long = || {
        format!(
            "`{text}` is too long: the longest accepted is {}h (ten years)",
            MAX_DURATION.as_secs() / 3600
        )
    };
    // A bare number has always meant seconds; humantime wants a unit.
    let bare_seconds = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    let parsed = if bare_seconds {
        humantime::parse_duration(&format!("{text}s"))
    } else {
        humantime::parse_duration(text)
    };
    match parsed {
        Ok(duration) if duration <= MAX_DURATION => Ok(duration),
        Ok(_) | Err(humantime::DurationError::NumberOverflow) => Err(too_long()),
        Err(error) => Err(format!(
            "`{text}` is not a duration ({error}): write e.g. 500ms, 90s, 5m, 2h or 1h 30m"
        )),
    }
}

/// Parses a request rate: 0 (the limit is off) or a finite number of requests per second of
/// at least one per ten years.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let slowest = 1.0 / MAX_DURATION.as_secs_f64();
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && (rate == 0.0 || rate >= slowest) => Ok(rate),
        _ => Err(format!(
            "`{text}` is not a rate: give requests per second, e.g. 20 or 0.5 (0 turns the limit off)"
        )),
    }
}

/// Refuses a zero (or overlong) duration for `flag`.
fn positive(flag: &str, value: Duration, zero_means: &str, example: &str) -> Result<(), String> {
    if value.is_zero() {
        return Err(format!("{flag} 0 means {zero_means}: give e.g. {example}"));
    }
    if value > MAX_DURATION {
        return Err(format!(
            "{flag} {value:?} is longer than ten years: give e.g. {example}"
        ));
    }
    Ok(())
}

/// Refuses database URLs the index cannot keep records in: another scheme, no path, or an
/// in-memory database (gone at the next restart, and separate for each connection).
pub fn check_database_url(url: &str) -> Result<(), String> {
    let Some(rest) = url.strip_prefix("sqlite:") else {
        if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            return sqlx::postgres::PgConnectOptions::from_str(url)
                .map(drop)
                .map_err(|error| {
                    format!(
                        "--database-url: not a usable PostgreSQL URL ({error}): give \
                     postgres://USER:PASSWORD@HOST:PORT/DATABASE"
                    )
                });
        }
        return Err(format!(
            "--database-url `{url}` is neither a SQLite nor a PostgreSQL URL: give \
             sqlite://PATH (e.g. sqlite://index.db) or postgres://USER:PASSWORD@HOST:PORT/DATABASE"
        ));
    };
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let in_memory = path == ":memory:" || query.split('&').any(|pair| pair == "mode=memory");
    if in_memory {
        return Err(format!(
            "--database-url `{url}` is an in-memory database, which loses every record at exit: \
             give sqlite://PATH to a file"
        ));
    }
    if path.is_empty() {
        return Err(format!(
            "--database-url `{url}` names no file: give sqlite://PATH, e.g. sqlite://index.db"
        ));
    }
    sqlx::sqlite::SqliteConnectOptions::from_str(url)
        .map(drop)
        .map_err(|error| format!("--database-url `{url}` is not usable: {error}"))
}

/// A network (`10.0.0.0/8`, `2001:db8::/32`) or one address (`192.0.2.7`, a /32 or /128).
fn parse_network(text: &str) -> Result<ipnet::IpNet, String> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>()
        .map(|net| net.trunc())
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("`{text}` is neither an address nor a network like 10.0.0.0/8"))
}

/// The file a `sqlite://PATH` URL names.
pub fn sqlite_path(url: &str) -> std::path::PathBuf {
    sqlx::sqlite::SqliteConnectOptions::from_str(url)
        .map(|options| options.get_filename().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
