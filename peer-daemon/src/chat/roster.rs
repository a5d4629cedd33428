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

pub use crate::history::SessionKind;
use crate::history::{SavedSession, SavedSessions};

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
    /// Open sessions by their stable number: closing one does not renumber the others.
    sessions: BTreeMap<usize, Session>,
    /// The active session's number (always an open one).
    active: usize,
    /// The number the next new session gets.
    next_n: usize,
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
            sessions: BTreeMap::new(),
            active: 0,
            next_n: 0,
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

    /// Peers whose changed claim is due to be checked with the index now.
    pub fn due_checks(&mut self, now: Instant) -> Vec<Uuid> {
        self.names.due_checks(now)
    }

    /// When the next changed claim is due to be checked.
    pub fn next_check(&self) -> Option<Instant> {
        self.names.next_check()
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
        self.open(SessionKind::Room(room.to_owned()));
        true
    }

    /// Opens a session for `kind` (or finds the open one); returns its number.
    fn open(&mut self, kind: SessionKind) -> usize {
        if let Some(n) = self.number_of(&kind) {
            return n;
        }
        let n = self.next_n;
        self.next_n += 1;
        self.sessions.insert(n, Session { kind, unread: 0 });
        self.changed = true;
        n
    }

    fn number_of(&self, kind: &SessionKind) -> Option<usize> {
        self.sessions
            .iter()
            .find(|(_, s)| &s.kind == kind)
            .map(|(n, _)| *n)
    }

    /// Closes session `n`; when it was the active one, the lobby (or the lowest-numbered
    /// session left) becomes active. The last session cannot be closed.
    fn close(&mut self, n: usize) -> bool {
        if self.sessions.len() <= 1 || self.sessions.remove(&n).is_none() {
            return false;
        }
        self.changed = true;
        if self.active == n {
            self.active = self
                .number_of(&SessionKind::Room(LOBBY.to_owned()))
                .or_else(|| self.sessions.keys().next().copied())
                .unwrap_or(0);
        }
        true
    }

    /// Closes the private session with `peer`; returns whether one was open.
    pub fn close_private(&mut self, peer: Uuid) -> bool {
        self.number_of(&SessionKind::Private(peer))
            .is_some_and(|n| self.close(n))
    }

    /// The sessions to save, as they are now.
    pub fn saved(&self) -> SavedSessions {
        SavedSessions {
            sessions: self
                .sessions
                .iter()
                .map(|(n, s)| SavedSession {
                    n: *n,
                    kind: s.kind.clone(),
                    unread: s.unread,
                })
                .collect(),
            active: self.active,
            next_n: self.next_n,
        }
    }

    /// Takes back the sessions an earlier run saved: its rooms (members unknown until the
    /// index or the members say), its private sessions, their numbers and the active one.
    pub fn restore(&mut self, saved: SavedSessions) {
        if saved.sessions.is_empty() {
            return;
        }
        self.rooms.clear();
        self.sessions.clear();
        for session in saved.sessions {
            if let SessionKind::Room(room) = &session.kind {
                if !proto::chat::valid_room(room) {
                    continue;
                }
                self.rooms.insert(room.clone(), BTreeSet::new());
            }
            self.sessions.insert(
                session.n,
                Session {
                    kind: session.kind,
                    unread: session.unread,
                },
            );
        }
        if self.sessions.is_empty() {
            self.enter_room(LOBBY);
        }
        let last = self.sessions.keys().next_back().copied().unwrap_or(0);
        self.next_n = saved.next_n.max(last + 1);
        self.active = if self.sessions.contains_key(&saved.active) {
            saved.active
        } else {
            *self.sessions.keys().next().expect("one session at least")
        };
        self.changed = true;
    }

    /// Leaves `room` and closes its session; the lobby session stays as the fallback.
    pub fn exit_room(&mut self, room: &str) -> bool {
        if self.rooms.remove(room).is_none() {
            return false;
        }
        self.changed = true;
        if let Some(n) = self.number_of(&SessionKind::Room(room.to_owned())) {
            if self.sessions.len() == 1 {
                // The last session: nothing to fall back to, so it stays (as a room we left).
                self.sessions.remove(&n);
                self.enter_room(LOBBY);
                self.active = self
                    .number_of(&SessionKind::Room(LOBBY.to_owned()))
                    .unwrap_or(0);
            } else {
                self.close(n);
            }
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
        self.open(SessionKind::Private(peer))
    }

    /// The active session.
    pub fn active(&self) -> SessionKind {
        self.sessions
            .get(&self.active)
            .map_or_else(|| SessionKind::Room(LOBBY.to_owned()), |s| s.kind.clone())
    }

    /// Makes session `n` active; returns its label and how many messages were unread there.
    pub fn activate(&mut self, n: usize) -> Option<(String, usize)> {
        let session = self.sessions.get_mut(&n)?;
        let unread = std::mem::take(&mut session.unread);
        self.active = n;
        self.changed = true;
        Some((self.session_label(n), unread))
    }

    /// The number of the session about `kind`, when it is open.
    pub fn session_number(&self, kind: &SessionKind) -> Option<usize> {
        self.number_of(kind)
    }

    /// What session `n` is about, when it is open.
    pub fn session_kind(&self, n: usize) -> Option<SessionKind> {
        self.sessions.get(&n).map(|s| s.kind.clone())
    }

    /// Finds a session by number, room (`lobby` or `#lobby`) or peer name/UUID.
    pub fn find_session(&self, target: &str) -> Option<usize> {
        if let Ok(n) = target.parse::<usize>() {
            return self.sessions.contains_key(&n).then_some(n);
        }
        let target = target.trim_start_matches(['#', '@']);
        self.sessions
            .iter()
            .find(|(_, s)| match &s.kind {
                SessionKind::Room(room) => room == target,
                SessionKind::Private(peer) => {
                    self.names.name(peer).is_some_and(|n| n == target) || peer.to_string() == target
                }
            })
            .map(|(n, _)| *n)
    }

    /// Counts a message for `kind` as unread unless its session is active.
    pub fn note_message(&mut self, kind: &SessionKind) {
        let active = self.active;
        if let Some((_, session)) = self
            .sessions
            .iter_mut()
            .find(|(n, s)| &s.kind == kind && **n != active)
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
        self.sessions
            .get(&n)
            .map(|s| self.kind_label(&s.kind))
            .unwrap_or_default()
    }

    /// `#room` or `@peer`.
    pub fn kind_label(&self, kind: &SessionKind) -> String {
        match kind {
            SessionKind::Room(room) => format!("#{room}"),
            SessionKind::Private(peer) => format!("@{}", self.label(peer)),
        }
    }

    /// The session list for `/sessions`.
    pub fn session_lines(&self) -> Vec<SessionLine> {
        self.sessions
            .iter()
            .map(|(n, s)| SessionLine {
                n: *n,
                label: self.session_label(*n),
                active: *n == self.active,
                unread: s.unread,
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
        assert_eq!(chat.activate(dm), Some(("@bob".to_owned(), 1)));
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

    #[test]
    fn session_numbers_are_stable_and_survive_a_restart() {
        let me = Uuid::from_u128(1);
        let (bob, carol) = (Uuid::from_u128(2), Uuid::from_u128(3));
        let mut chat = Roster::new(me);
        let b = chat.open_private(bob);
        let c = chat.open_private(carol);
        assert_eq!((b, c), (1, 2));
        chat.activate(b);
        assert!(chat.close_private(bob));
        assert_eq!(
            chat.active(),
            SessionKind::Room(LOBBY.into()),
            "back to the lobby"
        );
        assert_eq!(chat.find_session("2"), Some(c), "carol keeps her number");
        assert_eq!(chat.find_session("1"), None);
        assert_eq!(chat.open_private(bob), 3, "a number is never reused");
        chat.note_message(&SessionKind::Private(carol));
        chat.activate(3);
        let saved = chat.saved();
        let mut again = Roster::new(me);
        again.restore(saved.clone());
        assert_eq!(again.saved(), saved);
        assert_eq!(again.active(), SessionKind::Private(bob));
        assert_eq!(again.open_private(Uuid::from_u128(4)), 4);
        assert!(again.in_room(LOBBY));
        // A saved room with a name no index would take is not restored.
        let mut odd = saved;
        odd.sessions.push(SavedSession {
            n: 9,
            kind: SessionKind::Room("Bad Name".into()),
            unread: 0,
        });
        let mut third = Roster::new(me);
        third.restore(odd);
        assert_eq!(third.find_session("9"), None);
    }
}
