//! The index as the chat cores see it in virtual time: records and rooms, answering each
//! request after a latency, failing every request while it is down, or never answering.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use proto::api::{PeerRecord, RoomSummary};
use uuid::Uuid;

use super::{DOWN, IndexReply, IndexRequest, Lookup, MS, SEC};

/// A record as the index would give it out.
pub fn record(uuid: Uuid, addr: SocketAddr, name: Option<&str>) -> PeerRecord {
    PeerRecord {
        uuid,
        addr: addr.to_string(),
        name: name.map(str::to_owned),
        public_key: None,
        registered_at: "2026-01-01T00:00:00Z".into(),
        last_seen: None,
        ttl_secs: Some(60),
        record_ttl_secs: None,
        cache_ttl_secs: Some(60),
        token: None,
        candidates: Vec::new(),
        ice_servers: Vec::new(),
    }
}

/// The index as the cores see it: records and rooms, answering after `latency`.
pub struct Index {
    pub up: bool,
    pub latency: Duration,
    /// When false, requests are taken but never answered (a driver that lost them).
    pub answers: bool,
    pub records: BTreeMap<Uuid, PeerRecord>,
    pub rooms: BTreeMap<String, BTreeSet<Uuid>>,
    /// Requests on their way: when they are answered, by whom.
    pending: Vec<(Duration, usize, IndexRequest)>,
}

impl Default for Index {
    fn default() -> Self {
        Index {
            up: true,
            latency: 20 * MS,
            answers: true,
            records: BTreeMap::new(),
            rooms: BTreeMap::new(),
            pending: Vec::new(),
        }
    }
}

impl Index {
    /// Node `i` asks `request` at virtual time `now`.
    pub fn ask(&mut self, now: Duration, i: usize, request: IndexRequest) {
        if self.answers {
            self.pending.push((now + self.latency, i, request));
        }
    }

    /// When the next answer is due.
    pub fn next_answer(&self) -> Option<Duration> {
        self.pending.iter().map(|(at, ..)| *at).min()
    }

    /// The requests due at `now`, in the order they were asked, by node; joins and leaves
    /// change the rooms as they are answered.
    pub fn take_due(&mut self, now: Duration) -> Vec<(usize, IndexRequest)> {
        let (due, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|(at, ..)| *at <= now);
        self.pending = rest;
        due.into_iter()
            .map(|(_, i, request)| (i, request))
            .collect()
    }

    /// Carries out a join or a leave of `me` (while up).
    pub fn apply(&mut self, me: Uuid, request: &IndexRequest) {
        if !self.up {
            return;
        }
        match request {
            IndexRequest::Join(room) => {
                self.rooms.entry(room.clone()).or_default().insert(me);
            }
            IndexRequest::Leave(room) => {
                if let Some(members) = self.rooms.get_mut(room) {
                    members.remove(&me);
                }
            }
            _ => {}
        }
    }

    /// The answer to `request` from node `me`, as of now.
    pub fn answer(&self, me: Uuid, request: IndexRequest) -> IndexReply {
        let index = self;
        let lookup = |uuid: &Uuid| {
            index
                .records
                .get(uuid)
                .map(|record| Lookup::index(record.clone(), Some(60 * SEC)))
        };
        let members = |room: &str| -> Vec<PeerRecord> {
            index
                .rooms
                .get(room)
                .into_iter()
                .flatten()
                .filter_map(|id| index.records.get(id))
                .cloned()
                .collect()
        };
        match request {
            IndexRequest::Lookup(peer) if index.up => IndexReply::Lookup(peer, Ok(lookup(&peer))),
            IndexRequest::Lookup(peer) => IndexReply::Lookup(peer, Err(DOWN.to_owned())),
            IndexRequest::Verify(peer) if index.up => IndexReply::Verify(peer, Ok(lookup(&peer))),
            IndexRequest::Verify(peer) => IndexReply::Verify(peer, Err(DOWN.to_owned())),
            IndexRequest::Name(name) if index.up => {
                let found = index.records.values().find(|r| {
                    r.name
                        .as_deref()
                        .is_some_and(|n| n.eq_ignore_ascii_case(&name))
                });
                IndexReply::Name(name, Ok(found.and_then(|r| lookup(&r.uuid))))
            }
            IndexRequest::Name(name) => IndexReply::Name(name, Err(DOWN.to_owned())),
            IndexRequest::Join(room) if index.up => {
                // The index's state changes when it answers (see `deliver_replies`).
                let mut all = members(&room);
                if let Some(me) = index.records.get(&me)
                    && !all.iter().any(|r| r.uuid == me.uuid)
                {
                    all.push(me.clone());
                }
                IndexReply::Joined(room, Ok(all))
            }
            IndexRequest::Join(room) => IndexReply::Joined(room, Err(DOWN.to_owned())),
            IndexRequest::Leave(room) if index.up => IndexReply::Left(room, Ok(())),
            IndexRequest::Leave(room) => IndexReply::Left(room, Err(DOWN.to_owned())),
            IndexRequest::Who(room) if index.up => {
                let all = members(&room);
                IndexReply::Who(room, Ok(all))
            }
            IndexRequest::Who(room) => IndexReply::Who(room, Err(DOWN.to_owned())),
            IndexRequest::Rooms if index.up => IndexReply::Rooms(Ok(index
                .rooms
                .iter()
                .map(|(room, members)| RoomSummary {
                    room: room.clone(),
                    members: members.len(),
                })
                .collect())),
            IndexRequest::Rooms => IndexReply::Rooms(Err(DOWN.to_owned())),
        }
    }
}
