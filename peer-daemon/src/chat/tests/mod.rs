//! The chat core in virtual time: several cores on `proto::sim` links and an in-memory index
//! that answers their requests after a latency (or fails them while it is down). Every run is
//! deterministic; the process-level tests (tests/*.rs) run the same behaviour against the
//! real index and real sockets.

mod client;
mod delivery;
mod index;
mod mailbox;
mod moved;
mod names;
mod paths;
mod rooms;
mod sessions;
mod state;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proto::api::PeerRecord;
use proto::identity::Identity;
use proto::sim::{CLEAN, Impair, Link, Rng, STEP_CAP};
use proto::{SecureConfig, SecureEndpoint};
use uuid::Uuid;

use super::{Action, ChatCore, HOLD_LIMIT, IndexReply, IndexRequest, Lookup, MAX_HELD};
use crate::command::{self, Command};
use crate::output::{SessionLine, UiEvent};
use index::{Index, record};

pub const MS: Duration = Duration::from_millis(1);
pub const SEC: Duration = Duration::from_secs(1);
/// How long a message may go unacknowledged before the endpoint gives it up, in these tests.
pub const DEADLINE: Duration = Duration::from_secs(4);
/// The error the index answers with while it is down.
pub const DOWN: &str = "could not reach the index: connection refused";

/// One daemon: its core and everything it told its user.
pub struct Node {
    pub core: ChatCore,
    pub addr: SocketAddr,
    pub name: Option<String>,
    /// Every event, with the virtual time it came out.
    pub shown: Vec<(Duration, UiEvent)>,
    /// Every session list published.
    pub published: Vec<Vec<SessionLine>>,
    /// Every request the node asked the index.
    pub asked: Vec<IndexRequest>,
    pub quit: bool,
    /// What the node gave the message store, in order.
    pub stored: Vec<crate::history::Change>,
    /// History reads the node asked for, with their reason.
    pub reads: Vec<(crate::history::HistoryQuery, &'static str)>,
    /// Names the node asked to register (`/nick`).
    pub renames: Vec<String>,
    /// Why the node stopped with an error, if it did.
    pub exit: Option<String>,
    /// How often the node asked to check whether the index is away.
    pub checks: usize,
    /// Contacts reported.
    pub contacts: Vec<crate::chat::Contact>,
    /// Letters handed out for mailboxes, mailbox ids taken, blocks.
    pub deposits: Vec<crate::chat::Outgoing>,
    pub taken: Vec<i64>,
    pub blocks: Vec<(Uuid, bool)>,
}

/// A few chat cores on one virtual network.
pub struct ChatNet {
    pub nodes: Vec<Node>,
    pub links: Vec<Link>,
    pub index: Index,
    rng: Rng,
    start: Instant,
    pub now: Duration,
    /// Nodes cut off the network: nothing they send or are sent arrives.
    pub cut: Vec<usize>,
}

pub fn identity(i: usize) -> Identity {
    Identity::from_secret([i as u8 + 1; 32])
}

impl ChatNet {
    /// Nodes named as given (`None`: no name), all on clean links, none registered yet.
    pub fn new(names: &[Option<&str>]) -> ChatNet {
        let start = Instant::now();
        let nodes = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let config = SecureConfig {
                    endpoint: proto::Config {
                        deadline: DEADLINE,
                        ..proto::Config::default()
                    },
                    seed: [i as u8 + 100; 32],
                };
                let endpoint = SecureEndpoint::new(identity(i), 1, config);
                let name = name.map(str::to_owned);
                Node {
                    core: ChatCore::new(endpoint, name.clone(), start),
                    addr: SocketAddr::from(([192, 0, 2, i as u8 + 1], 4000)),
                    name,
                    shown: Vec::new(),
                    published: Vec::new(),
                    asked: Vec::new(),
                    quit: false,
                    stored: Vec::new(),
                    reads: Vec::new(),
                    renames: Vec::new(),
                    exit: None,
                    checks: 0,
                    contacts: Vec::new(),
                    deposits: Vec::new(),
                    taken: Vec::new(),
                    blocks: Vec::new(),
                }
            })
            .collect();
        let mut net = ChatNet {
            nodes,
            links: names.iter().map(|_| Link::new(CLEAN)).collect(),
            index: Index::default(),
            rng: Rng(7),
            start,
            now: Duration::ZERO,
            cut: Vec::new(),
        };
        net.flush();
        net
    }

    /// Nodes the index knows, none of which knows anything yet (none has registered itself,
    /// so none is in the lobby).
    pub fn listed(names: &[Option<&str>]) -> ChatNet {
        let mut net = ChatNet::new(names);
        for i in 0..names.len() {
            net.list(i);
        }
        net
    }

    /// Nodes that are registered with the index: they joined the lobby, so they know each other.
    pub fn registered(names: &[Option<&str>]) -> ChatNet {
        let mut net = ChatNet::new(names);
        for i in 0..names.len() {
            net.register(i);
        }
        net.run_to_idle();
        net
    }

    pub fn id(&self, i: usize) -> Uuid {
        self.nodes[i].core.id()
    }

    pub fn instant(&self) -> Instant {
        self.start + self.now
    }

    /// Puts node `i`'s record on the index.
    pub fn list(&mut self, i: usize) -> PeerRecord {
        let node = &self.nodes[i];
        let record = record(node.core.id(), node.addr, node.name.as_deref());
        self.index.records.insert(record.uuid, record.clone());
        record
    }

    /// Puts node `i`'s record on the index and tells the node it is registered.
    pub fn register(&mut self, i: usize) {
        let record = self.list(i);
        self.reply(i, IndexReply::Registered(record));
    }

    /// Tells node `i` where node `j` is, as an answer from the index would (without asking it).
    pub fn teach(&mut self, i: usize, j: usize) {
        let record = self.index.records[&self.id(j)].clone();
        let lookup = Lookup::index(record, Some(60 * SEC));
        self.reply(i, IndexReply::Lookup(self.id(j), Ok(Some(lookup))));
    }

    /// Hands node `i` something from the index (or the registration).
    pub fn reply(&mut self, i: usize, reply: IndexReply) {
        let now = self.instant();
        self.nodes[i].core.handle_index_reply(now, reply);
        self.flush();
    }

    /// Node `i`'s user types `line`.
    pub fn type_line(&mut self, i: usize, line: &str) {
        let command = command::parse(line).expect("a valid command");
        self.command(i, command);
    }

    pub fn command(&mut self, i: usize, command: Command) {
        let now = self.instant();
        self.nodes[i].core.handle_command(now, command);
        self.flush();
    }

    /// Answers the requests that are due, in the order they were asked.
    fn deliver_replies(&mut self) {
        for (i, request) in self.index.take_due(self.now) {
            let me = self.id(i);
            self.index.apply(me, &request);
            let reply = self.index.answer(me, request);
            let now = self.instant();
            self.nodes[i].core.handle_index_reply(now, reply);
        }
    }

    /// Delivers the datagrams that are due.
    fn deliver_datagrams(&mut self) {
        for from in 0..self.links.len() {
            for datagram in self.links[from].take_due(self.now) {
                let now = self.instant();
                let source = self.nodes[from].addr;
                let to = self.nodes.iter().position(|n| n.addr == datagram.to);
                if self.cut.contains(&from) || to.is_some_and(|to| self.cut.contains(&to)) {
                    continue;
                }
                if let Some(to) = self.nodes.iter_mut().find(|n| n.addr == datagram.to) {
                    to.core.handle_datagram(now, source, &datagram.bytes);
                }
            }
        }
    }

    /// Drains every core in the documented order: datagrams, actions, datagrams again.
    fn flush(&mut self) {
        for i in 0..self.nodes.len() {
            self.transmit(i);
            while let Some(action) = self.nodes[i].core.poll_action() {
                let node = &mut self.nodes[i];
                match action {
                    Action::Ask(request) => {
                        node.asked.push(request.clone());
                        self.index.ask(self.now, i, request);
                    }
                    Action::Show(event) => node.shown.push((self.now, event)),
                    Action::Sessions(lines) => node.published.push(lines),
                    Action::Quit => node.quit = true,
                    Action::Exit(message) => node.exit = Some(message),
                    Action::Store(change) => node.stored.push(change),
                    Action::History { query, reason } => node.reads.push((query, reason)),
                    Action::Rename(name) => node.renames.push(name),
                    Action::CheckIndex => node.checks += 1,
                    Action::Contact(contact) => node.contacts.push(contact),
                    Action::Deposit(outgoing) => node.deposits.push(outgoing),
                    Action::MailTaken { through, .. } => node.taken.push(through),
                    Action::Block { peer, blocked } => node.blocks.push((peer, blocked)),
                }
            }
            self.transmit(i);
        }
    }

    /// Puts node `i`'s datagrams on its link.
    fn transmit(&mut self, i: usize) {
        let now = self.instant();
        let mut sent = 0;
        while let Some(transmit) = self.nodes[i].core.poll_transmit(now) {
            self.links[i].push(&mut self.rng, self.now, transmit.to, transmit.bytes);
            sent += 1;
            assert!(sent < 10_000, "node {i} does not stop sending");
        }
    }

    /// The next moment something is due: a datagram, an index answer or a core's timer.
    fn next_due(&self) -> Option<Duration> {
        let arrivals = self.links.iter().filter_map(Link::next_arrival);
        let answers = self.index.next_answer();
        let timers = self
            .nodes
            .iter()
            .filter_map(|n| n.core.poll_timeout())
            .map(|at| at.saturating_duration_since(self.start));
        arrivals.chain(answers).chain(timers).min()
    }

    /// Runs until virtual time `end`, or until nothing is due before it.
    pub fn run_until(&mut self, end: Duration) {
        for _ in 0..STEP_CAP {
            self.deliver_datagrams();
            self.deliver_replies();
            self.flush();
            let Some(next) = self.next_due().filter(|next| *next <= end) else {
                self.now = self.now.max(end);
                return;
            };
            self.now = self.now.max(next);
            let now = self.instant();
            for node in &mut self.nodes {
                if node.core.poll_timeout().is_some_and(|at| at <= now) {
                    node.core.handle_timeout(now);
                }
            }
        }
        panic!("the network did not settle in {STEP_CAP} steps");
    }

    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// Runs until nothing is due for a minute of virtual time (keepalives aside).
    pub fn run_to_idle(&mut self) {
        self.run_for(60 * SEC);
    }

    /// What node `i` showed, in order.
    pub fn shown(&self, i: usize) -> impl Iterator<Item = &UiEvent> {
        self.nodes[i].shown.iter().map(|(_, e)| e)
    }

    /// The texts node `i` received, with the sender.
    pub fn texts(&self, i: usize) -> Vec<(Uuid, String)> {
        self.shown(i)
            .filter_map(|e| match e {
                UiEvent::Message { from, text, .. } => Some((*from, text.clone())),
                _ => None,
            })
            .collect()
    }

    /// The error messages node `i` showed.
    pub fn errors(&self, i: usize) -> Vec<String> {
        self.shown(i)
            .filter_map(|e| match e {
                UiEvent::Error { message } => Some(message.clone()),
                _ => None,
            })
            .collect()
    }

    /// Forgets what node `i` showed so far.
    pub fn clear(&mut self, i: usize) {
        self.nodes[i].shown.clear();
    }

    /// Sets how node `i`'s outgoing link mistreats datagrams.
    pub fn impair(&mut self, i: usize, impair: Impair) {
        self.links[i].impair = impair;
    }
}
