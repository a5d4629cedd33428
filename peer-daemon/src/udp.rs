//! The daemon's UDP socket, moving datagrams in batches: a burst of equal-sized datagrams to
//! one peer leaves in one system call (Linux's generic segmentation offload, GSO), and one
//! call reads many (`recvmmsg`, with generic receive offload, GRO, where the kernel has it).
//! `quinn-udp`, the datapath under quinn's QUIC, does the system calls and falls back to one
//! datagram per call where the platform lacks them.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;

use proto::Transmit;
use quinn_udp::{RecvMeta, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Receive buffers filled by one system call.
const RECV_BUFFERS: usize = 8;
/// Size of one receive buffer: room for a full GRO batch of our largest datagrams.
const RECV_BUFFER_SIZE: usize = 64 * 1024;
/// Bytes in one segmented send; the kernel refuses more than fits one IP packet's length.
const MAX_BATCH_BYTES: usize = 60_000;
/// Datagrams in one segmented send. They leave back to back, so a larger burst overflows
/// shallow buffers on the way (quinn sends at most 10 at once too).
const MAX_SEGMENTS: usize = 10;

/// A UDP socket with batched sends and receives.
pub struct Udp {
    socket: UdpSocket,
    state: UdpSocketState,
    recv: Vec<Vec<u8>>,
    meta: Vec<RecvMeta>,
    /// Datagrams of one batch laid end to end.
    batch: Vec<u8>,
}

impl Udp {
    /// Takes over a bound socket.
    pub fn new(socket: UdpSocket) -> io::Result<Self> {
        let state = UdpSocketState::new((&socket).into())?;
        Ok(Udp {
            socket,
            state,
            recv: vec![vec![0; RECV_BUFFER_SIZE]; RECV_BUFFERS],
            meta: vec![RecvMeta::default(); RECV_BUFFERS],
            batch: Vec::new(),
        })
    }

    /// Waits until a datagram may be read.
    pub async fn readable(&self) -> io::Result<()> {
        self.socket.readable().await
    }

    /// Reads what is waiting, without waiting, handing each datagram to `each`; returns how
    /// many datagrams it read, and whether more may be waiting (`WouldBlock` when there were
    /// none). When the kernel handed over less than it could, the queue was empty a moment
    /// ago: the caller can act on what it read before asking again (tokio still reports the
    /// socket readable, so nothing is missed).
    pub fn try_recv(
        &mut self,
        mut each: impl FnMut(SocketAddr, &[u8]),
    ) -> io::Result<(usize, bool)> {
        let Udp {
            socket,
            state,
            recv,
            meta,
            ..
        } = self;
        let socket = &*socket;
        let mut slices: Vec<IoSliceMut<'_>> = recv.iter_mut().map(|b| IoSliceMut::new(b)).collect();
        let filled = socket.try_io(Interest::READABLE, || {
            state.recv(socket.into(), &mut slices, meta)
        })?;
        let mut count = 0;
        for (buffer, meta) in recv.iter().zip(meta.iter()).take(filled) {
            let stride = meta.stride.max(1);
            for datagram in buffer[..meta.len].chunks(stride) {
                each(meta.addr, datagram);
                count += 1;
            }
        }
        Ok((count, filled == RECV_BUFFERS))
    }

    /// Sends `transmits` in order, runs of equal-sized datagrams to one address as one
    /// system call. Errors other than a full socket buffer are logged: retransmission covers
    /// a datagram the OS refused.
    pub async fn send_all(&mut self, transmits: &[Transmit]) {
        let max_segments = self.state.max_gso_segments().clamp(1, MAX_SEGMENTS);
        let mut rest = transmits;
        while let Some(first) = rest.first() {
            let size = first.bytes.len();
            // A run: same address, same size, except that the last may be shorter.
            let mut run = 1;
            while run < rest.len().min(max_segments)
                && (run + 1) * size <= MAX_BATCH_BYTES
                && rest[run].to == first.to
                && rest[run - 1].bytes.len() == size
                && rest[run].bytes.len() <= size
            {
                run += 1;
            }
            self.batch.clear();
            for transmit in &rest[..run] {
                self.batch.extend_from_slice(&transmit.bytes);
            }
            let transmit = quinn_udp::Transmit {
                destination: first.to,
                ecn: None,
                contents: &self.batch,
                segment_size: (run > 1).then_some(size),
                src_ip: None,
            };
            let sent = loop {
                match self.socket.try_io(Interest::WRITABLE, || {
                    self.state.try_send((&self.socket).into(), &transmit)
                }) {
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                        if let Err(error) = self.socket.writable().await {
                            break Err(error);
                        }
                    }
                    other => break other,
                }
            };
            if let Err(error) = sent {
                tracing::debug!(%error, to = %first.to, datagrams = run, "send failed");
            }
            rest = &rest[run..];
        }
    }

    /// The socket, for the rest of what one does with a socket.
    pub fn socket(&self) -> &UdpSocket {
        &self.socket
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use uuid::Uuid;

    use super::*;

    async fn bound() -> Udp {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("a socket");
        socket2::SockRef::from(&socket)
            .set_recv_buffer_size(4 << 20)
            .expect("a larger receive buffer");
        Udp::new(socket).expect("a batching socket")
    }

    /// Datagrams `0..count` to `to`: each starts with its number, sizes as `size` says.
    fn datagrams(to: SocketAddr, count: usize, size: impl Fn(usize) -> usize) -> Vec<Transmit> {
        (0..count)
            .map(|i| {
                let mut bytes = vec![(i % 251) as u8; size(i)];
                bytes[..4].copy_from_slice(&(i as u32).to_be_bytes());
                Transmit {
                    peer: Uuid::nil(),
                    to,
                    bytes,
                }
            })
            .collect()
    }

    /// Receives until `count` datagrams arrived or nothing came for a second.
    async fn receive(udp: &mut Udp, count: usize) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        while got.len() < count {
            let ready = tokio::time::timeout(Duration::from_secs(1), udp.readable()).await;
            if ready.is_err() {
                break;
            }
            match udp.try_recv(|_, bytes| got.push(bytes.to_vec())) {
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => panic!("receive failed: {error}"),
            }
        }
        got
    }

    #[tokio::test]
    async fn batches_arrive_as_the_datagrams_they_were() {
        let mut a = bound().await;
        let mut b = bound().await;
        let to = b.socket().local_addr().expect("an address");
        // Runs of equal sizes (one batch each), a shorter last one, then sizes that all differ.
        let sizes = |i: usize| match i {
            0..100 => 1_150,
            100 => 700,
            101..200 => 1_200,
            _ => 40 + i,
        };
        let sent = datagrams(to, 300, sizes);
        a.send_all(&sent).await;
        let got = receive(&mut b, sent.len()).await;
        let want: Vec<Vec<u8>> = sent.into_iter().map(|t| t.bytes).collect();
        assert_eq!(got.len(), want.len(), "datagrams lost or merged");
        assert!(got == want, "datagrams altered or out of order");
    }
}
