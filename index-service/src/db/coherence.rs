//! Replicas on one PostgreSQL database keep their lookup caches coherent through the
//! database's own `LISTEN`/`NOTIFY`: no other service, no home-made replication.
//!
//! - Every writer announces, in the transaction that changes them, the records it changed or
//!   deleted (`NOTIFY peerlink_records, 'changed <replica> <uuid> …'`). PostgreSQL delivers a
//!   notification only if its transaction commits, after the commit, and delivers all of them in
//!   commit order to every listening connection.
//! - Each replica listens ([`spawn`]) and drops the entries another replica announced.
//! - Each replica also announces a ping of its own every [`PING_EVERY`], carrying the instant it
//!   was sent. When its own ping comes back, every change committed before that instant has
//!   been delivered and applied, so the cache may answer for [`COHERENCE_WINDOW`] more
//!   ([`LookupCache::heard`]). If pings stop coming back (the listening connection broke, the
//!   server is slow or gone), the cache stops answering within that window, and lookups read
//!   the database; when pings flow again after a gap, the cache is emptied first, since
//!   announcements may have been lost with the connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::any::AnyConnectOptions;
use sqlx::postgres::PgListener;
use sqlx::{AnyConnection, ConnectOptions, Connection};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use super::backend::CHANGES_CHANNEL;
use super::cache::{COHERENCE_WINDOW, LookupCache};

/// How often a replica pings itself through the database.
pub const PING_EVERY: Duration = Duration::from_millis(200);
/// Longest notification payload sent (PostgreSQL's limit is 8000 bytes).
const MAX_PAYLOAD: usize = 7000;

/// This replica's name in announcements: random, so a replica ignores only its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica(String);

impl Replica {
    /// A fresh random name.
    pub fn random() -> Replica {
        Replica(format!("{:016x}", rand::random::<u64>()))
    }

    /// The payloads announcing that `changed` records were changed or deleted, each within
    /// PostgreSQL's size limit.
    pub fn announcements(&self, changed: &[Uuid]) -> Vec<String> {
        let mut payloads = Vec::new();
        let mut payload = String::new();
        for uuid in changed {
            if payload.len() + 37 > MAX_PAYLOAD {
                payloads.push(std::mem::take(&mut payload));
            }
            if payload.is_empty() {
                payload = format!("changed {}", self.0);
            }
            payload.push(' ');
            payload.push_str(&uuid.to_string());
        }
        if !payload.is_empty() {
            payloads.push(payload);
        }
        payloads
    }
}

/// Sends `payload` on the announcement channel, in the open transaction (or on its own).
pub async fn announce<'e, E>(executor: E, payload: &str) -> sqlx::Result<()>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    // pg_notify returns `void`, which the `Any` driver cannot read: count the one row instead.
    sqlx::query("SELECT count(*) FROM (SELECT pg_notify($1, $2)) AS sent")
        .bind(CHANGES_CHANNEL)
        .bind(payload)
        .execute(executor)
        .await
        .map(drop)
}

/// Starts listening (for other replicas' changes and this replica's pings) and pinging, each
/// on a connection of its own (never waiting behind lookups for a pooled one), until `stop` is
/// cancelled.
pub fn spawn(
    url: String,
    options: AnyConnectOptions,
    cache: Arc<LookupCache>,
    replica: Replica,
    stop: CancellationToken,
    tasks: &TaskTracker,
) {
    let epoch = Instant::now();
    tasks.spawn(listen(url, cache, replica.clone(), epoch, stop.clone()));
    tasks.spawn(ping(options, replica, epoch, stop));
}

async fn ping(
    options: AnyConnectOptions,
    replica: Replica,
    epoch: Instant,
    stop: CancellationToken,
) {
    let mut every = tokio::time::interval(PING_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut connection: Option<AnyConnection> = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = every.tick() => {}
        }
        let sent = epoch.elapsed().as_micros();
        let payload = format!("ping {} {sent}", replica.0);
        let pinged = tokio::time::timeout(COHERENCE_WINDOW, async {
            if connection.is_none() {
                connection = Some(options.connect().await?);
            }
            let connection = connection.as_mut().expect("just connected");
            announce(connection, &payload).await
        })
        .await;
        let failed = match pinged {
            Ok(Ok(())) => continue,
            Ok(Err(error)) => error.to_string(),
            Err(_) => "timed out".to_owned(),
        };
        tracing::debug!(failed, "coherence ping failed; reconnecting");
        connection = None;
    }
    if let Some(connection) = connection {
        let _ = connection.close().await;
    }
}

async fn listen(
    url: String,
    cache: Arc<LookupCache>,
    replica: Replica,
    epoch: Instant,
    stop: CancellationToken,
) {
    // The instant of the last own ping heard: a gap longer than the window means the cache
    // stopped answering and announcements may have been missed.
    let mut last_heard: Option<Instant> = None;
    let mut listener: Option<PgListener> = None;
    loop {
        let Some(connected) = listener.as_mut() else {
            match connect(&url).await {
                Ok(connected) => {
                    tracing::info!("listening for other replicas' changes");
                    listener = Some(connected);
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for other replicas' changes; lookups read the database");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
            continue;
        };
        let received = tokio::select! {
            () = stop.cancelled() => return,
            received = connected.try_recv() => received,
        };
        match received {
            Ok(Some(notification)) => {
                heard(
                    notification.payload(),
                    &cache,
                    &replica,
                    epoch,
                    &mut last_heard,
                );
            }
            // The connection broke (the listener reconnects at the next call): whatever was
            // announced meanwhile is lost.
            Ok(None) => {
                tracing::warn!("lost the connection that listens for other replicas' changes");
                cache.clear();
                last_heard = None;
            }
            Err(error) => {
                tracing::warn!(%error, "listening for other replicas' changes failed");
                cache.clear();
                last_heard = None;
                listener = None;
            }
        }
    }
}

async fn connect(url: &str) -> sqlx::Result<PgListener> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(CHANGES_CHANNEL).await?;
    Ok(listener)
}

/// Applies one announcement.
fn heard(
    payload: &str,
    cache: &LookupCache,
    replica: &Replica,
    epoch: Instant,
    last_heard: &mut Option<Instant>,
) {
    let mut words = payload.split_ascii_whitespace();
    let (Some(kind), Some(from)) = (words.next(), words.next()) else {
        return;
    };
    match kind {
        "changed" if from != replica.0 => {
            for uuid in words.filter_map(|word| word.parse::<Uuid>().ok()) {
                cache.forget(uuid);
            }
        }
        "ping" if from == replica.0 => {
            let Some(sent) = words
                .next()
                .and_then(|micros| micros.parse::<u64>().ok())
                .map(|micros| epoch + Duration::from_micros(micros))
            else {
                return;
            };
            let gap = last_heard
                .is_none_or(|last| sent.saturating_duration_since(last) > COHERENCE_WINDOW);
            if gap {
                cache.clear();
                tracing::info!("this replica hears its announcements: the lookup cache answers");
            }
            *last_heard = Some(sent);
            cache.heard(sent);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_fit_postgres_payloads() {
        let replica = Replica("00000000000000aa".into());
        let changed: Vec<Uuid> = (0..500).map(Uuid::from_u128).collect();
        let payloads = replica.announcements(&changed);
        assert!(payloads.len() > 1);
        let mut seen = Vec::new();
        for payload in &payloads {
            assert!(payload.len() <= MAX_PAYLOAD, "{}", payload.len());
            let mut words = payload.split(' ');
            assert_eq!(words.next(), Some("changed"));
            assert_eq!(words.next(), Some("00000000000000aa"));
            seen.extend(words.map(|w| w.parse::<Uuid>().unwrap()));
        }
        assert_eq!(seen, changed);
        assert!(replica.announcements(&[]).is_empty());
    }
}
