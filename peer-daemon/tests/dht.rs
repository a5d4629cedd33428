//! The DHT fallback (issue 13) on a private DHT of local nodes (`mainline`'s `Testnet` on
//! 127.0.0.1; never the public one): alice and bob chat, the index goes away, bob restarts on
//! another port, and alice reaches him again through his signed record in the DHT, found under
//! the key she kept in her contacts. A hostile DHT node answers every lookup with a forged
//! record for bob's key that points at itself: it is ignored and counted, and nothing is ever
//! sent to it but DHT queries.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Daemon, EVENT_TIMEOUT, Index};
use serde_bencode::value::Value as Bencode;
use serde_json::Value;
use tokio::net::UdpSocket;

/// Nodes of the private DHT.
const NODES: usize = 6;
/// How long publishing in the private DHT may take.
const PUBLISH: Duration = Duration::from_secs(30);

/// A private DHT on loopback; built off the runtime (it blocks until its nodes know each other).
async fn testnet() -> mainline::Testnet {
    tokio::task::spawn_blocking(|| mainline::Testnet::builder(NODES).build())
        .await
        .expect("the testnet task")
        .expect("a private DHT on 127.0.0.1")
}

/// A DHT node that lies: every `get` is answered with a record for the key in `victim` (once
/// set) whose signature is garbage, pointing at the node itself. Counts datagrams that are not
/// KRPC (a daemon that believed the forgery would send its chat there).
struct Forger {
    addr: std::net::SocketAddr,
    victim: Arc<std::sync::Mutex<Option<[u8; 32]>>>,
    strays: Arc<std::sync::atomic::AtomicU64>,
    forged: Arc<std::sync::atomic::AtomicU64>,
}

impl Forger {
    async fn start() -> Forger {
        let socket = UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("the forger's socket");
        let addr = socket.local_addr().unwrap();
        let victim = Arc::new(std::sync::Mutex::new(None));
        let strays = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let forged = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (v, s, f) = (victim.clone(), strays.clone(), forged.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((len, from)) = socket.recv_from(&mut buf).await {
                let key = *v.lock().unwrap();
                match answer(&buf[..len], key, addr) {
                    Some((reply, lie)) => {
                        if lie {
                            f.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        let _ = socket.send_to(&reply, from).await;
                    }
                    None => {
                        s.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
        });
        Forger {
            addr,
            victim,
            strays,
            forged,
        }
    }
}

/// The forger's answer to a KRPC query (and whether it carries a forged record); `None` for
/// anything that is not one.
fn answer(
    datagram: &[u8],
    victim: Option<[u8; 32]>,
    me: std::net::SocketAddr,
) -> Option<(Vec<u8>, bool)> {
    let Ok(Bencode::Dict(query)) = serde_bencode::from_bytes::<Bencode>(datagram) else {
        return None;
    };
    let bytes = |v: &str| Bencode::Bytes(v.as_bytes().to_vec());
    let tid = query.get(b"t".as_slice())?.clone();
    let Some(Bencode::Bytes(kind)) = query.get(b"q".as_slice()) else {
        return None;
    };
    let mut r = std::collections::HashMap::new();
    r.insert(b"id".to_vec(), Bencode::Bytes(vec![0x42; 20]));
    let mut lie = false;
    if kind.as_slice() != b"ping" {
        r.insert(b"nodes".to_vec(), Bencode::Bytes(Vec::new()));
        r.insert(b"token".to_vec(), bytes("tok"));
    }
    if let (b"get", Some(key)) = (kind.as_slice(), victim) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let uuid = proto::identity::uuid_for_key(&key);
        let value = format!(r#"{{"v":1,"id":"{uuid}","c":"host/{me}","t":{now}}}"#);
        r.insert(b"k".to_vec(), Bencode::Bytes(key.to_vec()));
        r.insert(b"seq".to_vec(), Bencode::Int(now as i64 + 1000));
        r.insert(b"sig".to_vec(), Bencode::Bytes(vec![7; 64]));
        r.insert(b"v".to_vec(), Bencode::Bytes(value.into_bytes()));
        lie = true;
    }
    let mut reply = std::collections::HashMap::new();
    reply.insert(b"t".to_vec(), tid);
    reply.insert(b"y".to_vec(), bytes("r"));
    reply.insert(b"r".to_vec(), Bencode::Dict(r));
    Some((serde_bencode::to_bytes(&Bencode::Dict(reply)).ok()?, lie))
}

/// `/stats` counters of `daemon`.
async fn counters(daemon: &mut Daemon) -> Value {
    daemon.send_line("/stats").await;
    daemon.expect("stats", |_| true, EVENT_TIMEOUT).await["counters"].clone()
}

/// Waits for the receipt of the message just sent; fails on `failed`.
async fn delivered(daemon: &mut Daemon) -> Value {
    let receipt = daemon
        .expect_event(
            |v| v["event"] == "delivered" || v["event"] == "failed",
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(
        receipt["event"],
        "delivered",
        "{receipt}{}",
        daemon.diagnostics()
    );
    receipt
}

/// Waits until `daemon` has stored its record in the DHT at least once.
async fn wait_published(daemon: &mut Daemon) {
    let deadline = tokio::time::Instant::now() + PUBLISH;
    loop {
        let counters = counters(daemon).await;
        if counters["discovery.dht_published"].as_u64() >= Some(1) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} did not publish in the DHT within {PUBLISH:?}: {counters}{}",
            daemon.name,
            daemon.diagnostics()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_that_moved_is_found_in_the_dht_when_the_index_is_gone() {
    let net = testnet().await;
    let forger = Forger::start().await;
    let mut index = Index::start().await;
    let url = index.url();
    let state = |_: &str| Arc::new(tempfile::tempdir().expect("state directory"));
    // alice also knows the forger: it is one of the nodes she asks.
    let mut alice_nodes = net.bootstrap.clone();
    alice_nodes.push(forger.addr.to_string());
    let alice_state = state("alice");
    let mut alice = Daemon::start_with_dht(&url, "alice", alice_state.clone(), &alice_nodes);
    alice.wait_registered().await;
    let bob_state = state("bob");
    let mut bob = Daemon::start_with_dht(&url, "bob", bob_state.clone(), &net.bootstrap);
    bob.wait_registered().await;

    // They talk: each keeps the other's key as a contact.
    alice.msg("bob", "hi bob").await;
    delivered(&mut alice).await;
    bob.expect("message", |v| v["text"] == "hi bob", EVENT_TIMEOUT)
        .await;
    bob.msg("alice", "hi alice").await;
    delivered(&mut bob).await;
    let whoami = {
        alice.send_line("/whoami").await;
        alice.expect("whoami", |_| true, EVENT_TIMEOUT).await
    };
    assert_eq!(
        (whoami["dht"].as_bool(), whoami["contacts"].as_u64()),
        (Some(true), Some(1)),
        "{whoami}"
    );
    let contacts = std::fs::read_to_string(bob_state.path().join("contacts.json"))
        .expect("bob's contacts file");
    assert!(contacts.contains(&alice.uuid.to_string()), "{contacts}");
    *forger.victim.lock().unwrap() = Some(bob_key(&alice_state));

    // The index goes away; bob restarts elsewhere (another port) and publishes anew.
    let old_port = bob.addr.port();
    index.stop().await;
    bob.send_line("/quit").await;
    bob.wait_exit(EVENT_TIMEOUT).await;
    let mut bob = Daemon::start_with_dht(&url, "bob", bob_state, &net.bootstrap);
    bob.send_line("/whoami").await;
    let whoami = bob.expect("whoami", |_| true, EVENT_TIMEOUT).await;
    let listen: std::net::SocketAddr = whoami["listen"].as_str().unwrap().parse().unwrap();
    let new_port = listen.port();
    assert_ne!(new_port, old_port, "bob must come back on another port");
    wait_published(&mut bob).await;

    // alice still talks to bob's old address; it does not answer, so she looks bob up again:
    // no index, but his record in the DHT, signed by the key she kept.
    alice.msg("bob", "are you there?").await;
    let receipt = delivered(&mut alice).await;
    assert_eq!(receipt["name"], "bob", "{receipt}");
    let message = bob
        .expect("message", |v| v["text"] == "are you there?", EVENT_TIMEOUT)
        .await;
    assert_eq!(message["from"], alice.uuid.to_string());
    let counters = counters(&mut alice).await;
    assert!(
        counters["discovery.dht_found"].as_u64() >= Some(1),
        "{counters}"
    );
    // The forged record was offered, ignored and counted; nothing went to its address.
    use std::sync::atomic::Ordering::Relaxed;
    assert!(
        forger.forged.load(Relaxed) >= 1,
        "the forger was never asked"
    );
    assert!(
        counters["discovery.dht_rejected"].as_u64() >= Some(1),
        "{counters}"
    );
    assert_eq!(
        forger.strays.load(Relaxed),
        0,
        "alice sent chat to the forged address"
    );
}

/// Bob's public key, as alice's contacts file keeps it (the one bob proved in the handshake).
fn bob_key(alice_state: &tempfile::TempDir) -> [u8; 32] {
    let text = std::fs::read_to_string(alice_state.path().join("contacts.json"))
        .expect("alice's contacts file");
    let file: Value = serde_json::from_str(&text).unwrap();
    let key = file["contacts"][0]["public_key"].as_str().expect("a key");
    let mut out = [0u8; 32];
    hex::decode_to_slice(key, &mut out).unwrap();
    out
}
