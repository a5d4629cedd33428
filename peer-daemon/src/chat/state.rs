//! Shared room state in the chat: `/set`, `/get`, `/unset`, `/state`, `/topic`, the control
//! API's reads and writes, and the sync with each room's members (see [`crate::roomstate`]).
//!
//! A room's state is synced with a member when it joins or says `hello` again (it may have
//! restarted), when either side changes something, when a message to it was given up (a
//! fresh round follows), and with one member in turn every [`crate::roomstate::ROUND_EVERY`]
//! as anti-entropy. Rounds are started by members that hold some state (an empty one has
//! nothing to offer and is found by the others); answers are always given. Only members are
//! synced with, and sync messages from anyone else are dropped and counted.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use proto::chat::{ChatMessage, valid_room};
use uuid::Uuid;

use super::delivery::Tag;
use super::{Action, ChatCore};
use crate::history::Change;
use crate::output::{StateLine, UiEvent};
use crate::roomstate::{Entry, StateError, Update};

/// The key `/topic` sets, shown on `/join` and in `/rooms`.
pub const TOPIC: &str = "topic";

/// Sync messages on their way to each member: one at a time per member (until the reliable
/// layer acknowledges or gives it up), so a burst of writes goes out as one message per round
/// trip, not one per write; what comes up meanwhile waits, one entry per room.
#[derive(Debug, Default)]
pub(super) struct Outbox {
    sending: HashMap<Uuid, u32>,
    waiting: HashMap<Uuid, BTreeSet<String>>,
}

/// Why a read or write of room state was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    /// We are not in the room: its state is not ours to read or write.
    #[error("you are not in #{0}; /join {0} first (only a room's members read or write its state)")]
    NotInRoom(String),
    /// The active session is a private one.
    #[error("the active session is not a room; /switch to a room, or /join one")]
    NoRoom,
    /// The write itself was refused.
    #[error(transparent)]
    State(#[from] StateError),
}

impl ChatCore {
    /// Sets (`Some`) or unsets (`None`) `key` in `room`'s state, for the control API: the
    /// key as it is afterwards, or why not.
    pub fn state_put(
        &mut self,
        now: Instant,
        room: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<StateLine, SetError> {
        self.now = now;
        self.member_of(room)?;
        let update = self.states.put(room, key, value)?;
        if let Some(update) = update {
            self.state_changed(update, "changed");
            self.sync_members(room, None);
        }
        Ok(self.state_line(key, self.states.get(room, key).cloned()))
    }

    /// `room`'s keys (or only `key`), for the control API.
    pub fn state_read(&self, room: &str, key: Option<&str>) -> Result<Vec<StateLine>, SetError> {
        self.member_of(room)?;
        Ok(match key {
            Some(key) => self
                .states
                .get(room, key)
                .map(|entry| vec![self.state_line(key, Some(entry.clone()))])
                .unwrap_or_default(),
            None => self
                .states
                .entries(room)
                .into_iter()
                .map(|(key, entry)| self.state_line(&key, Some(entry)))
                .collect(),
        })
    }

    /// The topic of `room`, if it has one (for `/rooms` and `/join`).
    pub(super) fn topic(&self, room: &str) -> Option<String> {
        self.states.get(room, TOPIC).map(|e| e.value.clone())
    }

    fn member_of(&self, room: &str) -> Result<(), SetError> {
        if self.roster.in_room(room) {
            Ok(())
        } else {
            Err(SetError::NotInRoom(room.to_owned()))
        }
    }

    /// The room a command acts on: the one named, else the active session's.
    fn state_room(&self, room: Option<String>) -> Result<String, SetError> {
        let room = room
            .or_else(|| self.active_room())
            .ok_or(SetError::NoRoom)?;
        self.member_of(&room)?;
        Ok(room)
    }

    /// `/set` (`Some`) and `/unset` (`None`).
    pub(super) fn set_command(&mut self, room: Option<String>, key: String, value: Option<String>) {
        let result = self.state_room(room).and_then(|room| {
            let update = self.states.put(&room, &key, value.as_deref())?;
            Ok((room, update))
        });
        match result {
            Ok((room, Some(update))) => {
                self.state_changed(update, "changed");
                self.sync_members(&room, None);
            }
            // Nothing changed: say what it holds.
            Ok((room, None)) => self.get_command(Some(room), key, "get"),
            Err(error) => self.error(error.to_string()),
        }
    }

    /// `/get` and `/topic` without text: the key as it is (`value` null when unset).
    pub(super) fn get_command(&mut self, room: Option<String>, key: String, reason: &'static str) {
        match self.state_room(room) {
            Ok(room) => {
                let entry = self.states.get(&room, &key).cloned();
                self.show_state(&room, &key, entry.as_ref(), None, reason);
            }
            Err(error) => self.error(error.to_string()),
        }
    }

    /// `/state`: every key of the room.
    pub(super) fn list_command(&mut self, room: Option<String>) {
        match self.state_room(room) {
            Ok(room) => {
                let entries = self
                    .states
                    .entries(&room)
                    .into_iter()
                    .map(|(key, entry)| self.state_line(&key, Some(entry)))
                    .collect();
                self.show(UiEvent::StateList { room, entries });
            }
            Err(error) => self.error(error.to_string()),
        }
    }

    /// Shows the topic of a room we just joined, when it has one.
    pub(super) fn show_topic(&mut self, room: &str) {
        if let Some(entry) = self.states.get(room, TOPIC).cloned() {
            self.show_state(room, TOPIC, Some(&entry), None, "joined");
        }
    }

    fn state_line(&self, key: &str, entry: Option<Entry>) -> StateLine {
        let author = entry.as_ref().map(|e| e.author);
        StateLine {
            key: key.to_owned(),
            value: entry.map(|e| e.value),
            author,
            author_name: author.and_then(|a| self.name_of(&a)),
        }
    }

    /// A member's name as the index vouches for it (ours as we registered it).
    fn name_of(&self, peer: &Uuid) -> Option<String> {
        if *peer == self.me {
            self.roster.own_name()
        } else {
            self.roster.name(peer)
        }
    }

    fn show_state(
        &mut self,
        room: &str,
        key: &str,
        entry: Option<&Entry>,
        author: Option<Uuid>,
        reason: &'static str,
    ) {
        let line = self.state_line(key, entry.cloned());
        let author = line.author.or(author);
        self.show(UiEvent::State {
            room: room.to_owned(),
            key: line.key,
            value: line.value,
            author,
            author_name: author.and_then(|a| self.name_of(&a)),
            reason,
        });
    }

    /// A key changed (by us or a member): the user hears it, the store keeps it.
    fn state_changed(&mut self, update: Update, reason: &'static str) {
        self.show_state(
            &update.room,
            &update.key,
            update.entry.as_ref(),
            Some(update.author),
            reason,
        );
        self.store_state();
    }

    /// Hands what the rooms' states took since the last time to the store.
    fn store_state(&mut self) {
        for saved in self.states.take_saves() {
            self.actions
                .push_back(Action::Store(Change::RoomState(saved)));
        }
    }

    /// A sync message from `from` about `room`.
    pub(super) fn on_state(&mut self, from: Uuid, room: String, sync: &[u8], sigs: &[u8]) {
        let member = valid_room(&room)
            && self.roster.in_room(&room)
            && self.roster.members(&room).contains(&from);
        if !member {
            tracing::debug!(peer = %from, room, "room state from a non-member dropped");
            return self.states.refuse_stranger();
        }
        let now = self.now;
        match self.states.receive(&room, from, now, sync, sigs) {
            Ok(updates) => {
                let changed = !updates.is_empty();
                for update in updates {
                    self.state_changed(update, "changed");
                }
                self.sync_with(&room, from);
                if changed {
                    self.sync_members(&room, Some(from));
                }
            }
            Err(reason) => {
                tracing::info!(peer = %from, room, reason = reason.as_str(), "room state refused")
            }
        }
    }

    /// Sends `peer` what it lacks of `room`'s state, if anything: now, or once the message
    /// on its way to it has arrived (see [`Outbox`]).
    pub(super) fn sync_with(&mut self, room: &str, peer: Uuid) {
        if self.state_out.sending.get(&peer).is_some_and(|n| *n > 0) {
            self.state_out
                .waiting
                .entry(peer)
                .or_default()
                .insert(room.to_owned());
            return;
        }
        if let Some((sync, sigs)) = self.states.generate(room, peer, self.now) {
            let message = ChatMessage::State {
                room: room.to_owned(),
                sync,
                sigs,
            };
            *self.state_out.sending.entry(peer).or_default() += 1;
            self.send_chat(peer, &message, Tag::State);
        }
    }

    /// A sync message to `peer` arrived (`true`) or was given up: what waited goes out.
    pub(super) fn state_settled(&mut self, peer: Uuid, arrived: bool) {
        if let Some(n) = self.state_out.sending.get_mut(&peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.state_out.sending.remove(&peer);
            }
        }
        if !arrived {
            self.states.failed(peer, self.now);
        }
        if !self.state_out.sending.contains_key(&peer) {
            for room in self.state_out.waiting.remove(&peer).unwrap_or_default() {
                if self.roster.in_room(&room) {
                    self.sync_with(&room, peer);
                }
            }
        }
    }

    /// Starts a fresh round with `peer` about `room` (it joined, or may have restarted).
    pub(super) fn resync(&mut self, room: &str, peer: Uuid) {
        if self.roster.in_room(room) && self.states.restart(room, peer) {
            self.sync_with(room, peer);
        }
    }

    /// Syncs `room` with every member (but `except`).
    fn sync_members(&mut self, room: &str, except: Option<Uuid>) {
        for peer in self.roster.members(room) {
            if Some(peer) != except {
                self.sync_with(room, peer);
            }
        }
    }

    /// Fresh rounds for members whose sync stalled or is due for anti-entropy.
    pub(super) fn state_timeout(&mut self, now: Instant) {
        // Rooms we left too: their members are none, which ends their timers.
        for room in self.states.rooms() {
            let members = self.roster.members(&room);
            for peer in self.states.due(&room, &members, now) {
                self.resync(&room, peer);
            }
        }
    }

    /// When [`ChatCore::state_timeout`] is next due.
    pub(super) fn next_state_round(&self) -> Option<Instant> {
        self.states.next_due()
    }

    /// A member left `room`: its sync is forgotten.
    pub(super) fn state_forget(&mut self, room: &str, peer: &Uuid) {
        self.states.forget(room, peer);
    }
}
