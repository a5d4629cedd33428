//! What the user asks for: messages to a peer, a room or the active session, session
//! switches, joining and leaving rooms, and the lists.

use std::time::Duration;

use proto::chat::{ChatMessage, LOBBY, valid_room};
use uuid::Uuid;

use super::delivery::Tag;
use super::roster::SessionKind;
use super::{ChatCore, IndexRequest};
use crate::command::{Command, PeerRef};
use crate::output::{PeerLine, UiEvent, millis};

/// What to do once a name resolves.
#[derive(Debug)]
pub(super) enum NameAction {
    /// `/msg <name> <text>`.
    Msg(String),
    /// `/fork <name>`.
    Fork,
}

impl ChatCore {
    pub(super) fn command(&mut self, command: Command) {
        match command {
            Command::Msg { to, text } => self.with_peer(to, NameAction::Msg(text)),
            Command::Say { text } => match self.roster.active() {
                SessionKind::Private(peer) => self.send_private(peer, text),
                SessionKind::Room(room) => self.send_room(room, text),
            },
            Command::RoomMsg { room, text } if self.roster.in_room(&room) => {
                self.send_room(room, text)
            }
            Command::RoomMsg { room, .. } => {
                self.error(format!("you are not in #{room}; /join {room} first"))
            }
            Command::Fork { peer } => self.with_peer(peer, NameAction::Fork),
            Command::Sessions => {
                let sessions = self.roster.session_lines();
                self.show(UiEvent::Sessions { sessions })
            }
            Command::Switch { target } => match self.roster.find_session(&target) {
                Some(n) => self.switch(n),
                None => self.error(format!("no session `{target}`; /sessions lists them")),
            },
            Command::Lobby => {
                let n = self.roster.find_session(LOBBY).unwrap_or(0);
                self.switch(n);
            }
            Command::Join { room } => self.join(room),
            Command::Leave { room } => match room.or_else(|| self.active_room()) {
                Some(room) => self.leave(room),
                None => self.error("usage: /leave <room>".into()),
            },
            Command::Rooms => self.ask(IndexRequest::Rooms),
            Command::Who { room } => match room.or_else(|| self.active_room()) {
                Some(room) => self.ask(IndexRequest::Who(room)),
                None => self.error("usage: /who <room> (the active session is not a room)".into()),
            },
            Command::Users | Command::Peers => self.list_peers(),
            // The driver answers it: the counters of NAT traversal live there.
            Command::Stats => {}
            Command::Help => self.show(UiEvent::help()),
            Command::Quit => self.quit(),
            Command::Nothing => {}
        }
    }

    fn active_room(&self) -> Option<String> {
        match self.roster.active() {
            SessionKind::Room(room) => Some(room),
            SessionKind::Private(_) => None,
        }
    }

    fn switch(&mut self, n: usize) {
        if let Some(label) = self.roster.activate(n) {
            self.show(UiEvent::Info {
                message: format!("now talking in {label}"),
            });
        }
    }

    /// Runs `action` once `peer` resolves to a UUID (asking the index for unknown names).
    fn with_peer(&mut self, peer: PeerRef, action: NameAction) {
        let id = match peer {
            PeerRef::Id(id) => id,
            // Behind actions already waiting for this name, even if it has meanwhile become
            // known another way: a later line must not overtake an earlier one.
            PeerRef::Name(name) => match self.roster.by_name(&name, self.now) {
                Some(id) if !self.waiting_names.contains_key(&name) => id,
                _ => {
                    let waiting = self.waiting_names.entry(name.clone()).or_default();
                    waiting.push(action);
                    if waiting.len() == 1 {
                        self.ask(IndexRequest::Name(name));
                    }
                    return;
                }
            },
        };
        self.act_on(id, action);
    }

    pub(super) fn act_on(&mut self, peer: Uuid, action: NameAction) {
        if peer == self.me {
            return self.error("that is this peer's own UUID".into());
        }
        match action {
            NameAction::Msg(text) => self.send_private(peer, text),
            NameAction::Fork => {
                let n = self.roster.open_private(peer);
                self.switch(n);
            }
        }
    }

    fn send_private(&mut self, peer: Uuid, text: String) {
        let id = self.next_id();
        self.show(UiEvent::Sent {
            to: Some(peer),
            room: None,
            id,
        });
        let message = ChatMessage::Text { room: None, text };
        self.send_chat(peer, &message, Tag::Direct(id));
    }

    fn send_room(&mut self, room: String, text: String) {
        let id = self.next_id();
        let members = self.roster.members(&room);
        self.show(UiEvent::Sent {
            to: None,
            room: Some(room.clone()),
            id,
        });
        self.start_group(id, room.clone(), members.len());
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
        self.roster.enter_room(&room);
        if let Some(n) = self.roster.find_session(&room) {
            self.switch(n);
        }
        if self.registered {
            self.ask(IndexRequest::Join(room));
        } else {
            self.show(UiEvent::Joined {
                room,
                peer: None,
                name: None,
                claimed_name: None,
                members: Some(0),
            });
        }
    }

    fn leave(&mut self, room: String) {
        let members = self.roster.members(&room);
        if !self.roster.exit_room(&room) {
            return self.error(format!("you are not in #{room}"));
        }
        for peer in members {
            self.send_chat(peer, &ChatMessage::Left { room: room.clone() }, Tag::Quiet);
        }
        self.ask(IndexRequest::Leave(room));
    }

    /// Tells every room we are in that we are leaving (best effort: nobody waits for the
    /// acknowledgements), then asks the driver to stop.
    fn quit(&mut self) {
        for room in self.roster.my_rooms() {
            for peer in self.roster.members(&room) {
                let goodbye = ChatMessage::Left { room: room.clone() };
                self.send_payload(peer, goodbye.encode(), Tag::Quiet);
            }
        }
        self.quitting = true;
        self.actions.push_back(super::Action::Quit);
    }

    /// The lines of `/peers`, `/users` or `/who` for `peers`, by UUID, each once.
    pub(super) fn peer_lines(&self, mut peers: Vec<Uuid>) -> Vec<PeerLine> {
        let mut rtts: Vec<(Uuid, Option<Duration>)> = self
            .endpoint
            .known_peers()
            .map(|(id, _, rtt)| (id, rtt))
            .collect();
        rtts.sort_unstable_by_key(|(id, _)| *id);
        peers.sort_unstable();
        peers.dedup();
        peers
            .into_iter()
            .map(|uuid| {
                let rtt = rtts
                    .binary_search_by_key(&uuid, |(id, _)| *id)
                    .ok()
                    .and_then(|i| rtts[i].1);
                PeerLine {
                    uuid,
                    name: self.roster.name(&uuid),
                    claimed_name: self.roster.claimed(&uuid),
                    addr: self.addr_of(&uuid),
                    via: self.endpoint.path(&uuid).map(|(_, kind)| kind.via()),
                    rtt_ms: rtt.map(millis),
                    reachable: rtt.is_some(),
                }
            })
            .collect()
    }

    fn list_peers(&mut self) {
        let mut ids: Vec<Uuid> = self.endpoint.known_peers().map(|(id, ..)| id).collect();
        ids.extend(self.addresses.peers(self.now));
        ids.extend(self.roster.named_peers().map(|(id, _)| id));
        ids.retain(|id| *id != self.me);
        let peers = self.peer_lines(ids);
        self.show(UiEvent::Peers { peers });
    }
}
