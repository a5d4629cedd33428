//! What a member's sync message must be before anything of it is kept: plain change chunks
//! only, each change signed by its actor for this room, of the one shape we write, and within
//! the room's limits (see the module documentation of [`super`]).

use std::panic::{AssertUnwindSafe, catch_unwind};

use automerge::legacy::{Key, ObjectId, OpType};
use automerge::sync;
use automerge::{ActorId, Change, ChangeHash, ROOT, ReadDoc, ScalarValue};
use proto::identity::{uuid_for_key, verify_raw};
use uuid::Uuid;

use super::doc::RoomDoc;
use super::{Reject, signed_message, valid_key};

/// Bytes of one signature record: the change hash, then the signature.
pub(super) const SIG_RECORD: usize = 32 + 64;
/// How every Automerge chunk begins: magic bytes, a checksum, the chunk's type.
const CHUNK_MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
/// The type of a plain (uncompressed) change chunk.
const CHANGE_CHUNK: u8 = 1;

impl RoomDoc {
    /// The changes applied since `before`, each checked, with their signatures and sizes.
    pub(super) fn check_new(
        &self,
        before: &[ChangeHash],
    ) -> Result<Vec<(Change, [u8; 64])>, Reject> {
        let new = catch_unwind(AssertUnwindSafe(|| self.doc.get_changes(before)))
            .map_err(|_| Reject::Malformed)?;
        let bytes: usize = new.iter().map(|c| c.raw_bytes().len()).sum();
        if self.sigs.len() + new.len() > self.limits.changes
            || self.history + bytes > self.limits.history
        {
            return Err(Reject::Full);
        }
        let mut checked = Vec::with_capacity(new.len());
        for change in new {
            let signature = self.check(&change)?;
            checked.push((change, signature));
        }
        let keys = self.doc.length(ROOT);
        if keys > self.limits.keys {
            return Err(Reject::Full);
        }
        Ok(checked)
    }

    /// One change: signed by its actor for this room, and of the shape we write.
    fn check(&self, change: &Change) -> Result<[u8; 64], Reject> {
        let hash = change.hash();
        let signature = self
            .sigs
            .get(&hash)
            .or_else(|| self.pending.get(&hash))
            .ok_or(Reject::Signature)?;
        let key: [u8; 32] = change
            .actor_id()
            .to_bytes()
            .try_into()
            .map_err(|_| Reject::Signature)?;
        verify_raw(&key, &signed_message(&self.room, &hash.0), signature)
            .map_err(|_| Reject::Signature)?;
        if change.message().is_some()
            || !change.extra_bytes().is_empty()
            || change.raw_bytes().len() > self.limits.key + self.limits.value + 1024
        {
            return Err(Reject::Shape);
        }
        let expanded =
            catch_unwind(AssertUnwindSafe(|| change.decode())).map_err(|_| Reject::Shape)?;
        if expanded.operations.is_empty() || expanded.operations.len() > 16 {
            return Err(Reject::Shape);
        }
        for op in &expanded.operations {
            let Key::Map(key) = &op.key else {
                return Err(Reject::Shape);
            };
            let shape = op.obj == ObjectId::Root
                && !op.insert
                && valid_key(key, self.limits.key)
                && match &op.action {
                    OpType::Put(ScalarValue::Str(text)) => text.len() <= self.limits.value,
                    OpType::Delete => true,
                    _ => false,
                };
            if !shape {
                return Err(Reject::Shape);
            }
        }
        Ok(*signature)
    }
}

/// Whether `message` is what we send: the first version of Automerge's sync message, without
/// flags, each entry of its change list exactly one plain change chunk. Whole documents and
/// compressed changes are refused before Automerge sees them: both are DEFLATE data that
/// Automerge inflates without a bound (a megabyte can become a gigabyte) before anything could
/// be checked.
pub(super) fn plain_changes_only(message: &sync::Message) -> bool {
    message.version == sync::MessageVersion::V1
        && message.flags.is_none()
        && message.changes.iter().all(|chunk| {
            let Some(rest) = chunk.strip_prefix(&CHUNK_MAGIC[..]) else {
                return false;
            };
            let Some((&kind, mut body)) = rest.get(4..).and_then(<[u8]>::split_first) else {
                return false;
            };
            // The body's length, LEB128, then exactly that many bytes.
            let mut len: u64 = 0;
            for shift in (0..64).step_by(7) {
                let Some((&byte, after)) = body.split_first() else {
                    return false;
                };
                body = after;
                len |= u64::from(byte & 0x7f) << shift;
                if byte & 0x80 == 0 {
                    return kind == CHANGE_CHUNK && len == body.len() as u64;
                }
            }
            false
        })
}

/// The member an actor stands for: the UUID of the Ed25519 key it is.
pub(super) fn author_of(actor: &ActorId) -> Option<Uuid> {
    let key: [u8; 32] = actor.to_bytes().try_into().ok()?;
    Some(uuid_for_key(&key))
}

/// Signature records (hash, signature), at most `max` of them; `None` when they are not.
pub(super) fn parse_sigs(bytes: &[u8], max: usize) -> Option<Vec<(ChangeHash, [u8; 64])>> {
    if !bytes.len().is_multiple_of(SIG_RECORD) || bytes.len() / SIG_RECORD > max {
        return None;
    }
    Some(
        bytes
            .chunks_exact(SIG_RECORD)
            .map(|record| {
                let (hash, signature) = record.split_at(32);
                (
                    ChangeHash(hash.try_into().expect("32 bytes")),
                    signature.try_into().expect("64 bytes"),
                )
            })
            .collect(),
    )
}
