//! The socket of one connection, watched. hyper reads and writes through [`Watched`], which
//!
//! - enforces the connection's deadlines wherever hyper waits for the client: a new
//!   connection, or a request whose first byte arrived, must deliver its complete head within
//!   `--header-timeout`; after an answer, the next request must start (and the client must
//!   keep reading the answer) within `--idle-timeout`. While a handler works no deadline runs
//!   (`--request-timeout` bounds it). A missed deadline fails the read or write, and hyper
//!   closes the connection;
//! - rewrites the answer hyper sends on its own for a request it cannot parse — a `400`,
//!   `414` or `431` with an empty body, which no hook reaches — into the same status with a
//!   JSON `{"error": …}` body.
//!
//! hyper 1's own `header_read_timeout` is not used: it starts when hyper begins waiting for a
//! head, so it would also be the idle timeout, with one duration for both.

use std::io::{self, ErrorKind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::{Limits, MAX_HEAD_BYTES, MAX_HEADERS};
use crate::metrics::{Metrics, Timeout};

/// What the connection's service tells its socket: whether a request is being handled, and
/// how many have been answered.
#[derive(Default)]
pub struct Activity {
    in_flight: AtomicU32,
    answered: AtomicU64,
}

/// A request being handled; dropping it (answer ready, or request abandoned) counts it as
/// answered.
pub struct InFlight(Arc<Activity>);

impl InFlight {
    /// Marks a request as being handled.
    pub fn start(activity: &Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Relaxed);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.answered.fetch_add(1, Relaxed);
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// Which deadline runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// A request head is awaited or arriving: `--header-timeout`.
    Head,
    /// Between an answer and the next request's first byte: `--idle-timeout`.
    Idle,
    /// A handler is working: no deadline here.
    Busy,
}

/// A TCP stream with the connection's deadlines and the parse-error rewrite.
pub struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
    phase: Phase,
    answers_seen: u64,
    deadline: Pin<Box<Sleep>>,
    header_timeout: Duration,
    idle_timeout: Duration,
    timed_out: bool,
    write_blocked: bool,
    /// Bytes to send in place of what hyper handed over (see [`rewrite`]).
    rewritten: Vec<u8>,
    metrics: Arc<Metrics>,
}

impl Watched {
    /// Watches a stream just accepted: its first request head is due within the header timeout.
    pub fn new(
        stream: TcpStream,
        activity: Arc<Activity>,
        limits: &Limits,
        metrics: Arc<Metrics>,
    ) -> Self {
        Watched {
            stream,
            activity,
            phase: Phase::Head,
            answers_seen: 0,
            deadline: Box::pin(tokio::time::sleep(limits.header_timeout)),
            header_timeout: limits.header_timeout,
            idle_timeout: limits.idle_timeout,
            timed_out: false,
            write_blocked: false,
            rewritten: Vec::new(),
            metrics,
        }
    }

    /// Starts `phase`'s deadline. The timer is polled at once: hyper may not read again
    /// before the client sends something, and only a polled timer wakes the task.
    fn enter(&mut self, phase: Phase, cx: &mut Context<'_>) {
        self.phase = phase;
        let timeout = match phase {
            Phase::Head => self.header_timeout,
            Phase::Idle => self.idle_timeout,
            Phase::Busy => return,
        };
        self.deadline.as_mut().reset(Instant::now() + timeout);
        let _ = self.deadline.as_mut().poll(cx);
    }

    /// Catches up with the service: busy while it handles a request, idle once it answered.
    fn follow_requests(&mut self, cx: &mut Context<'_>) {
        let answered = self.activity.answered.load(Relaxed);
        if self.activity.in_flight.load(Relaxed) > 0 {
            self.phase = Phase::Busy;
            self.answers_seen = answered;
        } else if self.phase == Phase::Busy || answered != self.answers_seen {
            self.answers_seen = answered;
            self.enter(Phase::Idle, cx);
        }
    }

    /// Called when the client is not ready: fails once the running deadline has passed.
    fn check_deadline(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.phase == Phase::Busy {
            return Ok(());
        }
        if !self.timed_out && self.deadline.as_mut().poll(cx).is_pending() {
            return Ok(());
        }
        if !self.timed_out {
            self.timed_out = true;
            self.metrics.connections.timed_out(match self.phase {
                Phase::Head => Timeout::Header,
                _ => Timeout::Idle,
            });
        }
        let what = match self.phase {
            Phase::Head => "the request head did not arrive within --header-timeout",
            _ => "the connection was idle longer than --idle-timeout",
        };
        Err(io::Error::new(ErrorKind::TimedOut, what))
    }

    /// Sends what [`rewrite`] put in place of hyper's bytes.
    fn poll_rewritten(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.rewritten.is_empty() {
            match Pin::new(&mut self.stream).poll_write(cx, &self.rewritten) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => drop(self.rewritten.drain(..n)),
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => {
                    self.check_deadline(cx)?;
                    return Poll::Pending;
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.follow_requests(cx);
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before && this.phase == Phase::Idle {
                    this.enter(Phase::Head, cx);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                this.check_deadline(cx)?;
                Poll::Pending
            }
            failed => failed,
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.follow_requests(cx);
        ready!(this.poll_rewritten(cx))?;
        if let Some((status, replacement)) = rewrite(buf) {
            this.metrics.malformed(status);
            this.rewritten = replacement;
            // Sent now if the socket takes it, else by the flush hyper does next.
            if let Poll::Ready(Err(error)) = this.poll_rewritten(cx) {
                return Poll::Ready(Err(error));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        match Pin::new(&mut this.stream).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                if std::mem::take(&mut this.write_blocked) && this.phase == Phase::Idle {
                    // A client reading a long answer slowly is not idle.
                    this.enter(Phase::Idle, cx);
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending => {
                this.write_blocked = true;
                this.check_deadline(cx)?;
                Poll::Pending
            }
            failed => failed,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_rewritten(cx))?;
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_rewritten(cx))?;
        Pin::new(&mut this.stream).poll_shutdown(cx)
    }
}

/// If `written` ends with the head hyper sends for a request it could not parse — status
/// `400`, `414` or `431`, `content-length: 0`, nothing else but `date` and `connection` — the
/// bytes to send instead: whatever came before it, then the same status with a JSON body.
///
/// Every error of ours carries a JSON body and a content type, so no answer of ours matches.
/// hyper hands over whole buffers (the connection is built with `writev(false)`), and a head
/// this short only arrives in pieces after a short write; the client then gets hyper's empty
/// answer, as before.
fn rewrite(written: &[u8]) -> Option<(u16, Vec<u8>)> {
    const START: &[u8] = b"HTTP/1.1 ";
    if !written.ends_with(b"\r\n\r\n") {
        return None;
    }
    let from = written.len().saturating_sub(256);
    let start = from
        + written[from..]
            .windows(START.len())
            .rposition(|window| window == START)?;
    let head = std::str::from_utf8(&written[start..written.len() - 4]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()?
        .get(START.len()..START.len() + 3)?
        .parse()
        .ok()?;
    let error = match status {
        400 => "the request could not be parsed as HTTP/1.1: send `METHOD /path HTTP/1.1`, \
                then `Name: value` headers, each line ending in CRLF"
            .to_owned(),
        414 => "the request target is too long; send shorter paths and queries".to_owned(),
        431 => format!(
            "the request line and headers are too large: at most {MAX_HEAD_BYTES} bytes and \
             {MAX_HEADERS} headers; send fewer or shorter headers"
        ),
        _ => return None,
    };
    let mut date = None;
    let mut empty = false;
    for line in lines {
        let lower = line.to_ascii_lowercase();
        if lower == "content-length: 0" {
            empty = true;
        } else if lower.starts_with("date: ") {
            date = Some(line);
        } else if lower != "connection: close" {
            return None;
        }
    }
    if !empty {
        return None;
    }
    let reason = match status {
        400 => "Bad Request",
        414 => "URI Too Long",
        _ => "Request Header Fields Too Large",
    };
    let date = date.map(|line| format!("{line}\r\n")).unwrap_or_default();
    let mut replacement = written[..start].to_vec();
    replacement.extend_from_slice(
        super::raw_json_error(&format!("{status} {reason}"), &date, error).as_bytes(),
    );
    Some((status, replacement))
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    #[test]
    fn only_hypers_parse_error_heads_are_rewritten() {
        let hyper_400 = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\
                          date: Tue, 01 Dec 2026 03:14:32 GMT\r\n\r\n";
        let (status, out) = rewrite(hyper_400).unwrap();
        assert_eq!(status, 400);
        let out = String::from_utf8(out).unwrap();
        assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\ncontent-type: application/json"));
        assert!(out.contains("date: Tue, 01 Dec 2026 03:14:32 GMT\r\n\r\n{\"error\":"));
        let body = &out[out.find("\r\n\r\n").unwrap() + 4..];
        let length = format!("content-length: {}\r\n", body.len());
        assert!(out.contains(&length), "{out}");

        // An earlier answer in the same buffer is kept as it is.
        let mut two = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}".to_vec();
        two.extend_from_slice(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n",
        );
        let (status, out) = rewrite(&two).unwrap();
        assert_eq!(status, 431);
        assert!(out.starts_with(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}HTTP/1.1 431"));

        // Our own answers are left alone: bodies, content types, other statuses.
        for ours in [
            &b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 204 No Content\r\ndate: x\r\n\r\n",
            b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n{}",
            b"HTTP/1.1 400 Bad Request\r\ndate: x\r\n\r\n",
        ] {
            assert!(rewrite(ours).is_none(), "{}", String::from_utf8_lossy(ours));
        }
    }
}
