//! The chat core, free of I/O: rooms, names, sessions, the messages waiting for a lookup and
//! the delivery of every message, on top of the one [`SecureEndpoint`] that carries them. It
//! is to the chat what [`proto::Endpoint`] is to datagrams (quinn's `Connection` above its
//! `Endpoint`): no socket, no clock, no task, no random source. Time comes in as `now`, the
//! index's answers come in as [`IndexReply`]s, and everything the core wants done comes out as
//! datagrams ([`ChatCore::poll_transmit`]) and [`Action`]s.
//!
//! # Polling order
//! After every input (`handle_datagram`, `handle_command`, `handle_index_reply`,
//! `handle_timeout`) a driver
//! 1. drains [`ChatCore::poll_transmit`] and puts the datagrams on the wire: the endpoint's
//!    acknowledgements leave before the chat even looks at what arrived;
//! 2. drains [`ChatCore::poll_action`], which first handles the endpoint's events (messages
//!    that arrived, deliveries, give-ups; see [`ChatCore::handle_event`]): requests for the
//!    index (answer each, exactly once, with [`ChatCore::handle_index_reply`]), events for the
//!    user, the session list when it changed, and the request to quit;
//! 3. drains [`ChatCore::poll_transmit`] again: what handling the events made the chat send
//!    (introductions, messages released by a lookup);
//! 4. sleeps until [`ChatCore::poll_timeout`] (or the next input) and calls
//!    [`ChatCore::handle_timeout`] when it passes.
//!
//! Several datagrams may be handed in before polling (a batch read from the socket): their
//! acknowledgements then go out together.

mod addresses;
mod api;
mod commands;
mod delivery;
mod history;
mod mailbox;
pub mod names;
mod peers;
mod relook;
mod replies;
pub mod roster;
mod state;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proto::api::{Candidate, PeerRecord};
use proto::chat::ChatMessage;
use proto::{Event, MsgId, SecureEndpoint, Transmit};
use uuid::Uuid;

use crate::command::Command;
use crate::history::{Change, HistoryQuery, SavedSessions};
use crate::output::{SessionLine, UiEvent};
use addresses::Addresses;
use delivery::{Group, Tag};
use roster::Roster;

pub use addresses::DEFAULT_TTL;
pub use api::{
    Action, Answer, Contact, IndexReply, IndexRequest, IndexStatus, Lookup, Outgoing, Source,
};
pub use state::{SetError, TOPIC};

/// How long a message to a peer may go unanswered before the peer is looked up again (it may
/// have moved: restarted on another port, changed networks).
pub const RELOOK_AFTER: Duration = Duration::from_secs(3);
/// Shortest time between two such lookups of one peer.
pub const RELOOK_EVERY: Duration = Duration::from_secs(20);

/// Lines of the active session shown after a restart.
pub const RESTORED_LINES: usize = 10;
/// Most unread lines shown when switching to a session.
pub const UNREAD_LINES: usize = 100;

/// Longest time events about a peer are held back while the index is asked who it is; the
/// driver's own request timeout is shorter, so this only bounds a driver that never answers.
pub const HOLD_LIMIT: Duration = Duration::from_secs(6);
/// Most events about one peer held back while the index is asked who it is.
pub const MAX_HELD: usize = 256;

/// Events about a peer whose claimed name the index is being asked about.
struct Held {
    events: Vec<UiEvent>,
    until: Instant,
}

/// The chat's state machine; see the module documentation for how to drive it.
pub struct ChatCore {
    endpoint: SecureEndpoint,
    me: Uuid,
    roster: Roster,
    /// Addresses learned from the index; addresses learned from datagrams live in the endpoint.
    addresses: Addresses,
    /// Messages waiting for a lookup to finish, in the order they were sent.
    waiting: HashMap<Uuid, Vec<(Vec<u8>, Tag)>>,
    /// Commands waiting for a name to resolve, in the order they were typed.
    waiting_names: HashMap<String, Vec<commands::NameAction>>,
    held: HashMap<Uuid, Held>,
    tags: HashMap<MsgId, Tag>,
    groups: HashMap<u64, Group>,
    next_id: u64,
    quitting: bool,
    actions: VecDeque<Action>,
    /// The session list as last published.
    published: Vec<SessionLine>,
    /// The latest time handed in, for the work `poll_*` does on the way.
    now: Instant,
    /// Where we may be reached, as we tell peers in our `hello`.
    candidates: Vec<Candidate>,
    /// Whether the index answers.
    index: IndexStatus,
    /// Our address as the index observed it at the last registration.
    registered_addr: Option<String>,
    /// Rooms the index has confirmed we are in (since it last registered us).
    index_rooms: BTreeSet<String>,
    /// Rooms whose `joined` the user has seen in this run (not repeated at re-registrations).
    joined_shown: BTreeSet<String>,
    /// Rooms we left that the index may still list us in (it was unreachable).
    unsynced_leaves: BTreeSet<String>,
    /// Where `/history` goes on: the session and the oldest line id shown.
    history_cursor: Option<(roster::SessionKind, u64)>,
    /// Peers we sent to and have not heard from since: when that began.
    unanswered: HashMap<Uuid, Instant>,
    /// When each peer was last looked up again because it did not answer.
    relooked: HashMap<Uuid, Instant>,
    /// The contact (name) last reported for each peer, so each is reported once.
    contacts: HashMap<Uuid, Option<String>>,
    /// Offline delivery: drafts, letters waiting, letters taken, blocked peers.
    mail: mailbox::Mail,
    /// Every room's shared state.
    states: crate::roomstate::RoomStates,
    /// Room state sync messages on their way, and what waits for them.
    state_out: state::Outbox,
}

impl ChatCore {
    /// A core speaking through `endpoint` (whose identity is ours), introducing itself as
    /// `name`, as of `now`.
    pub fn new(endpoint: SecureEndpoint, name: Option<String>, now: Instant) -> Self {
        let me = endpoint.id();
        let states = crate::roomstate::RoomStates::new(
            endpoint.identity().clone(),
            crate::roomstate::Limits::default(),
        );
        let mut chat = Roster::new(me);
        chat.set_own_name(name);
        ChatCore {
            endpoint,
            me,
            roster: chat,
            addresses: Addresses::default(),
            waiting: HashMap::new(),
            waiting_names: HashMap::new(),
            held: HashMap::new(),
            tags: HashMap::new(),
            groups: HashMap::new(),
            next_id: 0,
            quitting: false,
            actions: VecDeque::new(),
            published: Vec::new(),
            now,
            candidates: Vec::new(),
            index: IndexStatus::Connecting,
            registered_addr: None,
            index_rooms: BTreeSet::new(),
            unsynced_leaves: BTreeSet::new(),
            joined_shown: BTreeSet::new(),
            history_cursor: None,
            unanswered: HashMap::new(),
            relooked: HashMap::new(),
            contacts: HashMap::new(),
            mail: mailbox::Mail::default(),
            states,
            state_out: state::Outbox::default(),
        }
    }

    /// Takes back the rooms' states as stored (see [`crate::store::Store`]); rooms stored in
    /// many pieces are stored again whole.
    pub fn restore_state(&mut self, rooms: Vec<(String, crate::roomstate::Pieces)>) {
        for (room, pieces) in rooms {
            if let Some(whole) = self.states.restore(&room, pieces) {
                self.actions
                    .push_back(Action::Store(Change::RoomState(whole)));
            }
        }
    }

    /// The room state counters, for `/stats`.
    pub fn state_counters(&self) -> &crate::roomstate::Counters {
        self.states.counters()
    }

    /// Takes back what an earlier run saved: its sessions (rooms are joined again once the
    /// index answers) and the next free message id; shows the active session's last lines.
    pub fn restore(&mut self, sessions: Option<SavedSessions>, next_id: u64) {
        self.next_id = self.next_id.max(next_id);
        if let Some(sessions) = sessions {
            self.roster.restore(sessions);
            self.actions.push_back(Action::History {
                query: HistoryQuery {
                    session: Some(self.roster.active()),
                    before: None,
                    limit: RESTORED_LINES,
                },
                reason: "restored",
            });
        }
    }

    /// Whether the index answers, as far as we know.
    pub fn index_status(&self) -> &IndexStatus {
        &self.index
    }

    /// Our name, as we introduce ourselves.
    pub fn own_name(&self) -> Option<String> {
        self.roster.own_name()
    }

    /// Our address as the index observed it, once registered.
    pub fn registered_addr(&self) -> Option<&str> {
        self.registered_addr.as_deref()
    }

    /// The rooms we are in.
    pub fn rooms(&self) -> Vec<String> {
        self.roster.my_rooms()
    }

    /// Our candidates, as peers hear them.
    pub fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }

    /// Our own candidates changed (gathered anew: a new reflexive address, a relay allocation
    /// made or lost): peers we have a path to hear of it, and `have_relay` says whether the
    /// peers' relay addresses are reachable (through our own allocation).
    pub fn set_own_candidates(
        &mut self,
        now: Instant,
        candidates: Vec<Candidate>,
        have_relay: bool,
    ) {
        self.now = now;
        self.endpoint.set_own_relay(now, have_relay);
        if candidates == self.candidates {
            return;
        }
        self.candidates = candidates;
        let peers: Vec<Uuid> = self.endpoint.known_peers().map(|(id, ..)| id).collect();
        let message = ChatMessage::Candidates {
            candidates: self.candidates.clone(),
        }
        .encode();
        for peer in peers {
            if !self.roster.needs_hello(peer) {
                self.send_payload(peer, message.clone(), delivery::Tag::Quiet);
            }
        }
    }

    /// A datagram that our TURN relay delivered from the relay address `from`.
    pub fn handle_relayed(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.now = now;
        self.endpoint.handle_relayed(now, from, bytes);
    }

    /// Our UUID.
    pub fn id(&self) -> Uuid {
        self.me
    }

    /// The endpoint underneath, for its counters.
    pub fn endpoint(&self) -> &SecureEndpoint {
        &self.endpoint
    }

    /// A datagram from `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.now = now;
        self.endpoint.handle_datagram(now, from, bytes);
    }

    /// Time passed: the endpoint retransmits or gives up, held events go out unnamed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        self.endpoint.handle_timeout(now);
        let due: Vec<Uuid> = self
            .held
            .iter()
            .filter(|(_, held)| held.until <= now)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in due {
            self.release(peer);
        }
        for peer in self.roster.due_checks(now) {
            self.ask(IndexRequest::Verify(peer));
        }
        self.relook(now);
        self.state_timeout(now);
    }

    /// Reports `peer` as a contact when it proved a key and its name is news.
    fn note_contact(&mut self, peer: Uuid) {
        let Some(public_key) = self.endpoint.peer_key(&peer) else {
            return;
        };
        let name = self.roster.name(&peer);
        if self.contacts.get(&peer) == Some(&name) {
            return;
        }
        self.contacts.insert(peer, name.clone());
        self.actions.push_back(Action::Contact(Contact {
            uuid: peer,
            public_key,
            name,
        }));
    }

    /// A command from a front-end (the terminal, stdin, the control API).
    pub fn handle_command(&mut self, now: Instant, command: Command) {
        self.now = now;
        self.command(command);
    }

    /// The index's answer to an [`Action::Ask`], or news from the registration.
    pub fn handle_index_reply(&mut self, now: Instant, reply: IndexReply) {
        self.now = now;
        self.reply(reply);
    }

    /// One event of the endpoint: a message arrived, or one we sent was delivered or given up.
    /// `poll_action` calls this for every event the endpoint has; it is public so that a test
    /// can hand in an event of its own.
    pub fn handle_event(&mut self, event: Event) {
        match event {
            Event::Message { from, data } => {
                self.unanswered.remove(&from);
                if self.mail.blocks(&from) {
                    self.mail.from_blocked += 1;
                    return;
                }
                self.mail.back(&from);
                if !self.contacts.contains_key(&from) {
                    self.note_contact(from);
                }
                self.on_payload(from, &data)
            }
            Event::Delivered { to, id, rtt } => {
                self.unanswered.remove(&to);
                let tag = self.tags.remove(&id).unwrap_or(Tag::Quiet);
                self.settle(to, tag, Ok(rtt));
            }
            Event::Failed { to, id, reason } => {
                self.unanswered.remove(&to);
                let tag = self.tags.remove(&id).unwrap_or(Tag::Quiet);
                self.settle(to, tag, Err(reason));
            }
            Event::Path { peer, addr, kind } => self.show(UiEvent::Path {
                peer,
                name: self.roster.name(&peer),
                via: kind.via(),
                addr,
            }),
        }
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        self.now = now;
        self.endpoint.poll_transmit(now)
    }

    /// Whether the user asked to leave ([`Action::Quit`] is queued or was taken): what is left
    /// to send is the goodbyes, which nobody should wait long for.
    pub fn quitting(&self) -> bool {
        self.quitting
    }

    /// The next thing to do besides sending datagrams; handles the endpoint's events first.
    pub fn poll_action(&mut self) -> Option<Action> {
        while let Some(event) = self.endpoint.poll_event() {
            self.handle_event(event);
        }
        self.publish_sessions();
        self.actions.pop_front()
    }

    /// When [`ChatCore::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let held = self.held.values().map(|held| held.until).min();
        [
            self.endpoint.poll_timeout(),
            held,
            self.roster.next_check(),
            self.next_relook(),
            self.next_state_round(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn publish_sessions(&mut self) {
        if !self.roster.take_changed() {
            return;
        }
        let lines = self.roster.session_lines();
        if lines != self.published {
            self.published = lines.clone();
            self.actions.push_back(Action::Sessions(lines));
        }
        // Unread counts and the active session are saved too.
        self.actions
            .push_back(Action::Store(Change::Sessions(self.roster.saved())));
    }

    fn show(&mut self, event: UiEvent) {
        self.actions.push_back(Action::Show(event));
    }

    fn error(&mut self, message: String) {
        self.show(UiEvent::Error { message });
    }

    fn ask(&mut self, request: IndexRequest) {
        self.actions.push_back(Action::Ask(request));
    }

    /// Where `peer` is, as far as we know: where its datagrams come from, or what the index
    /// said (while that holds).
    fn addr_of(&self, peer: &Uuid) -> Option<SocketAddr> {
        self.endpoint
            .peer_addr(peer)
            .or_else(|| self.addresses.get(peer, self.now))
    }

    /// [`ChatCore::learn_record`] for a directory's answer.
    fn learn_lookup(&mut self, lookup: &Lookup) -> Option<SocketAddr> {
        self.learn_record(&lookup.record, lookup.max_age, lookup.source)
    }

    /// Remembers what a directory said about a peer: its name (when the source vouches for
    /// names, see [`Source`]), and its address while that holds.
    fn learn_record(
        &mut self,
        record: &PeerRecord,
        max_age: Option<Duration>,
        source: Source,
    ) -> Option<SocketAddr> {
        let ttl = max_age.unwrap_or(DEFAULT_TTL);
        let old = self.roster.name(&record.uuid);
        let vouches = match source {
            Source::Index => true,
            // A LAN name is the peer's own choice: it stands in only while no index answers.
            Source::Lan => record.name.is_some() && self.index != IndexStatus::Online,
            Source::Dht => false,
        };
        if vouches {
            self.roster
                .vouch(record.uuid, record.name.as_deref(), self.now, ttl);
        }
        let name = self.roster.name(&record.uuid);
        if old.is_some() && name != old {
            self.show(UiEvent::Renamed {
                peer: Some(record.uuid),
                old,
                name,
            });
        }
        let addr = record.addr.parse().ok()?;
        self.addresses.insert(record.uuid, addr, ttl, self.now);
        self.addresses
            .set_candidates(record.uuid, &record.candidates);
        // The index checked the peer's signature over them. Peers we do not talk to are not
        // probed: their candidates wait until we send them something.
        if let Some((current, _)) = self.endpoint.path(&record.uuid) {
            self.endpoint
                .learn_candidates(self.now, record.uuid, &record.candidates);
            if current != addr && self.unanswered.contains_key(&record.uuid) {
                // It does not answer where we send: it may have moved.
                self.endpoint.relocate(self.now, record.uuid, addr);
            }
        }
        if let Some(key) = record
            .public_key
            .as_deref()
            .and_then(|key| proto::identity::parse_public_key(key).ok())
        {
            self.learn_key(record.uuid, key);
        }
        self.note_contact(record.uuid);
        Some(addr)
    }
}

#[cfg(test)]
mod tests;
