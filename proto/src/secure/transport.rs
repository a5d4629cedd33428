//! Sessions at work: sealing frames into Transport datagrams, opening them (replay window,
//! sender check), and UnknownSession notices.

use super::*;

impl SecureEndpoint {
    /// Encrypts `frame` for `peer` into the outgoing queue; `false` when there is no session.
    pub(super) fn seal(&mut self, peer: Uuid, to: SocketAddr, frame: &[u8]) -> bool {
        let Some(session) = self
            .by_peer
            .get(&peer)
            .and_then(|indices| indices.back())
            .and_then(|index| self.sessions.get_mut(index))
        else {
            return false;
        };
        let mut ciphertext = vec![0; frame.len() + 16];
        let counter = session.send_counter;
        let Ok(len) = session
            .transport
            .write_message(counter, frame, &mut ciphertext)
        else {
            return false;
        };
        session.send_counter += 1;
        ciphertext.truncate(len);
        // Until confirmed, repeat our final handshake message beside datagrams 1, 2, 4, 8, …
        // so a lost one costs little (the first copy went out with the handshake).
        if let Some(final_message) = &session.unconfirmed_final
            && counter.is_power_of_two()
        {
            self.out.push_back(Transmit {
                peer,
                to,
                bytes: final_message.clone(),
            });
        }
        let receiver = session.remote_index;
        let bytes = wire::encode_sealed(&Sealed::Transport {
            receiver,
            counter,
            ciphertext,
        });
        self.out.push_back(Transmit { peer, to, bytes });
        true
    }

    pub(super) fn on_transport(
        &mut self,
        now: Instant,
        from: SocketAddr,
        index: u32,
        counter: u64,
        ciphertext: &[u8],
    ) {
        let Some(session) = self.sessions.get_mut(&index) else {
            self.stats.unknown_session += 1;
            if let Some(responding) = self.responding.get(&index) {
                if now.saturating_duration_since(responding.started) < FINAL_GRACE {
                    return;
                }
                self.responding.remove(&index);
            }
            let bytes = wire::encode_sealed(&Sealed::UnknownSession { index });
            self.out.push_back(Transmit {
                peer: Uuid::nil(),
                to: from,
                bytes,
            });
            return;
        };
        if !session.replay.check(counter) {
            self.stats.replays += 1;
            return;
        }
        let mut frame = vec![0; ciphertext.len()];
        let Ok(len) = session
            .transport
            .read_message(counter, ciphertext, &mut frame)
        else {
            self.stats.decrypt_failures += 1;
            return;
        };
        session.replay.mark(counter);
        session.unconfirmed_final = None;
        let peer = session.peer;
        let packet = match wire::decode(&frame[..len]) {
            Ok(packet) => packet,
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        let claimed = match &packet {
            wire::Packet::Data(d) => d.from,
            wire::Packet::Ack(a) => a.from,
            wire::Packet::Probe(p) => p.from,
            wire::Packet::ProbeReply(p) => p.from,
        };
        if claimed != peer {
            self.stats.spoofed += 1;
            return;
        }
        self.inner.handle_packet(now, from, packet);
    }

    pub(super) fn on_unknown_session(&mut self, from: SocketAddr, remote_index: u32) {
        let Some((&index, session)) = self
            .sessions
            .iter()
            .find(|(_, s)| s.remote_index == remote_index)
        else {
            return;
        };
        // The peer lost the session (it restarted): forget it so the next frame handshakes anew.
        // Only the peer's own address may say so, which keeps off-path meddling out.
        let peer = session.peer;
        if self.inner.peer_addr(&peer) != Some(from) {
            return;
        }
        self.sessions.remove(&index);
        if let Some(indices) = self.by_peer.get_mut(&peer) {
            indices.retain(|i| *i != index);
        }
    }
}
