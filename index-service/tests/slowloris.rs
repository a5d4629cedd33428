//! Slowloris on the real binary: 3 000 connections that trickle a header line every second or
//! send nothing, from six addresses, against an index whose open-file limit is 2 048. A
//! normal client is still served within a second while they are open; the index keeps its
//! connections under its caps (refusing the rest with a JSON 429), and closes every slow
//! connection once its header timeout has passed.
//!
//! Without the caps the index runs out of file descriptors and stops accepting; without the
//! header timeout the slow connections stay open for good.
//!
//! One scenario end to end, so one file (past 400 lines): the slow clients, the normal client
//! and the checks on the caps and timeouts belong together.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::raw::parse_answer;
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

/// The index's open-file limit in this test (soft and hard).
const INDEX_FDS: u64 = 2048;
/// Slow connections, spread over [`SOURCES`] addresses.
const ATTACKERS: usize = 3000;
const SOURCES: usize = 6;
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// The real binary under `ulimit -n`, killed when dropped.
struct Index {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Index {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Index {
    async fn start(dir: &tempfile::TempDir, flags: &[&str]) -> Index {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let child = Command::new("bash")
            .arg("-c")
            .arg(format!("ulimit -n {INDEX_FDS} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_index-service"))
            .args(["--listen", &addr.to_string()])
            .args([
                "--database-url",
                &format!("sqlite://{}", dir.path().join("index.db").display()),
            ])
            .args(flags)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("index.log")).unwrap())
            .spawn()
            .unwrap();
        let index = Index { child, addr };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !client
            .get(format!("http://{addr}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            assert!(Instant::now() < deadline, "the index did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        index
    }
}

/// How one slow connection ended.
#[derive(Debug)]
enum Outcome {
    /// connect() failed or hung (the index stopped accepting).
    NotConnected,
    /// The index closed it, `after` connect() began, having sent `answer` (empty for a timeout).
    Closed { after: Duration, answer: Vec<u8> },
    /// Still open when the test stopped waiting.
    StillOpen,
}

/// One slowloris connection from `source`: trickles a header line every second (`trickle`)
/// or stays silent, until the index closes it.
async fn slow_client(
    source: Ipv4Addr,
    index: SocketAddr,
    trickle: bool,
    connected: Arc<AtomicUsize>,
) -> Outcome {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source.into(), 0)).unwrap();
    // The index's clock for this connection starts at accept, after this.
    let start = Instant::now();
    let stream = tokio::time::timeout(Duration::from_secs(2), socket.connect(index)).await;
    connected.fetch_add(1, Ordering::SeqCst);
    let Ok(Ok(mut stream)) = stream else {
        return Outcome::NotConnected;
    };
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    if trickle {
        let _ = stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: index\r\n")
            .await;
    }
    loop {
        match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Outcome::Closed {
                    after: start.elapsed(),
                    answer,
                };
            }
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            // Long after the checks, so giving up cannot free the index's descriptors early.
            Err(_) if start.elapsed() > HEADER_TIMEOUT * 6 => return Outcome::StillOpen,
            Err(_) => {
                if trickle && stream.write_all(b"X-Slow: 1\r\n").await.is_err() {
                    return Outcome::Closed {
                        after: start.elapsed(),
                        answer,
                    };
                }
            }
        }
    }
}

/// Lets this process hold both ends' worth of sockets; false when the system will not.
fn raise_own_fd_limit(needed: u64) -> bool {
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    if current.is_none_or(|soft| soft >= needed) {
        return true;
    }
    if maximum.is_some_and(|hard| hard < needed) {
        return false;
    }
    let raised = Rlimit {
        current: Some(needed),
        maximum,
    };
    setrlimit(Resource::Nofile, raised).is_ok()
}

/// Connections waiting in the accept queue of the socket listening on `port` (Linux: the
/// `rx_queue` of a listening socket in /proc/net/tcp); `None` where that cannot be read.
fn accept_queue(port: u16) -> Option<usize> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let local = format!(":{port:04X}");
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(3) != Some(&"0A") || !fields.get(1)?.ends_with(&local) {
            return None;
        }
        usize::from_str_radix(fields.get(4)?.split(':').nth(1)?, 16).ok()
    })
}

fn metric(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_connections_cannot_starve_a_normal_client() {
    if !raise_own_fd_limit(ATTACKERS as u64 + 1000) {
        common::skip(&format!(
            "slow_connections_cannot_starve_a_normal_client needs an open-file limit of {} \
             for its own sockets; the hard limit is lower",
            ATTACKERS + 1000
        ));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Default caps (10 000, lowered to fit 2 048 fds; 256 per address); short timeouts.
    let index = Index::start(&dir, &["--header-timeout", "5s", "--idle-timeout", "5s"]).await;

    // Connected in waves of 100, each once the index has taken the last from its accept
    // queue: a burst would overflow the queue, and a silent client whose handshake the kernel
    // dropped there is connected only in its own eyes — the index never hears of it. An index
    // that stops accepting (out of file descriptors) stops the pacing.
    let connected = Arc::new(AtomicUsize::new(0));
    let mut attackers = Vec::with_capacity(ATTACKERS);
    let mut pacing = true;
    for i in 0..ATTACKERS {
        let source = Ipv4Addr::new(127, 0, 0, 2 + (i % SOURCES) as u8);
        let trickle = i % 2 == 0;
        attackers.push(tokio::spawn(slow_client(
            source,
            index.addr,
            trickle,
            connected.clone(),
        )));
        if (i + 1) % 100 == 0 {
            let deadline = Instant::now() + Duration::from_secs(10);
            while connected.load(Ordering::SeqCst) < i + 1 {
                assert!(
                    Instant::now() < deadline,
                    "connect() neither succeeds nor fails"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while pacing && accept_queue(index.addr.port()).is_some_and(|queued| queued > 0) {
                pacing = Instant::now() < deadline;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    eprintln!(
        "index fds: {}, accept queue: {:?}",
        std::fs::read_dir(format!("/proc/{}/fd", index.child.id())).map_or(0, |d| d.count()),
        accept_queue(index.addr.port())
    );

    // While they are open, a normal client is served within a second, twice (a lookup and
    // the metrics).
    // A new connection per request: a pooled one could meet the index's idle timeout.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let started = Instant::now();
    let health = client
        .get(format!("http://{}/healthz", index.addr))
        .send()
        .await
        .expect("a normal client is served within a second during the slowloris");
    assert!(health.status().is_success());
    let metrics = client
        .get(format!("http://{}/metrics", index.addr))
        .send()
        .await
        .expect("and again")
        .text()
        .await
        .unwrap();
    let served_in = started.elapsed();
    let open = metric(&metrics, "index_connections_open");
    let limit = metric(&metrics, "index_connections_limit");
    eprintln!(
        "normal client served in {served_in:?} while the index held {open} connections (cap {limit})"
    );
    assert!(
        open >= 1000.0,
        "the slow connections are being held, not refused: {open}"
    );
    assert!(
        limit < INDEX_FDS as f64,
        "the cap fits the fd limit: {limit}"
    );

    // Every slow connection ends: refused at once with a JSON 429, or closed without an
    // answer once the header timeout passed — trickling a header line does not extend it.
    let mut refused = 0;
    let mut timed_out = 0;
    for (i, attacker) in attackers.into_iter().enumerate() {
        match attacker.await.unwrap() {
            Outcome::Closed { answer, .. } if !answer.is_empty() => {
                let answer = parse_answer(&answer).expect("an HTTP answer");
                let error = answer.assert_json_error(429);
                assert!(error.contains("256 connections"), "{error}");
                assert_eq!(answer.header("connection"), Some("close"));
                refused += 1;
            }
            Outcome::Closed { after, .. } => {
                assert!(
                    after >= HEADER_TIMEOUT,
                    "closed before the header timeout: {after:?}"
                );
                timed_out += 1;
            }
            other => panic!("slow connection {i} was not closed: {other:?}"),
        }
    }
    eprintln!("{timed_out} slow connections timed out, {refused} refused over the per-address cap");
    assert_eq!(
        timed_out,
        256 * SOURCES,
        "the per-address cap held the rest"
    );
    assert_eq!(refused, ATTACKERS - 256 * SOURCES);

    let metrics = client
        .get(format!("http://{}/metrics", index.addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let header_timeouts = metric(
        &metrics,
        r#"index_connection_timeouts_total{phase="header"}"#,
    );
    assert_eq!(header_timeouts, timed_out as f64);
    let per_ip = metric(
        &metrics,
        r#"index_connections_refused_total{reason="per_ip"}"#,
    );
    assert_eq!(per_ip, refused as f64);
}

/// The idle timeout (2 s) closes a kept-alive connection once it has been quiet that long,
/// never while requests keep coming; the header timeout (1 s) closes silent connections; the
/// global cap refuses with a JSON 503, and frees its places when connections close.
#[tokio::test]
async fn idle_timeout_and_global_cap() {
    use common::raw::{read_answer, read_to_close};
    use common::running::Running;
    use tokio::net::TcpStream;

    let index = Running::start(|config| {
        config.header_timeout = Duration::from_secs(1);
        config.idle_timeout = Duration::from_secs(2);
        config.max_connections = 10;
        config.max_connections_per_ip = 1000;
    })
    .await;
    let get = b"GET /healthz HTTP/1.1\r\nHost: index\r\n\r\n";

    // Requests every 300 ms for 2.5 s on one connection: longer than both timeouts, all served
    // (each request's head is due within 1 s of its first byte, not of the connection's start).
    let mut kept = TcpStream::connect(index.addr).await.unwrap();
    let started = Instant::now();
    let mut answered = Instant::now();
    while started.elapsed() < Duration::from_millis(2500) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        kept.write_all(get).await.unwrap();
        let answer = read_answer(&mut kept, Duration::from_secs(5)).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        answered = Instant::now();
    }
    // Then quiet: closed once the idle timeout (2 s from the answer, which the index sent a
    // little before this task read it) has passed — not the 1 s header timeout.
    let rest = read_to_close(&mut kept, Duration::from_secs(10)).await;
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    let quiet = answered.elapsed();
    assert!(
        quiet >= Duration::from_millis(1500),
        "closed after {quiet:?}"
    );

    // Nine silent connections and this one fill the cap of ten…
    let mut silent = Vec::new();
    for _ in 0..9 {
        silent.push(TcpStream::connect(index.addr).await.unwrap());
    }
    let mut tenth = TcpStream::connect(index.addr).await.unwrap();
    tenth.write_all(get).await.unwrap();
    assert_eq!(
        read_answer(&mut tenth, Duration::from_secs(5)).await.status,
        200
    );
    // …so the eleventh is refused at once.
    let mut eleventh = TcpStream::connect(index.addr).await.unwrap();
    let refusal = read_to_close(&mut eleventh, Duration::from_secs(5)).await;
    let refusal = parse_answer(&refusal).expect("an HTTP answer");
    let error = refusal.assert_json_error(503);
    assert!(error.contains("10 connections"), "{error}");
    assert_eq!(refusal.header("retry-after"), Some("1"));
    assert_eq!(refusal.header("connection"), Some("close"));

    // The silent ones are closed by the header timeout, the tenth by the idle timeout, which
    // frees their places.
    for mut stream in silent {
        assert!(
            read_to_close(&mut stream, Duration::from_secs(10))
                .await
                .is_empty()
        );
    }
    assert!(
        read_to_close(&mut tenth, Duration::from_secs(10))
            .await
            .is_empty()
    );
    let addr = index.addr;
    let metrics = common::eventually(Duration::from_secs(10), "a place under the cap", || async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: index\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let answer = parse_answer(&read_to_close(&mut stream, Duration::from_secs(5)).await)?;
        (answer.status == 200).then(|| String::from_utf8(answer.body).unwrap())
    })
    .await;
    assert_eq!(
        metric(&metrics, r#"index_connection_timeouts_total{phase="idle"}"#),
        2.0
    );
    assert_eq!(
        metric(
            &metrics,
            r#"index_connection_timeouts_total{phase="header"}"#
        ),
        9.0
    );
    assert_eq!(
        metric(
            &metrics,
            r#"index_connections_refused_total{reason="global"}"#
        ),
        1.0
    );
    index.stop().await;
}
