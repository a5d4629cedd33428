//! The mailman: the task that carries letters between the chat core and the mailbox on the
//! index. It seals and deposits our letters one at a time, in the order the core handed them
//! out (so a peer takes them in our order), and fetches our own mailbox when we register and
//! then every [`POLL_MIN`] to [`POLL_MAX`] (backing off while it is empty), opens each letter
//! and checks it ([`proto::mailbox::open`]: seal, sender key, UUID), hands the good ones to
//! the core, and deletes the batch once the core has handled it and the store has written what
//! it remembered (so a crash in between shows nothing twice: the store knows what was taken).
//! A batch with nothing new in it counts as an empty mailbox, so an index that replays letters
//! cannot make the mailman look again and again.
//! Letters that do not open are counted, logged and deleted with the rest.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proto::api::mailbox::decode_sealed;
use proto::identity::Identity;
use proto::mailbox::{Letter, Stamp, seal};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use uuid::Uuid;

use crate::chat::{IndexReply, Outgoing};
use crate::discovery::Directory;
use crate::index::IndexClient;
use crate::store::Store;

/// Shortest wait between two looks into our mailbox.
pub const POLL_MIN: Duration = Duration::from_secs(5);
/// Longest wait between two looks while it stays empty.
pub const POLL_MAX: Duration = Duration::from_secs(60);
/// Wait after the index failed us.
const RETRY: Duration = Duration::from_secs(15);

/// What the driver asks of the mailman.
#[derive(Debug)]
pub enum Job {
    /// Seal and deposit this letter; the answer goes to the core as
    /// [`IndexReply::Deposited`].
    Deposit(Outgoing),
    /// The core handled the letters through this mailbox id (`fresh` of them were news):
    /// delete them.
    Taken {
        /// The last letter's mailbox id.
        through: i64,
        /// Letters the core had not seen before.
        fresh: usize,
    },
    /// Have the index refuse or accept again mail from a peer.
    Block(Uuid, bool),
    /// We are (again) registered: look into the mailbox now.
    Registered,
}

/// The mailman's counters (`/stats`).
#[derive(Debug, Default)]
pub struct Stats {
    /// Letters deposited in peers' mailboxes.
    pub deposited: AtomicU64,
    /// Deposits the index refused or that failed.
    pub deposit_failures: AtomicU64,
    /// Letters taken from our mailbox that opened and checked out.
    pub taken: AtomicU64,
    /// Letters that did not open or check out (altered, forged, malformed): dropped.
    pub rejected: AtomicU64,
}

impl Stats {
    /// `(name, value)` for `/stats`.
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("mailbox.deposited", self.deposited.load(Relaxed)),
            (
                "mailbox.deposit_failures",
                self.deposit_failures.load(Relaxed),
            ),
            ("mailbox.taken", self.taken.load(Relaxed)),
            ("mailbox.rejected", self.rejected.load(Relaxed)),
        ]
    }
}

/// What the mailman works with.
pub struct Mailman {
    /// The index holding the mailboxes.
    pub index: IndexClient,
    /// Us.
    pub identity: Identity,
    /// For the keys of contacts the core knows no key of.
    pub directory: Directory,
    /// Flushed before letters are deleted.
    pub store: Store,
    /// Where the core hears of deposits and letters.
    pub news: mpsc::Sender<IndexReply>,
    /// Counters.
    pub stats: Arc<Stats>,
}

/// Unix milliseconds now.
fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Mailman {
    /// Starts the task; it ends when the sender is dropped.
    pub fn spawn(self) -> mpsc::UnboundedSender<Job> {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(self.run(rx));
        tx
    }

    async fn run(self, mut jobs: mpsc::UnboundedReceiver<Job>) {
        let mut registered = false;
        // Letters handed to the core and not deleted yet: no new look until they are.
        let mut handing = false;
        // Whether the last look brought a full batch (more may wait).
        let mut full = false;
        let mut wait = POLL_MIN;
        let mut next = Instant::now();
        // Stamps are unique per run: never two letters sealed in the same millisecond.
        let mut last_at = 0u64;
        loop {
            tokio::select! {
                job = jobs.recv() => match job {
                    None => break,
                    Some(Job::Deposit(outgoing)) => {
                        let at = unix_millis().max(last_at + 1);
                        last_at = at;
                        self.deposit(outgoing, at).await;
                    }
                    Some(Job::Taken { through, fresh }) => {
                        handing = false;
                        self.store.flush().await;
                        match self.index.take_mail(&self.identity, through).await {
                            // Only news earns a quick look again: an index that hands out
                            // the same letters over and over is looked at ever less often.
                            Ok(_) if fresh == 0 => {
                                next = Instant::now() + wait;
                                wait = (wait * 2).min(POLL_MAX);
                            }
                            Ok(_) => {
                                wait = POLL_MIN;
                                next = Instant::now() + if full { Duration::ZERO } else { POLL_MIN };
                            }
                            // The letters come again and are recognised as taken.
                            Err(error) => {
                                tracing::info!(%error, "could not delete taken letters");
                                next = Instant::now() + RETRY;
                            }
                        }
                    }
                    Some(Job::Block(peer, blocked)) => {
                        if let Err(error) = self.index.block(&self.identity, peer, blocked).await {
                            tracing::warn!(%peer, %error, "could not tell the index about a block");
                        }
                    }
                    Some(Job::Registered) => {
                        registered = true;
                        next = Instant::now();
                    }
                },
                () = sleep_until(next), if registered && !handing => {
                    match self.look().await {
                        Ok(Some(batch)) => {
                            handing = true;
                            full = batch >= crate::index::MAIL_BATCH;
                        }
                        Ok(None) => {
                            next = Instant::now() + wait;
                            wait = (wait * 2).min(POLL_MAX);
                        }
                        Err(()) => next = Instant::now() + RETRY,
                    }
                }
            }
        }
    }

    /// Seals and deposits one letter; tells the core how it went.
    async fn deposit(&self, outgoing: Outgoing, at: u64) {
        let Outgoing {
            to,
            key,
            id,
            content,
        } = outgoing;
        let receipt = matches!(content, proto::mailbox::Content::Receipt { .. });
        let letter = Letter {
            to,
            stamp: Stamp { id, at },
            content,
        };
        let key = key.or_else(|| self.directory.contact_key(&to));
        let answer = match key {
            None => Err(
                "no key is known for this peer (it never registered with a key we \
                         saw, nor talked to us), so nothing can be sealed for it"
                    .to_owned(),
            ),
            Some(key) => match seal(&self.identity, &key, &letter, rand::random()) {
                Err(error) => Err(error.to_string()),
                Ok(sealed) => self.deliver(to, &sealed).await,
            },
        };
        let counter = if answer.is_ok() {
            &self.stats.deposited
        } else {
            &self.stats.deposit_failures
        };
        counter.fetch_add(1, Relaxed);
        let reply = IndexReply::Deposited {
            to,
            id,
            at,
            receipt,
            answer,
        };
        let _ = self.news.send(reply).await;
    }

    /// Deposits a sealed letter, trying again (twice, after 1 s and 2 s) when the index fails
    /// for a moment.
    async fn deliver(&self, to: Uuid, sealed: &[u8]) -> Result<(), String> {
        let mut pause = Duration::from_secs(1);
        loop {
            match self.index.deposit(&self.identity, to, sealed).await {
                Ok(()) => return Ok(()),
                Err(error) if error.is_permanent() || pause > Duration::from_secs(2) => {
                    return Err(error.to_string());
                }
                Err(_) => {
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
            }
        }
    }

    /// One look into our mailbox: how many letters it fetched, when some went to the core.
    async fn look(&self) -> Result<Option<usize>, ()> {
        let mailbox = match self.index.fetch_mail(&self.identity).await {
            Ok(mailbox) => mailbox,
            Err(error) => {
                tracing::debug!(%error, "could not read our mailbox");
                return Err(());
            }
        };
        let Some(through) = mailbox.letters.iter().map(|letter| letter.id).max() else {
            return Ok(None);
        };
        let fetched = mailbox.letters.len();
        let mut letters = Vec::with_capacity(mailbox.letters.len());
        for letter in &mailbox.letters {
            let opened = decode_sealed(&letter.sealed)
                .ok_or(proto::mailbox::MailboxError::Version)
                .and_then(|sealed| proto::mailbox::open(&self.identity, letter.from, &sealed));
            match opened {
                Ok(opened) => letters.push(opened),
                Err(error) => {
                    self.stats.rejected.fetch_add(1, Relaxed);
                    tracing::warn!(from = %letter.from, id = letter.id, %error, "dropped a letter");
                }
            }
        }
        self.stats.taken.fetch_add(letters.len() as u64, Relaxed);
        let _ = self.news.send(IndexReply::Mail { letters, through }).await;
        Ok(Some(fetched))
    }
}
