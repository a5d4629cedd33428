//! The Noise XX handshake of the secure layer: starting one, answering the three messages,
//! and turning a finished handshake into a session bound to the peer's identity.

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
            noise,
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
                message,
                next_retry,
                attempts: 1,
            },
        );
    }

    pub(super) fn on_init(
        &mut self,
        now: Instant,
        from: SocketAddr,
        remote_index: u32,
        noise: &[u8],
    ) {
        if self.responding.len() >= MAX_RESPONDING {
            let oldest = self
                .responding
                .iter()
                .min_by_key(|(_, r)| r.started)
                .map(|(i, _)| *i);
            self.responding.remove(&oldest.expect("not empty"));
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
        // Only a fully padded first message is answered, so the answer is never larger than
        // what a spoofed sender made us receive.
        if noise.len() != 32 + INIT_PADDING
            || state.read_message(noise, &mut payload) != Ok(INIT_PADDING)
        {
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
        if verified != Some(peer) {
            // Wrong key for that UUID, or garbage. The state is spent; the next frame the
            // reliable layer (re)sends starts a new handshake.
            self.stats.handshake_failures += 1;
            self.queued.remove(&peer);
            return;
        }
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
        self.establish(peer, initiation.index, remote_index, transport, Some(bytes));
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
        let (Some(peer), Ok(transport)) = (peer, responding.state.into_stateless_transport_mode())
        else {
            self.stats.handshake_failures += 1;
            return;
        };
        if peer == self.id() {
            self.stats.handshake_failures += 1;
            return;
        }
        self.establish(peer, index, responding.remote_index, transport, None);
    }

    pub(super) fn establish(
        &mut self,
        peer: Uuid,
        index: u32,
        remote_index: u32,
        transport: StatelessTransportState,
        unconfirmed_final: Option<Vec<u8>>,
    ) {
        self.stats.handshakes += 1;
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

/// The UUID whose key the peer proved in this handshake: the payload carries its Ed25519
/// key, which must be the one behind the Noise static key it used.
fn verified_peer(state: &HandshakeState, payload: &[u8]) -> Option<Uuid> {
    let public_key: [u8; 32] = payload.try_into().ok()?;
    let expected_static = noise_public_key(&public_key).ok()?;
    (state.get_remote_static()? == expected_static).then(|| uuid_for_key(&public_key))
}
