//! Per-client rate limits (GCRA from `governor`), with separate budgets for reads and writes,
//! keyed on the IP of the TCP connection — never on a header a client could forge.
//!
//! IPv6 clients are keyed by their /64, since one host commonly holds a whole /64.
//! Health checks (`/healthz`, `/readyz`) are never limited.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::http::Method;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use uuid::Uuid;

use super::error::ApiError;
use crate::AppState;
use crate::config::Config;
use crate::metrics::Budget;

/// The read and write limiters, and the mailbox's per-sender one; `None` is a budget that
/// is turned off.
pub struct RateLimits {
    read: Option<DefaultKeyedRateLimiter<IpAddr>>,
    write: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Deposits per sender UUID: a sender's key, not its address, is what it cannot change
    /// cheaply once registered.
    mail: Option<DefaultKeyedRateLimiter<Uuid>>,
    clock: DefaultClock,
}

impl RateLimits {
    /// The limits `config` asks for.
    pub fn new(config: &Config) -> Self {
        let limiter =
            |rate: f64, burst: u32| quota(rate, burst).map(RateLimiter::<IpAddr, _, _>::keyed);
        RateLimits {
            read: limiter(config.read_rate_per_sec, config.read_burst),
            write: limiter(config.write_rate_per_sec, config.write_burst),
            mail: quota(
                config.mailbox_sender_rate_per_sec,
                config.mailbox_sender_burst,
            )
            .map(RateLimiter::keyed),
            clock: DefaultClock::default(),
        }
    }

    /// Spends one request of `budget` for `ip`, or says how long to wait.
    pub fn check(&self, budget: Budget, ip: IpAddr) -> Result<(), Duration> {
        let limiter = match budget {
            Budget::Read => &self.read,
            Budget::Write => &self.write,
        };
        match limiter {
            None => Ok(()),
            Some(limiter) => limiter
                .check_key(&client_key(ip))
                .map_err(|not_until| not_until.wait_time_from(self.clock.now())),
        }
    }

    /// Spends one deposit of `sender`'s mailbox budget, or says how long to wait.
    pub fn check_sender(&self, sender: Uuid) -> Result<(), Duration> {
        match &self.mail {
            None => Ok(()),
            Some(limiter) => limiter
                .check_key(&sender)
                .map_err(|not_until| not_until.wait_time_from(self.clock.now())),
        }
    }

    /// Forgets clients whose budget is full again, so the tables do not grow forever.
    pub fn forget_idle_clients(&self) {
        for limiter in [&self.read, &self.write].into_iter().flatten() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Some(limiter) = &self.mail {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// `rate` requests per second on average, bursts of `burst`; `None` when `rate` is 0.
fn quota(rate: f64, burst: u32) -> Option<Quota> {
    if rate <= 0.0 || !rate.is_finite() {
        return None;
    }
    let period = Duration::from_secs_f64(1.0 / rate).max(Duration::from_nanos(1));
    Some(Quota::with_period(period)?.allow_burst(NonZeroU32::new(burst.max(1))?))
}

/// The rate-limit key of a client address: IPv4 as is, IPv6 by /64.
pub(crate) fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
    }
}

/// Which budget a request spends.
fn budget(method: &Method) -> Budget {
    if *method == Method::GET || *method == Method::HEAD || *method == Method::OPTIONS {
        Budget::Read
    } else {
        Budget::Write
    }
}

/// Spends one request of its client's budget; `Err` is the 429 (with `Retry-After`) to answer
/// instead when the budget is spent.
pub fn admit(state: &AppState, request: &Request) -> Result<(), ApiError> {
    let path = request.uri().path();
    if path == "/healthz" || path == "/readyz" {
        return Ok(());
    }
    let Some(ConnectInfo(client)) = request.extensions().get::<ConnectInfo<SocketAddr>>() else {
        return Ok(());
    };
    let budget = budget(request.method());
    state.limits.check(budget, client.ip()).map_err(|wait| {
        state.metrics.rate_limited(budget);
        ApiError::TooManyRequests {
            retry_after_secs: whole_secs(wait),
        }
    })
}

/// `wait` rounded up to whole seconds, at least one (what `Retry-After` carries).
pub fn whole_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_are_per_client_and_refill() {
        let mut config = Config::for_database("sqlite::memory:");
        config.write_rate_per_sec = 1.0;
        config.write_burst = 2;
        config.read_rate_per_sec = 0.0;
        let limits = RateLimits::new(&config);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(limits.check(Budget::Write, a).is_ok());
        assert!(limits.check(Budget::Write, a).is_ok());
        let wait = limits.check(Budget::Write, a).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(
            limits.check(Budget::Write, b).is_ok(),
            "another client has its own budget"
        );
        for _ in 0..10_000 {
            assert!(
                limits.check(Budget::Read, a).is_ok(),
                "reads are unlimited at rate 0"
            );
        }
    }

    #[test]
    fn ipv6_hosts_share_their_slash_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(client_key(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
    }
}
