//! LAN discovery with mDNS/DNS-SD (`mdns-sd`): each daemon advertises a `_peerlink._udp`
//! service whose TXT record is its signed announcement (see [`super::announce`]) and browses
//! for the others. What arrives is checked (size, fields, signature, UUID ↔ key) before it is
//! kept; at most [`MAX_LAN_PEERS`] peers are kept, and an announcement never names anyone but
//! the key that signed it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mdns_sd::{ServiceDaemon, ServiceEvent, ServiceInfo};
use proto::api::{CandidateKind, PeerRecord, RoomSummary};
use proto::identity::Identity;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use super::Stats;
use super::announce::{self, Announced, Me};
use crate::chat::IndexReply;

/// The DNS-SD service type.
pub const SERVICE: &str = "_peerlink._udp.local.";
/// Most LAN peers kept; announcements of more are ignored (and counted).
pub const MAX_LAN_PEERS: usize = 256;
/// How long a LAN record may be used before asking again (the peer withdraws its
/// announcement when it leaves; this bounds what a lost goodbye costs).
pub const LAN_TTL: Duration = Duration::from_secs(120);
/// Shortest time between two announcements of ours (a burst of room changes is one).
const ANNOUNCE_GAP: Duration = Duration::from_secs(1);
/// Longest wait for the goodbye announcement at quit.
const GOODBYE_WAIT: Duration = Duration::from_secs(1);

/// One peer on the LAN and the mDNS instance that announced it.
#[derive(Debug, Clone)]
struct Entry {
    peer: Announced,
    instance: String,
}

/// The LAN peers, as their announcements describe them.
#[derive(Debug, Default)]
pub struct LanBook {
    peers: HashMap<Uuid, Entry>,
}

impl LanBook {
    /// Takes a verified announcement from `instance`; returns whether it is news (a new
    /// peer, or new addresses, rooms or name). An older announcement than the one kept is
    /// stale; a new peer beyond [`MAX_LAN_PEERS`] is refused.
    fn take(&mut self, peer: Announced, instance: String) -> Result<bool, &'static str> {
        match self.peers.get(&peer.uuid) {
            Some(old) if old.peer.at > peer.at => return Err("stale"),
            Some(old) if old.peer == peer => return Ok(false),
            None if self.peers.len() >= MAX_LAN_PEERS => return Err("full"),
            _ => {}
        }
        self.peers.insert(peer.uuid, Entry { peer, instance });
        Ok(true)
    }

    /// Forgets the peer that announced `instance` (it said goodbye).
    fn remove_instance(&mut self, instance: &str) -> Option<Uuid> {
        let uuid = self
            .peers
            .iter()
            .find(|(_, e)| e.instance == instance)
            .map(|(id, _)| *id)?;
        self.peers.remove(&uuid);
        Some(uuid)
    }

    /// The peer with this UUID.
    pub fn get(&self, uuid: &Uuid) -> Option<&Announced> {
        self.peers.get(uuid).map(|e| &e.peer)
    }

    /// The one peer that calls itself `name` (ASCII case aside); none when two do.
    pub fn by_name(&self, name: &str) -> Option<&Announced> {
        let mut found = self.peers.values().map(|e| &e.peer).filter(|p| {
            p.name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        });
        let first = found.next()?;
        found.next().is_none().then_some(first)
    }

    /// The peers in `room`.
    pub fn members(&self, room: &str) -> Vec<&Announced> {
        self.peers
            .values()
            .map(|e| &e.peer)
            .filter(|p| p.rooms.iter().any(|r| r == room))
            .collect()
    }

    /// Every room someone on the LAN is in, with its member count.
    pub fn rooms(&self) -> Vec<RoomSummary> {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for entry in self.peers.values() {
            for room in &entry.peer.rooms {
                *counts.entry(room).or_default() += 1;
            }
        }
        let mut rooms: Vec<RoomSummary> = counts
            .into_iter()
            .map(|(room, members)| RoomSummary {
                room: room.to_owned(),
                members,
            })
            .collect();
        rooms.sort_by(|a, b| a.room.cmp(&b.room));
        rooms
    }

    /// How many peers are known.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

/// The LAN side of discovery: our announcement and the peers we hear.
pub struct Lan {
    daemon: ServiceDaemon,
    instance: String,
    book: Arc<Mutex<LanBook>>,
}

impl Lan {
    /// Starts announcing `me` (and every change to it) and browsing; verified peers land in
    /// the book, and peers in rooms go to `news` as [`IndexReply::Met`].
    pub fn start(
        identity: Identity,
        port: u16,
        me: watch::Receiver<Me>,
        news: mpsc::Sender<IndexReply>,
        stats: Arc<Stats>,
    ) -> Result<Lan, mdns_sd::Error> {
        let daemon = ServiceDaemon::new()?;
        let events = daemon.browse(SERVICE)?;
        let instance_name = identity.uuid().simple().to_string();
        let instance = format!("{instance_name}.{SERVICE}");
        let book = Arc::new(Mutex::new(LanBook::default()));
        tokio::spawn(browse(
            events,
            book.clone(),
            news,
            stats.clone(),
            identity.uuid(),
        ));
        tokio::spawn(announce_loop(
            daemon.clone(),
            identity,
            instance_name,
            port,
            me,
            stats,
        ));
        Ok(Lan {
            daemon,
            instance,
            book,
        })
    }

    /// The peers heard so far.
    pub fn book(&self) -> std::sync::MutexGuard<'_, LanBook> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Withdraws our announcement (peers forget us at once) and stops.
    pub async fn stop(&self) {
        if let Ok(status) = self.daemon.unregister(&self.instance) {
            let _ = tokio::time::timeout(GOODBYE_WAIT, status.recv_async()).await;
        }
        let _ = self.daemon.shutdown();
    }
}

/// A LAN peer as the chat core takes it: its name only when `name` (see
/// [`crate::chat::Source::Lan`]).
pub fn record(peer: &Announced, name: bool) -> PeerRecord {
    let mut record = peer.record(
        CandidateKind::Host,
        name.then(|| peer.name.clone()).flatten(),
    );
    record.cache_ttl_secs = Some(LAN_TTL.as_secs());
    record
}

async fn browse(
    events: mdns_sd::Receiver<ServiceEvent>,
    book: Arc<Mutex<LanBook>>,
    news: mpsc::Sender<IndexReply>,
    stats: Arc<Stats>,
    me: Uuid,
) {
    use std::sync::atomic::Ordering::Relaxed;
    while let Ok(event) = events.recv_async().await {
        match event {
            ServiceEvent::ServiceResolved(service) => {
                let instance = service.get_fullname().to_owned();
                let parsed = announce::parse_lan(|key| service.get_property_val_str(key));
                let peer = match parsed {
                    Ok(peer) if peer.uuid == me => continue,
                    Ok(peer) => peer,
                    Err(error) => {
                        stats.lan_rejected.fetch_add(1, Relaxed);
                        tracing::debug!(%instance, %error, "ignoring a LAN announcement");
                        continue;
                    }
                };
                let taken = book
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take(peer.clone(), instance.clone());
                match taken {
                    Ok(true) => {
                        stats.lan_announcements.fetch_add(1, Relaxed);
                        tracing::debug!(peer = %peer.uuid, %instance, "a peer on the LAN");
                        let rooms = peer.rooms.clone();
                        let met = IndexReply::Met(Box::new(record(&peer, true)), rooms);
                        if news.send(met).await.is_err() {
                            return;
                        }
                    }
                    Ok(false) => {}
                    Err(why) => {
                        stats.lan_rejected.fetch_add(1, Relaxed);
                        tracing::debug!(peer = %peer.uuid, why, "ignoring a LAN announcement");
                    }
                }
            }
            ServiceEvent::ServiceRemoved(_, instance) => {
                let gone = book
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove_instance(&instance);
                if let Some(peer) = gone {
                    tracing::debug!(%peer, "a peer left the LAN");
                }
            }
            _ => {}
        }
    }
}

/// Registers our service with the current announcement, again whenever it changes (at most
/// once per [`ANNOUNCE_GAP`]).
async fn announce_loop(
    daemon: ServiceDaemon,
    identity: Identity,
    instance: String,
    port: u16,
    mut me: watch::Receiver<Me>,
    stats: Arc<Stats>,
) {
    let host = format!("{instance}.local.");
    loop {
        let current = me.borrow_and_update().clone();
        // Nothing to announce before we know an address (peers would refuse it).
        if current.candidates.is_empty() {
            if me.changed().await.is_err() {
                return;
            }
            continue;
        }
        let ips: Vec<IpAddr> = current
            .candidates
            .iter()
            .filter(|c| c.kind == CandidateKind::Host)
            .map(|c| c.addr.ip())
            .collect();
        let txt = announce::lan_txt(&identity, &current, super::unix_now());
        let info = ServiceInfo::new(SERVICE, &instance, &host, &ips[..], port, &txt[..]);
        match info {
            Ok(info) => {
                let info = if ips.is_empty() {
                    info.enable_addr_auto()
                } else {
                    info
                };
                match daemon.register(info) {
                    Ok(()) => {
                        stats
                            .lan_published
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    // A busy library (its command queue full) or a passing failure: again
                    // shortly, not only at the next change.
                    Err(error) => {
                        tracing::debug!(%error, "could not announce on the LAN; trying again");
                        tokio::time::sleep(ANNOUNCE_GAP).await;
                        continue;
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "could not build the LAN announcement"),
        }
        tokio::time::sleep(ANNOUNCE_GAP).await;
        if me.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(seed: u8, name: &str, at: u64, rooms: &[&str]) -> Announced {
        let id = Identity::from_secret([seed; 32]);
        Announced {
            uuid: id.uuid(),
            public_key: id.public_key(),
            name: Some(name.into()),
            candidates: vec![proto::api::Candidate {
                kind: CandidateKind::Host,
                addr: "192.0.2.1:4000".parse().unwrap(),
            }],
            rooms: rooms.iter().map(|r| r.to_string()).collect(),
            at,
        }
    }

    #[test]
    fn the_book_keeps_the_newest_and_refuses_floods() {
        let mut book = LanBook::default();
        assert_eq!(
            book.take(peer(1, "bob", 10, &["lobby"]), "a".into()),
            Ok(true)
        );
        assert_eq!(
            book.take(peer(1, "bob", 10, &["lobby"]), "a".into()),
            Ok(false)
        );
        assert_eq!(book.take(peer(1, "bob", 9, &[]), "a".into()), Err("stale"));
        assert_eq!(
            book.take(peer(1, "bob", 11, &["rust"]), "a".into()),
            Ok(true)
        );
        assert_eq!(book.members("rust").len(), 1);
        book.take(peer(2, "BOB", 1, &["rust"]), "b".into()).unwrap();
        assert!(
            book.by_name("bob").is_none(),
            "two peers call themselves bob"
        );
        assert_eq!(book.rooms()[0].members, 2);
        assert_eq!(book.remove_instance("b"), Some(peer(2, "", 0, &[]).uuid));
        assert!(book.by_name("bob").is_some());
        for i in 0..=MAX_LAN_PEERS as u32 {
            let mut p = peer(3, "x", 1, &[]);
            p.uuid = Uuid::from_u128(u128::from(i) + 100);
            let _ = book.take(p, format!("i{i}"));
        }
        assert_eq!(book.len(), MAX_LAN_PEERS);
    }
}
