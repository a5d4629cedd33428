//! Offline delivery, the core's part: a private message that cannot be delivered directly (the
//! peer gave no answer, or the index says it is not online) is handed out as a letter for the
//! peer's mailbox on the index ([`Action::Deposit`]); the user sees `queued`, then `delivered`
//! with `"via":"mailbox"` when the peer's receipt comes (directly, or through our own
//! mailbox). Letters from our mailbox ([`IndexReply::Mail`], already opened and checked by the
//! driver) are shown once each, in their sender's order, and answered with receipts.
//!
//! Sealing, the index and the store are the driver's: this module only decides.

use std::collections::{HashMap, HashSet, VecDeque};

use proto::chat::ChatMessage;
use proto::mailbox::{Content, MAX_RECEIPTS, Opened, Stamp};
use uuid::Uuid;

use super::api::Outgoing;
use super::delivery::Tag;
use super::{Action, Answer, ChatCore, HOLD_LIMIT, Held, IndexRequest, IndexStatus};
use crate::history::{Change, Delivery, MailChange, SavedMail};
use crate::output::UiEvent;

/// Letters taken that are remembered (so that none is shown twice).
const MAX_SEEN: usize = 100_000;
/// Keys remembered for sealing (beyond: the contacts still know them).
const MAX_KEYS: usize = 4096;

/// What the core keeps about mail.
#[derive(Debug, Default)]
pub(super) struct Mail {
    /// The text of our private messages on their way, for the mailbox if they fail.
    drafts: HashMap<u64, (String, bool)>,
    /// Why direct delivery failed, for messages being deposited.
    depositing: HashMap<u64, String>,
    /// Our letters in recipients' mailboxes: message id → (recipient, stamp time).
    waiting: HashMap<u64, (Uuid, u64)>,
    /// Letters taken, and their order for forgetting the oldest.
    seen: HashSet<(Uuid, Stamp)>,
    seen_order: VecDeque<(Uuid, Stamp)>,
    /// Receipts on their way directly, by a key of their tag.
    receipts: HashMap<u64, (Uuid, Vec<Stamp>)>,
    next_receipt: u64,
    /// Peers we block.
    blocked: HashSet<Uuid>,
    /// Whether letters may be deposited at all (an index, and no `--no-mailbox`).
    off: bool,
    /// Peers that said goodbye and have not been heard from since: a message for one asks
    /// the index first whether it is back, and goes to its mailbox if not.
    gone: HashSet<Uuid>,
    /// Keys that hash to their UUID, from records and handshakes.
    keys: HashMap<Uuid, [u8; 32]>,
    /// Letters dropped: duplicates and blocked senders.
    pub(super) duplicates: u64,
    pub(super) from_blocked: u64,
}

impl Mail {
    fn see(&mut self, from: Uuid, stamp: Stamp) -> bool {
        if !self.seen.insert((from, stamp)) {
            return false;
        }
        self.seen_order.push_back((from, stamp));
        if self.seen_order.len() > MAX_SEEN
            && let Some(old) = self.seen_order.pop_front()
        {
            self.seen.remove(&old);
        }
        true
    }

    /// `peer` said goodbye (it quit).
    pub(super) fn left(&mut self, peer: Uuid) {
        self.gone.insert(peer);
    }

    /// `peer` is back (we heard from it, or the index has its record again).
    pub(super) fn back(&mut self, peer: &Uuid) {
        self.gone.remove(peer);
    }

    /// Whether `peer` said goodbye and has not been heard from since.
    pub(super) fn is_gone(&self, peer: &Uuid) -> bool {
        self.gone.contains(peer)
    }

    /// Whether `peer` is blocked.
    pub(super) fn blocks(&self, peer: &Uuid) -> bool {
        self.blocked.contains(peer)
    }
}

impl ChatCore {
    /// Takes back what an earlier run remembered about mail.
    pub fn restore_mail(&mut self, saved: SavedMail) {
        for (id, peer, at) in saved.waiting {
            self.mail.waiting.insert(id, (peer, at));
        }
        for (from, stamp) in saved.seen {
            self.mail.see(from, stamp);
        }
        self.mail.blocked.extend(saved.blocked);
    }

    /// Whether undeliverable private messages go to the peer's mailbox (on by default; off
    /// without an index or with `--no-mailbox`).
    pub fn set_mailbox(&mut self, on: bool) {
        self.mail.off = !on;
    }

    /// The core's mail counters (`/stats`).
    pub fn mail_counters(&self) -> [(&'static str, u64); 2] {
        [
            ("mailbox.duplicates", self.mail.duplicates),
            ("mailbox.from_blocked", self.mail.from_blocked),
        ]
    }

    /// Keeps the text of a private message until it is delivered, for the mailbox.
    pub(super) fn draft(&mut self, id: u64, text: &str, action: bool) {
        self.mail.drafts.insert(id, (text.to_owned(), action));
    }

    /// Remembers a key the index (or a handshake) gave for `peer`, if it hashes to its UUID.
    pub(super) fn learn_key(&mut self, peer: Uuid, key: [u8; 32]) {
        if proto::identity::uuid_for_key(&key) != peer {
            return;
        }
        if self.mail.keys.len() >= MAX_KEYS && !self.mail.keys.contains_key(&peer) {
            return;
        }
        self.mail.keys.insert(peer, key);
    }

    fn key_of(&self, peer: &Uuid) -> Option<[u8; 32]> {
        self.endpoint
            .peer_key(peer)
            .or_else(|| self.mail.keys.get(peer).copied())
    }

    /// Whether the index may take letters now.
    fn mailbox_open(&self) -> bool {
        !self.mail.off && matches!(self.index, IndexStatus::Online | IndexStatus::Connecting)
    }

    /// Our private message `id` was delivered directly (or cannot go to a mailbox): its draft
    /// goes.
    pub(super) fn delivered_directly(&mut self, id: u64) {
        self.mail.drafts.remove(&id);
    }

    /// Our private message `id` to `peer` could not be delivered directly: into the peer's
    /// mailbox with it, when there is an index; `Err(reason)` when there is none.
    pub(super) fn mail_instead(
        &mut self,
        peer: Uuid,
        id: u64,
        reason: String,
    ) -> Result<(), String> {
        let Some((text, action)) = self.mail.drafts.remove(&id) else {
            return Err(reason);
        };
        if !self.mailbox_open() {
            return Err(reason);
        }
        self.mail.depositing.insert(id, reason);
        self.actions.push_back(Action::Deposit(Outgoing {
            to: peer,
            key: self.key_of(&peer),
            id,
            content: Content::Text { text, action },
        }));
        Ok(())
    }

    /// The index answered a deposit.
    pub(super) fn on_deposited(
        &mut self,
        to: Uuid,
        id: u64,
        at: u64,
        receipt: bool,
        answer: Answer<()>,
    ) {
        if receipt {
            if let Err(error) = answer {
                tracing::info!(peer = %to, %error, "a receipt could not be deposited");
            }
            return;
        }
        let reason = self.mail.depositing.remove(&id).unwrap_or_default();
        match answer {
            Ok(()) => {
                self.mail.waiting.insert(id, (to, at));
                self.remember(Change::Mail(MailChange::Waiting { id, peer: to, at }));
                self.remember(Change::Outcome {
                    id,
                    delivery: Delivery::Mailbox,
                });
                self.show(UiEvent::Queued {
                    to,
                    name: self.roster.name(&to),
                    id,
                    reason,
                });
            }
            Err(error) => {
                let reason = format!("{reason}; nor could it wait in the mailbox: {error}");
                self.fail_direct(to, id, reason);
            }
        }
    }

    /// Letters from our mailbox: each shown once, in its sender's order, and receipted.
    pub(super) fn on_mail(&mut self, mut letters: Vec<Opened>, through: i64) {
        in_sender_order(&mut letters);
        let mut receipts: Vec<(Uuid, Vec<Stamp>)> = Vec::new();
        let mut news = 0;
        for opened in letters {
            let (from, stamp) = (opened.from, opened.letter.stamp);
            self.learn_key(from, opened.sender_key);
            if self.mail.blocks(&from) {
                self.mail.from_blocked += 1;
                continue;
            }
            let fresh = self.mail.see(from, stamp);
            if fresh {
                news += 1;
                self.remember(Change::Mail(MailChange::Seen { from, stamp }));
            } else {
                self.mail.duplicates += 1;
            }
            match opened.letter.content {
                Content::Text { text, action } => {
                    if fresh {
                        self.show_letter(from, stamp, text, action);
                    }
                    // A duplicate is receipted again: the first receipt may have been lost.
                    match receipts.iter_mut().find(|(peer, _)| *peer == from) {
                        Some((_, stamps)) => stamps.push(stamp),
                        None => receipts.push((from, vec![stamp])),
                    }
                }
                Content::Receipt { letters } if fresh => self.on_receipt(from, &letters),
                Content::Receipt { .. } => {}
            }
        }
        for (peer, stamps) in receipts {
            for chunk in stamps.chunks(MAX_RECEIPTS) {
                self.send_receipt(peer, chunk.to_vec());
            }
        }
        self.actions.push_back(Action::MailTaken {
            through,
            fresh: news,
        });
    }

    fn show_letter(&mut self, from: Uuid, stamp: Stamp, text: String, action: bool) {
        self.roster.open_private(from);
        let kind = crate::history::SessionKind::Private(from);
        self.roster.note_message(&kind);
        // Who is this? The index says, if the sender is online; meanwhile its letters wait.
        if self.roster.name(&from).is_none() && self.index == IndexStatus::Online {
            if !self.held.contains_key(&from) {
                self.ask(IndexRequest::Verify(from));
            }
            self.held.entry(from).or_insert(Held {
                events: Vec::new(),
                until: self.now + HOLD_LIMIT,
            });
        }
        let event = UiEvent::Message {
            id: self.next_id(),
            from,
            name: None,
            claimed_name: None,
            text,
            action,
            room: None,
            session: Some(from),
            via: Some("mailbox"),
            sent_at_ms: Some(stamp.at),
        };
        self.about(from, event);
    }

    /// `peer` took these letters of ours.
    pub(super) fn on_receipt(&mut self, peer: Uuid, stamps: &[Stamp]) {
        for stamp in stamps.iter().take(MAX_RECEIPTS) {
            if self.mail.waiting.get(&stamp.id) != Some(&(peer, stamp.at)) {
                continue;
            }
            self.mail.waiting.remove(&stamp.id);
            let id = stamp.id;
            self.remember(Change::Mail(MailChange::Receipted { id }));
            // No round trip to measure: it took as long as the recipient was away.
            self.report_delivered(peer, id, 0.0, Some("mailbox"));
        }
    }

    /// Tells `peer` we took its letters: directly, or (when that fails) through its mailbox.
    fn send_receipt(&mut self, peer: Uuid, stamps: Vec<Stamp>) {
        let key = self.mail.next_receipt;
        self.mail.next_receipt += 1;
        let message = ChatMessage::Received {
            letters: stamps.clone(),
        };
        self.mail.receipts.insert(key, (peer, stamps));
        self.send_chat(peer, &message, Tag::Receipt(key));
    }

    /// A receipt sent directly was acknowledged (`delivered`) or given up.
    pub(super) fn receipt_settled(&mut self, key: u64, delivered: bool) {
        let Some((peer, stamps)) = self.mail.receipts.remove(&key) else {
            return;
        };
        if delivered || !self.mailbox_open() {
            return;
        }
        let id = self.next_id();
        self.actions.push_back(Action::Deposit(Outgoing {
            to: peer,
            key: self.key_of(&peer),
            id,
            content: Content::Receipt { letters: stamps },
        }));
    }

    /// `/block` and `/unblock`.
    pub(super) fn block(&mut self, peer: Uuid, blocked: bool) {
        let changed = if blocked {
            self.mail.blocked.insert(peer)
        } else {
            self.mail.blocked.remove(&peer)
        };
        let label = self.roster.label(&peer);
        let message = match (blocked, changed) {
            (true, _) => format!(
                "blocked {label}: its messages are dropped and the index refuses its mail for you"
            ),
            (false, true) => format!("unblocked {label}"),
            (false, false) => format!("{label} was not blocked"),
        };
        if changed {
            self.remember(Change::Mail(MailChange::Blocked { peer, blocked }));
        }
        self.actions.push_back(Action::Block { peer, blocked });
        self.show(UiEvent::Info { message });
    }
}

/// Puts each sender's letters in the order it wrote them (by stamp), keeping the places the
/// index gave that sender's letters in the batch: the index cannot reorder one sender's
/// letters unnoticed, and letters of different senders keep their deposit order.
fn in_sender_order(letters: &mut [Opened]) {
    let mut by_sender: HashMap<Uuid, Vec<usize>> = HashMap::new();
    for (i, opened) in letters.iter().enumerate() {
        by_sender.entry(opened.from).or_default().push(i);
    }
    for places in by_sender.into_values() {
        let mut mine: Vec<Opened> = places.iter().map(|&i| letters[i].clone()).collect();
        mine.sort_by_key(|opened| opened.letter.stamp);
        for (place, opened) in places.into_iter().zip(mine) {
            letters[place] = opened;
        }
    }
}
