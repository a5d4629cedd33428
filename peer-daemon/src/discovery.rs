//! Finding peers: the directory the chat core's questions go to. It asks, in order, the
//! sources that may know a peer, checking every answer against the UUID ↔ key binding before
//! it is used (and the handshake proves the key again):
//!
//! 1. addresses seen on authenticated datagrams (the endpoint keeps those; the core only asks
//!    when it has none, or when the peer stopped answering there);
//! 2. the LAN: signed mDNS announcements ([`lan`]);
//! 3. the index;
//! 4. the DHT: a contact's signed BEP 44 record ([`dht`]), when the index cannot answer
//!    (unreachable, an error, or it does not know the peer).
//!
//! Names are another matter: the index vouches for them. Without an answering index a name
//! announced on the LAN stands in, unless a contact already holds that name (the one the index
//! vouched for when we last talked), and the contacts file resolves names of known peers.

pub mod announce;
pub mod contacts;
pub mod dht;
pub mod lan;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::api::{CandidateKind, PeerRecord};
use proto::identity::Identity;
use uuid::Uuid;

use crate::chat::{Answer, Contact, IndexReply, IndexRequest, Lookup, Source};
use crate::index::IndexClient;
use contacts::Contacts;

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Counters of discovery (in `/stats` as `discovery.*`).
#[derive(Debug, Default)]
pub struct Stats {
    /// LAN announcements taken (new peers or news about one).
    pub lan_announcements: AtomicU64,
    /// LAN announcements ignored: malformed, unsigned, stale, another key's UUID, too many.
    pub lan_rejected: AtomicU64,
    /// Names on the LAN not used because a contact holds that name.
    pub lan_name_conflicts: AtomicU64,
    /// Our own announcements on the LAN.
    pub lan_published: AtomicU64,
    /// Our records stored in the DHT.
    pub dht_published: AtomicU64,
    /// Publications that failed (no DHT node stored it).
    pub dht_publish_failures: AtomicU64,
    /// Contacts looked up in the DHT.
    pub dht_lookups: AtomicU64,
    /// Lookups that found a valid record.
    pub dht_found: AtomicU64,
    /// DHT records ignored: a bad signature, another key's UUID, stale, malformed.
    pub dht_rejected: AtomicU64,
}

impl Stats {
    /// Every counter as `(name, value)`.
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        vec![
            (
                "discovery.lan_announcements",
                self.lan_announcements.load(Relaxed),
            ),
            ("discovery.lan_rejected", self.lan_rejected.load(Relaxed)),
            (
                "discovery.lan_name_conflicts",
                self.lan_name_conflicts.load(Relaxed),
            ),
            ("discovery.lan_published", self.lan_published.load(Relaxed)),
            ("discovery.dht_published", self.dht_published.load(Relaxed)),
            (
                "discovery.dht_publish_failures",
                self.dht_publish_failures.load(Relaxed),
            ),
            ("discovery.dht_lookups", self.dht_lookups.load(Relaxed)),
            ("discovery.dht_found", self.dht_found.load(Relaxed)),
            ("discovery.dht_rejected", self.dht_rejected.load(Relaxed)),
        ]
    }
}

/// The sources of peers, for the driver: cheap to clone.
#[derive(Clone)]
pub struct Directory {
    index: Option<IndexClient>,
    lan: Option<Arc<lan::Lan>>,
    /// The DHT once it started (it starts in the background: resolving the bootstrap nodes
    /// must not hold the chat up); `None` with `--no-dht`.
    dht: Option<Arc<std::sync::OnceLock<Arc<dht::Dht>>>>,
    contacts: Arc<Mutex<Contacts>>,
    stats: Arc<Stats>,
}

/// What `/whoami` says about discovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// Whether we announce and browse on the LAN.
    pub mdns: bool,
    /// Whether we publish in and look up from the DHT (it runs).
    pub dht: bool,
    /// Peers heard on the LAN.
    pub lan_peers: usize,
    /// Contacts kept.
    pub contacts: usize,
}

impl Directory {
    /// A directory over the given sources.
    pub fn new(
        index: Option<IndexClient>,
        lan: Option<lan::Lan>,
        dht: Option<Arc<std::sync::OnceLock<Arc<dht::Dht>>>>,
        contacts: Contacts,
        stats: Arc<Stats>,
    ) -> Self {
        Directory {
            index,
            lan: lan.map(Arc::new),
            dht,
            contacts: Arc::new(Mutex::new(contacts)),
            stats,
        }
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// What is on.
    pub fn status(&self) -> Status {
        Status {
            mdns: self.lan.is_some(),
            dht: self.dht.as_ref().is_some_and(|dht| dht.get().is_some()),
            lan_peers: self.lan.as_ref().map_or(0, |lan| lan.book().len()),
            contacts: self.contacts().len(),
        }
    }

    fn contacts(&self) -> std::sync::MutexGuard<'_, Contacts> {
        self.contacts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers a contact; the file is written (off the chat's task) when it changed.
    pub fn remember(&self, contact: Contact) {
        if !self.contacts().remember(contact, unix_now()) {
            return;
        }
        let contacts = self.contacts.clone();
        tokio::task::spawn_blocking(move || {
            let contacts = contacts.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(error) = contacts.save() {
                tracing::warn!(%error, "could not write the contacts file");
            }
        });
    }

    /// The key of a contact (proven in a handshake when it became one).
    pub fn contact_key(&self, peer: &Uuid) -> Option<[u8; 32]> {
        self.contacts().get(peer).map(|contact| contact.public_key)
    }

    /// Withdraws our LAN announcement.
    pub async fn stop(&self) {
        if let Some(lan) = &self.lan {
            lan.stop().await;
        }
    }

    /// Carries out one request of the chat core (see the module documentation for the order
    /// of sources) and puts the answer in the reply the core expects.
    pub async fn answer(&self, identity: &Identity, request: IndexRequest) -> IndexReply {
        match request {
            IndexRequest::Lookup(peer) => IndexReply::Lookup(peer, self.lookup(peer).await),
            IndexRequest::Verify(peer) => IndexReply::Verify(peer, self.verify(peer).await),
            IndexRequest::Name(name) => {
                let answer = self.by_name(&name).await;
                IndexReply::Name(name, answer)
            }
            request => match &self.index {
                Some(index) => index.answer(identity, request).await,
                None => self.lan_rooms(request),
            },
        }
    }

    /// What the index says, as the core's answer; `None` without an index.
    async fn ask_index(&self, request: IndexRequest) -> Option<Answer<Option<Lookup>>> {
        let index = self.index.as_ref()?;
        let answer = match request {
            IndexRequest::Lookup(peer) | IndexRequest::Verify(peer) => index.lookup(peer).await,
            IndexRequest::Name(name) => index.lookup_name(&name).await,
            _ => return None,
        };
        Some(answer.map_err(|error| error.to_string()))
    }

    /// Takes the name off a LAN peer's record when a contact holds that name under another
    /// key (the one the index vouched for when we talked): first come on the LAN does not
    /// beat a name we already know.
    pub fn check_lan_name(&self, record: &mut PeerRecord) {
        let Some(name) = record.name.as_deref() else {
            return;
        };
        let holder = self.contacts().by_name(name).map(|c| c.uuid);
        if holder.is_some_and(|holder| holder != record.uuid) {
            self.stats.lan_name_conflicts.fetch_add(1, Relaxed);
            record.name = None;
        }
    }

    /// A LAN peer's record (its name checked by [`Directory::check_lan_name`]).
    fn lan_record(&self, peer: Uuid) -> Option<Lookup> {
        let lan = self.lan.as_ref()?;
        let mut record = lan::record(lan.book().get(&peer)?, true);
        self.check_lan_name(&mut record);
        Some(Lookup {
            record,
            max_age: Some(lan::LAN_TTL),
            source: Source::Lan,
        })
    }

    /// A contact's record from the DHT, under the name the index last vouched for.
    async fn dht_record(&self, contact: Option<Contact>) -> Option<Lookup> {
        let (dht, contact) = (self.dht.as_ref()?.get()?, contact?);
        let found = dht.lookup(&contact.public_key).await?;
        let mut record: PeerRecord = found.record(CandidateKind::Srflx, contact.name);
        record.cache_ttl_secs = Some(DHT_TTL.as_secs());
        Some(Lookup {
            record,
            max_age: Some(DHT_TTL),
            source: Source::Dht,
        })
    }

    /// Where is `peer`? The LAN, then the index, then (when the index cannot say) the DHT.
    async fn lookup(&self, peer: Uuid) -> Answer<Option<Lookup>> {
        if let Some(found) = self.lan_record(peer) {
            return Ok(Some(found));
        }
        let from_index = self.ask_index(IndexRequest::Lookup(peer)).await;
        if let Some(Ok(Some(found))) = from_index {
            return Ok(Some(found));
        }
        let contact = self.contacts().get(&peer).cloned();
        if let Some(found) = self.dht_record(contact).await {
            return Ok(Some(found));
        }
        from_index.unwrap_or(Ok(None))
    }

    /// Who is `peer`? The index when it answers; otherwise its LAN announcement. Without an
    /// index, a peer that speaks to us before its announcement reached us (they cross) is
    /// given [`LAN_WAIT`] to be heard on the LAN.
    async fn verify(&self, peer: Uuid) -> Answer<Option<Lookup>> {
        let unanswered = match self.ask_index(IndexRequest::Verify(peer)).await {
            Some(Ok(answer)) => return Ok(answer),
            unanswered => unanswered,
        };
        let waits = if self.index.is_none() && self.lan.is_some() {
            LAN_WAIT_STEPS
        } else {
            0
        };
        for step in 0..=waits {
            if let Some(found) = self.lan_record(peer) {
                return Ok(Some(found));
            }
            if step < waits {
                tokio::time::sleep(LAN_WAIT / LAN_WAIT_STEPS).await;
            }
        }
        unanswered.unwrap_or(Ok(None))
    }

    /// Who goes by `name`? The index when it answers; otherwise the one LAN peer of that name,
    /// or the contact the index last vouched for under it (found in the DHT).
    async fn by_name(&self, name: &str) -> Answer<Option<Lookup>> {
        let from_index = self.ask_index(IndexRequest::Name(name.to_owned())).await;
        if let Some(Ok(answer)) = from_index {
            return Ok(answer);
        }
        let on_lan = self
            .lan
            .as_ref()
            .and_then(|lan| lan.book().by_name(name).map(|p| p.uuid));
        if let Some(found) = on_lan.and_then(|peer| self.lan_record(peer))
            && found.record.name.is_some()
        {
            return Ok(Some(found));
        }
        let contact = self.contacts().by_name(name).cloned();
        if let Some(found) = self.dht_record(contact).await {
            return Ok(Some(found));
        }
        match from_index {
            Some(unanswered) => unanswered,
            None => Err(format!(
                "nobody called `{name}` is on the LAN or among your contacts"
            )),
        }
    }

    /// Room requests without an index: the LAN's announcements say who is where.
    fn lan_rooms(&self, request: IndexRequest) -> IndexReply {
        let members = |room: &str| -> Vec<PeerRecord> {
            self.lan.as_ref().map_or_else(Vec::new, |lan| {
                lan.book()
                    .members(room)
                    .into_iter()
                    .map(|peer| lan::record(peer, true))
                    .collect()
            })
        };
        match request {
            IndexRequest::Join(room) => {
                let answer = Ok(members(&room));
                IndexReply::Joined(room, answer)
            }
            IndexRequest::Who(room) => {
                let answer = Ok(members(&room));
                IndexReply::Who(room, answer)
            }
            IndexRequest::Leave(room) => IndexReply::Left(room, Ok(())),
            IndexRequest::Rooms => {
                let rooms = self
                    .lan
                    .as_ref()
                    .map_or_else(Vec::new, |lan| lan.book().rooms());
                IndexReply::Rooms(Ok(rooms))
            }
            // The directory answers these itself (`answer`); the LAN alone knows nobody.
            IndexRequest::Lookup(peer) => IndexReply::Lookup(peer, Ok(None)),
            IndexRequest::Verify(peer) => IndexReply::Verify(peer, Ok(None)),
            IndexRequest::Name(name) => IndexReply::Name(name, Ok(None)),
        }
    }
}

/// Longest wait, without an index, for the LAN announcement of a peer that spoke to us.
pub const LAN_WAIT: Duration = Duration::from_millis(2000);
const LAN_WAIT_STEPS: u32 = 10;

/// How long a DHT record may be used before asking again.
pub const DHT_TTL: Duration = Duration::from_secs(300);
