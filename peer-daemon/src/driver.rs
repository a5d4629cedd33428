//! The daemon's one task, plumbing only: it owns the UDP socket and the [`ChatCore`], and
//! `select!`s over datagrams, the core's next timer, parsed commands from the front-ends,
//! answers from the index and shutdown, following the core's polling order after each. Index
//! requests run as separate tasks, so the chat never waits on the index.

use std::future::Future;
use std::io::ErrorKind;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use proto::identity::Identity;
use proto::{SecureConfig, SecureEndpoint, Transmit};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::chat::{Action, ChatCore, IndexReply, IndexStatus};
use crate::command::Command;
use crate::discovery::Directory;
use crate::discovery::announce::Me;
use crate::history::{Change, Line, SessionKind};
use crate::nat::agent::{Nat, NatChange};
use crate::nat::servers::{self, IceUrl};
use crate::nat::turn::{Incoming, ServerConfig};
use crate::output::{Output, UiEvent};
use crate::store::Store;
use crate::udp::Udp;

mod input;
mod mail;
mod report;

pub use input::{Input, StateOp, StateRequest};

/// Datagrams read in one go before acknowledging them together.
const RECV_BATCH: usize = 64;
/// Longest wait for the goodbyes to leave when the daemon stops.
const GOODBYE_TIMEOUT: Duration = Duration::from_millis(500);

/// What the driver is told about its surroundings, for `/whoami`.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The local UDP address.
    pub listen: std::net::SocketAddr,
    /// The index's base URL.
    pub index_url: String,
    /// The state directory.
    pub state_dir: std::path::PathBuf,
    /// Our host addresses (announced on the LAN and in the DHT beside the gathered
    /// candidates).
    pub host: Vec<std::net::SocketAddr>,
}

/// How the driver stopped when the user quit (or a signal came).
#[derive(Debug, PartialEq, Eq)]
pub struct Stopped {
    /// Whether the index answered lately, so that taking our record offline there is worth a
    /// (bounded) try.
    pub index_online: bool,
}

/// Longest wait for the message store to write what is left when the daemon stops.
const STORE_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Unix milliseconds now, for the history.
pub fn unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A non-zero number that grows across runs: the start time in microseconds.
pub fn incarnation() -> u64 {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    micros.max(1)
}

/// Moves bytes between the socket, the index, the front-ends and the chat core.
pub struct Driver {
    core: ChatCore,
    identity: Identity,
    udp: Udp,
    directory: Directory,
    out: Output,
    tasks: JoinSet<IndexReply>,
    /// Datagrams of the current turn, reused across turns.
    outgoing: Vec<Transmit>,
    nat: Nat,
    /// ICE server names being resolved.
    resolving: JoinSet<(Vec<ServerConfig>, Vec<String>)>,
    /// The last NAT trouble shown, so that a retrying server is reported once.
    trouble: Option<String>,
    /// The local message store.
    store: Store,
    /// History reads under way: the session, why, and the lines.
    reads: JoinSet<(SessionKind, &'static str, anyhow::Result<Vec<Line>>)>,
    /// Requests for the registration (`/nick`, checking the index after a failure).
    presence: mpsc::Sender<crate::presence::Request>,
    facts: Facts,
    /// What we announce on the LAN and in the DHT.
    announce: tokio::sync::watch::Sender<Me>,
    /// The mailman (`None` without an index: nothing to deposit in).
    mailman: Option<mpsc::UnboundedSender<crate::mailbox::Job>>,
    mail_stats: std::sync::Arc<crate::mailbox::Stats>,
}

impl Driver {
    /// A driver speaking for `identity`, introducing itself as `name`, reachable as `nat`
    /// gathers, remembering in `store` (whose saved state `core` was restored from).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        core: ChatCore,
        identity: Identity,
        udp: Udp,
        directory: Directory,
        out: Output,
        nat: Nat,
        store: Store,
        presence: mpsc::Sender<crate::presence::Request>,
        facts: Facts,
        announce: tokio::sync::watch::Sender<Me>,
    ) -> Self {
        let mut driver = Driver {
            core,
            identity,
            udp,
            directory,
            out,
            tasks: JoinSet::new(),
            outgoing: Vec::new(),
            nat,
            resolving: JoinSet::new(),
            trouble: None,
            store,
            reads: JoinSet::new(),
            presence,
            facts,
            announce,
            mailman: None,
            mail_stats: Default::default(),
        };
        if let Some(preset) = driver.nat.preset() {
            driver.resolve(preset);
        }
        driver.nat_changes();
        driver.announce();
        driver
    }

    /// Tells the LAN and the DHT what changed about us (name, addresses, rooms).
    fn announce(&mut self) {
        let me = Me::new(
            self.core.own_name(),
            &self.facts.host,
            self.core.candidates(),
            self.core.rooms(),
        );
        self.announce.send_if_modified(|current| {
            let changed = *current != me;
            if changed {
                *current = me;
            }
            changed
        });
    }

    /// The chat core for `identity`, introducing itself as `name`.
    pub fn core(identity: &Identity, name: Option<String>, config: proto::Config) -> ChatCore {
        let secure = SecureConfig {
            endpoint: config,
            seed: rand::random(),
        };
        let endpoint = SecureEndpoint::new(identity.clone(), incarnation(), secure);
        ChatCore::new(endpoint, name, Instant::now())
    }

    fn resolve(&mut self, urls: Vec<IceUrl>) {
        self.resolving.spawn(servers::resolve(urls));
    }

    /// Hands what NAT traversal learned to the core and the user.
    fn nat_changes(&mut self) {
        while let Some(change) = self.nat.poll_change() {
            match change {
                NatChange::Candidates { candidates, relay } => {
                    tracing::info!(?candidates, relay, "candidates");
                    self.core
                        .set_own_candidates(Instant::now(), candidates, relay);
                }
                NatChange::Trouble(message) => {
                    if self.trouble.as_ref() != Some(&message) {
                        tracing::warn!(%message, "NAT traversal");
                        self.out.emit(UiEvent::Error {
                            message: format!("NAT traversal: {message}"),
                        });
                        self.trouble = Some(message);
                    }
                }
            }
        }
    }

    /// News from the registration: the index's ICE servers are looked at on the way.
    fn on_news(&mut self, mut reply: IndexReply) {
        if let IndexReply::Met(record, _) = &mut reply {
            self.directory.check_lan_name(record);
        }
        if matches!(reply, IndexReply::Registered(_)) {
            self.hand_to_mailman(crate::mailbox::Job::Registered);
        }
        let servers = match &reply {
            IndexReply::Registered(record) => Some(&record.ice_servers),
            IndexReply::IceServers(servers) => Some(servers),
            _ => None,
        };
        if let Some(urls) = servers.and_then(|servers| self.nat.index_servers(servers)) {
            self.resolve(urls);
        }
        self.core.handle_index_reply(Instant::now(), reply);
    }

    /// Runs until `/quit`, the end of input on a terminal, or `shutdown`; `news` reports on
    /// the registration kept up beside the chat.
    pub async fn run(
        mut self,
        mut input: mpsc::Receiver<Input>,
        mut news: mpsc::Receiver<IndexReply>,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<Stopped> {
        tokio::pin!(shutdown);
        let mut input_open = true;
        // The first session list, for the prompt and `GET /sessions` before anything happens.
        let mut turn = self.flush().await;
        while turn == Turn::Go {
            // What the last turn reported, after its datagrams went out: one write per turn.
            self.out.flush();
            let timeout = self
                .core
                .poll_timeout()
                .into_iter()
                .chain(self.nat.poll_timeout())
                .min();
            // Whether this turn may change what we announce (not a datagram's).
            let mut news_turn = true;
            tokio::select! {
                () = &mut shutdown => self.core.handle_command(Instant::now(), Command::Quit),
                ready = self.udp.readable() => {
                    news_turn = false;
                    self.on_readable(ready);
                }
                () = sleep_until(timeout), if timeout.is_some() => {
                    let now = Instant::now();
                    self.nat.handle_timeout(now);
                    if self.core.poll_timeout().is_some_and(|t| t <= now) {
                        self.core.handle_timeout(now);
                    }
                }
                Some(resolved) = self.resolving.join_next(), if !self.resolving.is_empty() => {
                    if let Ok((servers, failed)) = resolved {
                        self.nat.set_servers(Instant::now(), servers, failed);
                    }
                }
                item = input.recv(), if input_open => match item {
                    Some(item) => self.on_input(item, &mut input),
                    // Without a terminal (pipes, containers) the end of input is not a
                    // request to leave: keep chatting until a signal.
                    None => input_open = false,
                },
                Some(reply) = news.recv() => self.on_news(reply),
                Some(joined) = self.tasks.join_next(), if !self.tasks.is_empty() => match joined {
                    Ok(reply) => self.core.handle_index_reply(Instant::now(), reply),
                    Err(error) => tracing::error!(%error, "index task failed"),
                },
                Some(read) = self.reads.join_next(), if !self.reads.is_empty() => {
                    if let Ok((session, reason, lines)) = read {
                        self.on_history(session, reason, lines);
                    }
                }
            }
            self.nat_changes();
            turn = self.flush().await;
            if news_turn {
                self.announce();
            }
        }
        self.out.flush();
        if tokio::time::timeout(STORE_FLUSH_TIMEOUT, self.store.flush())
            .await
            .is_err()
        {
            tracing::warn!("the message store did not finish writing in time");
        }
        let endpoint = self.core.endpoint();
        let (stats, secure, nat) = (endpoint.stats(), endpoint.secure_stats(), self.nat.stats());
        tracing::info!(?stats, ?secure, ?nat, "daemon stopped");
        match turn {
            Turn::Exit(message) => Err(anyhow::anyhow!(message)),
            _ => Ok(Stopped {
                index_online: *self.core.index_status() == IndexStatus::Online,
            }),
        }
    }

    /// Lines the store read back: shown as a `history` event (or said to be none).
    fn on_history(
        &mut self,
        session: SessionKind,
        reason: &'static str,
        lines: anyhow::Result<Vec<Line>>,
    ) {
        match lines {
            Ok(lines) => {
                let oldest = lines.first().map(|line| line.id);
                if !lines.is_empty() {
                    self.out
                        .emit(self.core.history_event(&session, reason, lines));
                }
                self.core.history_shown(session, oldest, reason);
            }
            // (A daemon without a store says so: the error is `store::OFF`.)
            Err(error) => {
                tracing::debug!(error = %format!("{error:#}"), "reading the history");
                self.out.emit(UiEvent::Error {
                    message: format!("could not read the message history: {error}"),
                });
            }
        }
    }

    /// Reads up to [`RECV_BATCH`] datagrams that are waiting; their acknowledgements then go
    /// out together. What is left wakes the next turn.
    fn on_readable(&mut self, ready: std::io::Result<()>) {
        if let Err(error) = ready {
            tracing::warn!(%error, "the UDP socket failed");
            return;
        }
        let (core, nat) = (&mut self.core, &mut self.nat);
        let mut read = 0;
        while read < RECV_BATCH {
            match self.udp.try_recv(|from, bytes| {
                let now = Instant::now();
                match nat.incoming(now, from, bytes) {
                    Incoming::NotOurs => core.handle_datagram(now, from, bytes),
                    Incoming::Relayed { peer, data } => core.handle_relayed(now, peer, &data),
                    Incoming::Consumed => {}
                }
            }) {
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

    /// Follows the core's polling order: its datagrams (acknowledgements first), its actions,
    /// then what the actions' events made it send; returns whether to go on.
    async fn flush(&mut self) -> Turn {
        self.send().await;
        let mut turn = Turn::Go;
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::Ask(request) => {
                    let (directory, identity) = (self.directory.clone(), self.identity.clone());
                    self.tasks
                        .spawn(async move { directory.answer(&identity, request).await });
                }
                Action::Contact(contact) => self.directory.remember(contact),
                Action::Deposit(outgoing) => {
                    self.hand_to_mailman(crate::mailbox::Job::Deposit(outgoing))
                }
                Action::MailTaken { through, fresh } => {
                    self.hand_to_mailman(crate::mailbox::Job::Taken { through, fresh })
                }
                Action::Block { peer, blocked } => {
                    self.hand_to_mailman(crate::mailbox::Job::Block(peer, blocked))
                }
                Action::Show(event) => self.out.emit(event),
                Action::Sessions(lines) => self.out.publish_sessions(lines),
                Action::Quit => {
                    if turn == Turn::Go {
                        turn = Turn::Quit;
                    }
                }
                Action::Exit(message) => {
                    self.out.emit(UiEvent::Error {
                        message: message.clone(),
                    });
                    turn = Turn::Exit(message);
                }
                Action::Store(mut change) => {
                    if let Change::Line(line) = &mut change {
                        line.at_ms = unix_millis();
                    }
                    self.store.record(change);
                }
                Action::History { query, reason } => {
                    let store = self.store.clone();
                    let session = query
                        .session
                        .clone()
                        .unwrap_or_else(|| SessionKind::Room(proto::chat::LOBBY.to_owned()));
                    self.reads.spawn(async move {
                        let lines = store.history(query).await;
                        (session, reason, lines)
                    });
                }
                Action::CheckIndex => {
                    // One check at a time is enough.
                    let _ = self.presence.try_send(crate::presence::Request::Check);
                }
                Action::Rename(name) => {
                    if self
                        .presence
                        .try_send(crate::presence::Request::Rename(name))
                        .is_err()
                    {
                        self.core.handle_index_reply(
                            Instant::now(),
                            IndexReply::Renamed(Err("a name change is already under way".into())),
                        );
                    }
                }
            }
        }
        self.send().await;
        turn
    }

    /// Sends every datagram the core has.
    async fn send(&mut self) {
        let now = Instant::now();
        let mut outgoing = std::mem::take(&mut self.outgoing);
        while let Some(transmit) = self.core.poll_transmit(now) {
            let relay = self.core.endpoint().is_relay_addr(&transmit.to);
            let wrapped = self.nat.outgoing(now, transmit, relay);
            // A first datagram through the relay to a peer asks for a channel: that request
            // goes out before the datagram.
            outgoing.extend(std::iter::from_fn(|| self.nat.poll_transmit()));
            outgoing.extend(wrapped);
        }
        outgoing.extend(std::iter::from_fn(|| self.nat.poll_transmit()));
        if !outgoing.is_empty() {
            let sending = self.udp.send_all(&outgoing);
            if self.core.quitting() {
                // The goodbyes are best effort: nobody waits long for them.
                let _ = tokio::time::timeout(GOODBYE_TIMEOUT, sending).await;
            } else {
                sending.await;
            }
            outgoing.clear();
        }
        self.outgoing = outgoing;
    }
}

/// Whether the loop goes on after a turn.
#[derive(Debug, PartialEq, Eq)]
enum Turn {
    Go,
    Quit,
    Exit(String),
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}
