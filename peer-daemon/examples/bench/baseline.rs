//! The baselines: what plain UDP does on the same loopback, in the same run, with the same
//! payload size, directly or through the same relay the daemons use.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::stats::{Latency, Throughput};

/// How long a client waits for its echo before counting it lost.
const ECHO_TIMEOUT: Duration = Duration::from_millis(50);
/// A one-way receiver stops after this long without a datagram.
const IDLE: Duration = Duration::from_millis(300);

/// A thread that sends every datagram back to where it came from, until dropped.
pub struct EchoServer {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl EchoServer {
    /// Blocking `recv_from` / `send_to` on a plain thread: the cheapest echo there is.
    pub fn start() -> EchoServer {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("binding the echo server");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("echo read timeout");
        let addr = socket.local_addr().expect("echo address");
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = thread::spawn(move || {
            let mut buf = [0u8; 65_536];
            while !stopping.load(Ordering::Relaxed) {
                if let Ok((len, from)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(&buf[..len], from);
                }
            }
        });
        EchoServer {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `count` round trips of a `size`-byte datagram to an echo at `to` (the server, or a relay in
/// front of it), one at a time, after `warmup` unmeasured ones. Each datagram carries its
/// number, so a late echo of a datagram given up on is not taken for the current one.
pub fn echo_round_trips(to: SocketAddr, size: usize, warmup: usize, count: usize) -> Latency {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("binding the echo client");
    socket
        .set_read_timeout(Some(ECHO_TIMEOUT))
        .expect("echo client timeout");
    let mut payload = vec![b'x'; size.max(8)];
    let mut buf = [0u8; 65_536];
    let mut latency = Latency::default();
    for i in 0..(warmup + count) as u64 {
        payload[..8].copy_from_slice(&i.to_be_bytes());
        let start = Instant::now();
        socket.send_to(&payload, to).expect("sending to the echo");
        let answered = loop {
            match socket.recv_from(&mut buf) {
                Ok((len, _)) if len >= 8 && buf[..8] == i.to_be_bytes() => break true,
                Ok(_) => continue,
                Err(_) => break false,
            }
        };
        if i < warmup as u64 {
            continue;
        }
        if answered {
            latency.samples.push(start.elapsed());
        } else {
            latency.lost += 1;
        }
    }
    latency
}

/// The same round trips between two separate multi-threaded tokio runtimes, the way two
/// daemons talk: it shows what async wake-ups cost before any protocol work.
pub fn tokio_echo_round_trips(size: usize, warmup: usize, count: usize) -> Latency {
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    };
    let (server_rt, client_rt) = (runtime(), runtime());
    let server = server_rt
        .block_on(tokio::net::UdpSocket::bind("127.0.0.1:0"))
        .expect("binding the tokio echo server");
    let addr = server.local_addr().expect("tokio echo address");
    server_rt.spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((len, from)) = server.recv_from(&mut buf).await {
            let _ = server.send_to(&buf[..len], from).await;
        }
    });
    let client = client_rt.spawn(async move {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("binding the tokio echo client");
        let payload = vec![b'x'; size];
        let mut buf = vec![0u8; 65_536];
        let mut latency = Latency::default();
        for i in 0..warmup + count {
            let start = Instant::now();
            socket.send_to(&payload, addr).await.expect("sending");
            let echoed = tokio::time::timeout(ECHO_TIMEOUT, socket.recv_from(&mut buf)).await;
            if i < warmup {
                continue;
            }
            match echoed {
                Ok(Ok(_)) => latency.samples.push(start.elapsed()),
                _ => latency.lost += 1,
            }
        }
        latency
    });
    let latency = client_rt.block_on(client).expect("the tokio echo client");
    server_rt.shutdown_background();
    latency
}

/// A receiver of one-way datagrams on its own thread.
pub struct Sink {
    /// Where to send.
    pub addr: SocketAddr,
    /// One more than the highest sequence number received so far: what a windowed sender may
    /// run ahead of (read across threads, so no datagram has to carry it back).
    progress: Arc<AtomicU64>,
    thread: thread::JoinHandle<(u64, Option<Instant>)>,
}

impl Sink {
    /// Counts datagrams until `expected` arrived or none came for a while; reports how many and
    /// when the last one arrived.
    pub fn start(expected: u64) -> Sink {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("binding the sink");
        let addr = socket.local_addr().expect("sink address");
        let progress = Arc::new(AtomicU64::new(0));
        let seen = progress.clone();
        let thread = thread::spawn(move || {
            let mut buf = [0u8; 65_536];
            let (mut received, mut last) = (0u64, None);
            // The first wait is long: the sender may not have started yet.
            socket
                .set_read_timeout(Some(IDLE * 10))
                .expect("sink timeout");
            while received < expected {
                let Ok((len, _)) = socket.recv_from(&mut buf) else {
                    break;
                };
                received += 1;
                last = Some(Instant::now());
                if received == 1 {
                    socket.set_read_timeout(Some(IDLE)).expect("sink timeout");
                }
                if len >= 8 {
                    let seq = u64::from_be_bytes(buf[..8].try_into().expect("8 bytes"));
                    seen.fetch_max(seq + 1, Ordering::Relaxed);
                }
            }
            (received, last)
        });
        Sink {
            addr,
            progress,
            thread,
        }
    }

    /// How many arrived and when the last one did.
    pub fn finish(self) -> (u64, Option<Instant>) {
        self.thread.join().expect("the sink thread")
    }
}

/// Sends `count` numbered datagrams of `size` bytes at `to` (the sink, or a relay in front of
/// it) from a blocking socket; the sink's count is what got through.
///
/// With `window`, the sender stays at most that many datagrams ahead of the newest one the sink
/// has seen (learned through memory, not the network): flow control at no protocol cost, so it
/// neither overflows the receive buffer nor takes the CPU the receiving side needs. Without it,
/// the sender floods, and a full receive buffer drops the rest, as it would for the daemons.
pub fn one_way(
    sink: Sink,
    to: SocketAddr,
    size: usize,
    count: u64,
    window: Option<u64>,
) -> Throughput {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("binding the sender");
    let mut payload = vec![b'x'; size.max(8)];
    let start = Instant::now();
    for seq in 0..count {
        if let Some(window) = window {
            let waiting = Instant::now();
            // A whole window lost would stall forever: give up waiting after a while.
            while seq >= sink.progress.load(Ordering::Relaxed) + window
                && waiting.elapsed() < ECHO_TIMEOUT
            {
                thread::yield_now();
            }
        }
        payload[..8].copy_from_slice(&seq.to_be_bytes());
        // Loopback refuses nothing but a full buffer, which is loss like any other.
        let _ = socket.send_to(&payload, to);
    }
    let (received, last) = sink.finish();
    let elapsed = last.map_or(Duration::ZERO, |last| last - start);
    Throughput {
        sent: count,
        delivered: received,
        elapsed,
        size,
    }
}
