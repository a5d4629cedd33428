//! The gatherer's reactions to what the server says (answers, indications, ChannelData)
//! and to requests it never answered.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use stun_codec::MessageClass;
use stun_codec::rfc5389::attributes::{Nonce, Realm};
use stun_codec::rfc5389::methods::BINDING;
use stun_codec::rfc5766::attributes::{Data, Lifetime, XorPeerAddress, XorRelayAddress};
use stun_codec::rfc5766::methods::{ALLOCATE, CHANNEL_BIND, CREATE_PERMISSION, DATA, REFRESH};

use super::msg::{self, Msg};
use super::{
    ChannelState, Gatherer, Incoming, Kind, MAX_LOST_REFRESHES, MAX_STALE_NONCES, Phase, Timer,
    Transaction, TurnCredentials,
};

impl Gatherer {
    pub(super) fn on_timeout(&mut self, now: Instant, kind: Kind) {
        match kind {
            Kind::Binding | Kind::Allocate if self.phase == Phase::Trying => {
                self.fail(now, "did not answer");
            }
            Kind::Binding => {
                // On a STUN-only server the keepalive is all we have: it is gone. With an
                // allocation, Refresh decides.
                if self.relayed.is_none() {
                    self.fail(now, "did not answer");
                } else {
                    self.timers[Timer::Keepalive as usize] = Some(now + self.config.keepalive);
                }
            }
            Kind::Allocate => self.fail(now, "did not answer"),
            Kind::Refresh => {
                self.lost_refreshes += 1;
                if self.lost_refreshes >= MAX_LOST_REFRESHES {
                    self.lose_allocation(now);
                } else {
                    self.request(now, Kind::Refresh);
                }
            }
            Kind::Delete => self.request(now, Kind::Allocate),
            Kind::CreatePermission(_) => {
                self.timers[Timer::Permissions as usize] = Some(now + Duration::from_secs(10));
            }
            Kind::ChannelBind(number) => self.channel_failed(number),
        }
    }

    pub(super) fn handle_response(&mut self, now: Instant, from: SocketAddr, message: &Msg) {
        let id = *message.transaction_id().as_bytes();
        let Some(index) = self
            .transactions
            .iter()
            .position(|t| t.id == id && t.server == from)
        else {
            self.stats.unexpected += 1;
            return;
        };
        let transaction = &self.transactions[index];
        let method = match transaction.kind {
            Kind::Binding => BINDING,
            Kind::Allocate => ALLOCATE,
            Kind::Refresh | Kind::Delete => REFRESH,
            Kind::CreatePermission(_) => CREATE_PERMISSION,
            Kind::ChannelBind(_) => CHANNEL_BIND,
        };
        if message.method() != method {
            self.stats.unexpected += 1;
            return;
        }
        let success = message.class() == MessageClass::SuccessResponse;
        let code = msg::error_code(message);
        if let Some(auth) = &transaction.auth {
            // 401 and 438 cannot be signed (the server is telling us the key is wrong or
            // stale); every other answer to a signed request must be signed too.
            let unsigned_ok = !success && (code == 401 || code == 438);
            if !unsigned_ok && !auth.verifies(message) {
                self.stats.malformed += 1;
                return;
            }
        }
        let transaction = self.transactions.swap_remove(index);
        if success {
            self.stale_nonces = 0;
            if let (Kind::Allocate, Some(auth)) = (&transaction.kind, &transaction.auth) {
                self.session = Some(TurnCredentials {
                    username: auth.username.name().to_owned(),
                    password: auth.password.clone(),
                });
            }
            self.on_success(now, transaction.kind, message);
        } else {
            // The 401 that answers an unsigned request is the normal challenge, not an error.
            if !(code == 401 && transaction.auth.is_none()) {
                self.stats.errors += 1;
            }
            self.on_error(now, transaction, code, message);
        }
    }

    fn on_success(&mut self, now: Instant, kind: Kind, message: &Msg) {
        match kind {
            Kind::Binding => {
                let Some(mapped) = msg::mapped(message) else {
                    self.stats.malformed += 1;
                    return;
                };
                self.set_reflexive(Some(mapped));
                if self.phase == Phase::Trying {
                    self.working();
                    self.timers[Timer::Keepalive as usize] = Some(now + self.config.keepalive);
                }
            }
            Kind::Allocate => {
                let Some(relayed) = message
                    .get_attribute::<XorRelayAddress>()
                    .map(|a| a.address())
                else {
                    self.stats.malformed += 1;
                    self.fail(now, "gave an allocation without a relayed address");
                    return;
                };
                self.stats.allocations += 1;
                self.working();
                self.deleted_once = false;
                self.lost_refreshes = 0;
                if let Some(mapped) = msg::mapped(message) {
                    self.set_reflexive(Some(mapped));
                }
                self.set_relayed(Some(relayed));
                self.set_lifetime(now, message);
                self.timers[Timer::Keepalive as usize] = Some(now + self.config.keepalive);
                // Peers on the same server send from their allocations, i.e. from our own
                // relay IP: permit it first, then whoever the daemon asked for.
                self.renew_permissions(now);
                self.timers[Timer::Permissions as usize] =
                    Some(now + self.config.permission_refresh);
            }
            Kind::Refresh => {
                self.lost_refreshes = 0;
                self.set_lifetime(now, message);
            }
            Kind::Delete => self.request(now, Kind::Allocate),
            Kind::CreatePermission(_) => {}
            Kind::ChannelBind(number) => {
                if let Some(channel) = self.channels.iter_mut().find(|c| c.number == number) {
                    channel.state = ChannelState::Bound;
                }
            }
        }
    }

    fn set_lifetime(&mut self, now: Instant, message: &Msg) {
        let lifetime = message
            .get_attribute::<Lifetime>()
            .map_or(Duration::from_secs(600), |l| l.lifetime())
            .clamp(Duration::from_secs(30), Duration::from_secs(3600));
        self.lifetime = lifetime;
        // Well before the end: a minute early, or at half time for short lifetimes, so three
        // unanswered Refreshes still fit.
        let early = (lifetime / 2).min(Duration::from_secs(60));
        self.timers[Timer::Refresh as usize] = Some(now + lifetime - early);
    }

    fn on_error(&mut self, now: Instant, transaction: Transaction, code: u16, message: &Msg) {
        let kind = transaction.kind;
        if code == 401 || code == 438 {
            let realm = message.get_attribute::<Realm>().cloned();
            let nonce = message.get_attribute::<Nonce>().cloned();
            let retry = match (code, transaction.auth.is_some(), realm, nonce) {
                // The first, unauthenticated request: learn the realm and nonce.
                (401, false, Some(realm), Some(nonce)) => {
                    self.realm = Some((realm, nonce));
                    true
                }
                // A stale nonce: the same credentials with the new nonce, a few times.
                (438, _, realm, Some(nonce)) if self.stale_nonces < MAX_STALE_NONCES => {
                    self.stale_nonces += 1;
                    let realm = realm.or_else(|| self.realm.as_ref().map(|r| r.0.clone()));
                    match realm {
                        Some(realm) => {
                            self.realm = Some((realm, nonce));
                            true
                        }
                        None => false,
                    }
                }
                _ => false,
            };
            if retry && self.current_server().is_some_and(|s| s.turn.is_some()) {
                self.request(now, kind);
            } else if code == 401 && transaction.auth.is_some() {
                self.fail(now, "refused the credentials");
            } else {
                self.fail(now, &format!("answered {}", msg::error_text(message)));
            }
            return;
        }
        match kind {
            Kind::Allocate if code == 437 && !self.deleted_once => {
                // The server still holds an allocation for our address (we lost track of
                // it, e.g. after a restart): free it and allocate again.
                self.deleted_once = true;
                self.request(now, Kind::Delete);
            }
            Kind::Refresh => self.lose_allocation(now),
            Kind::Delete => self.request(now, Kind::Allocate),
            Kind::CreatePermission(_) => {
                tracing::debug!(error = %msg::error_text(message), "TURN permission refused");
            }
            Kind::ChannelBind(number) => self.channel_failed(number),
            Kind::Binding if self.relayed.is_some() => {}
            Kind::Binding | Kind::Allocate => {
                self.fail(now, &format!("answered {}", msg::error_text(message)));
            }
        }
    }

    pub(super) fn handle_indication(&mut self, message: &Msg) -> Incoming {
        if message.method() != DATA || self.relayed.is_none() {
            self.stats.unexpected += 1;
            return Incoming::Consumed;
        }
        let peer = message
            .get_attribute::<XorPeerAddress>()
            .map(|a| a.address());
        let data = message.get_attribute::<Data>();
        match (peer, data) {
            (Some(peer), Some(data)) => {
                self.stats.relayed_in += 1;
                Incoming::Relayed {
                    peer,
                    data: data.data().to_vec(),
                }
            }
            _ => {
                self.stats.malformed += 1;
                Incoming::Consumed
            }
        }
    }

    pub(super) fn handle_channel_data(&mut self, bytes: &[u8]) -> Incoming {
        let Some((number, data)) = msg::parse_channel_data(bytes) else {
            self.stats.malformed += 1;
            return Incoming::Consumed;
        };
        // A channel still being bound counts: the server may use it before its answer
        // to the ChannelBind reaches us.
        match self
            .channels
            .iter()
            .find(|c| c.number == number && c.state != ChannelState::Failed)
        {
            Some(channel) if self.relayed.is_some() => {
                self.stats.relayed_in += 1;
                Incoming::Relayed {
                    peer: channel.peer,
                    data: data.to_vec(),
                }
            }
            _ => {
                self.stats.unexpected += 1;
                Incoming::Consumed
            }
        }
    }
}
