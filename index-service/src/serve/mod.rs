//! The HTTP/1.1 server in front of the router: accepts connections, refuses those over the
//! connection caps, serves the rest with hyper, closes connections that miss a deadline, and
//! turns hyper's own parse-error answers into JSON.
//!
//! It replaces `axum::serve`, which has none of these limits: one client could otherwise hold
//! thousands of connections open by sending a header line now and then (slowloris) until the
//! process runs out of file descriptors and nobody else is served.
//!
//! - [`caps`]: a global cap, kept below the open-file limit, and a cap per client address;
//!   connections over a cap get an immediate JSON `503`/`429` and are closed.
//! - [`io`]: the header-read and idle deadlines, enforced on the socket, and the rewriting of
//!   hyper's empty `400`/`414`/`431` into JSON.
//! - [`conn`]: one connection — the request-head size limits, `ConnectInfo`, graceful shutdown.

mod caps;
mod conn;
mod io;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use caps::raise_fd_limit;

use proto::api::ErrorBody;

use crate::config::Config;
use crate::metrics::Metrics;

/// Longest request target (path and query) accepted, in bytes; longer ones get a JSON `414`.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Largest header section accepted (each header's name and value plus 4 bytes), in bytes;
/// larger ones get a JSON `431`.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Most headers one request may carry (hyper refuses more, with a `431` made JSON by [`io`]).
pub const MAX_HEADERS: usize = 100;
/// hyper's read buffer per connection: a request head that does not fit is refused with `431`.
/// Room for the two limits above, and a bound on what one connection can make us hold.
pub const MAX_HEAD_BYTES: usize = 32 * 1024;

/// The connection limits of a running server, checked once at start-up.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// From a new connection's start, or a request's first byte, to the end of its headers.
    pub header_timeout: Duration,
    /// From an answer to the next request's first byte.
    pub idle_timeout: Duration,
    /// Connections served at once, already lowered to fit the open-file limit.
    pub max_connections: usize,
    /// Connections served at once per client address (IPv6: per /64).
    pub max_connections_per_ip: usize,
}

impl Limits {
    /// The limits `config` asks for (already checked by [`Config::validate`]), with the
    /// global cap lowered to what RLIMIT_NOFILE allows.
    pub fn from_config(config: &Config) -> Limits {
        let wanted = config.max_connections as usize;
        let max_connections = caps::fit_fd_limit(wanted);
        if max_connections < wanted {
            tracing::warn!(
                wanted,
                max_connections,
                "--max-connections lowered to fit the open-file limit (RLIMIT_NOFILE); raise it with `ulimit -n`"
            );
        }
        Limits {
            header_timeout: config.header_timeout,
            idle_timeout: config.idle_timeout,
            max_connections,
            max_connections_per_ip: config.max_connections_per_ip as usize,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting, lets the
/// requests in flight finish (closing idle connections) and returns once every connection is
/// closed. Handlers see the peer's address as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    limits: Limits,
    metrics: &Arc<Metrics>,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    metrics.connections.limit.set(limits.max_connections as f64);
    let caps = Arc::new(caps::Caps::new(&limits));
    // Tells the connections to finish (also if this future is dropped); the tracker waits for
    // the last of them.
    let stop = CancellationToken::new();
    let _stop_if_dropped = stop.drop_guard_ref();
    let connections = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(error).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        match caps.admit(remote.ip()) {
            Ok(permit) => {
                let connection = conn::Connection {
                    router: router.clone(),
                    remote,
                    limits,
                    metrics: metrics.clone(),
                };
                connections.spawn(connection.serve(stream, permit, stop.clone()));
            }
            Err(refusal) => {
                metrics.connections.refused(refusal);
                caps::refuse(stream, refusal, &limits);
            }
        }
    }
    drop(listener);
    stop.cancel();
    connections.close();
    connections.wait().await;
    Ok(())
}

/// After a failed `accept`: a client that gave up is nothing; running out of file
/// descriptors (which the cap should prevent) is logged and waited out briefly.
async fn accept_failed(error: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused
    ) {
        return;
    }
    tracing::error!(%error, "accepting a connection failed; retrying in 100 ms");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// An answer written on the socket by hand, outside hyper (a refused connection, a parse error
/// hyper answered without a body): `status` such as `429 Too Many Requests`, `extra` header
/// lines (each ending in CRLF), and a JSON `{"error": …}` body; the connection closes after it.
fn raw_json_error(status: &str, extra: &str, error: String) -> String {
    let body = serde_json::to_string(&ErrorBody { error }).unwrap_or_default();
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n{extra}\r\n{body}",
        body.len()
    )
}
