//! peerlink's peer daemon: registers with the index, looks peers up (and caches them), and
//! chats with them directly over UDP through the reliable protocol core in `proto`.

pub mod chat;
pub mod command;
pub mod config;
pub mod control;
pub mod discovery;
pub mod driver;
pub mod history;
pub mod index;
pub mod mailbox;
pub mod nat;
pub mod output;
pub mod presence;
pub mod roomstate;
pub mod state;
pub mod store;
pub mod terminal;
pub mod udp;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

pub use config::Config;
use output::Output;

/// Loads (or creates) the identity, starts keeping the registration up in the background,
/// serves the control API when `--control` asks for it, and chats until `/quit`, the end of
/// input on a terminal, or `shutdown`. The chat starts at once: peers who know our UUID can
/// reach us even while the index is down.
pub async fn run(
    config: Config,
    socket: UdpSocket,
    input: mpsc::Receiver<driver::Input>,
    out: Output,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let state_dir = config.state_dir();
    // First: a second daemon on this directory stops here, before it touches anything.
    let _lock = state::lock_state_dir(&state_dir)?;
    let identity = state::load_or_create_identity(&state_dir).with_context(|| {
        format!(
            "loading the identity key from {} (to start afresh with a new identity, move that file away; peers will see a new UUID)",
            state_dir.display()
        )
    })?;
    let store = if config.no_history {
        store::Store::off()
    } else {
        store::Store::open(&state_dir)
            .await
            .with_context(|| format!("opening the message history in {}", state_dir.display()))?
    };
    let saved = store.load().await.context("reading the message history")?;
    tracing::info!(uuid = %identity.uuid(), state_dir = %state_dir.display(), "identity loaded");
    // The control API queues commands beside the user's input; the server stops with `run`.
    let (input, _control) = match config.control {
        Some(addr) => {
            let (tx, rx) = mpsc::channel(64);
            let server =
                control::start(addr, &state_dir, tx.clone(), out.clone(), store.clone()).await?;
            tokio::spawn(forward(input, tx));
            (rx, Some(server))
        }
        None => (input, None),
    };
    let index = config
        .index_url()
        .map(index::IndexClient::new)
        .transpose()?;
    // The send window (256 datagrams of up to 1200 bytes) must fit the peer's receive buffer,
    // or the kernel drops what the window allowed; the default (~208 KiB) does not hold it.
    // The kernel caps the request at net.core.rmem_max; failing to raise it only costs speed.
    let buffers = socket2::SockRef::from(&socket);
    if let Err(error) = buffers
        .set_recv_buffer_size(4 << 20)
        .and(buffers.set_send_buffer_size(1 << 20))
    {
        tracing::debug!(%error, "could not enlarge the UDP socket buffers");
    }
    let bound = socket
        .local_addr()
        .context("reading the UDP socket's address")?;
    let port = config.public_port.unwrap_or(bound.port());
    let host = nat::host::host_candidates(bound);
    let host_addrs = host.clone();
    let (news_tx, news) = mpsc::channel(16);
    let (announce, candidates) = tokio::sync::watch::channel(Vec::new());
    let nat = nat::agent::Nat::new(
        std::time::Instant::now(),
        rand::random(),
        host,
        config.ice_override(),
        announce,
    );
    let (presence_tx, presence_rx) = mpsc::channel(1);
    let presence = match &index {
        Some(index) => Some(tokio::spawn(presence::maintain(
            index.clone(),
            identity.clone(),
            port,
            config.name.clone(),
            Duration::from_secs(config.heartbeat_secs),
            news_tx.clone(),
            candidates,
            presence_rx,
        ))),
        None => None,
    };
    let (announce, announced) = tokio::sync::watch::channel(discovery::announce::Me::default());
    let directory = start_discovery(
        &config,
        &identity,
        port,
        &state_dir,
        index.clone(),
        news_tx.clone(),
        announced,
    );
    let mail_stats = Arc::new(mailbox::Stats::default());
    let mailman = index.clone().filter(|_| !config.no_mailbox).map(|index| {
        mailbox::Mailman {
            index,
            identity: identity.clone(),
            directory: directory.clone(),
            store: store.clone(),
            news: news_tx,
            stats: mail_stats.clone(),
        }
        .spawn()
    });
    let protocol = proto::Config {
        deadline: Duration::from_secs(config.deadline_secs),
        ..proto::Config::default()
    };
    let udp = udp::Udp::new(socket).context("setting up the UDP socket")?;
    let mut core = driver::Driver::core(&identity, config.name.clone(), protocol);
    core.restore(saved.sessions, saved.next_id);
    core.restore_mail(saved.mail);
    core.restore_state(saved.states);
    core.set_mailbox(mailman.is_some());
    if index.is_none() {
        core.handle_index_reply(std::time::Instant::now(), chat::IndexReply::NoIndex);
    }
    let facts = driver::Facts {
        listen: bound,
        index_url: config.index.clone(),
        state_dir,
        host: host_addrs,
    };
    let driver = driver::Driver::new(
        core,
        identity.clone(),
        udp,
        directory.clone(),
        out,
        nat,
        store,
        presence_tx,
        facts,
        announce,
    )
    .with_mailman(mailman, mail_stats);
    let result = driver.run(input, news, shutdown).await;
    if let Some(presence) = presence {
        presence.abort();
    }
    // Peers on the LAN forget us at once.
    directory.stop().await;
    let driver::Stopped { index_online } = result?;
    if let Some(index) = index.filter(|_| index_online) {
        // No ghosts: our record (and with it our room memberships) goes offline at once
        // rather than when its TTL runs out; a slow index does not hold the quit up.
        match tokio::time::timeout(QUIT_INDEX_WAIT, index.go_offline(&identity)).await {
            Ok(Ok(())) => tracing::info!("record taken offline at the index"),
            Ok(Err(error)) => tracing::debug!(%error, "could not take the record offline"),
            Err(_) => {
                tracing::debug!("the index did not answer in time; the record expires on its own")
            }
        }
    }
    Ok(())
}

/// Starts LAN discovery and the DHT unless turned off (trouble with either is reported and
/// leaves the other sources working), and loads the contacts.
fn start_discovery(
    config: &Config,
    identity: &proto::identity::Identity,
    port: u16,
    state_dir: &std::path::Path,
    index: Option<index::IndexClient>,
    news: mpsc::Sender<chat::IndexReply>,
    announced: tokio::sync::watch::Receiver<discovery::announce::Me>,
) -> discovery::Directory {
    let stats = std::sync::Arc::new(discovery::Stats::default());
    let lan = if config.no_mdns {
        None
    } else {
        discovery::lan::Lan::start(
            identity.clone(),
            port,
            announced.clone(),
            news,
            stats.clone(),
        )
        .inspect_err(|error| tracing::warn!(%error, "LAN discovery (mDNS) is off"))
        .ok()
    };
    let dht = (!config.no_dht).then(|| {
        let slot = std::sync::Arc::new(std::sync::OnceLock::new());
        let (bootstrap, identity) = (config.dht_bootstrap.clone(), identity.clone());
        let (ready, stats) = (slot.clone(), stats.clone());
        tokio::spawn(async move {
            match discovery::dht::Dht::start(identity, bootstrap, announced, stats).await {
                Ok(dht) => {
                    let _ = ready.set(dht);
                }
                Err(error) => tracing::warn!(%error, "the DHT is off"),
            }
        });
        slot
    });
    let contacts = discovery::contacts::Contacts::load(state_dir);
    discovery::Directory::new(index, lan, dht, contacts, stats)
}

/// Longest wait at quit for the index to take our record offline.
const QUIT_INDEX_WAIT: Duration = Duration::from_millis(1500);

async fn forward(mut from: mpsc::Receiver<driver::Input>, to: mpsc::Sender<driver::Input>) {
    while let Some(item) = from.recv().await {
        if to.send(item).await.is_err() {
            return;
        }
    }
}

/// Completes on SIGINT (ctrl-c) or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}
