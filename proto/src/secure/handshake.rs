//! The Noise XX handshake of the secure layer: starting one, answering the three messages
//! (and cookie replies, see `cookie.rs`), and turning a finished handshake into a session bound
//! to the peer's identity.

use std::cmp::Reverse;
use std::net::IpAddr;

use super::*;

impl SecureEndpoint {
    pub(super) fn initiate(&mut self, now: Instant, peer: Uuid, addr: SocketAddr) {
        let index = self.new_index();
        let key = self.identity.noise_private_key();
        let Ok(mut state) = self
            .builder()
            .local_private_key(&key)
            .and_then(|b| b.prologue(PROLOGUE))
            .and_then(|b| b.build_initiator())
        else {
            return;
        };
        let mut noise = vec![0; MAX_DATAGRAM];
        let Ok(len) = state.write_message(&[0; INIT_PADDING], &mut noise) else {
            return;
        };
        noise.truncate(len);
        let message = wire::encode_sealed(&Sealed::HsInit {
            sender: index,
            noise: noise.clone(),
        });
        self.out.push_back(Transmit {
            peer,
            to: addr,
            bytes: message.clone(),
        });
        let next_retry = now + HANDSHAKE_RETRY;
        self.initiating.insert(
            peer,
            Initiation {
                index,
                state,
                addr,
                noise,
                cookie: None,
                message,
                next_retry,
                attempts: 1,
            },
        );
    }

    /// An HsInit, with the MAC of a cookie if `mac` is given.
    pub(super) fn on_init(
        &mut self,
        now: Instant,
        from: SocketAddr,
        remote_index: u32,
        noise: &[u8],
        mac: Option<&[u8; wire::COOKIE_LEN]>,
    ) {
        // Only a fully padded first message is answered at all (by a handshake or a cookie
        // reply), so no answer is larger than what a spoofed sender made us receive.
        if noise.len() != 32 + INIT_PADDING {
            self.stats.handshake_failures += 1;
            return;
        }
        if !self.admit(now, from, remote_index, noise, mac) {
            return;
        }
        if self.responding.len() >= MAX_RESPONDING {
            self.evict_half_open();
        }
        let key = self.identity.noise_private_key();
        let public_key = self.identity.public_key();
        let Ok(mut state) = self
            .builder()
            .local_private_key(&key)
            .and_then(|b| b.prologue(PROLOGUE))
            .and_then(|b| b.build_responder())
        else {
            return;
        };
        let mut payload = vec![0; MAX_DATAGRAM];
        let mut reply = vec![0; MAX_DATAGRAM];
        if state.read_message(noise, &mut payload) != Ok(INIT_PADDING) {
            self.stats.handshake_failures += 1;
            return;
        }
        let Ok(len) = state.write_message(&public_key, &mut reply) else {
            self.stats.handshake_failures += 1;
            return;
        };
        reply.truncate(len);
        let index = self.new_index();
        self.responding.insert(
            index,
            Responding {
                state,
                remote_index,
                started: now,
                ip: from.ip(),
            },
        );
        let bytes = wire::encode_sealed(&Sealed::HsResp {
            sender: index,
            receiver: remote_index,
            noise: reply,
        });
        // The peer's UUID is not known yet; it only matters for frames, not handshakes.
        self.out.push_back(Transmit {
            peer: Uuid::nil(),
            to: from,
            bytes,
        });
    }

    /// Whether an HsInit may cost us a handshake. Below load, always (as if there were no
    /// cookies). Under load, only with a valid cookie for its source address, and within that
    /// IP's budget; without one it gets a cookie reply, which costs no Diffie-Hellman and keeps
    /// no state.
    fn admit(
        &mut self,
        now: Instant,
        from: SocketAddr,
        remote_index: u32,
        noise: &[u8],
        mac: Option<&[u8; wire::COOKIE_LEN]>,
    ) -> bool {
        self.guard.note_init(now);
        if !self.guard.under_load(now, self.responding.len()) {
            return true;
        }
        let proven = mac.is_some_and(|mac| {
            let signed = cookie::signed_part(remote_index, noise);
            self.guard.verify(&mut self.rng, now, from, &signed, mac)
        });
        if !proven {
            self.stats.bad_cookies += u64::from(mac.is_some());
            self.stats.cookie_replies += 1;
            let cookie = self.guard.cookie(&mut self.rng, now, from);
            let reply = cookie::seal_reply(&mut self.rng, remote_index, noise, &cookie);
            self.out.push_back(Transmit {
                peer: Uuid::nil(),
                to: from,
                bytes: wire::encode_sealed(&reply),
            });
            return false;
        }
        if !self.guard.spend(now, from.ip()) {
            self.stats.rate_limited += 1;
            return false;
        }
        true
    }

    /// Makes room in the full table of answered handshakes (see [`eviction_victim`]).
    fn evict_half_open(&mut self) {
        let entries = self.responding.iter().map(|(&i, r)| (i, r.ip, r.started));
        if let Some(index) = eviction_victim(entries) {
            self.responding.remove(&index);
            self.stats.half_open_evicted += 1;
        }
    }

    /// A cookie reply to one of our HsInits: resend it at once, with the cookie.
    pub(super) fn on_cookie_reply(
        &mut self,
        receiver: u32,
        nonce: &[u8; wire::COOKIE_NONCE_LEN],
        sealed: &[u8; wire::SEALED_COOKIE_LEN],
    ) {
        let Some((peer, initiation)) = self
            .initiating
            .iter_mut()
            .find(|(_, i)| i.index == receiver)
        else {
            self.stats.unknown_session += 1;
            return;
        };
        let Some(cookie) = cookie::open_reply(initiation.index, &initiation.noise, nonce, sealed)
        else {
            self.stats.bad_cookies += 1;
            return;
        };
        // The same cookie again answers a copy of our plain HsInit: the cookied one is already
        // on its way (and the retry timer covers its loss), so a replayed reply costs nothing.
        if initiation.cookie == Some(cookie) {
            return;
        }
        initiation.cookie = Some(cookie);
        let mut message = cookie::signed_part(initiation.index, &initiation.noise);
        message.extend_from_slice(&cookie::init_mac(&cookie, &message));
        initiation.message = message.clone();
        let to = self.inner.peer_addr(peer).unwrap_or(initiation.addr);
        self.out.push_back(Transmit {
            peer: *peer,
            to,
            bytes: message,
        });
    }

    pub(super) fn on_resp(
        &mut self,
        from: SocketAddr,
        remote_index: u32,
        index: u32,
        noise: &[u8],
    ) {
        let Some(peer) = self
            .initiating
            .iter()
            .find(|(_, i)| i.index == index)
            .map(|(p, _)| *p)
        else {
            self.stats.unknown_session += 1;
            return;
        };
        let mut initiation = self.initiating.remove(&peer).expect("found above");
        let mut payload = vec![0; MAX_DATAGRAM];
        let verified = initiation
            .state
            .read_message(noise, &mut payload)
            .ok()
            .and_then(|len| verified_peer(&initiation.state, &payload[..len]));
        let Some(key) = verified.filter(|(id, _)| *id == peer).map(|(_, key)| key) else {
            // Wrong key for that UUID, or garbage. The state is spent; the next frame the
            // reliable layer (re)sends starts a new handshake.
            self.stats.handshake_failures += 1;
            self.queued.remove(&peer);
            return;
        };
        let mut reply = vec![0; MAX_DATAGRAM];
        let Ok(len) = initiation
            .state
            .write_message(&self.identity.public_key(), &mut reply)
        else {
            self.stats.handshake_failures += 1;
            return;
        };
        reply.truncate(len);
        let Ok(transport) = initiation.state.into_stateless_transport_mode() else {
            return;
        };
        let bytes = wire::encode_sealed(&Sealed::HsFinal {
            sender: initiation.index,
            receiver: remote_index,
            noise: reply,
        });
        self.out.push_back(Transmit {
            peer,
            to: from,
            bytes: bytes.clone(),
        });
        self.establish(
            peer,
            key,
            initiation.index,
            remote_index,
            transport,
            Some(bytes),
        );
    }

    pub(super) fn on_final(&mut self, _remote_index: u32, index: u32, noise: &[u8]) {
        let Some(mut responding) = self.responding.remove(&index) else {
            self.stats.unknown_session += 1;
            return;
        };
        let mut payload = vec![0; MAX_DATAGRAM];
        let peer = responding
            .state
            .read_message(noise, &mut payload)
            .ok()
            .and_then(|len| verified_peer(&responding.state, &payload[..len]));
        let (Some((peer, key)), Ok(transport)) =
            (peer, responding.state.into_stateless_transport_mode())
        else {
            self.stats.handshake_failures += 1;
            return;
        };
        if peer == self.id() {
            self.stats.handshake_failures += 1;
            return;
        }
        self.establish(peer, key, index, responding.remote_index, transport, None);
    }

    pub(super) fn establish(
        &mut self,
        peer: Uuid,
        key: [u8; 32],
        index: u32,
        remote_index: u32,
        transport: StatelessTransportState,
        unconfirmed_final: Option<Vec<u8>>,
    ) {
        self.stats.handshakes += 1;
        if self.keys.len() >= MAX_KEYS
            && !self.keys.contains_key(&peer)
            && let Some(other) = self.keys.keys().next().copied()
        {
            self.keys.remove(&other);
        }
        self.keys.insert(peer, key);
        self.sessions.insert(
            index,
            Session {
                peer,
                remote_index,
                transport,
                send_counter: 0,
                replay: ReplayWindow::default(),
                unconfirmed_final,
            },
        );
        let indices = self.by_peer.entry(peer).or_default();
        indices.push_back(index);
        if indices.len() > SESSIONS_PER_PEER {
            let oldest = indices.pop_front().expect("not empty");
            self.sessions.remove(&oldest);
        }
        // Our own handshake to this peer, if any, is moot now.
        self.initiating.remove(&peer);
        let queued = self.queued.remove(&peer).unwrap_or_default();
        let addr = self.inner.peer_addr(&peer);
        if let Some(to) = addr {
            for frame in queued {
                self.seal(peer, to, &frame);
            }
        }
    }
}

/// Which answered handshake `(index, source IP, answered at)` to forget when the table is
/// full: the oldest one of the source IP holding the most, so a flood from a few addresses
/// evicts its own entries before anyone else's.
fn eviction_victim(entries: impl Iterator<Item = (u32, IpAddr, Instant)>) -> Option<u32> {
    let mut per_ip: HashMap<IpAddr, (usize, Reverse<Instant>, u32)> = HashMap::new();
    for (index, ip, started) in entries {
        let entry = per_ip.entry(ip).or_insert((0, Reverse(started), index));
        entry.0 += 1;
        if Reverse(started) > entry.1 {
            (entry.1, entry.2) = (Reverse(started), index);
        }
    }
    per_ip.values().max().map(|&(_, _, index)| index)
}

/// The UUID whose key the peer proved in this handshake: the payload carries its Ed25519
/// key, which must be the one behind the Noise static key it used. Returns the UUID and the key.
fn verified_peer(state: &HandshakeState, payload: &[u8]) -> Option<(Uuid, [u8; 32])> {
    let public_key: [u8; 32] = payload.try_into().ok()?;
    let expected_static = noise_public_key(&public_key).ok()?;
    (state.get_remote_static()? == expected_static).then(|| (uuid_for_key(&public_key), public_key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_takes_the_oldest_entry_of_the_busiest_address() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let (real, other, hog) = (
            IpAddr::from([10, 0, 0, 1]),
            IpAddr::from([10, 0, 0, 2]),
            IpAddr::from([10, 0, 0, 66]),
        );
        // The real peer's entry is the oldest of all; the hog holds the most.
        let mut entries = vec![(1, real, at(0)), (2, other, at(1)), (3, other, at(2))];
        entries.extend((0..5).map(|i| (100 + i, hog, at(9 - i as u64))));
        assert_eq!(eviction_victim(entries.iter().copied()), Some(104));
        // Evicting one at a time, the real peer's entry stays while any address holds more
        // than one (ties go to the address with the oldest entry).
        let mut order = Vec::new();
        while let Some(victim) = eviction_victim(entries.iter().copied()) {
            entries.retain(|e| e.0 != victim);
            order.push(victim);
        }
        assert_eq!(order[..5], [104, 103, 102, 2, 101]);
        assert_eq!(order[5], 1);
    }
}
