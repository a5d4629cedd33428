//! The daemon's one task: owns the UDP socket and the protocol state machine, and `select!`s
//! over datagrams, the next protocol timer, user input, index answers, registration news and
//! shutdown. Index requests run as separate tasks, so the chat never waits on the index.

use std::collections::HashMap;
use std::future::Future;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use proto::api::PeerRecord;
use proto::chat::ChatMessage;
use proto::identity::Identity;
use proto::{Event, MsgId, SecureConfig, SecureEndpoint, Transmit};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::cache::{DEFAULT_TTL, LookupCache};
use crate::chat::Chat;
use crate::command::{Command, LineJoiner};
use crate::index::{IndexClient, Lookup};
use crate::output::{Output, UiEvent, millis};
use crate::presence::News;
use crate::udp::Udp;

/// Datagrams read in one go before acknowledging them together.
const RECV_BATCH: usize = 64;
/// Input lines taken in one go before sending what they asked for.
const INPUT_BATCH: usize = 64;

/// Something for the driver to do, from stdin or the control API.
#[derive(Debug)]
pub enum Input {
    /// A raw line as typed (continuation lines are joined here).
    Line(String),
    /// An already parsed command.
    Command(Command),
}

/// An answer from a task that talked to the index.
pub enum IndexReply {
    /// Where a peer is (and for how long that holds).
    Lookup(Uuid, anyhow::Result<Option<Lookup>>),
    /// Who goes by a name.
    Name(String, anyhow::Result<Option<Lookup>>),
    /// What the index says about a peer that told us its name (checking the claim).
    Verify(Uuid, anyhow::Result<Option<Lookup>>),
    /// We joined a room; its members.
    Joined(String, anyhow::Result<Vec<PeerRecord>>),
    /// We left a room.
    Left(String, anyhow::Result<()>),
    /// A room's members (for `/who`).
    Who(String, anyhow::Result<Vec<PeerRecord>>),
    /// The room list.
    Rooms(anyhow::Result<Vec<proto::api::RoomSummary>>),
}

/// What a message sent to one peer is part of.
#[derive(Debug, Clone, Copy)]
pub enum Tag {
    /// A private message; the user sees its receipt as `delivered`.
    Direct(u64),
    /// One copy of a room message: the user sees the room's count.
    Group(u64),
    /// Control traffic (introductions, joins) the user need not hear about.
    Quiet,
}

/// A room message on its way to every member.
pub struct Group {
    /// The room.
    pub room: String,
    /// Copies sent.
    pub total: usize,
    /// Copies acknowledged.
    pub delivered: usize,
    /// Copies given up.
    pub failed: usize,
    /// Slowest acknowledgement.
    pub rtt: Duration,
    /// A reason one copy failed, for the summary.
    pub reason: Option<String>,
}

/// What to do once a name resolves.
pub enum NameAction {
    /// `/msg <name> <text>`.
    Msg(String),
    /// `/fork <name>`.
    Fork,
}

/// Runtime state of a daemon.
pub struct Driver {
    pub(crate) endpoint: SecureEndpoint,
    pub(crate) identity: Identity,
    udp: Udp,
    /// Datagrams of the current turn, reused across turns.
    outgoing: Vec<Transmit>,
    pub(crate) index: IndexClient,
    pub(crate) out: Output,
    pub(crate) chat: Chat,
    /// Addresses learned from the index; addresses learned from datagrams live in the endpoint.
    pub(crate) cache: LookupCache,
    /// Messages waiting for a lookup to finish.
    pub(crate) waiting: HashMap<Uuid, Vec<(Vec<u8>, Tag)>>,
    pub(crate) waiting_names: HashMap<String, Vec<NameAction>>,
    /// Events about peers whose claimed name the index is being asked about.
    pub(crate) held: HashMap<Uuid, Vec<UiEvent>>,
    pub(crate) tasks: JoinSet<IndexReply>,
    pub(crate) tags: HashMap<MsgId, Tag>,
    pub(crate) groups: HashMap<u64, Group>,
    pub(crate) next_id: u64,
    pub(crate) registered: bool,
}

/// A non-zero number that grows across runs: the start time in microseconds.
pub fn incarnation() -> u64 {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    micros.max(1)
}

/// Whether the loop goes on.
pub(crate) enum Flow {
    Continue,
    Quit,
}

impl Driver {
    /// A driver speaking for `identity`.
    pub fn new(
        identity: Identity,
        name: Option<String>,
        udp: Udp,
        index: IndexClient,
        out: Output,
        config: proto::Config,
    ) -> Self {
        let secure = SecureConfig {
            endpoint: config,
            seed: rand::random(),
        };
        let me = identity.uuid();
        let mut chat = Chat::new(me);
        chat.set_own_name(name);
        Driver {
            endpoint: SecureEndpoint::new(identity.clone(), incarnation(), secure),
            identity,
            udp,
            outgoing: Vec::new(),
            index,
            out,
            chat,
            cache: LookupCache::default(),
            waiting: HashMap::new(),
            waiting_names: HashMap::new(),
            held: HashMap::new(),
            tasks: JoinSet::new(),
            tags: HashMap::new(),
            groups: HashMap::new(),
            next_id: 0,
            registered: false,
        }
    }

    /// Runs until `/quit`, the end of input on a terminal, or `shutdown`; `news` reports on
    /// the registration kept up beside the chat.
    pub async fn run(
        mut self,
        mut input: mpsc::Receiver<Input>,
        mut news: mpsc::Receiver<News>,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        let mut input_open = true;
        let mut joiner = LineJoiner::default();
        loop {
            // For the terminal's prompt and the control API's `GET /sessions`.
            self.out.publish_sessions(self.chat.session_lines());
            // What the last turn reported, after its datagrams went out: one write per turn.
            self.out.flush();
            let timeout = self.endpoint.poll_timeout();
            let flow = tokio::select! {
                () = &mut shutdown => Flow::Quit,
                ready = self.udp.readable() => {
                    self.on_readable(ready);
                    Flow::Continue
                }
                () = sleep_until(timeout), if timeout.is_some() => {
                    self.endpoint.handle_timeout(Instant::now());
                    Flow::Continue
                }
                item = input.recv(), if input_open => {
                    // A pasted or scripted burst is taken in one turn, so its messages go out
                    // together and their events in one write.
                    let mut item = item;
                    let mut flow = Flow::Continue;
                    for taken in 1.. {
                        match item {
                            Some(Input::Line(line)) => {
                                if let Some(text) = joiner.push(&line) {
                                    flow = self.on_input(&text);
                                }
                            }
                            Some(Input::Command(command)) => flow = self.on_command(command),
                            None => {
                                // Without a terminal (pipes, containers) the end of input is
                                // not a request to leave: keep chatting until a signal.
                                input_open = false;
                                break;
                            }
                        }
                        if matches!(flow, Flow::Quit) || taken == INPUT_BATCH {
                            break;
                        }
                        item = match input.try_recv() {
                            Ok(next) => Some(next),
                            Err(mpsc::error::TryRecvError::Empty) => break,
                            Err(mpsc::error::TryRecvError::Disconnected) => None,
                        };
                    }
                    flow
                }
                Some(news) = news.recv() => {
                    self.on_news(news);
                    Flow::Continue
                }
                Some(joined) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    match joined {
                        Ok(reply) => self.on_index_reply(reply),
                        Err(error) => tracing::error!(%error, "index task failed"),
                    }
                    Flow::Continue
                }
            };
            self.flush().await;
            if let Flow::Quit = flow {
                break;
            }
        }
        self.say_goodbye().await;
        self.out.flush();
        let stats = self.endpoint.stats();
        let secure = self.endpoint.secure_stats();
        tracing::info!(?stats, ?secure, "daemon stopped");
        Ok(())
    }

    /// Reads up to [`RECV_BATCH`] datagrams that are waiting; their acknowledgements then go
    /// out together. What is left wakes the next turn.
    fn on_readable(&mut self, ready: std::io::Result<()>) {
        if let Err(error) = ready {
            tracing::warn!(%error, "the UDP socket failed");
            return;
        }
        let endpoint = &mut self.endpoint;
        let mut read = 0;
        while read < RECV_BATCH {
            match self
                .udp
                .try_recv(|from, bytes| endpoint.handle_datagram(Instant::now(), from, bytes))
            {
                // Acknowledge what came before asking the kernel again.
                Ok((_, false)) => return,
                Ok((count, true)) => read += count.max(1),
                Err(error) if error.kind() == ErrorKind::WouldBlock => return,
                // ICMP errors from a peer that went away may surface here; retransmission and
                // the deadline deal with that peer, the socket itself is fine.
                Err(error) => {
                    tracing::debug!(%error, "receive error");
                    read += 1;
                }
            }
        }
    }

    fn on_news(&mut self, news: News) {
        match news {
            News::Registered(record) => {
                tracing::info!(uuid = %record.uuid, addr = %record.addr, "registered");
                self.out.emit(UiEvent::Registered {
                    uuid: record.uuid,
                    addr: record.addr,
                });
                // (Re-)join our rooms on the index: it may have forgotten us.
                self.registered = true;
                for room in self.chat.my_rooms() {
                    self.spawn_join(room);
                }
            }
            News::Trouble(message) => self.out.emit(UiEvent::Error { message }),
        }
    }

    pub(crate) fn spawn_join(&mut self, room: String) {
        let (index, identity) = (self.index.clone(), self.identity.clone());
        self.tasks.spawn(async move {
            let result = index.join_room(&identity, &room).await;
            IndexReply::Joined(room, result)
        });
    }

    /// Sends `message` to `peer`, introducing ourselves first on first contact and looking
    /// the peer up when we have no address for it.
    pub(crate) fn send_chat(&mut self, peer: Uuid, message: &ChatMessage, tag: Tag) {
        if self.chat.needs_hello(peer) {
            let hello = ChatMessage::Hello {
                name: self.chat.own_name(),
                rooms: self.chat.my_rooms(),
            };
            self.send_payload(peer, hello.encode(), Tag::Quiet);
        }
        self.send_payload(peer, message.encode(), tag);
    }

    pub(crate) fn send_payload(&mut self, peer: Uuid, payload: Vec<u8>, tag: Tag) {
        // Behind messages already waiting for a lookup, even if the address has meanwhile
        // become known another way (a datagram, a room listing): order comes first.
        if let Some(waiting) = self.waiting.get_mut(&peer) {
            waiting.push((payload, tag));
            return;
        }
        let known = self
            .endpoint
            .peer_addr(&peer)
            .or_else(|| self.cache.get(&peer));
        let Some(addr) = known else {
            let waiting = self.waiting.entry(peer).or_default();
            waiting.push((payload, tag));
            if waiting.len() == 1 {
                let index = self.index.clone();
                self.tasks
                    .spawn(async move { IndexReply::Lookup(peer, index.lookup(peer).await) });
            }
            return;
        };
        match self.endpoint.send(Instant::now(), peer, addr, payload) {
            Ok(id) => {
                self.tags.insert(id, tag);
            }
            Err(error) => self.settle(peer, tag, Err(error.to_string())),
        }
    }

    /// Remembers what the index said about a peer.
    pub(crate) fn learn_record(
        &mut self,
        record: &PeerRecord,
        max_age: Option<Duration>,
    ) -> Option<SocketAddr> {
        let ttl = max_age.unwrap_or(DEFAULT_TTL);
        self.chat
            .vouch(record.uuid, record.name.as_deref(), Instant::now(), ttl);
        let addr = record.addr.parse().ok()?;
        self.cache
            .insert(record.uuid, addr, max_age.unwrap_or(DEFAULT_TTL));
        Some(addr)
    }

    pub(crate) fn on_lookup(&mut self, peer: Uuid, result: anyhow::Result<Option<Lookup>>) {
        let pending = self.waiting.remove(&peer).unwrap_or_default();
        let reason = match result {
            Ok(Some(Lookup { record, max_age })) => match self.learn_record(&record, max_age) {
                Some(addr) => {
                    for (payload, tag) in pending {
                        match self.endpoint.send(Instant::now(), peer, addr, payload) {
                            Ok(id) => {
                                self.tags.insert(id, tag);
                            }
                            Err(error) => self.settle(peer, tag, Err(error.to_string())),
                        }
                    }
                    return;
                }
                None => format!("the index returned an unusable address `{}`", record.addr),
            },
            Ok(None) => "no such peer is registered at the index".to_owned(),
            Err(error) => format!("could not look the peer up: {error:#}"),
        };
        for (_, tag) in pending {
            self.settle(peer, tag, Err(reason.clone()));
        }
    }

    /// Reports the outcome of one copy of a message.
    pub(crate) fn settle(&mut self, peer: Uuid, tag: Tag, outcome: Result<Duration, String>) {
        match (tag, outcome) {
            (Tag::Quiet, _) => {}
            (Tag::Direct(id), Ok(rtt)) => self.out.emit(UiEvent::Delivered {
                to: Some(peer),
                room: None,
                id,
                rtt_ms: millis(rtt),
                delivered: None,
                total: None,
            }),
            (Tag::Direct(id), Err(reason)) => self.out.emit(UiEvent::Failed {
                to: Some(peer),
                room: None,
                id: Some(id),
                reason,
            }),
            (Tag::Group(id), outcome) => {
                let Some(group) = self.groups.get_mut(&id) else {
                    return;
                };
                match outcome {
                    Ok(rtt) => {
                        group.delivered += 1;
                        group.rtt = group.rtt.max(rtt);
                    }
                    Err(reason) => {
                        group.failed += 1;
                        group
                            .reason
                            .get_or_insert(format!("{}: {reason}", self.chat.label(&peer)));
                    }
                }
                if group.delivered + group.failed == group.total {
                    let group = self.groups.remove(&id).expect("present above");
                    self.report_group(id, group);
                }
            }
        }
    }

    pub(crate) fn report_group(&self, id: u64, group: Group) {
        if group.delivered == 0 && group.total > 0 {
            let reason = group.reason.unwrap_or_default();
            self.out.emit(UiEvent::Failed {
                to: None,
                room: Some(group.room),
                id: Some(id),
                reason,
            });
            return;
        }
        self.out.emit(UiEvent::Delivered {
            to: None,
            room: Some(group.room),
            id,
            rtt_ms: millis(group.rtt),
            delivered: Some(group.delivered),
            total: Some(group.total),
        });
    }

    /// Sends every pending datagram, then handles every pending event.
    async fn flush(&mut self) {
        loop {
            let mut outgoing = std::mem::take(&mut self.outgoing);
            let now = Instant::now();
            outgoing.extend(std::iter::from_fn(|| self.endpoint.poll_transmit(now)));
            if !outgoing.is_empty() {
                self.udp.send_all(&outgoing).await;
                outgoing.clear();
            }
            self.outgoing = outgoing;
            let Some(event) = self.endpoint.poll_event() else {
                return;
            };
            match event {
                Event::Message { from, data } => self.on_chat_payload(from, &data),
                Event::Delivered { to, id, rtt } => {
                    let tag = self.tags.remove(&id).unwrap_or(Tag::Quiet);
                    self.settle(to, tag, Ok(rtt));
                }
                Event::Failed { to, id, reason } => {
                    let tag = self.tags.remove(&id).unwrap_or(Tag::Quiet);
                    self.settle(to, tag, Err(reason));
                }
            }
        }
    }

    /// Tells the rooms we are leaving; best effort, bounded in time.
    async fn say_goodbye(&mut self) {
        for room in self.chat.my_rooms() {
            for peer in self.chat.members(&room) {
                let goodbye = ChatMessage::Left { room: room.clone() };
                self.send_payload(peer, goodbye.encode(), Tag::Quiet);
            }
        }
        // One transmission of the goodbyes; nobody waits for their acknowledgements.
        let now = Instant::now();
        let goodbyes: Vec<Transmit> =
            std::iter::from_fn(|| self.endpoint.poll_transmit(now)).collect();
        let _ =
            tokio::time::timeout(Duration::from_millis(500), self.udp.send_all(&goodbyes)).await;
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
