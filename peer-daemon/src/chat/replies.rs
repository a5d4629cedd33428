//! What the index answers, and what the registration reports.

use std::time::Duration;

use proto::api::PeerRecord;
use proto::chat::ChatMessage;
use uuid::Uuid;

use super::delivery::Tag;
use super::{Answer, ChatCore, IndexReply, IndexRequest, Lookup};
use crate::output::{RoomLine, UiEvent};

impl ChatCore {
    pub(super) fn reply(&mut self, reply: IndexReply) {
        match reply {
            IndexReply::Lookup(peer, answer) => self.on_lookup(peer, answer),
            IndexReply::Name(name, answer) => self.on_name(name, answer),
            IndexReply::Verify(peer, answer) => {
                match answer {
                    Ok(Some(Lookup { record, max_age })) => {
                        self.learn_record(&record, max_age);
                    }
                    Ok(None) => self.roster.vouch(peer, None, self.now, Duration::ZERO),
                    Err(error) => tracing::debug!(%peer, %error, "could not check a peer's name"),
                }
                self.release(peer);
            }
            IndexReply::Joined(room, answer) => self.on_joined(room, answer),
            IndexReply::Left(room, answer) => match answer {
                Ok(()) => self.show(UiEvent::Left {
                    room,
                    peer: None,
                    name: None,
                    claimed_name: None,
                }),
                Err(error) => self.error(error),
            },
            IndexReply::Who(room, answer) => self.on_who(room, answer),
            IndexReply::Rooms(answer) => match answer {
                Ok(rooms) => {
                    let mut lines: Vec<RoomLine> = rooms
                        .into_iter()
                        .map(|r| RoomLine {
                            joined: self.roster.in_room(&r.room),
                            room: r.room,
                            members: r.members,
                        })
                        .collect();
                    for room in self.roster.my_rooms() {
                        if !lines.iter().any(|l| l.room == room) {
                            lines.push(RoomLine {
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
                self.show(UiEvent::Registered {
                    uuid: record.uuid,
                    addr: record.addr,
                });
                // (Re-)join our rooms on the index: it may have forgotten us.
                self.registered = true;
                for room in self.roster.my_rooms() {
                    self.ask(IndexRequest::Join(room));
                }
            }
            IndexReply::Trouble(message) => self.error(message),
            IndexReply::IceServers(_) => {}
        }
    }

    fn on_name(&mut self, name: String, answer: Answer<Option<Lookup>>) {
        let actions = self.waiting_names.remove(&name).unwrap_or_default();
        match answer {
            Ok(Some(Lookup { record, max_age })) => {
                self.learn_record(&record, max_age);
                for action in actions {
                    self.act_on(record.uuid, action);
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
                self.learn_record(r, r.ttl_secs.map(Duration::from_secs));
                r.uuid
            })
            .collect()
    }

    fn on_joined(&mut self, room: String, answer: Answer<Vec<PeerRecord>>) {
        let members = match answer {
            Ok(members) => members,
            Err(error) => {
                return self.error(format!(
                    "{error}; #{room} works with the members already known"
                ));
            }
        };
        let me = self.me;
        let others: Vec<PeerRecord> = members.into_iter().filter(|r| r.uuid != me).collect();
        for peer in self.learn_members(&others) {
            self.roster.add_member(&room, peer);
        }
        let count = others.len();
        // Tell every member directly, so they know without asking the index.
        for peer in self.roster.members(&room) {
            self.send_chat(
                peer,
                &ChatMessage::Joined { room: room.clone() },
                Tag::Quiet,
            );
        }
        self.show(UiEvent::Joined {
            room,
            peer: None,
            name: None,
            claimed_name: None,
            members: Some(count),
        });
    }

    fn on_who(&mut self, room: String, answer: Answer<Vec<PeerRecord>>) {
        let members = match answer {
            Ok(records) => self.learn_members(&records),
            Err(error) => {
                self.error(format!("{error}; showing the members known here"));
                self.roster.members(&room)
            }
        };
        let members = self.peer_lines(members);
        self.show(UiEvent::Who { room, members });
    }
}
