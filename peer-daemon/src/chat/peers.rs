//! What peers send: chat messages, introductions and room changes, reported under the names
//! the index vouches for (a peer's own `hello` name is only a claim, see [`super::names`]).

use proto::chat::ChatMessage;
use uuid::Uuid;

use super::delivery::Tag;
use super::roster::SessionKind;
use super::{ChatCore, HOLD_LIMIT, Held, IndexRequest, MAX_HELD};
use crate::output::UiEvent;

impl ChatCore {
    /// A payload from a peer: a chat message, or raw text from a minimal client.
    pub(super) fn on_payload(&mut self, from: Uuid, data: &[u8]) {
        let message = ChatMessage::decode(data).unwrap_or_else(|_| ChatMessage::Text {
            room: None,
            text: String::from_utf8_lossy(data).into_owned(),
            action: false,
        });
        match message {
            ChatMessage::Candidates { candidates } => {
                self.endpoint.learn_candidates(self.now, from, &candidates);
            }
            ChatMessage::Hello {
                name,
                rooms,
                candidates,
            } => {
                // From the peer itself, inside its session: an authenticated source.
                self.endpoint.learn_candidates(self.now, from, &candidates);
                // Only a claim: the index says who this is (asked once in a while).
                if self.roster.claim(from, name.as_deref(), self.now) {
                    // What the peer says is held back until the index has answered, so that
                    // it shows under the right name.
                    let until = self.now + HOLD_LIMIT;
                    self.held.entry(from).or_insert(Held {
                        events: Vec::new(),
                        until,
                    });
                    self.ask(IndexRequest::Verify(from));
                }
                for room in rooms {
                    if !self.member_joined(room.clone(), from) {
                        // Known already: it may have restarted since, so its state is synced
                        // from scratch.
                        self.resync(&room, from);
                    }
                }
                if self.roster.needs_hello(from) {
                    self.send_payload(from, self.hello().encode(), Tag::Quiet);
                }
            }
            ChatMessage::Joined { room } => {
                self.member_joined(room, from);
            }
            ChatMessage::Left { room } => {
                self.state_forget(&room, &from);
                if self.roster.remove_member(&room, &from) {
                    let event = UiEvent::Left {
                        room,
                        peer: Some(from),
                        name: None,
                        claimed_name: None,
                    };
                    self.about(from, event);
                }
            }
            ChatMessage::Received { letters } => self.on_receipt(from, &letters),
            ChatMessage::State { room, sync, sigs } => self.on_state(from, room, &sync, &sigs),
            ChatMessage::Bye => {
                self.mail.left(from);
                let mut was_known = false;
                for room in self.roster.my_rooms() {
                    self.state_forget(&room, &from);
                    was_known |= self.roster.remove_member(&room, &from);
                }
                was_known |= self
                    .roster
                    .session_number(&SessionKind::Private(from))
                    .is_some();
                if was_known {
                    let name = self.roster.name(&from);
                    self.about(from, UiEvent::PeerOffline { peer: from, name });
                }
            }
            // A newer peer's message this version does not know.
            ChatMessage::Unknown => {
                tracing::debug!(peer = %from, "ignoring an unknown chat message kind")
            }
            ChatMessage::Text { room, text, action } => {
                let kind = match &room {
                    Some(room) => {
                        self.roster.add_member(room, from);
                        SessionKind::Room(room.clone())
                    }
                    None => {
                        self.roster.open_private(from);
                        SessionKind::Private(from)
                    }
                };
                self.roster.note_message(&kind);
                let session = room.is_none().then_some(from);
                let event = UiEvent::Message {
                    id: self.next_id(),
                    action,
                    from,
                    name: None,
                    claimed_name: None,
                    text,
                    room,
                    session,
                    via: None,
                    sent_at_ms: None,
                };
                self.about(from, event);
            }
        }
    }

    /// Adds `peer` to `room`, tells the user and syncs the room's state with it, unless it
    /// was a member already; returns whether it is new.
    fn member_joined(&mut self, room: String, peer: Uuid) -> bool {
        let new = self.roster.add_member(&room, peer);
        if new {
            self.resync(&room, peer);
            let event = UiEvent::Joined {
                room,
                peer: Some(peer),
                name: None,
                claimed_name: None,
                members: None,
            };
            self.about(peer, event);
        }
        new
    }

    /// Reports an event about `peer` under the names known now (its vouched name, and any
    /// claim the index did not vouch for), or holds it back while the index is being asked
    /// who the peer is (up to [`MAX_HELD`] events; more go out as they are). The event's
    /// `name` and `claimed_name` are filled in here, when it goes out.
    pub(super) fn about(&mut self, peer: Uuid, mut event: UiEvent) {
        if let Some(held) = self.held.get_mut(&peer)
            && held.events.len() < MAX_HELD
        {
            held.events.push(event);
            return;
        }
        let (known, claim) = (self.roster.name(&peer), self.roster.claimed(&peer));
        match &mut event {
            UiEvent::Message {
                name, claimed_name, ..
            }
            | UiEvent::Joined {
                name, claimed_name, ..
            }
            | UiEvent::Left {
                name, claimed_name, ..
            } => {
                *name = known;
                *claimed_name = claim;
            }
            UiEvent::PeerOffline { name, .. } => *name = known,
            _ => {}
        }
        self.remember_received(&event);
        self.show(event);
    }

    /// Lets out what was held back about `peer`, under the names known now.
    pub(super) fn release(&mut self, peer: Uuid) {
        for event in self
            .held
            .remove(&peer)
            .map(|h| h.events)
            .unwrap_or_default()
        {
            self.about(peer, event);
        }
    }
}
