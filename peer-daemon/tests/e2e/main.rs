//! End-to-end tests: the real index (in-process, SQLite in a temporary directory, 127.0.0.1:0)
//! and real `peer-daemon` processes talking over UDP on 127.0.0.1, driven through stdin and
//! observed through their `--json` stdout.

//!
//! One test binary in two files by subject: [`delivery`] (messages arrive, in order, whole,
//! through an index outage) and [`robustness`] (what goes wrong around the chat does not break
//! it: unknown peers, garbage datagrams, a closed stdin).

#[path = "../common/mod.rs"]
mod common;
mod delivery;
mod robustness;

use common::{Daemon, EVENT_TIMEOUT, Index};

/// Waits for `from` to get the receipt for a message to `to` (failing at once on a `failed`
/// for `to` or an `error`), then for `to` to have received `text` from `from`.
pub(crate) async fn assert_delivered(from: &mut Daemon, to: &mut Daemon, text: &str) {
    let receiver = to.uuid.to_string();
    let outcome = from
        .expect_event(
            |v| {
                v["event"] == "error"
                    || (v["event"] == "delivered" || v["event"] == "failed")
                        && v["to"] == receiver.as_str()
            },
            EVENT_TIMEOUT,
        )
        .await;
    assert_eq!(
        outcome["event"], "delivered",
        "{} could not deliver to {}: {outcome}",
        from.name, to.name
    );
    let rtt = outcome["rtt_ms"]
        .as_f64()
        .unwrap_or_else(|| panic!("`delivered` without a numeric rtt_ms: {outcome}"));
    assert!(rtt >= 0.0, "negative rtt_ms in {outcome}");
    let sender = from.uuid.to_string();
    to.expect(
        "message",
        |v| v["from"] == sender.as_str() && v["text"] == text,
        EVENT_TIMEOUT,
    )
    .await;
}

/// Checks that `d` registered with an address on 127.0.0.1 and the index agrees.
pub(crate) async fn assert_registered(index: &Index, d: &Daemon) {
    assert_eq!(
        d.addr.ip().to_string(),
        "127.0.0.1",
        "{} registered from the wrong IP: {}",
        d.name,
        d.addr
    );
    assert_ne!(d.addr.port(), 0, "{} registered port 0", d.name);
    let (status, body) = index.get_peer(&d.uuid.to_string()).await;
    assert_eq!(status, 200, "index lookup of {}: {body}", d.name);
    assert_eq!(body["uuid"], d.uuid.to_string().as_str(), "{body}");
    assert_eq!(body["addr"], d.addr.to_string().as_str(), "{body}");
}
