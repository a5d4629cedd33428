//! What the index answers, and what the registration reports.

use std::time::Duration;

use proto::api::PeerRecord;
use proto::chat::ChatMessage;
use uuid::Uuid;

use super::delivery::Tag;
use super::{Answer, ChatCore, IndexReply, IndexRequest, IndexStatus, Lookup};
use crate::output::{RoomLine, UiEvent};

impl ChatCore {
    pub(super) fn reply(&mut self, reply: IndexReply) {
        match reply {
            IndexReply::Lookup(peer, answer) => self.on_lookup(peer, answer),
            IndexReply::Name(name, answer) => self.on_name(name, answer),
            IndexReply::Verify(peer, answer) => {
                match answer {
                    Ok(Some(lookup)) => {
                        self.learn_lookup(&lookup);
                    }
                    Ok(None) => self.roster.vouch(peer, None, self.now, Duration::ZERO),
                    Err(error) => tracing::debug!(%peer, %error, "could not check a peer's name"),
                }
                self.release(peer);
            }
            IndexReply::Joined(room, answer) => self.on_joined(room, answer),
            IndexReply::Left(room, answer) => match answer {
                Ok(()) => {
                    let quiet = self.unsynced_leaves.remove(&room);
                    if !quiet {
                        self.show(UiEvent::Left {
                            room,
                            peer: None,
                            name: None,
                            claimed_name: None,
                        });
                    }
                }
                Err(error) => {
                    // Left here at once; the index hears of it when it answers again.
                    self.unsynced_leaves.insert(room.clone());
                    self.actions.push_back(super::Action::CheckIndex);
                    tracing::debug!(%room, %error, "leaving on the index failed; retried when it answers");
                    self.show(UiEvent::Left {
                        room,
                        peer: None,
                        name: None,
                        claimed_name: None,
                    });
                }
            },
            IndexReply::Who(room, answer) => self.on_who(room, answer),
            IndexReply::Rooms(answer) => match answer {
                Ok(rooms) => {
                    let mut lines: Vec<RoomLine> = rooms
                        .into_iter()
                        .map(|r| RoomLine {
                            joined: self.roster.in_room(&r.room),
                            topic: self.topic(&r.room).filter(|_| self.roster.in_room(&r.room)),
                            room: r.room,
                            members: r.members,
                        })
                        .collect();
                    for room in self.roster.my_rooms() {
                        if !lines.iter().any(|l| l.room == room) {
                            lines.push(RoomLine {
                                topic: self.topic(&room),
                                room,
                                members: 0,
                                joined: true,
                            });
                        }
                    }
                    self.show(UiEvent::Rooms { rooms: lines });
                }
                Err(error) => self.error(error),
            },
            IndexReply::Registered(record) => {
                tracing::info!(uuid = %record.uuid, addr = %record.addr, "registered");
                let again = matches!(self.index, IndexStatus::Offline(_));
                self.registered_addr = Some(record.addr.clone());
                self.show(UiEvent::Registered {
                    uuid: record.uuid,
                    addr: record.addr,
                });
                if again {
                    self.show(UiEvent::Index {
                        status: "online",
                        reason: None,
                    });
                }
                // A (new) registration: the index may have forgotten our rooms.
                self.index_rooms.clear();
                self.index = IndexStatus::Online;
                self.reconcile_rooms();
            }
            IndexReply::Online => {
                if self.index != IndexStatus::Online {
                    self.index = IndexStatus::Online;
                    self.show(UiEvent::Index {
                        status: "online",
                        reason: None,
                    });
                    self.reconcile_rooms();
                }
            }
            IndexReply::Trouble(message) => {
                tracing::debug!(%message, "index trouble");
                // Shown once when it starts; the retries go on quietly.
                if !matches!(self.index, IndexStatus::Offline(_)) {
                    self.show(UiEvent::Index {
                        status: "offline",
                        reason: Some(message.clone()),
                    });
                }
                self.index = IndexStatus::Offline(message);
            }
            IndexReply::Fatal(message) => {
                self.quitting = true;
                self.actions.push_back(super::Action::Exit(message));
            }
            IndexReply::Renamed(Ok(name)) => self.renamed(name),
            IndexReply::Renamed(Err(error)) => {
                let kept = self.roster.own_name().map_or_else(
                    || "you keep no name".to_owned(),
                    |n| format!("you stay {n}"),
                );
                self.error(format!("{error}; {kept}"));
            }
            IndexReply::IceServers(_) => {}
            IndexReply::NoIndex => {
                self.index = IndexStatus::Disabled;
                self.reconcile_rooms();
            }
            IndexReply::Met(record, rooms) => self.met(&record, rooms),
            IndexReply::Deposited {
                to,
                id,
                at,
                receipt,
                answer,
            } => self.on_deposited(to, id, at, receipt, answer),
            IndexReply::Mail { letters, through } => self.on_mail(letters, through),
        }
    }

    /// Where room member lists come from: the index, or without one the LAN.
    fn member_source(&self) -> super::Source {
        if self.index == IndexStatus::Disabled {
            super::Source::Lan
        } else {
            super::Source::Index
        }
    }

    /// A peer announced itself on the LAN: it is known (`/users`), and it joins the rooms
    /// it says it is in that we are in too (and hears that we are there), as if the index had
    /// listed it.
    fn met(&mut self, record: &PeerRecord, rooms: Vec<String>) {
        if record.uuid == self.me {
            return;
        }
        let ttl = record.cache_ttl().map(Duration::from_secs);
        self.learn_record(record, ttl, super::Source::Lan);
        let shared: Vec<String> = rooms
            .into_iter()
            .filter(|room| self.roster.in_room(room))
            .collect();
        for room in shared {
            if self.roster.add_member(&room, record.uuid) {
                self.send_chat(
                    record.uuid,
                    &ChatMessage::Joined { room: room.clone() },
                    Tag::Quiet,
                );
                self.resync(&room, record.uuid);
                let event = UiEvent::Joined {
                    room,
                    peer: Some(record.uuid),
                    name: None,
                    claimed_name: None,
                    members: None,
                };
                self.about(record.uuid, event);
            }
        }
    }

    /// The index answers (again): it hears of the rooms we joined and left meanwhile.
    fn reconcile_rooms(&mut self) {
        for room in self.roster.my_rooms() {
            if !self.index_rooms.contains(&room) {
                self.ask(IndexRequest::Join(room));
            }
        }
        for room in std::mem::take(&mut self.unsynced_leaves) {
            if !self.roster.in_room(&room) {
                // Answered quietly: the user saw `left` when it happened.
                self.unsynced_leaves.insert(room.clone());
                self.ask(IndexRequest::Leave(room));
            }
        }
    }

    fn on_name(&mut self, name: String, answer: Answer<Option<Lookup>>) {
        let actions = self.waiting_names.remove(&name).unwrap_or_default();
        match answer {
            Ok(Some(lookup)) => {
                self.learn_lookup(&lookup);
                for action in actions {
                    self.act_on(lookup.record.uuid, action);
                }
            }
            Ok(None) => self.error(format!("nobody called `{name}` is registered at the index")),
            Err(error) => self.error(format!("could not look `{name}` up: {error}")),
        }
    }

    /// Learns a member list's records (their names and addresses); returns their UUIDs.
    fn learn_members(&mut self, records: &[PeerRecord]) -> Vec<Uuid> {
        records
            .iter()
            .map(|r| {
                self.learn_record(
                    r,
                    r.cache_ttl().map(Duration::from_secs),
                    self.member_source(),
                );
                r.uuid
            })
            .collect()
    }

    fn on_joined(&mut self, room: String, answer: Answer<Vec<PeerRecord>>) {
        let members = match answer {
            Ok(members) => members,
            Err(error) => {
                self.actions.push_back(super::Action::CheckIndex);
                return self.error(format!(
                    "{error}; #{room} works with the members already known, and the index hears of it once it answers"
                ));
            }
        };
        if !self.roster.in_room(&room) {
            // Left again before the index answered: tell it so.
            self.unsynced_leaves.insert(room.clone());
            self.ask(IndexRequest::Leave(room));
            return;
        }
        self.index_rooms.insert(room.clone());
        let first = self.joined_shown.insert(room.clone());
        let me = self.me;
        let others: Vec<PeerRecord> = members.into_iter().filter(|r| r.uuid != me).collect();
        for peer in self.learn_members(&others) {
            self.roster.add_member(&room, peer);
        }
        let count = others.len();
        // Tell every member directly, so they know without asking the index, and sync the
        // room's state with each.
        for peer in self.roster.members(&room) {
            self.send_chat(
                peer,
                &ChatMessage::Joined { room: room.clone() },
                Tag::Quiet,
            );
            self.resync(&room, peer);
        }
        if first {
            self.show(UiEvent::Joined {
                room: room.clone(),
                peer: None,
                name: None,
                claimed_name: None,
                members: Some(count),
            });
            self.show_topic(&room);
        }
    }

    fn on_who(&mut self, room: String, answer: Answer<Vec<PeerRecord>>) {
        let members = match answer {
            Ok(records) => self.learn_members(&records),
            Err(error) => {
                self.error(format!("{error}; showing the members known here"));
                let mut known = self.roster.members(&room);
                if self.roster.in_room(&room) {
                    known.push(self.me);
                }
                known
            }
        };
        let members = self.peer_lines(members);
        self.show(UiEvent::Who { room, members });
    }
}
