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
    /// `/block <name>` (true) or `/unblock <name>`.
    Block(bool),
}

impl ChatCore {
    pub(super) fn command(&mut self, command: Command) {
        match command {
            Command::Msg { to, text } => self.with_peer(to, NameAction::Msg(text)),
            Command::Say { text } => self.say(text, false),
            Command::Me { text } => self.say(text, true),
            Command::RoomMsg { room, text } if self.roster.in_room(&room) => {
                self.send_room(room, text, false)
            }
            Command::RoomMsg { room, .. } => {
                self.error(format!("you are not in #{room}; /join {room} first"))
            }
            Command::Fork { peer } => self.with_peer(peer, NameAction::Fork),
            Command::Block { peer } => self.with_peer(peer, NameAction::Block(true)),
            Command::Unblock { peer } => self.with_peer(peer, NameAction::Block(false)),
            Command::Sessions => {
                let sessions = self.roster.session_lines();
                self.show(UiEvent::Sessions { sessions })
            }
            Command::Switch { target } => match self.roster.find_session(&target) {
                Some(n) => self.switch(n),
                None => self.error(format!("no session `{target}`; /sessions lists them")),
            },
            Command::Lobby => match self.roster.find_session(LOBBY) {
                Some(n) => self.switch(n),
                // Left earlier: `/lobby` takes us back in.
                None => self.join(LOBBY.to_owned()),
            },
            Command::Close { target } => self.close(target),
            Command::Nick { name } => self.nick(name),
            Command::History { count } => self.page_back(count),
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
            Command::Set { room, key, value } => self.set_command(room, key, Some(value)),
            Command::Unset { room, key } => self.set_command(room, key, None),
            Command::Get { room, key } => self.get_command(room, key, "get"),
            Command::State { room } => self.list_command(room),
            Command::Topic { text: Some(text) } => {
                self.set_command(None, super::TOPIC.to_owned(), Some(text))
            }
            Command::Topic { text: None } => self.get_command(None, super::TOPIC.to_owned(), "get"),
            // The driver answers these: the counters of NAT traversal and the local addresses
            // live there.
            Command::Stats | Command::WhoAmI => {}
            Command::Help => self.show(UiEvent::help()),
            Command::Quit => self.quit(),
            Command::Nothing => {}
        }
    }

    pub(super) fn active_room(&self) -> Option<String> {
        match self.roster.active() {
            SessionKind::Room(room) => Some(room),
            SessionKind::Private(_) => None,
        }
    }

    fn say(&mut self, text: String, action: bool) {
        match self.roster.active() {
            SessionKind::Private(peer) => self.send_private(peer, text, action),
            SessionKind::Room(room) => self.send_room(room, text, action),
        }
    }

    fn switch(&mut self, n: usize) {
        let Some((label, unread)) = self.roster.activate(n) else {
            return;
        };
        self.history_cursor = None;
        self.show(UiEvent::Info {
            message: format!("now talking in {label}"),
        });
        if unread > 0 {
            // What arrived while the session was in the background, instead of just a count.
            let session = self.roster.active();
            self.actions.push_back(super::Action::History {
                query: crate::history::HistoryQuery {
                    session: Some(session),
                    before: None,
                    limit: unread.min(super::UNREAD_LINES),
                },
                reason: "unread",
            });
        }
    }

    /// `/close [n|peer]`: closes a private session; rooms are left with `/leave`.
    fn close(&mut self, target: Option<String>) {
        let n = match &target {
            Some(target) => match self.roster.find_session(target) {
                Some(n) => n,
                None => {
                    return self.error(format!("no session `{target}`; /sessions lists them"));
                }
            },
            None => match self.roster.session_number(&self.roster.active()) {
                Some(n) => n,
                None => return,
            },
        };
        match self.roster.session_kind(n) {
            Some(SessionKind::Private(peer)) => {
                let label = self.roster.kind_label(&SessionKind::Private(peer));
                let was_active = self.roster.active() == SessionKind::Private(peer);
                self.roster.close_private(peer);
                self.history_cursor = None;
                let mut message = format!("closed {label}");
                if was_active {
                    message += &format!(
                        "; now talking in {}",
                        self.roster.kind_label(&self.roster.active())
                    );
                }
                self.show(UiEvent::Info { message });
            }
            Some(SessionKind::Room(room)) => self.error(format!(
                "#{room} is a room: /leave {room} leaves it (/close closes private sessions)"
            )),
            None => {}
        }
    }

    /// `/nick <name>`: the index vouches for names, so the new one must be registered there
    /// first; peers hear of it once it is.
    fn nick(&mut self, name: String) {
        if self.roster.own_name().as_deref() == Some(name.as_str()) {
            return self.show(UiEvent::Info {
                message: format!("you are already called {name}"),
            });
        }
        match &self.index {
            super::IndexStatus::Online => self.actions.push_back(super::Action::Rename(name)),
            // Without an index the name is ours to choose: the LAN announcement carries it.
            super::IndexStatus::Disabled => self.renamed(name),
            _ => self.error(format!(
                "cannot change your name while the index is unreachable (it vouches for names); try /nick {name} again once it is back"
            )),
        }
    }

    /// The index registered our new name: peers we know hear of it (their `hello` check asks
    /// the index, which now vouches for it).
    pub(super) fn renamed(&mut self, name: String) {
        let old = self.roster.own_name();
        self.roster.set_own_name(Some(name.clone()));
        self.show(UiEvent::Renamed {
            peer: None,
            old,
            name: Some(name),
        });
        let peers: Vec<Uuid> = self.endpoint.known_peers().map(|(id, ..)| id).collect();
        let hello = self.hello().encode();
        for peer in peers {
            if !self.roster.needs_hello(peer) {
                self.send_payload(peer, hello.clone(), Tag::Quiet);
            }
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
            NameAction::Msg(text) => self.send_private(peer, text, false),
            NameAction::Fork => {
                let n = self.roster.open_private(peer);
                self.switch(n);
            }
            NameAction::Block(blocked) => self.block(peer, blocked),
        }
    }

    fn send_private(&mut self, peer: Uuid, text: String, action: bool) {
        let id = self.next_id();
        self.show(UiEvent::Sent {
            to: Some(peer),
            room: None,
            id,
        });
        self.remember_sent(id, SessionKind::Private(peer), &text, action);
        self.draft(id, &text, action);
        let message = ChatMessage::Text {
            room: None,
            text,
            action,
        };
        self.send_chat(peer, &message, Tag::Direct(id));
    }

    fn send_room(&mut self, room: String, text: String, action: bool) {
        let id = self.next_id();
        let members = self.roster.members(&room);
        self.show(UiEvent::Sent {
            to: None,
            room: Some(room.clone()),
            id,
        });
        self.remember_sent(id, SessionKind::Room(room.clone()), &text, action);
        self.start_group(id, room.clone(), members.len());
        let message = ChatMessage::Text {
            room: Some(room),
            text,
            action,
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
        self.unsynced_leaves.remove(&room);
        if self.index.answers() {
            self.ask(IndexRequest::Join(room));
        } else {
            self.joined_shown.insert(room.clone());
            self.show(UiEvent::Joined {
                room: room.clone(),
                peer: None,
                name: None,
                claimed_name: None,
                members: Some(0),
            });
            self.show_topic(&room);
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
        self.index_rooms.remove(&room);
        self.joined_shown.remove(&room);
        if self.index.answers() {
            self.ask(IndexRequest::Leave(room));
        } else {
            // Told to the index once it answers again.
            self.unsynced_leaves.insert(room.clone());
            self.show(UiEvent::Left {
                room,
                peer: None,
                name: None,
                claimed_name: None,
            });
        }
    }

    /// Tells every peer we talk to (room members, private sessions) that we are going offline
    /// (best effort: nobody waits for the acknowledgements), then asks the driver to stop.
    /// A `bye` means leaving every room too, so one goodbye per peer is enough.
    fn quit(&mut self) {
        if self.quitting {
            return;
        }
        let mut peers: Vec<Uuid> = self
            .roster
            .my_rooms()
            .iter()
            .flat_map(|room| self.roster.members(room))
            .collect();
        peers.extend(self.endpoint.known_peers().map(|(id, ..)| id));
        peers.sort_unstable();
        peers.dedup();
        let goodbye = ChatMessage::Bye.encode();
        for peer in peers {
            if peer != self.me && self.addr_of(&peer).is_some() {
                self.send_payload(peer, goodbye.clone(), Tag::Quiet);
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
                let you = uuid == self.me;
                PeerLine {
                    uuid,
                    you,
                    name: if you {
                        self.roster.own_name()
                    } else {
                        self.roster.name(&uuid)
                    },
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
