//! Prometheus metrics, recorded into a recorder owned by this service instance.
//!
//! A global recorder can be installed once per process, and tests run many services in one
//! process, so each [`Metrics`] holds its own `PrometheusRecorder` and records through it
//! (`metrics::with_local_recorder`, or handles registered against it once).

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use axum::http::Method;
use metrics::{Counter, Gauge, Histogram, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

/// Request latency buckets, in seconds: from a cached lookup to a request that times out.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// Group-commit sizes: how many changes one fsync acknowledged.
const GROUP_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// Which rate budget a request spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// GET and HEAD.
    Read,
    /// POST, PUT, DELETE and anything else.
    Write,
}

/// The service's metrics.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// Records purged because their TTL ran out.
    pub expired: Counter,
    /// Live records, refreshed on every scrape.
    pub live_peers: Gauge,
    rate_limited_read: Counter,
    rate_limited_write: Counter,
    db_writable: Gauge,
    /// Connection limits and timeouts (`serve`).
    pub connections: ConnectionMetrics,
    /// Letters deposited, refused, taken and expired, and what waits.
    pub mailbox: MailboxMetrics,
    /// The lookup cache's size, coherence, hits and misses.
    pub cache: CacheMetrics,
    /// Request series by route template, then by (method, status).
    request_handles: RwLock<HashMap<Box<str>, ByOutcome>>,
}

/// The request counter and the latency histogram of one (route, method, status).
type RequestHandles = (Counter, Histogram);
/// A route's handles by (method, status).
type ByOutcome = HashMap<(&'static str, u16), RequestHandles>;

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh, empty set of metrics.
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("index_http_request_duration_seconds".into()),
                LATENCY_BUCKETS,
            )
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("index_db_commit_group_size".into()),
                    GROUP_BUCKETS,
                )
            })
            .expect("bucket lists are not empty")
            .build_recorder();
        let handle = recorder.handle();
        let connections = metrics::with_local_recorder(&recorder, ConnectionMetrics::register);
        let mailbox = metrics::with_local_recorder(&recorder, MailboxMetrics::register);
        let cache = metrics::with_local_recorder(&recorder, CacheMetrics::register);
        let (expired, live_peers, rate_limited_read, rate_limited_write, db_writable) =
            metrics::with_local_recorder(&recorder, || {
                metrics::describe_counter!(
                    "index_http_requests_total",
                    "HTTP requests answered, by method, route template and status"
                );
                metrics::describe_histogram!(
                    "index_http_request_duration_seconds",
                    Unit::Seconds,
                    "Time to answer an HTTP request, by method and route template"
                );
                metrics::describe_gauge!(
                    "index_peers_live",
                    "Registered records whose TTL has not run out"
                );
                metrics::describe_counter!(
                    "index_peers_expired_total",
                    "Records purged because they were not refreshed within the TTL"
                );
                metrics::describe_counter!(
                    "index_rate_limited_total",
                    "Requests refused with 429, by budget (read or write)"
                );
                metrics::describe_histogram!(
                    "index_db_commit_group_size",
                    "Changes committed by one transaction (one fsync)"
                );
                metrics::describe_counter!(
                    "index_db_write_failures_total",
                    "Changes refused with 507/503 because the database could not be written, \
                     by cause (full, io, busy, read_only, replaced, other)"
                );
                metrics::describe_gauge!(
                    "index_db_writable",
                    "1 while the last write went through, 0 while writes fail"
                );
                (
                    metrics::counter!("index_peers_expired_total"),
                    metrics::gauge!("index_peers_live"),
                    metrics::counter!("index_rate_limited_total", "budget" => "read"),
                    metrics::counter!("index_rate_limited_total", "budget" => "write"),
                    metrics::gauge!("index_db_writable"),
                )
            });
        Metrics {
            recorder,
            handle,
            expired,
            live_peers,
            rate_limited_read,
            rate_limited_write,
            db_writable,
            cache,
            connections,
            mailbox,
            request_handles: RwLock::default(),
        }
    }

    /// Counts an answered request and its latency; `route` is the route template (e.g.
    /// `/peers/{uuid}`), never the raw path, so the number of series stays bounded.
    pub fn request(&self, method: &Method, route: &str, status: u16, elapsed: Duration) {
        let method = method_label(method);
        let key = (method, status);
        let known = self
            .request_handles
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(route)
            .and_then(|by_outcome| by_outcome.get(&key).cloned());
        let (count, latency) = known.unwrap_or_else(|| {
            // First request of this kind: register its series once, then reuse the handles
            // (building labelled keys on every request costs more than the whole lookup).
            let handles = metrics::with_local_recorder(&self.recorder, || {
                (
                    metrics::counter!(
                        "index_http_requests_total",
                        "method" => method,
                        "route" => route.to_owned(),
                        "status" => status.to_string()
                    ),
                    metrics::histogram!(
                        "index_http_request_duration_seconds",
                        "method" => method,
                        "route" => route.to_owned()
                    ),
                )
            });
            self.request_handles
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(route.into())
                .or_default()
                .insert(key, handles.clone());
            handles
        });
        count.increment(1);
        latency.record(elapsed.as_secs_f64());
    }

    /// Counts a request refused by the rate limiter.
    pub fn rate_limited(&self, budget: Budget) {
        match budget {
            Budget::Read => self.rate_limited_read.increment(1),
            Budget::Write => self.rate_limited_write.increment(1),
        }
    }

    /// Counts a request hyper could not parse, answered with `status` by `serve`.
    pub fn malformed(&self, status: u16) {
        metrics::with_local_recorder(&self.recorder, || {
            metrics::counter!("index_http_malformed_total", "status" => status.to_string())
                .increment(1);
        });
    }

    /// Records how many changes one commit carried.
    pub fn commit_group(&self, size: usize) {
        metrics::with_local_recorder(&self.recorder, || {
            metrics::histogram!("index_db_commit_group_size").record(size as f64);
        });
    }

    /// Counts `changes` refused because the database could not be written, by `cause`.
    pub fn write_failed(&self, cause: &'static str, changes: usize) {
        metrics::with_local_recorder(&self.recorder, || {
            metrics::counter!("index_db_write_failures_total", "cause" => cause)
                .increment(changes as u64);
        });
    }

    /// Records whether the database takes writes.
    pub fn db_writable(&self, writable: bool) {
        self.db_writable.set(if writable { 1.0 } else { 0.0 });
    }

    /// The Prometheus text exposition of everything recorded.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Folds recent histogram samples into their buckets so memory stays bounded between
    /// scrapes.
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Why a connection was refused as soon as it was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The service already holds `--max-connections`.
    Global,
    /// The client's address already holds `--max-connections-per-ip`.
    PerIp,
}

/// Which deadline closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// The request line and headers did not arrive within `--header-timeout`.
    Header,
    /// No request came within `--idle-timeout` (or the client stopped reading the answer).
    Idle,
}

/// The connection series: how many are open, the cap, refusals and timeouts.
pub struct ConnectionMetrics {
    /// Connections being served.
    pub open: Gauge,
    /// The cap in force: `--max-connections`, lowered to fit RLIMIT_NOFILE.
    pub limit: Gauge,
    refused_global: Counter,
    refused_per_ip: Counter,
    timeout_header: Counter,
    timeout_idle: Counter,
}

impl ConnectionMetrics {
    /// Describes and registers the series; call with the service's recorder installed.
    fn register() -> Self {
        metrics::describe_gauge!("index_connections_open", "TCP connections being served");
        metrics::describe_gauge!(
            "index_connections_limit",
            "Connections served at once before new ones are refused"
        );
        metrics::describe_counter!(
            "index_connections_refused_total",
            "Connections answered 503/429 and closed at once, by reason (global or per_ip cap)"
        );
        metrics::describe_counter!(
            "index_connection_timeouts_total",
            "Connections closed by a deadline, by phase (header or idle)"
        );
        metrics::describe_counter!(
            "index_http_malformed_total",
            "Requests that could not be parsed, answered with a JSON error, by status"
        );
        ConnectionMetrics {
            open: metrics::gauge!("index_connections_open"),
            limit: metrics::gauge!("index_connections_limit"),
            refused_global: metrics::counter!("index_connections_refused_total", "reason" => "global"),
            refused_per_ip: metrics::counter!("index_connections_refused_total", "reason" => "per_ip"),
            timeout_header: metrics::counter!("index_connection_timeouts_total", "phase" => "header"),
            timeout_idle: metrics::counter!("index_connection_timeouts_total", "phase" => "idle"),
        }
    }

    /// Counts a connection refused at accept.
    pub fn refused(&self, why: Refusal) {
        match why {
            Refusal::Global => self.refused_global.increment(1),
            Refusal::PerIp => self.refused_per_ip.increment(1),
        }
    }

    /// Counts a connection closed by a deadline.
    pub fn timed_out(&self, which: Timeout) {
        match which {
            Timeout::Header => self.timeout_header.increment(1),
            Timeout::Idle => self.timeout_idle.increment(1),
        }
    }
}

/// Why a deposit was refused, as `index_mailbox_refused_total` labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailRefused {
    /// The recipient blocks the sender (403).
    Blocked,
    /// The recipient's mailbox holds its most letters or bytes (507).
    Full,
    /// All mailboxes hold `--mailbox-max-total-bytes` (507).
    TotalFull,
    /// The sender has `--mailbox-max-per-sender` letters waiting (429).
    SenderCap,
    /// The sender's deposit rate is spent (429).
    Rate,
    /// The letter is larger than a sealed letter may be (413).
    TooLarge,
}

impl MailRefused {
    const ALL: [MailRefused; 6] = [
        MailRefused::Blocked,
        MailRefused::Full,
        MailRefused::TotalFull,
        MailRefused::SenderCap,
        MailRefused::Rate,
        MailRefused::TooLarge,
    ];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            MailRefused::Blocked => "blocked",
            MailRefused::Full => "full",
            MailRefused::TotalFull => "total_full",
            MailRefused::SenderCap => "sender_cap",
            MailRefused::Rate => "rate",
            MailRefused::TooLarge => "too_large",
        }
    }
}

/// The lookup cache's series, refreshed on every scrape from the cache's own counts.
pub struct CacheMetrics {
    /// Records held.
    pub entries: Gauge,
    /// 1 while the cache may answer (always on SQLite; on PostgreSQL while the replica hears
    /// its own announcements), 0 while every lookup reads the database.
    pub coherent: Gauge,
    /// Lookups by UUID answered from the cache.
    pub hits: Counter,
    /// Lookups by UUID that read the database.
    pub misses: Counter,
}

impl CacheMetrics {
    /// Describes and registers the series; call with the service's recorder installed.
    fn register() -> Self {
        metrics::describe_gauge!(
            "index_lookup_cache_entries",
            "Records the lookup cache holds"
        );
        metrics::describe_gauge!(
            "index_lookup_cache_coherent",
            "1 while the lookup cache may answer, 0 while lookups read the database (a replica \
             that does not hear its announcements)"
        );
        metrics::describe_counter!(
            "index_lookup_cache_hits_total",
            "Lookups by UUID answered from the cache"
        );
        metrics::describe_counter!(
            "index_lookup_cache_misses_total",
            "Lookups by UUID that read the database"
        );
        CacheMetrics {
            entries: metrics::gauge!("index_lookup_cache_entries"),
            coherent: metrics::gauge!("index_lookup_cache_coherent"),
            hits: metrics::counter!("index_lookup_cache_hits_total"),
            misses: metrics::counter!("index_lookup_cache_misses_total"),
        }
    }
}

/// The mailbox series.
pub struct MailboxMetrics {
    /// Letters stored.
    pub deposits: Counter,
    /// Letters deleted by their recipients (taken, or from a sender they blocked).
    pub taken: Counter,
    /// Letters the purge deleted because they waited past `--mailbox-ttl`.
    pub expired: Counter,
    /// Letters stored, refreshed on every scrape.
    pub letters: Gauge,
    /// Sealed bytes stored, refreshed on every scrape.
    pub bytes: Gauge,
    refused: [Counter; MailRefused::ALL.len()],
}

impl MailboxMetrics {
    /// Describes and registers the series; call with the service's recorder installed.
    fn register() -> Self {
        metrics::describe_counter!(
            "index_mailbox_deposits_total",
            "Sealed letters deposited in mailboxes"
        );
        metrics::describe_counter!(
            "index_mailbox_refused_total",
            "Deposits refused, by reason (blocked, full, total_full, sender_cap, rate, too_large)"
        );
        metrics::describe_counter!(
            "index_mailbox_taken_total",
            "Letters deleted by their recipients (taken, or from a sender they blocked)"
        );
        metrics::describe_counter!(
            "index_mailbox_expired_total",
            "Letters purged because they waited longer than the mailbox TTL"
        );
        metrics::describe_gauge!(
            "index_mailbox_letters",
            "Letters stored in all mailboxes (expired ones until the purge deletes them)"
        );
        metrics::describe_gauge!(
            "index_mailbox_bytes",
            Unit::Bytes,
            "Sealed bytes stored in all mailboxes (expired ones until the purge deletes them)"
        );
        MailboxMetrics {
            deposits: metrics::counter!("index_mailbox_deposits_total"),
            taken: metrics::counter!("index_mailbox_taken_total"),
            expired: metrics::counter!("index_mailbox_expired_total"),
            letters: metrics::gauge!("index_mailbox_letters"),
            bytes: metrics::gauge!("index_mailbox_bytes"),
            refused: MailRefused::ALL.map(
                |why| metrics::counter!("index_mailbox_refused_total", "reason" => why.label()),
            ),
        }
    }

    /// Counts a refused deposit.
    pub fn refused(&self, why: MailRefused) {
        self.refused[why as usize].increment(1);
    }
}
