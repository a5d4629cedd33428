//! What peers send: chat messages, introductions and room changes, reported under the names
//! the index vouches for (a peer's own `hello` name is only a claim, see [`crate::names`]).

use std::time::Instant;

use proto::chat::ChatMessage;
use uuid::Uuid;

use crate::chat::SessionKind;
use crate::driver::{Driver, IndexReply, Tag};
use crate::output::UiEvent;

/// Most events about one peer held back while the index is asked who it is.
const MAX_HELD: usize = 256;

impl Driver {
    /// Adds `peer` to `room` and tells the UI, unless it was a member already.
    fn member_joined(&mut self, room: String, peer: Uuid) {
        if self.chat.add_member(&room, peer) {
            let event = UiEvent::Joined {
                room,
                peer: Some(peer),
                name: None,
                claimed_name: None,
                members: None,
            };
            self.about(peer, event);
        }
    }

    /// Reports an event about `peer` under the names known now (its vouched name, and any
    /// claim the index did not vouch for), or holds it back while the index is being asked
    /// who the peer is (up to [`MAX_HELD`] events; more go out as they are). The event's
    /// `name` and `claimed_name` are filled in here, when it goes out.
    pub(super) fn about(&mut self, peer: Uuid, mut event: UiEvent) {
        if let Some(held) = self.held.get_mut(&peer)
            && held.len() < MAX_HELD
        {
            held.push(event);
            return;
        }
        let (known, claim) = (self.chat.name(&peer), self.chat.claimed(&peer));
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
            _ => {}
        }
        self.out.emit(event);
    }

    /// A payload from a peer: a chat message, or raw text from a minimal client.
    pub(crate) fn on_chat_payload(&mut self, from: Uuid, data: &[u8]) {
        let message = ChatMessage::decode(data).unwrap_or_else(|_| ChatMessage::Text {
            room: None,
            text: String::from_utf8_lossy(data).into_owned(),
        });
        match message {
            ChatMessage::Hello { name, rooms } => {
                // Only a claim: the index says who this is (asked once in a while).
                if self.chat.claim(from, name.as_deref(), Instant::now()) {
                    // What the peer says is held back until the index has answered (at most
                    // the request timeout), so that it shows under the right name.
                    self.held.entry(from).or_default();
                    let index = self.index.clone();
                    self.tasks
                        .spawn(async move { IndexReply::Verify(from, index.lookup(from).await) });
                }
                for room in rooms {
                    self.member_joined(room, from);
                }
                if self.chat.needs_hello(from) {
                    let hello = ChatMessage::Hello {
                        name: self.chat.own_name(),
                        rooms: self.chat.my_rooms(),
                    };
                    self.send_payload(from, hello.encode(), Tag::Quiet);
                }
            }
            ChatMessage::Joined { room } => self.member_joined(room, from),
            ChatMessage::Left { room } => {
                if self.chat.remove_member(&room, &from) {
                    self.about(
                        from,
                        UiEvent::Left {
                            room,
                            peer: Some(from),
                            name: None,
                            claimed_name: None,
                        },
                    );
                }
            }
            ChatMessage::Text { room, text } => {
                let kind = match &room {
                    Some(room) => {
                        self.chat.add_member(room, from);
                        SessionKind::Room(room.clone())
                    }
                    None => {
                        self.chat.open_private(from);
                        SessionKind::Private(from)
                    }
                };
                self.chat.note_message(&kind);
                let session = room.is_none().then_some(from);
                self.about(
                    from,
                    UiEvent::Message {
                        from,
                        name: None,
                        claimed_name: None,
                        text,
                        room,
                        session,
                    },
                );
            }
        }
    }
}
