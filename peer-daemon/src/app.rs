//! The chat behaviour of the driver: commands, incoming chat messages, and answers from the
//! index. The network plumbing lives in `driver.rs`; what peers send, in `app/peers.rs`.

mod peers;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use proto::chat::{ChatMessage, LOBBY, valid_room};
use uuid::Uuid;

use crate::chat::SessionKind;
use crate::command::{self, Command, PeerRef};
use crate::driver::{Driver, Flow, Group, IndexReply, NameAction, Tag};
use crate::index::Lookup;
use crate::output::{PeerLine, RoomLine, UiEvent, millis};

impl Driver {
    pub(crate) fn on_input(&mut self, text: &str) -> Flow {
        match command::parse(text) {
            Ok(command) => self.on_command(command),
            Err(message) => {
                self.out.emit(UiEvent::Error { message });
                Flow::Continue
            }
        }
    }

    pub(crate) fn on_command(&mut self, command: Command) -> Flow {
        match command {
            Command::Msg { to, text } => self.with_peer(to, NameAction::Msg(text)),
            Command::Say { text } => self.say(text),
            Command::RoomMsg { room, text } if self.chat.in_room(&room) => {
                self.send_room(room, text)
            }
            Command::RoomMsg { room, .. } => {
                self.error(format!("you are not in #{room}; /join {room} first"))
            }
            Command::Fork { peer } => self.with_peer(peer, NameAction::Fork),
            Command::Sessions => self.out.emit(UiEvent::Sessions {
                sessions: self.chat.session_lines(),
            }),
            Command::Switch { target } => match self.chat.find_session(&target) {
                Some(n) => self.switch(n),
                None => self.error(format!("no session `{target}`; /sessions lists them")),
            },
            Command::Lobby => {
                let n = self.chat.find_session(LOBBY).unwrap_or(0);
                self.switch(n);
            }
            Command::Join { room } => self.join(room),
            Command::Leave { room } => self.leave(room),
            Command::Rooms => {
                let index = self.index.clone();
                self.tasks
                    .spawn(async move { IndexReply::Rooms(index.rooms().await) });
            }
            Command::Who { room } => {
                let room = room.or_else(|| match self.chat.active() {
                    SessionKind::Room(room) => Some(room),
                    SessionKind::Private(_) => None,
                });
                match room {
                    Some(room) => self.who(room),
                    None => {
                        self.error("usage: /who <room> (the active session is not a room)".into())
                    }
                }
            }
            Command::Users | Command::Peers => self.list_peers(),
            Command::Help => self.out.emit(UiEvent::help()),
            Command::Quit => return Flow::Quit,
            Command::Nothing => {}
        }
        Flow::Continue
    }

    fn error(&self, message: String) {
        self.out.emit(UiEvent::Error { message });
    }

    fn switch(&mut self, n: usize) {
        if let Some(label) = self.chat.activate(n) {
            self.out.emit(UiEvent::Info {
                message: format!("now talking in {label}"),
            });
        }
    }

    /// Runs `action` once `peer` resolves to a UUID (asking the index for unknown names).
    pub(crate) fn with_peer(&mut self, peer: PeerRef, action: NameAction) {
        let id = match peer {
            PeerRef::Id(id) => id,
            // Behind actions already waiting for this name, even if it has meanwhile become
            // known another way: a later line must not overtake an earlier one.
            PeerRef::Name(name) => match self.chat.by_name(&name, Instant::now()) {
                Some(id) if !self.waiting_names.contains_key(&name) => id,
                _ => {
                    let waiting = self.waiting_names.entry(name.clone()).or_default();
                    waiting.push(action);
                    if waiting.len() == 1 {
                        let index = self.index.clone();
                        self.tasks.spawn(async move {
                            let result = index.lookup_name(&name).await;
                            IndexReply::Name(name, result)
                        });
                    }
                    return;
                }
            },
        };
        self.act_on(id, action);
    }

    fn act_on(&mut self, peer: Uuid, action: NameAction) {
        if peer == self.identity.uuid() {
            return self.error("that is this peer's own UUID".into());
        }
        match action {
            NameAction::Msg(text) => self.send_private(peer, text),
            NameAction::Fork => {
                let n = self.chat.open_private(peer);
                self.switch(n);
            }
        }
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id - 1
    }

    fn send_private(&mut self, peer: Uuid, text: String) {
        let id = self.next_id();
        self.out.emit(UiEvent::Sent {
            to: Some(peer),
            room: None,
            id,
        });
        self.send_chat(
            peer,
            &ChatMessage::Text { room: None, text },
            Tag::Direct(id),
        );
    }

    fn say(&mut self, text: String) {
        match self.chat.active() {
            SessionKind::Private(peer) => self.send_private(peer, text),
            SessionKind::Room(room) => self.send_room(room, text),
        }
    }

    fn send_room(&mut self, room: String, text: String) {
        let id = self.next_id();
        let members = self.chat.members(&room);
        self.out.emit(UiEvent::Sent {
            to: None,
            room: Some(room.clone()),
            id,
        });
        let group = Group {
            room: room.clone(),
            total: members.len(),
            delivered: 0,
            failed: 0,
            rtt: Default::default(),
            reason: None,
        };
        if members.is_empty() {
            return self.report_group(id, group);
        }
        self.groups.insert(id, group);
        let message = ChatMessage::Text {
            room: Some(room),
            text,
        };
        for peer in members {
            self.send_chat(peer, &message, Tag::Group(id));
        }
    }

    fn join(&mut self, room: String) {
        if !valid_room(&room) {
            return self.error(format!(
                "`{room}` is not a room name: use 1 to 32 of a-z, 0-9, - and _"
            ));
        }
        self.chat.enter_room(&room);
        if let Some(n) = self.chat.find_session(&room) {
            self.switch(n);
        }
        if self.registered {
            self.spawn_join(room);
        } else {
            self.out.emit(UiEvent::Joined {
                room,
                peer: None,
                name: None,
                claimed_name: None,
                members: Some(0),
            });
        }
    }

    fn leave(&mut self, room: Option<String>) {
        let room = match room.or_else(|| match self.chat.active() {
            SessionKind::Room(room) => Some(room),
            SessionKind::Private(_) => None,
        }) {
            Some(room) => room,
            None => return self.error("usage: /leave <room>".into()),
        };
        let members = self.chat.members(&room);
        if !self.chat.exit_room(&room) {
            return self.error(format!("you are not in #{room}"));
        }
        for peer in members {
            self.send_chat(peer, &ChatMessage::Left { room: room.clone() }, Tag::Quiet);
        }
        let (index, identity) = (self.index.clone(), self.identity.clone());
        self.tasks.spawn(async move {
            let result = index.leave_room(&identity, &room).await;
            IndexReply::Left(room, result)
        });
    }

    fn who(&mut self, room: String) {
        let index = self.index.clone();
        self.tasks.spawn(async move {
            let result = index.room_members(&room).await;
            IndexReply::Who(room, result)
        });
    }

    fn peer_line(&self, uuid: Uuid, rtts: &HashMap<Uuid, Option<std::time::Duration>>) -> PeerLine {
        let addr = self
            .endpoint
            .peer_addr(&uuid)
            .or_else(|| self.cache.get(&uuid));
        let rtt = rtts.get(&uuid).copied().flatten();
        PeerLine {
            uuid,
            name: self.chat.name(&uuid),
            claimed_name: self.chat.claimed(&uuid),
            addr,
            rtt_ms: rtt.map(millis),
            reachable: rtt.is_some(),
        }
    }

    fn rtts(&self) -> HashMap<Uuid, Option<std::time::Duration>> {
        self.endpoint
            .known_peers()
            .map(|(id, _, rtt)| (id, rtt))
            .collect()
    }

    fn list_peers(&self) {
        let rtts = self.rtts();
        let mut ids: Vec<Uuid> = rtts.keys().copied().collect();
        ids.extend(self.cache.entries().into_iter().map(|(id, _)| id));
        ids.extend(self.chat.named_peers().map(|(id, _)| id));
        ids.retain(|id| *id != self.identity.uuid());
        ids.sort();
        ids.dedup();
        let peers = ids
            .into_iter()
            .map(|id| self.peer_line(id, &rtts))
            .collect();
        self.out.emit(UiEvent::Peers { peers });
    }

    pub(crate) fn on_index_reply(&mut self, reply: IndexReply) {
        match reply {
            IndexReply::Lookup(peer, result) => self.on_lookup(peer, result),
            IndexReply::Name(name, result) => {
                let actions = self.waiting_names.remove(&name).unwrap_or_default();
                match result {
                    Ok(Some(Lookup { record, max_age })) => {
                        self.learn_record(&record, max_age);
                        for action in actions {
                            self.act_on(record.uuid, action);
                        }
                    }
                    Ok(None) => {
                        self.error(format!("nobody called `{name}` is registered at the index"))
                    }
                    Err(error) => self.error(format!("could not look `{name}` up: {error:#}")),
                }
            }
            IndexReply::Verify(peer, result) => {
                match result {
                    Ok(Some(Lookup { record, max_age })) => {
                        self.learn_record(&record, max_age);
                    }
                    Ok(None) => self.chat.vouch(peer, None, Instant::now(), Duration::ZERO),
                    Err(error) => {
                        let error = format!("{error:#}");
                        tracing::debug!(%peer, %error, "could not check a peer's name");
                    }
                }
                for event in self.held.remove(&peer).unwrap_or_default() {
                    self.about(peer, event);
                }
            }
            IndexReply::Joined(room, result) => match result {
                Ok(members) => {
                    let me = self.identity.uuid();
                    let mut count = 0;
                    for record in members.iter().filter(|r| r.uuid != me) {
                        self.learn_record(record, record.ttl_secs.map(Duration::from_secs));
                        self.chat.add_member(&room, record.uuid);
                        count += 1;
                    }
                    // Tell every member directly, so they know without asking the index.
                    for peer in self.chat.members(&room) {
                        self.send_chat(
                            peer,
                            &ChatMessage::Joined { room: room.clone() },
                            Tag::Quiet,
                        );
                    }
                    self.out.emit(UiEvent::Joined {
                        room,
                        peer: None,
                        name: None,
                        claimed_name: None,
                        members: Some(count),
                    });
                }
                Err(error) => self.error(format!(
                    "{error:#}; #{room} works with the members already known"
                )),
            },
            IndexReply::Left(room, result) => match result {
                Ok(()) => self.out.emit(UiEvent::Left {
                    room,
                    peer: None,
                    name: None,
                    claimed_name: None,
                }),
                Err(error) => self.error(format!("{error:#}")),
            },
            IndexReply::Who(room, result) => {
                let rtts = self.rtts();
                let mut members: Vec<Uuid> = match result {
                    Ok(records) => records
                        .iter()
                        .map(|r| {
                            self.learn_record(r, r.ttl_secs.map(Duration::from_secs));
                            r.uuid
                        })
                        .collect(),
                    Err(error) => {
                        self.error(format!("{error:#}; showing the members known here"));
                        self.chat.members(&room)
                    }
                };
                members.sort();
                members.dedup();
                let members = members
                    .into_iter()
                    .map(|id| self.peer_line(id, &rtts))
                    .collect();
                self.out.emit(UiEvent::Who { room, members });
            }
            IndexReply::Rooms(result) => match result {
                Ok(rooms) => {
                    let mut lines: Vec<RoomLine> = rooms
                        .into_iter()
                        .map(|r| RoomLine {
                            joined: self.chat.in_room(&r.room),
                            room: r.room,
                            members: r.members,
                        })
                        .collect();
                    for room in self.chat.my_rooms() {
                        if !lines.iter().any(|l| l.room == room) {
                            lines.push(RoomLine {
                                room,
                                members: 0,
                                joined: true,
                            });
                        }
                    }
                    self.out.emit(UiEvent::Rooms { rooms: lines });
                }
                Err(error) => self.error(format!("{error:#}")),
            },
        }
    }
}
