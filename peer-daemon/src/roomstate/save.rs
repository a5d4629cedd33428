//! What a room's state asks to have stored: the changes taken since the last time, or the
//! whole state to store in place of many pieces.

use super::Saved;
use super::check::SIG_RECORD;
use super::doc::RoomDoc;

impl RoomDoc {
    /// The changes to store since the last call, if any.
    pub fn take_save(&mut self) -> Option<Saved> {
        let heads = self.doc.get_heads();
        if heads == self.saved {
            return None;
        }
        let changes = self.doc.get_changes(&self.saved);
        self.saved = heads;
        let mut data = Vec::new();
        let mut sigs = Vec::new();
        for change in &changes {
            data.extend_from_slice(change.raw_bytes());
            if let Some(signature) = self.sigs.get(&change.hash()) {
                sigs.extend_from_slice(&change.hash().0);
                sigs.extend_from_slice(signature);
            }
        }
        (!data.is_empty()).then(|| Saved {
            room: self.room.clone(),
            data,
            sigs,
            replace: false,
        })
    }

    /// The whole state, to store in place of the pieces it was loaded from.
    pub fn save_all(&self) -> Saved {
        let mut sigs = Vec::with_capacity(self.sigs.len() * SIG_RECORD);
        for (hash, signature) in &self.sigs {
            sigs.extend_from_slice(&hash.0);
            sigs.extend_from_slice(signature);
        }
        Saved {
            room: self.room.clone(),
            data: self.doc.save(),
            sigs,
            replace: true,
        }
    }
}
