//! One room's state: the Automerge document, the signatures of its changes, what its keys
//! hold, and the sync with each member.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use automerge::legacy::Key;
use automerge::sync::{self, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, Change, ChangeHash, ObjId, ROOT, ReadDoc, ScalarValue, Value};
use proto::identity::Identity;
use uuid::Uuid;

use super::{
    Entry, Limits, QUIET_AFTER_REJECT, ROUND_EVERY, Reject, STALL_AFTER, StateError, Update,
    signed_message, valid_key,
};

use super::check::{author_of, parse_sigs, plain_changes_only};

/// The sync with one member.
struct PeerSync {
    state: sync::State,
    /// When a sync message to it was given up (it is unreachable), unless heard from since.
    failed_at: Option<Instant>,
    /// Not synced with until then (it sent something we refused).
    quiet_until: Option<Instant>,
    /// Both sides' heads when we last sent, and how many messages in a row went out with
    /// them unchanged: the exchange is going round in circles when that grows.
    last_heads: Option<(Vec<ChangeHash>, Option<Vec<ChangeHash>>)>,
    idle_sends: u32,
}

/// Messages in a row with neither side's heads moving before the exchange counts as stuck: it
/// pauses, and starts afresh after [`STALL_AFTER`]. An honest exchange needs two or three.
const MAX_IDLE_SENDS: u32 = 4;

impl PeerSync {
    fn new() -> Self {
        PeerSync {
            state: sync::State::new(),
            failed_at: None,
            quiet_until: None,
            last_heads: None,
            idle_sends: 0,
        }
    }
}

/// One room's state; see the module documentation of [`super`].
pub struct RoomDoc {
    pub(super) room: String,
    actor: ActorId,
    pub(super) limits: Limits,
    pub(super) doc: Automerge,
    /// The signature of every change in the document.
    pub(super) sigs: HashMap<ChangeHash, [u8; 64]>,
    /// Signatures heard for changes not in the document yet.
    pub(super) pending: HashMap<ChangeHash, [u8; 64]>,
    /// What the keys hold, kept in step with the document.
    view: BTreeMap<String, Entry>,
    /// Bytes of the changes in the document.
    pub(super) history: usize,
    peers: HashMap<Uuid, PeerSync>,
    /// The document's heads when it was last saved.
    pub(super) saved: Vec<ChangeHash>,
    /// When the next anti-entropy round is due, and which member's turn it is.
    next_round: Option<Instant>,
    rotation: usize,
}

impl RoomDoc {
    /// An empty state for `room`, written to as `identity`.
    pub fn new(room: &str, identity: &Identity, limits: Limits) -> Self {
        let actor = ActorId::from(&identity.public_key()[..]);
        RoomDoc {
            room: room.to_owned(),
            doc: Automerge::new().with_actor(actor.clone()),
            actor,
            limits,
            sigs: HashMap::new(),
            pending: HashMap::new(),
            view: BTreeMap::new(),
            history: 0,
            peers: HashMap::new(),
            saved: Vec::new(),
            next_round: None,
            rotation: 0,
        }
    }

    /// The state as stored: pieces of Automerge data with their signatures, in order. The
    /// store is ours, so nothing is checked again but that it loads.
    pub fn load(room: &str, identity: &Identity, limits: Limits, pieces: super::Pieces) -> Self {
        let mut doc = RoomDoc::new(room, identity, limits);
        for (data, sigs) in pieces {
            let loaded = catch_unwind(AssertUnwindSafe(|| doc.doc.load_incremental(&data)));
            if !matches!(loaded, Ok(Ok(_))) {
                tracing::warn!(room, "a stored piece of room state does not load; skipped");
                continue;
            }
            if let Some(records) = parse_sigs(&sigs, usize::MAX) {
                doc.sigs.extend(records);
            }
        }
        let changes = doc.doc.get_changes(&[]);
        doc.history = changes.iter().map(|c| c.raw_bytes().len()).sum();
        let keys: Vec<String> = doc.doc.keys(ROOT).collect();
        for key in keys {
            doc.refresh(&key);
        }
        doc.saved = doc.doc.get_heads();
        doc
    }

    /// What `key` holds.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.view.get(key)
    }

    /// Every key, in order.
    pub fn entries(&self) -> Vec<(String, Entry)> {
        self.view
            .iter()
            .map(|(k, e)| (k.clone(), e.clone()))
            .collect()
    }

    /// Sets or unsets `key`, signing the change as `identity`.
    pub fn put(
        &mut self,
        identity: &Identity,
        key: &str,
        value: Option<&str>,
    ) -> Result<Option<Update>, StateError> {
        if !valid_key(key, self.limits.key) {
            return Err(StateError::BadKey(key.to_owned()));
        }
        if let Some(value) = value
            && value.len() > self.limits.value
        {
            return Err(StateError::ValueTooLong {
                len: value.len(),
                max: self.limits.value,
            });
        }
        let current = self.view.get(key);
        let unchanged = match (current, value) {
            (None, None) => true,
            (Some(entry), Some(value)) => entry.value == value && entry.author == identity.uuid(),
            _ => false,
        };
        if unchanged {
            return Ok(None);
        }
        if current.is_none() && self.view.len() >= self.limits.keys {
            return Err(StateError::TooManyKeys {
                room: self.room.clone(),
                max: self.limits.keys,
            });
        }
        // A change costs its value, its key and about a hundred bytes of header and heads.
        let estimate = key.len() + value.map_or(0, str::len) + 160;
        if self.sigs.len() + 1 > self.limits.changes
            || self.history + estimate > self.limits.history
        {
            return Err(self.full());
        }
        let mut tx = self.doc.transaction();
        let done = match value {
            Some(value) => tx.put(ROOT, key, value),
            None => tx.delete(ROOT, key),
        };
        if done.is_err() {
            tx.rollback();
            return Ok(None);
        }
        let (Some(hash), _) = tx.commit() else {
            return Ok(None);
        };
        let signature = identity.sign(&signed_message(&self.room, &hash.0));
        self.sigs.insert(hash, signature);
        if let Some(change) = self.doc.get_last_local_change() {
            self.history += change.raw_bytes().len();
        }
        Ok(self.refresh(key).then(|| self.update(key, identity.uuid())))
    }

    /// The report of `key`'s current value, changed by `author`.
    fn update(&self, key: &str, author: Uuid) -> Update {
        let entry = self.view.get(key).cloned();
        Update {
            room: self.room.clone(),
            key: key.to_owned(),
            author: entry.as_ref().map_or(author, |e| e.author),
            entry,
        }
    }

    fn full(&self) -> StateError {
        StateError::HistoryFull {
            room: self.room.clone(),
            changes: self.sigs.len(),
            bytes: self.history,
            max_changes: self.limits.changes,
            max_bytes: self.limits.history,
        }
    }

    /// Reads `key` from the document into the view; returns whether it changed.
    fn refresh(&mut self, key: &str) -> bool {
        let entry = match self.doc.get(ROOT, key) {
            Ok(Some((Value::Scalar(value), ObjId::Id(_, actor, _)))) => match value.as_ref() {
                ScalarValue::Str(text) => author_of(&actor).map(|author| Entry {
                    value: text.to_string(),
                    author,
                }),
                _ => None,
            },
            _ => None,
        };
        let old = match &entry {
            Some(entry) => self.view.insert(key.to_owned(), entry.clone()),
            None => self.view.remove(key),
        };
        old != entry
    }

    /// A sync message for `peer`, if there is anything to say.
    pub fn generate(&mut self, peer: Uuid, now: Instant) -> Option<(Vec<u8>, Vec<u8>)> {
        let sync = self.peers.entry(peer).or_insert_with(PeerSync::new);
        if sync.quiet_until.is_some_and(|until| now < until) {
            return None;
        }
        let heads = (self.doc.get_heads(), sync.state.their_heads.clone());
        if sync.last_heads.as_ref() == Some(&heads) {
            if sync.idle_sends >= MAX_IDLE_SENDS {
                // Going round in circles (whatever the cause): a fresh round later.
                sync.failed_at.get_or_insert(now);
                return None;
            }
        } else {
            sync.idle_sends = 0;
        }
        let before = sync.state.sent_hashes.len();
        let sent_before: BTreeSet<ChangeHash> = if before == 0 {
            BTreeSet::new()
        } else {
            sync.state.sent_hashes.clone()
        };
        let mut message = self.doc.generate_sync_message(&mut sync.state)?;
        sync.idle_sends += 1;
        sync.last_heads = Some(heads);
        // Without the flags a peer takes us for a first-version peer, and sends plain changes
        // only (see `plain_changes_only`); we send nothing else either.
        message.flags = None;
        let mut sigs = Vec::new();
        for hash in sync.state.sent_hashes.difference(&sent_before) {
            match self.sigs.get(hash) {
                Some(signature) => {
                    sigs.extend_from_slice(&hash.0);
                    sigs.extend_from_slice(signature);
                }
                None => tracing::warn!(room = %self.room, "a change without its signature"),
            }
        }
        Some((message.encode(), sigs))
    }

    /// Starts a fresh round with `peer`: it says what it has from scratch.
    pub fn restart(&mut self, peer: Uuid) {
        let sync = self.peers.entry(peer).or_insert_with(PeerSync::new);
        let quiet_until = sync.quiet_until;
        *sync = PeerSync::new();
        sync.quiet_until = quiet_until;
    }

    /// A sync message to `peer` was given up: a fresh round follows after [`STALL_AFTER`].
    pub fn failed(&mut self, peer: Uuid, now: Instant) {
        if let Some(sync) = self.peers.get_mut(&peer) {
            // What the lost message carried counts as sent for Automerge until its sync state
            // is forgotten: without this, those changes were never offered again.
            sync.state = sync::State::new();
            sync.failed_at = Some(now);
        }
    }

    /// Forgets the sync with `peer`.
    pub fn forget(&mut self, peer: &Uuid) {
        self.peers.remove(peer);
    }

    /// Whether the room has no state at all (then it starts no rounds: a member that has
    /// some starts them, and answers are always given).
    pub fn is_empty(&self) -> bool {
        self.doc.get_heads().is_empty()
    }

    /// Members due a fresh round at `now`: those a sync message to failed (after
    /// [`STALL_AFTER`]), and every [`ROUND_EVERY`] the next member in turn (anti-entropy: one
    /// member at a time, so a large room costs no more than a small one).
    pub fn due(&mut self, members: &[Uuid], now: Instant) -> Vec<Uuid> {
        // Whoever is no member (any more, or the room was left) is not synced with, and its
        // timers must not keep waking us.
        self.peers.retain(|peer, _| members.contains(peer));
        if members.is_empty() {
            self.next_round = None;
        }
        if self.is_empty() || members.is_empty() {
            return Vec::new();
        }
        let calm = |sync: &PeerSync| sync.quiet_until.is_none_or(|until| until <= now);
        let mut due: Vec<Uuid> = members
            .iter()
            .filter(|peer| {
                self.peers.get(peer).is_some_and(|sync| {
                    calm(sync) && sync.failed_at.is_some_and(|at| at + STALL_AFTER <= now)
                })
            })
            .copied()
            .collect();
        match self.next_round {
            Some(at) if at > now => {}
            Some(_) => {
                self.next_round = Some(now + ROUND_EVERY);
                let peer = members[self.rotation % members.len()];
                self.rotation = self.rotation.wrapping_add(1);
                if !due.contains(&peer) && self.peers.get(&peer).is_none_or(calm) {
                    due.push(peer);
                }
            }
            None => self.next_round = Some(now + ROUND_EVERY),
        }
        due
    }

    /// When [`RoomDoc::due`] may next name a member.
    pub fn next_due(&self) -> Option<Instant> {
        if self.is_empty() {
            return None;
        }
        let stalls = self.peers.values().filter_map(|sync| {
            let stall = sync.failed_at? + STALL_AFTER;
            Some(sync.quiet_until.map_or(stall, |until| stall.max(until)))
        });
        stalls.chain(self.next_round).min()
    }

    /// A sync message from `peer`: the keys that changed, or why nothing of it was kept.
    pub fn receive(
        &mut self,
        peer: Uuid,
        now: Instant,
        data: &[u8],
        sigs: &[u8],
    ) -> Result<Vec<Update>, Reject> {
        if self
            .peers
            .get(&peer)
            .and_then(|sync| sync.quiet_until)
            .is_some_and(|until| now < until)
        {
            return Err(Reject::Quiet);
        }
        let result = self.apply(peer, data, sigs);
        if let Err(reason) = result {
            // Started afresh once the member is listened to again.
            let sync = self.peers.entry(peer).or_insert_with(PeerSync::new);
            *sync = PeerSync::new();
            sync.quiet_until = Some(now + QUIET_AFTER_REJECT);
            tracing::debug!(room = %self.room, %peer, reason = reason.as_str(), "room state refused");
        }
        result
    }

    /// [`RoomDoc::receive`] once the member is listened to: all of the message, or none.
    fn apply(&mut self, peer: Uuid, data: &[u8], sigs: &[u8]) -> Result<Vec<Update>, Reject> {
        let message = sync::Message::decode(data).map_err(|_| Reject::Malformed)?;
        if !plain_changes_only(&message) {
            return Err(Reject::Malformed);
        }
        let records = parse_sigs(sigs, self.limits.changes).ok_or(Reject::Malformed)?;
        if self.pending.len() + records.len() > 2 * self.limits.changes {
            self.pending.clear();
        }
        for (hash, signature) in records {
            if !self.sigs.contains_key(&hash) {
                self.pending.insert(hash, signature);
            }
        }
        let before = self.doc.get_heads();
        let sync = self.peers.entry(peer).or_insert_with(PeerSync::new);
        if sync.idle_sends < MAX_IDLE_SENDS {
            // Heard from: no fresh round needed (unless the exchange is paused, going round
            // in circles; then only a fresh round ends the pause).
            sync.failed_at = None;
        }
        let state = &mut sync.state;
        let doc = &mut self.doc;
        let applied = catch_unwind(AssertUnwindSafe(|| {
            doc.receive_sync_message(state, message)
        }));
        let checked = match applied {
            Ok(Ok(())) => self.check_new(&before),
            Ok(Err(_)) | Err(_) => Err(Reject::Malformed),
        };
        match checked {
            Ok(new) => Ok(self.accept(new)),
            Err(reason) => {
                self.undo(&before);
                Err(reason)
            }
        }
    }

    /// Keeps checked changes: their signatures, their size, and the keys they touched.
    fn accept(&mut self, new: Vec<(Change, [u8; 64])>) -> Vec<Update> {
        let mut touched: BTreeMap<String, Uuid> = BTreeMap::new();
        for (change, signature) in new {
            let hash = change.hash();
            self.pending.remove(&hash);
            self.sigs.insert(hash, signature);
            self.history += change.raw_bytes().len();
            let author = author_of(change.actor_id()).unwrap_or_default();
            for op in change.decode().operations {
                if let Key::Map(key) = op.key {
                    touched.insert(key.to_string(), author);
                }
            }
        }
        touched
            .into_iter()
            .filter_map(|(key, author)| self.refresh(&key).then(|| self.update(&key, author)))
            .collect()
    }

    /// Takes the document back to `before` (what a refused message applied is dropped).
    fn undo(&mut self, before: &[ChangeHash]) {
        let forked = catch_unwind(AssertUnwindSafe(|| self.doc.fork_at(before)));
        let mut doc = match forked {
            Ok(Ok(doc)) => doc,
            _ => {
                // Rebuilt from the changes we signed or checked, which are the ones we keep.
                let mut doc = Automerge::new();
                let kept: Vec<Change> = self
                    .doc
                    .get_changes(&[])
                    .into_iter()
                    .filter(|c| self.sigs.contains_key(&c.hash()))
                    .collect();
                if doc.apply_changes(kept).is_err() {
                    tracing::warn!(room = %self.room, "room state rebuilt empty");
                    doc = Automerge::new();
                }
                doc
            }
        };
        doc.set_actor(self.actor.clone());
        self.doc = doc;
    }
}
