//! What travels inside a reliable message: chat text for a room or a private session, and
//! the small control messages peers use to introduce themselves and announce room changes.
//! Encoded as JSON (one object per message), so the text is carried exactly, whatever it is.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::api::Candidate;

/// One application message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChatMessage {
    /// Text for a room, or for the private session with the recipient when `room` is `None`.
    Text {
        /// The room it was said in.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// The text, exactly as typed (may span lines).
        text: String,
        /// An action (`/me waves`) rather than something said.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        action: bool,
    },
    /// Who the sender is and which rooms it is in; sent on first contact.
    Hello {
        /// Display name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// Rooms the sender is a member of.
        #[serde(default)]
        rooms: Vec<String>,
        /// Where the sender may be reached (see `docs/protocol.md`, "Paths"): the receiver
        /// probes these at once, while the sender probes the receiver's, so both sides' NATs
        /// open together. Only the first [`crate::api::MAX_CANDIDATES`] count.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        candidates: Vec<Candidate>,
    },
    /// The sender's candidates changed (a new reflexive address, a new relay allocation).
    Candidates {
        /// Where the sender may be reached now.
        candidates: Vec<Candidate>,
    },
    /// The sender joined `room`.
    Joined {
        /// The room.
        room: String,
    },
    /// The sender left `room`.
    Left {
        /// The room.
        room: String,
    },
    /// The sender is going offline (it quit); it has left its rooms too.
    Bye,
    /// The sender took these letters of ours from its mailbox (see [`crate::mailbox`]): their
    /// delivery receipt, sent directly when we are both online.
    Received {
        /// The letters, as their seals named them.
        letters: Vec<crate::mailbox::Stamp>,
    },
    /// Room state sync (see docs/protocol.md, "Room state"): one Automerge sync message about
    /// `room`'s shared key-value state, with the signatures of the changes it carries.
    State {
        /// The room.
        room: String,
        /// The Automerge sync message (base64 on the wire).
        #[serde(with = "b64")]
        sync: Vec<u8>,
        /// For each change carried: its 32-byte hash, then its author's 64-byte Ed25519
        /// signature (base64 on the wire; absent when there are none).
        #[serde(default, with = "b64", skip_serializing_if = "Vec::is_empty")]
        sigs: Vec<u8>,
    },
    /// A kind this version does not know (a newer peer's): ignored, never shown as text.
    #[serde(other)]
    Unknown,
}

/// Bytes as standard padded base64 in JSON.
mod b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

/// A payload that is not a chat message.
#[derive(Debug, Error)]
#[error("not a peerlink chat message: {0}")]
pub struct ChatDecodeError(#[from] serde_json::Error);

impl ChatMessage {
    /// Serialises for [`crate::Endpoint::send`].
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("chat messages serialise")
    }

    /// Parses a received payload.
    pub fn decode(bytes: &[u8]) -> Result<Self, ChatDecodeError> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

/// Whether `room` is a valid room name: 1 to 32 of `a-z 0-9 - _`.
pub fn valid_room(room: &str) -> bool {
    (1..=32).contains(&room.len())
        && room
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// The room every daemon joins at start-up.
pub const LOBBY: &str = "lobby";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_any_text() {
        let text = "multi\nline \"quoted\" \\ back ✓ 日本 \u{0}".to_owned();
        let message = ChatMessage::Text {
            room: Some(LOBBY.into()),
            text,
            action: false,
        };
        assert_eq!(ChatMessage::decode(&message.encode()).unwrap(), message);
        assert!(ChatMessage::decode(b"\xff junk").is_err());
        let action = ChatMessage::Text {
            room: None,
            text: "waves".into(),
            action: true,
        };
        assert_eq!(ChatMessage::decode(&action.encode()).unwrap(), action);
        assert_eq!(
            ChatMessage::decode(br#"{"kind":"text","text":"old peers send no action"}"#).unwrap(),
            ChatMessage::Text {
                room: None,
                text: "old peers send no action".into(),
                action: false
            }
        );
        let state = ChatMessage::State {
            room: "rust".into(),
            sync: vec![0x43, 0, 255],
            sigs: vec![],
        };
        let encoded = state.encode();
        assert_eq!(
            std::str::from_utf8(&encoded).unwrap(),
            r#"{"kind":"state","room":"rust","sync":"QwD/"}"#
        );
        assert_eq!(ChatMessage::decode(&encoded).unwrap(), state);
        assert!(
            ChatMessage::decode(br#"{"kind":"state","room":"r","sync":"not base64!"}"#).is_err()
        );
        assert_eq!(
            ChatMessage::decode(&ChatMessage::Bye.encode()).unwrap(),
            ChatMessage::Bye
        );
        assert_eq!(
            ChatMessage::decode(br#"{"kind":"from_the_future","x":1}"#).unwrap(),
            ChatMessage::Unknown,
            "a newer peer's kind is not text to show"
        );
    }

    #[test]
    fn room_names() {
        assert!(valid_room("lobby") && valid_room("rust-dev_2"));
        assert!(
            !valid_room("")
                && !valid_room("Lobby")
                && !valid_room("a b")
                && !valid_room(&"x".repeat(33))
        );
    }
}
