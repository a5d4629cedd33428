//! Who is who and where the user is: names (see [`super::names`]), the rooms we are in and
//! their members, and the sessions (rooms and private conversations) with the active one and
//! unread counts. It notes when the session list may have changed, so that the list is
//! formatted and published only then.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, Instant};

use proto::chat::LOBBY;
use uuid::Uuid;

use super::names::NameBook;
use crate::output::SessionLine;

/// What a session is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SessionKind {
    /// A room we are in.
    Room(String),
    /// A private conversation with one peer.
    Private(Uuid),
}

#[derive(Debug)]
struct Session {
    kind: SessionKind,
    unread: usize,
}

/// Names, rooms and sessions.
#[derive(Debug)]
pub struct Roster {
    me: Uuid,
    own_name: Option<String>,
    names: NameBook,
    rooms: BTreeMap<String, BTreeSet<Uuid>>,
    sessions: Vec<Session>,
    active: usize,
    introduced: HashSet<Uuid>,
    /// Something the session list shows may have changed since [`Roster::take_changed`].
    changed: bool,
}

impl Roster {
    /// A chat in the lobby.
    pub fn new(me: Uuid) -> Self {
        let mut chat = Roster {
            me,
            own_name: None,
            names: NameBook::default(),
            rooms: BTreeMap::new(),
            sessions: Vec::new(),
            active: 0,
            introduced: HashSet::new(),
            changed: true,
        };
        chat.enter_room(LOBBY);
        chat
    }

    /// Our own name, as we introduce ourselves.
    pub fn set_own_name(&mut self, name: Option<String>) {
        self.own_name = name.filter(|n| !n.is_empty());
    }

    /// Our own name.
    pub fn own_name(&self) -> Option<String> {
        self.own_name.clone()
    }

    /// The index says `peer` is called `name` (or has no name); see [`NameBook::vouch`].
    pub fn vouch(&mut self, peer: Uuid, name: Option<&str>, now: Instant, ttl: Duration) {
        if peer != self.me && self.names.vouch(peer, name, now, ttl) {
            // A private session's label is the peer's name.
            self.changed = true;
        }
    }

    /// `peer` says it is called `name`; returns whether to check that with the index.
    pub fn claim(&mut self, peer: Uuid, name: Option<&str>, now: Instant) -> bool {
        peer != self.me && self.names.claim(peer, name, now)
    }

    /// A peer's name as the index vouched for it, when known.
    pub fn name(&self, peer: &Uuid) -> Option<String> {
        self.names.name(peer)
    }

    /// What a peer claims to be called, when the index did not vouch for that name.
    pub fn claimed(&self, peer: &Uuid) -> Option<String> {
        self.names.claimed(peer)
    }

    /// How to show a peer in a label: its vouched name when known, its UUID otherwise.
    pub fn label(&self, peer: &Uuid) -> String {
        self.name(peer).unwrap_or_else(|| peer.to_string())
    }

    /// The peer the index recently vouched is called `name`; `None` means ask the index.
    pub fn by_name(&self, name: &str, now: Instant) -> Option<Uuid> {
        self.names.resolve(name, now)
    }

    /// Every peer with a vouched name.
    pub fn named_peers(&self) -> impl Iterator<Item = (Uuid, String)> + '_ {
        self.names.vouched()
    }

    /// Whether we introduced ourselves to `peer` in this run; marks it done.
    pub fn needs_hello(&mut self, peer: Uuid) -> bool {
        self.introduced.insert(peer)
    }

    /// Rooms we are in.
    pub fn my_rooms(&self) -> Vec<String> {
        self.rooms.keys().cloned().collect()
    }

    /// Whether we are in `room`.
    pub fn in_room(&self, room: &str) -> bool {
        self.rooms.contains_key(room)
    }

    /// Members of a room we are in, ourselves excluded.
    pub fn members(&self, room: &str) -> Vec<Uuid> {
        self.rooms
            .get(room)
            .map(|m| m.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Enters `room` (and opens its session); returns whether it is new.
    pub fn enter_room(&mut self, room: &str) -> bool {
        if self.rooms.contains_key(room) {
            return false;
        }
        self.rooms.insert(room.to_owned(), BTreeSet::new());
        self.changed = true;
        self.sessions.push(Session {
            kind: SessionKind::Room(room.to_owned()),
            unread: 0,
        });
        true
    }

    /// Leaves `room` and closes its session; the lobby session stays as the fallback.
    pub fn exit_room(&mut self, room: &str) -> bool {
        if self.rooms.remove(room).is_none() {
            return false;
        }
        self.changed = true;
        let kind = SessionKind::Room(room.to_owned());
        if let Some(i) = self.sessions.iter().position(|s| s.kind == kind) {
            let active = self.sessions[self.active].kind.clone();
            self.sessions.remove(i);
            self.active = self
                .sessions
                .iter()
                .position(|s| s.kind == active)
                .unwrap_or(0);
        }
        true
    }

    /// Adds a member to a room we are in; returns whether it is new.
    pub fn add_member(&mut self, room: &str, peer: Uuid) -> bool {
        peer != self.me && self.rooms.get_mut(room).is_some_and(|m| m.insert(peer))
    }

    /// Removes a member; returns whether it was there.
    pub fn remove_member(&mut self, room: &str, peer: &Uuid) -> bool {
        self.rooms.get_mut(room).is_some_and(|m| m.remove(peer))
    }

    /// Opens (or finds) the private session with `peer`; returns its number.
    pub fn open_private(&mut self, peer: Uuid) -> usize {
        let kind = SessionKind::Private(peer);
        match self.sessions.iter().position(|s| s.kind == kind) {
            Some(i) => i,
            None => {
                self.changed = true;
                self.sessions.push(Session { kind, unread: 0 });
                self.sessions.len() - 1
            }
        }
    }

    /// The active session.
    pub fn active(&self) -> SessionKind {
        self.sessions[self.active].kind.clone()
    }

    /// Makes session `n` active; returns its label.
    pub fn activate(&mut self, n: usize) -> Option<String> {
        let session = self.sessions.get_mut(n)?;
        session.unread = 0;
        self.active = n;
        self.changed = true;
        Some(self.session_label(n))
    }

    /// Finds a session by number, room (`lobby` or `#lobby`) or peer name/UUID.
    pub fn find_session(&self, target: &str) -> Option<usize> {
        if let Ok(n) = target.parse::<usize>() {
            return (n < self.sessions.len()).then_some(n);
        }
        let target = target.trim_start_matches(['#', '@']);
        self.sessions.iter().position(|s| match &s.kind {
            SessionKind::Room(room) => room == target,
            SessionKind::Private(peer) => {
                self.names.name(peer).is_some_and(|n| n == target) || peer.to_string() == target
            }
        })
    }

    /// Counts a message for `kind` as unread unless its session is active.
    pub fn note_message(&mut self, kind: &SessionKind) {
        let active = self.active;
        if let Some((i, session)) = self
            .sessions
            .iter_mut()
            .enumerate()
            .find(|(_, s)| &s.kind == kind)
            && i != active
        {
            session.unread += 1;
            self.changed = true;
        }
    }

    /// Whether the session list may have changed since the last call.
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    fn session_label(&self, n: usize) -> String {
        match &self.sessions[n].kind {
            SessionKind::Room(room) => format!("#{room}"),
            SessionKind::Private(peer) => format!("@{}", self.label(peer)),
        }
    }

    /// The session list for `/sessions`.
    pub fn session_lines(&self) -> Vec<SessionLine> {
        (0..self.sessions.len())
            .map(|n| SessionLine {
                n,
                label: self.session_label(n),
                active: n == self.active,
                unread: self.sessions[n].unread,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_track_activity_and_unread() {
        let me = Uuid::from_u128(1);
        let bob = Uuid::from_u128(2);
        let mut chat = Roster::new(me);
        chat.vouch(bob, Some("bob"), Instant::now(), Duration::from_secs(60));
        assert_eq!(chat.active(), SessionKind::Room(LOBBY.into()));
        assert!(chat.enter_room("rust"));
        let dm = chat.open_private(bob);
        assert_eq!(chat.open_private(bob), dm, "one private session per peer");
        chat.note_message(&SessionKind::Private(bob));
        chat.note_message(&SessionKind::Room(LOBBY.into()));
        let lines = chat.session_lines();
        assert_eq!(lines[dm].unread, 1);
        assert_eq!(lines[0].unread, 0, "the active session has no unread");
        assert_eq!(chat.find_session("bob"), Some(dm));
        assert_eq!(chat.find_session("#rust"), Some(1));
        assert_eq!(chat.activate(dm).as_deref(), Some("@bob"));
        assert_eq!(chat.session_lines()[dm].unread, 0);
        assert!(chat.exit_room("rust"));
        assert_eq!(
            chat.active(),
            SessionKind::Private(bob),
            "active session survives the removal"
        );
        assert!(!chat.add_member("rust", bob), "not in that room any more");
        assert!(chat.add_member(LOBBY, bob) && !chat.add_member(LOBBY, me));
        assert_eq!(chat.members(LOBBY), vec![bob]);
    }
}
