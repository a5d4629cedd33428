//! Connection caps: a global one kept below the open-file limit, so the process never runs
//! out of file descriptors, and one per client address, so one client cannot take them all.
//!
//! A connection over a cap is answered at once — `503` (the index is full) or `429` (this
//! address holds too many) with a JSON error, `Retry-After: 1` and `Connection: close` — and
//! closed, without reading its request: refusing costs one write and no task.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use tokio::net::TcpStream;

use super::Limits;
use crate::http::ratelimit::client_key;
use crate::metrics::Refusal;

/// File descriptors kept for everything but client connections: SQLite (the database, its
/// WAL and shared memory for each of the nine connections), the listener, the runtime, logs,
/// and the connection being refused.
const FD_RESERVE: u64 = 128;

/// Raises the soft open-file limit to the hard one, so `--max-connections` is not lowered
/// for nothing on systems whose soft default is 1024. Returns the soft limit now in force.
pub fn raise_fd_limit() -> Option<u64> {
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    if let (Some(soft), Some(hard)) = (current, maximum)
        && soft < hard
    {
        let raised = Rlimit {
            current: Some(hard),
            maximum: Some(hard),
        };
        if let Err(error) = setrlimit(Resource::Nofile, raised) {
            tracing::debug!(%error, soft, hard, "could not raise the open-file limit");
        }
    }
    getrlimit(Resource::Nofile).current
}

/// `wanted` connections, or fewer if the soft open-file limit (less [`FD_RESERVE`]) is lower.
pub fn fit_fd_limit(wanted: usize) -> usize {
    match getrlimit(Resource::Nofile).current {
        None => wanted,
        Some(soft) => {
            let room = usize::try_from(soft.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX);
            wanted.min(room.max(1))
        }
    }
}

/// Open connections, in total and by client address.
pub struct Caps {
    max_total: usize,
    max_per_ip: usize,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

/// One admitted connection; dropping it frees its place.
pub struct Permit {
    caps: Arc<Caps>,
    key: IpAddr,
}

impl Caps {
    /// Caps as `limits` sets them.
    pub fn new(limits: &Limits) -> Self {
        Caps {
            max_total: limits.max_connections,
            max_per_ip: limits.max_connections_per_ip,
            open: Mutex::default(),
        }
    }

    /// Takes a place for a connection from `ip`, or says which cap is reached.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refusal> {
        let key = client_key(ip);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.total >= self.max_total {
            return Err(Refusal::Global);
        }
        let from_ip = open.by_ip.entry(key).or_default();
        if *from_ip >= self.max_per_ip {
            return Err(Refusal::PerIp);
        }
        *from_ip += 1;
        open.total += 1;
        Ok(Permit {
            caps: self.clone(),
            key,
        })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self
            .caps
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.total -= 1;
        if let Some(from_ip) = open.by_ip.get_mut(&self.key) {
            *from_ip -= 1;
            if *from_ip == 0 {
                open.by_ip.remove(&self.key);
            }
        }
    }
}

/// Answers a connection over a cap and closes it.
pub fn refuse(stream: TcpStream, refusal: Refusal, limits: &Limits) {
    let (status, error) = match refusal {
        Refusal::Global => (
            "503 Service Unavailable",
            format!(
                "the index is serving its maximum of {} connections; retry in a moment",
                limits.max_connections
            ),
        ),
        Refusal::PerIp => (
            "429 Too Many Requests",
            format!(
                "your address already holds {} connections to the index, the most allowed; \
                 reuse them (HTTP keep-alive) or close some",
                limits.max_connections_per_ip
            ),
        ),
    };
    let answer = super::raw_json_error(status, "retry-after: 1\r\n", error);
    // Whatever the client already sent is read first: closing a socket with unread data
    // resets the connection, and the client might then never see the answer.
    let mut scratch = [0u8; 2048];
    while matches!(stream.try_read(&mut scratch), Ok(n) if n > 0) {}
    // A fresh socket's send buffer takes a few hundred bytes at once; if it does not, the
    // client gets a plain close, which is what a full server owes it anyway.
    let _ = stream.try_write(answer.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn caps(total: usize, per_ip: usize) -> Arc<Caps> {
        Arc::new(Caps::new(&Limits {
            header_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            max_connections: total,
            max_connections_per_ip: per_ip,
        }))
    }

    #[test]
    fn per_ip_and_global_caps_free_their_places() {
        let caps = caps(3, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = caps.admit(a).unwrap();
        let _second = caps.admit(a).unwrap();
        assert_eq!(caps.admit(a).err(), Some(Refusal::PerIp));
        let _third = caps.admit(b).unwrap();
        assert_eq!(caps.admit(b).err(), Some(Refusal::Global));
        drop(first);
        let _again = caps.admit(a).unwrap();
        assert_eq!(caps.open.lock().unwrap().by_ip.len(), 2);
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let caps = caps(10, 1);
        let _one = caps.admit("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert_eq!(
            caps.admit("2001:db8:1:2:ffff::9".parse().unwrap()).err(),
            Some(Refusal::PerIp)
        );
        assert!(caps.admit("2001:db8:1:3::1".parse().unwrap()).is_ok());
        // IPv4-mapped addresses count as the IPv4 address.
        let _v4 = caps.admit("192.0.2.9".parse().unwrap()).unwrap();
        assert_eq!(
            caps.admit("::ffff:192.0.2.9".parse().unwrap()).err(),
            Some(Refusal::PerIp)
        );
    }

    #[test]
    fn the_cap_fits_the_open_file_limit() {
        let soft = getrlimit(Resource::Nofile).current;
        let fitted = fit_fd_limit(usize::MAX);
        match soft {
            Some(soft) => assert!((fitted as u64) < soft.max(2)),
            None => assert_eq!(fitted, usize::MAX),
        }
        assert_eq!(fit_fd_limit(5), 5);
    }
}
