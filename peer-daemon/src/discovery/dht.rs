//! The DHT fallback (`mainline`, BitTorrent's DHT): the daemon publishes its candidates as a
//! BEP 44 mutable item signed with its own Ed25519 key (like pkarr), republishes before it
//! expires and whenever it changes, and looks contacts up by their keys when the index cannot
//! answer. The library checks each item's signature (and counts the ones that fail); the value
//! is checked here against the key's UUID and for freshness.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use mainline::async_dht::AsyncDht;
use mainline::{Dht as MainlineDht, MutableItem, SigningKey};
use proto::identity::Identity;
use tokio::sync::watch;

use super::Stats;
use super::announce::{self, Announced, Me};

/// Republish this often even when nothing changed (DHT nodes drop items after about two hours).
pub const REPUBLISH_EVERY: Duration = Duration::from_secs(30 * 60);
/// Wait after a failed publish before trying again.
const RETRY_AFTER: Duration = Duration::from_secs(30);
/// Wait after a change before publishing it (a burst of changes is one publish).
const SETTLE: Duration = Duration::from_secs(1);
/// Longest a lookup takes.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// The DHT side of discovery.
pub struct Dht {
    dht: AsyncDht,
    stats: Arc<Stats>,
    /// The newest record time seen per key: an older one is a replay.
    newest: Mutex<HashMap<[u8; 32], u64>>,
}

impl Dht {
    /// Joins the DHT through `bootstrap` (`HOST:PORT`; empty for the public bootstrap
    /// nodes) and publishes `me`, again when it changes and every [`REPUBLISH_EVERY`].
    pub async fn start(
        identity: Identity,
        bootstrap: Vec<String>,
        me: watch::Receiver<Me>,
        stats: Arc<Stats>,
    ) -> std::io::Result<Arc<Dht>> {
        // Resolving the bootstrap names and starting the node's thread block.
        let dht = tokio::task::spawn_blocking(move || {
            let mut builder = MainlineDht::builder();
            if !bootstrap.is_empty() {
                builder.bootstrap(&bootstrap);
            }
            builder.build()
        })
        .await
        .map_err(std::io::Error::other)??
        .as_async();
        let dht = Arc::new(Dht {
            dht,
            stats,
            newest: Mutex::new(HashMap::new()),
        });
        tokio::spawn(publish_loop(dht.clone(), identity, me));
        Ok(dht)
    }

    /// Publishes `me` once; returns whether a DHT node stored it.
    async fn publish(&self, identity: &Identity, me: &Me) -> bool {
        let now = super::unix_now();
        let value = announce::dht_value(identity, me, now);
        let key = SigningKey::from_bytes(&identity.secret());
        let item = MutableItem::new(key, &value, now as i64, None);
        match self.dht.put_mutable(item, None).await {
            Ok(_) => {
                self.stats.dht_published.fetch_add(1, Relaxed);
                tracing::debug!("published our record in the DHT");
                true
            }
            Err(error) => {
                self.stats.dht_publish_failures.fetch_add(1, Relaxed);
                tracing::debug!(%error, "could not publish our record in the DHT");
                false
            }
        }
    }

    /// The newest valid record published under `public_key`, within [`LOOKUP_TIMEOUT`].
    /// Records that do not verify, do not belong to the key's UUID, or are older than one
    /// seen before are ignored and counted.
    pub async fn lookup(&self, public_key: &[u8; 32]) -> Option<Announced> {
        self.stats.dht_lookups.fetch_add(1, Relaxed);
        let detailed = self.dht.get_mutable_detailed(public_key, None, None);
        let mut items = detailed.items;
        let now = super::unix_now();
        let mut best: Option<Announced> = None;
        let collect = async {
            while let Some(item) = items.next().await {
                match announce::parse_dht(public_key, item.value(), now) {
                    Ok(found) if best.as_ref().is_none_or(|b| found.at > b.at) => {
                        best = Some(found)
                    }
                    Ok(_) => {}
                    Err(error) => {
                        self.stats.dht_rejected.fetch_add(1, Relaxed);
                        tracing::debug!(%error, "ignoring a DHT record");
                    }
                }
            }
        };
        let _ = tokio::time::timeout(LOOKUP_TIMEOUT, collect).await;
        // What the library threw away: values whose BEP 44 signature did not verify. (Its
        // receiver panics if the DHT's thread went away: kept in a task of its own.)
        let outcome = tokio::spawn(detailed.outcome.recv());
        if let Ok(Ok(outcome)) = tokio::time::timeout(Duration::from_millis(200), outcome).await {
            self.stats
                .dht_rejected
                .fetch_add(u64::from(outcome.invalid_values), Relaxed);
        }
        let found = best?;
        let mut newest = self.newest.lock().unwrap_or_else(|e| e.into_inner());
        let known = newest.entry(*public_key).or_insert(0);
        if found.at < *known {
            self.stats.dht_rejected.fetch_add(1, Relaxed);
            return None;
        }
        *known = found.at;
        self.stats.dht_found.fetch_add(1, Relaxed);
        Some(found)
    }
}

async fn publish_loop(dht: Arc<Dht>, identity: Identity, mut me: watch::Receiver<Me>) {
    loop {
        let current = me.borrow_and_update().clone();
        // Nothing to publish until we know an address; a failed publication is retried soon.
        let published = current.candidates.is_empty() || dht.publish(&identity, &current).await;
        let wait = if published {
            REPUBLISH_EVERY
        } else {
            RETRY_AFTER
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            changed = me.changed() => {
                if changed.is_err() {
                    return;
                }
                tokio::time::sleep(SETTLE).await;
            }
        }
    }
}
