//! Defence against handshake floods, after WireGuard's cookie reply: every answered HsInit
//! costs the responder an ephemeral key and two Diffie-Hellman operations, so when it is under
//! load it answers an HsInit with a cheap, stateless **cookie reply** instead, and only spends
//! that work on an HsInit that proves, with a MAC keyed by the cookie, that its sender receives
//! datagrams at its source address. Even then each source IP has a small budget of expensive
//! handshakes per second, so one address with valid cookies cannot crowd out the others.
//!
//! - cookie = BLAKE2s-MAC-128(secret, source IP ‖ port); the secret comes from the endpoint's
//!   seeded RNG, changes every [`SECRET_LIFETIME`], and the previous one is still accepted;
//! - the reply seals the cookie with XChaCha20-Poly1305 under a key derived from the HsInit
//!   (its sender index and its Noise bytes, which include a fresh ephemeral key), so only
//!   whoever saw that HsInit can read or forge it;
//! - the cookied HsInit ends with BLAKE2s-MAC-128(cookie, every byte before the MAC).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use blake2::digest::{FixedOutput, KeyInit, Mac, Update};
use blake2::{Blake2s256, Blake2sMac, Digest};
use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};

use super::rng::SeededRng;
use crate::wire::{self, COOKIE_LEN, COOKIE_NONCE_LEN, SEALED_COOKIE_LEN, Sealed};

type Mac128 = Blake2sMac<blake2::digest::consts::U16>;

/// How long one cookie secret is handed out; cookies of the one before are still accepted,
/// so a cookie lives between one and two lifetimes.
pub(super) const SECRET_LIFETIME: Duration = Duration::from_secs(120);
/// Under load: at least this many HsInits arrived within [`LOAD_WINDOW`]…
pub(super) const LOAD_INITS: usize = 16;
/// …the window for [`LOAD_INITS`].
pub(super) const LOAD_WINDOW: Duration = Duration::from_secs(1);
/// …or at least this many answered handshakes wait for their third message.
pub(super) const LOAD_HALF_OPEN: usize = 64;
/// Load, once seen, is presumed to last this long after it was last seen, so a flood that
/// pauses between bursts does not get a fresh allowance of handshakes with every burst.
pub(super) const LOAD_HOLD: Duration = Duration::from_secs(10);
/// Expensive handshakes one source IP may start at once while under load…
pub(super) const IP_BURST: f64 = 8.0;
/// …and per second after that.
pub(super) const IP_RATE: f64 = 4.0;
/// Source IPs whose budget is remembered; full (idle) budgets are forgotten first.
pub(super) const MAX_BUDGETS: usize = 4096;

const REPLY_KEY_LABEL: &[u8] = b"peerlink cookie reply v1";

/// A token bucket: expensive handshakes one source IP may still start.
#[derive(Clone, Copy)]
struct Budget {
    tokens: f64,
    at: Instant,
}

impl Budget {
    fn refilled(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        (self.tokens + elapsed * IP_RATE).min(IP_BURST)
    }
}

/// The responder's side: load meter, cookie secrets, per-IP budgets.
#[derive(Default)]
pub(super) struct Guard {
    /// The current secret and when it was made.
    secret: Option<([u8; 32], Instant)>,
    previous: Option<[u8; 32]>,
    /// Arrival times of the latest [`LOAD_INITS`] HsInits.
    arrivals: VecDeque<Instant>,
    /// When load was last seen, plus [`LOAD_HOLD`].
    loaded_until: Option<Instant>,
    budgets: HashMap<IpAddr, Budget>,
}

impl Guard {
    /// Records the arrival of an HsInit (with or without a cookie).
    pub(super) fn note_init(&mut self, now: Instant) {
        if self.arrivals.len() == LOAD_INITS {
            self.arrivals.pop_front();
        }
        self.arrivals.push_back(now);
    }

    /// Whether handshakes must now prove their source address first.
    pub(super) fn under_load(&mut self, now: Instant, half_open: usize) -> bool {
        let busy = self.arrivals.len() == LOAD_INITS
            && self
                .arrivals
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) < LOAD_WINDOW);
        if busy || half_open >= LOAD_HALF_OPEN {
            self.loaded_until = Some(now + LOAD_HOLD);
        }
        self.loaded_until.is_some_and(|until| now < until)
    }

    fn rotate(&mut self, rng: &mut SeededRng, now: Instant) -> [u8; 32] {
        match self.secret {
            Some((secret, made)) if now.saturating_duration_since(made) < SECRET_LIFETIME => {
                return secret;
            }
            // Only a secret retired less than a lifetime ago is still honoured.
            Some((secret, made)) if now.saturating_duration_since(made) < 2 * SECRET_LIFETIME => {
                self.previous = Some(secret);
            }
            _ => self.previous = None,
        }
        let secret = rng.seed();
        self.secret = Some((secret, now));
        secret
    }

    /// The cookie for `from` right now.
    pub(super) fn cookie(
        &mut self,
        rng: &mut SeededRng,
        now: Instant,
        from: SocketAddr,
    ) -> [u8; COOKIE_LEN] {
        let secret = self.rotate(rng, now);
        cookie_for(&secret, from)
    }

    /// Whether `mac` proves a current or previous cookie for `from` over `signed`.
    pub(super) fn verify(
        &mut self,
        rng: &mut SeededRng,
        now: Instant,
        from: SocketAddr,
        signed: &[u8],
        mac: &[u8; COOKIE_LEN],
    ) -> bool {
        let current = self.rotate(rng, now);
        [Some(current), self.previous]
            .into_iter()
            .flatten()
            .any(|secret| mac_verifies(&cookie_for(&secret, from), signed, mac))
    }

    /// Takes one expensive handshake from `ip`'s budget; `false` when it is spent.
    pub(super) fn spend(&mut self, now: Instant, ip: IpAddr) -> bool {
        if self.budgets.len() >= MAX_BUDGETS && !self.budgets.contains_key(&ip) {
            self.budgets.retain(|_, b| b.refilled(now) < IP_BURST - 1.0);
            if self.budgets.len() >= MAX_BUDGETS {
                // Every tracked address is busy (many real addresses with cookies): forget
                // the one that spent longest ago.
                let stalest = self
                    .budgets
                    .iter()
                    .min_by_key(|(_, b)| b.at)
                    .map(|(ip, _)| *ip);
                self.budgets.remove(&stalest.expect("full"));
            }
        }
        let budget = self.budgets.entry(ip).or_insert(Budget {
            tokens: IP_BURST,
            at: now,
        });
        let tokens = budget.refilled(now);
        *budget = Budget { tokens, at: now };
        if tokens < 1.0 {
            return false;
        }
        budget.tokens -= 1.0;
        true
    }
}

fn cookie_for(secret: &[u8; 32], from: SocketAddr) -> [u8; COOKIE_LEN] {
    let mut mac = <Mac128 as KeyInit>::new_from_slice(secret).expect("32-byte key");
    match from.ip() {
        IpAddr::V4(ip) => Mac::update(&mut mac, &ip.octets()),
        IpAddr::V6(ip) => Mac::update(&mut mac, &ip.octets()),
    }
    Mac::update(&mut mac, &from.port().to_be_bytes());
    mac.finalize_fixed().into()
}

/// The MAC a cookied HsInit ends with.
pub(super) fn init_mac(cookie: &[u8; COOKIE_LEN], signed: &[u8]) -> [u8; COOKIE_LEN] {
    let mut mac = <Mac128 as KeyInit>::new_from_slice(cookie).expect("16-byte key");
    Mac::update(&mut mac, signed);
    mac.finalize_fixed().into()
}

fn mac_verifies(cookie: &[u8; COOKIE_LEN], signed: &[u8], mac: &[u8; COOKIE_LEN]) -> bool {
    let mut check = <Mac128 as KeyInit>::new_from_slice(cookie).expect("16-byte key");
    Mac::update(&mut check, signed);
    check.verify_slice(mac).is_ok()
}

/// The bytes a cookied HsInit's MAC covers: the datagram up to the MAC.
pub(super) fn signed_part(sender: u32, noise: &[u8]) -> Vec<u8> {
    let mut bytes = wire::encode_sealed(&Sealed::HsInitCookie {
        sender,
        noise: noise.to_vec(),
        mac: [0; COOKIE_LEN],
    });
    bytes.truncate(bytes.len() - COOKIE_LEN);
    bytes
}

/// The key a cookie reply to this HsInit is sealed under: only who saw the HsInit knows it.
fn reply_key(sender: u32, noise: &[u8]) -> XChaCha20Poly1305 {
    let key = Blake2s256::new()
        .chain(REPLY_KEY_LABEL)
        .chain(sender.to_be_bytes())
        .chain(noise)
        .finalize_fixed();
    XChaCha20Poly1305::new(&key)
}

/// The cookie reply to the HsInit `(sender, noise)`.
pub(super) fn seal_reply(
    rng: &mut SeededRng,
    sender: u32,
    noise: &[u8],
    cookie: &[u8; COOKIE_LEN],
) -> Sealed {
    let mut nonce = [0; COOKIE_NONCE_LEN];
    rng.fill(&mut nonce);
    let mut sealed = [0; SEALED_COOKIE_LEN];
    sealed[..COOKIE_LEN].copy_from_slice(cookie);
    let tag = reply_key(sender, noise)
        .encrypt_in_place_detached(&XNonce::from(nonce), &[], &mut sealed[..COOKIE_LEN])
        .expect("16 bytes always seal");
    sealed[COOKIE_LEN..].copy_from_slice(&tag);
    Sealed::CookieReply {
        receiver: sender,
        nonce,
        cookie: sealed,
    }
}

/// The cookie in a reply to our HsInit `(sender, noise)`, if the reply is genuine.
pub(super) fn open_reply(
    sender: u32,
    noise: &[u8],
    nonce: &[u8; COOKIE_NONCE_LEN],
    sealed: &[u8; SEALED_COOKIE_LEN],
) -> Option<[u8; COOKIE_LEN]> {
    let (cookie, tag) = sealed.split_at(COOKIE_LEN);
    let mut cookie: [u8; COOKIE_LEN] = cookie.try_into().ok()?;
    let tag: [u8; 16] = tag.try_into().ok()?;
    reply_key(sender, noise)
        .decrypt_in_place_detached(&XNonce::from(*nonce), &[], &mut cookie, &Tag::from(tag))
        .ok()?;
    Some(cookie)
}
