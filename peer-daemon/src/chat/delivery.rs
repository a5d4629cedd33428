//! Getting messages to peers and telling the user how that went: a message waits behind the
//! lookup of a peer's address (and behind everything already waiting for it, so order holds),
//! each copy is tagged with what it belongs to, and a room message is reported once, as
//! "delivered n/m", when every copy has been acknowledged or given up.

use std::time::Duration;

use proto::chat::ChatMessage;
use uuid::Uuid;

use super::{Answer, ChatCore, IndexRequest, Lookup};
use crate::history::{Change, Delivery};
use crate::output::{UiEvent, millis};

/// What a message sent to one peer is part of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tag {
    /// A private message; the user sees its receipt as `delivered`.
    Direct(u64),
    /// One copy of a room message: the user sees the room's count.
    Group(u64),
    /// Control traffic (introductions, joins) the user need not hear about.
    Quiet,
    /// A receipt for letters we took from our mailbox (the key of its stamps): if it fails,
    /// it goes to the sender's mailbox.
    Receipt(u64),
    /// Room state sync: when it fails, the sync with that peer starts afresh later.
    State,
}

/// A room message on its way to every member.
#[derive(Debug)]
pub(super) struct Group {
    room: String,
    /// Copies sent.
    total: usize,
    /// Copies acknowledged.
    delivered: usize,
    /// Copies given up.
    failed: usize,
    /// Slowest acknowledgement.
    rtt: Duration,
    /// A reason one copy failed, for the summary.
    reason: Option<String>,
}

impl ChatCore {
    /// A fresh id for a message the user sends (`sent`, then `delivered` or `failed`).
    pub(super) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id - 1
    }

    /// Sends `message` to `peer`, introducing ourselves first on first contact and looking
    /// the peer up when we have no address for it.
    pub(super) fn send_chat(&mut self, peer: Uuid, message: &ChatMessage, tag: Tag) {
        if self.roster.needs_hello(peer) {
            self.send_payload(peer, self.hello().encode(), Tag::Quiet);
        }
        self.send_payload(peer, message.encode(), tag);
    }

    /// How we introduce ourselves.
    pub(super) fn hello(&self) -> ChatMessage {
        ChatMessage::Hello {
            name: self.roster.own_name(),
            rooms: self.roster.my_rooms(),
            candidates: self.candidates.clone(),
        }
    }

    /// Sends one payload, or queues it behind the lookup of the peer's address.
    pub(super) fn send_payload(&mut self, peer: Uuid, payload: Vec<u8>, tag: Tag) {
        // Behind messages already waiting for a lookup, even if the address has meanwhile
        // become known another way (a datagram, a room listing): order comes first.
        if let Some(waiting) = self.waiting.get_mut(&peer) {
            waiting.push((payload, tag));
            return;
        }
        // A peer that said goodbye may be back elsewhere, or still away (then: its mailbox).
        let Some(addr) = self.addr_of(&peer).filter(|_| !self.mail.is_gone(&peer)) else {
            self.waiting.insert(peer, vec![(payload, tag)]);
            self.ask(IndexRequest::Lookup(peer));
            return;
        };
        self.transmit(peer, addr, payload, tag);
    }

    fn transmit(&mut self, peer: Uuid, addr: std::net::SocketAddr, payload: Vec<u8>, tag: Tag) {
        if self.endpoint.path(&peer).is_none() {
            // First contact: every address the index vouched for, so that the relay carries
            // this message at once while the direct ones are probed.
            let candidates = self.addresses.candidates(&peer, self.now).to_vec();
            self.endpoint.learn_candidates(self.now, peer, &candidates);
        }
        match self.endpoint.send(self.now, peer, addr, payload) {
            Ok(id) => {
                self.tags.insert(id, tag);
                self.unanswered.entry(peer).or_insert(self.now);
            }
            Err(error) => self.settle(peer, tag, Err(error.to_string())),
        }
    }

    /// The index answered where `peer` is: what waited for it goes out, or fails.
    pub(super) fn on_lookup(&mut self, peer: Uuid, answer: Answer<Option<Lookup>>) {
        let pending = self.waiting.remove(&peer).unwrap_or_default();
        let reason = match answer {
            Ok(Some(lookup)) => match self
                .learn_lookup(&lookup)
                .inspect(|_| self.mail.back(&peer))
            {
                Some(addr) => {
                    for (payload, tag) in pending {
                        self.transmit(peer, addr, payload, tag);
                    }
                    return;
                }
                None => format!(
                    "the answer held an unusable address `{}`",
                    lookup.record.addr
                ),
            },
            Ok(None) if self.index == super::IndexStatus::Disabled => {
                "no such peer is on the LAN, nor a contact found in the DHT".to_owned()
            }
            Ok(None) => "no such peer is registered at the index".to_owned(),
            Err(error) => {
                // The index does not answer: its mailboxes would not either.
                for (_, tag) in &pending {
                    if let Tag::Direct(id) = tag {
                        self.delivered_directly(*id);
                    }
                }
                format!("could not look the peer up: {error}")
            }
        };
        for (_, tag) in pending {
            self.settle(peer, tag, Err(reason.clone()));
        }
    }

    /// Starts reporting a room message sent to `members` copies.
    pub(super) fn start_group(&mut self, id: u64, room: String, members: usize) {
        let group = Group {
            room,
            total: members,
            delivered: 0,
            failed: 0,
            rtt: Duration::ZERO,
            reason: None,
        };
        if members == 0 {
            self.report_group(id, group);
        } else {
            self.groups.insert(id, group);
        }
    }

    /// Reports the outcome of one copy of a message.
    pub(super) fn settle(&mut self, peer: Uuid, tag: Tag, outcome: Result<Duration, String>) {
        match (tag, outcome) {
            (Tag::Quiet, _) => {}
            (Tag::State, outcome) => self.state_settled(peer, outcome.is_ok()),
            (Tag::Receipt(key), outcome) => self.receipt_settled(key, outcome.is_ok()),
            (Tag::Direct(id), Err(reason))
                if self.mail_instead(peer, id, reason.clone()).is_ok() => {}
            (Tag::Direct(id), Ok(rtt)) => {
                self.delivered_directly(id);
                let via = self.endpoint.path(&peer).map(|(_, kind)| kind.via());
                self.report_delivered(peer, id, millis(rtt), via);
            }
            (Tag::Direct(id), Err(reason)) => self.fail_direct(peer, id, reason),
            (Tag::Group(id), outcome) => {
                let label = outcome.is_err().then(|| self.roster.label(&peer));
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
                        let label = label.unwrap_or_default();
                        group.reason.get_or_insert(format!("{label}: {reason}"));
                    }
                }
                if group.delivered + group.failed == group.total {
                    let group = self.groups.remove(&id).expect("present above");
                    self.report_group(id, group);
                }
            }
        }
    }

    /// Our private message `id` reached `peer` (`via` a path, or its mailbox): remembered and
    /// told so.
    pub(super) fn report_delivered(
        &mut self,
        peer: Uuid,
        id: u64,
        rtt_ms: f64,
        via: Option<&'static str>,
    ) {
        self.remember(Change::Outcome {
            id,
            delivery: Delivery::Delivered {
                rtt_ms,
                delivered: None,
                total: None,
            },
        });
        self.show(UiEvent::Delivered {
            to: Some(peer),
            name: self.roster.name(&peer),
            room: None,
            id,
            rtt_ms,
            delivered: None,
            total: None,
            via,
        })
    }

    /// Our private message `id` to `peer` is given up: remembered and told so.
    pub(super) fn fail_direct(&mut self, peer: Uuid, id: u64, reason: String) {
        self.remember(Change::Outcome {
            id,
            delivery: Delivery::Failed {
                reason: reason.clone(),
            },
        });
        self.show(UiEvent::Failed {
            to: Some(peer),
            name: self.roster.name(&peer),
            room: None,
            id: Some(id),
            reason,
        })
    }

    fn report_group(&mut self, id: u64, group: Group) {
        let delivery = if group.delivered == 0 && group.total > 0 {
            Delivery::Failed {
                reason: group.reason.clone().unwrap_or_default(),
            }
        } else {
            Delivery::Delivered {
                rtt_ms: millis(group.rtt),
                delivered: Some(group.delivered),
                total: Some(group.total),
            }
        };
        self.remember(Change::Outcome { id, delivery });
        let event = if group.delivered == 0 && group.total > 0 {
            UiEvent::Failed {
                to: None,
                name: None,
                room: Some(group.room),
                id: Some(id),
                reason: group.reason.unwrap_or_default(),
            }
        } else {
            UiEvent::Delivered {
                to: None,
                name: None,
                room: Some(group.room),
                id,
                rtt_ms: millis(group.rtt),
                delivered: Some(group.delivered),
                total: Some(group.total),
                via: None,
            }
        };
        self.show(event);
    }
}
