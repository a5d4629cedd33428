//! Letters for the mailbox tests: sealed as a daemon seals them, and the recipient's key read
//! from its record on the index.

use proto::identity::Identity;
use proto::mailbox::{Content, Letter, Stamp, seal};
use uuid::Uuid;

use super::Index;

/// A text letter from `from` for the key `to`, numbered `id`, sealed.
pub fn sealed_text(from: &Identity, to: &[u8; 32], id: u64, text: &str) -> Vec<u8> {
    let letter = Letter {
        to: Uuid::nil(),
        stamp: Stamp {
            id,
            at: 1_796_000_000_000 + id,
        },
        content: Content::Text {
            text: text.to_owned(),
            action: false,
        },
    };
    seal(from, to, &letter, rand::random()).expect("sealed")
}

/// The key of the peer `uuid`, as its record on `index` gives it.
pub async fn key_of(index: &Index, uuid: Uuid) -> [u8; 32] {
    let (_, record) = index.get_peer(&uuid.to_string()).await;
    let hex = record["public_key"].as_str().expect("a keyed record");
    proto::identity::parse_public_key(hex).expect("a key")
}
