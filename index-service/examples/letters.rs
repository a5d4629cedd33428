//! Pre-signed mailbox deposits for `scripts/bench-index.sh`: registers `SENDERS` keyed senders
//! on a running index (`POST /register`, signed over `proto::identity::register_message`),
//! seals `COUNT` letters of about 1 KiB of text for one fixed recipient (`proto::mailbox::seal`),
//! and writes one deposit per line, ready to send as it is:
//! `<path>\t<Authorization value>\t<JSON body>`.
//!
//! Every line carries another letter, so no two signatures are alike (the index accepts each
//! once). All are signed with the time the sealing started, so they must be sent within
//! `proto::identity::MAX_CLOCK_SKEW_SECS` (300 s) of it. The recipient need not be registered.
//! Sealing (three X25519 operations per letter) dominates the time; it runs on every core.
//!
//! Usage: `cargo run --release -p index-service --example letters -- http://127.0.0.1:8080
//! 200000 64 letters.tsv`

use std::io::Write;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use proto::api::mailbox::{Deposit, encode_sealed};
use proto::identity::{Identity, owner_message, register_message};
use proto::mailbox::{Content, Letter, Stamp, seal};

/// The recipient of every letter: a key nobody registers, as for a peer that is offline.
const RECIPIENT_SECRET: [u8; 32] = [0x42; 32];
/// Each letter's text, in bytes.
const TEXT_BYTES: usize = 1024;

fn sender(n: u64) -> Identity {
    let mut secret = [0x5e; 32];
    secret[..8].copy_from_slice(&n.to_le_bytes());
    Identity::from_secret(secret)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}

/// Registers `id` as a keyed record (again, if it is already registered).
async fn register(client: &reqwest::Client, index: &str, id: &Identity) -> anyhow::Result<()> {
    let key = id.public_key();
    let timestamp = unix_now();
    let udp_port = 4000;
    let signature = id.sign(&register_message(&key, udp_port, None, &[], timestamp));
    let body = serde_json::json!({
        "udp_port": udp_port,
        "public_key": hex::encode(key),
        "timestamp": timestamp,
        "signature": hex::encode(signature),
    });
    let response = client
        .post(format!("{index}/register"))
        .json(&body)
        .send()
        .await
        .with_context(|| format!("registering the sender {}", id.uuid()))?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        bail!("registering the sender {}: {status} {text}", id.uuid());
    }
    Ok(())
}

/// Line `n`: letter `n` from sender `n % senders`, sealed and signed at `timestamp`.
fn line(n: u64, senders: &[Identity], recipient: &[u8; 32], path: &str, timestamp: u64) -> String {
    let from = &senders[(n % senders.len() as u64) as usize];
    let mut text = format!("letter {n}: ");
    while text.len() < TEXT_BYTES {
        text.push_str("the quick brown fox jumps over the lazy dog; ");
    }
    text.truncate(TEXT_BYTES);
    let letter = Letter {
        to: proto::identity::uuid_for_key(recipient),
        stamp: Stamp {
            id: n,
            at: timestamp * 1000 + n % 1000,
        },
        content: Content::Text {
            text,
            action: false,
        },
    };
    let sealed = seal(from, recipient, &letter, rand::random()).expect("a 1 KiB letter fits");
    let body = serde_json::to_string(&Deposit {
        from: from.uuid(),
        sealed: encode_sealed(&sealed),
    })
    .expect("a deposit serialises");
    let signature = from.sign(&owner_message("POST", path, body.as_bytes(), timestamp));
    format!(
        "{path}\tSignature {timestamp}.{}\t{body}\n",
        hex::encode(signature)
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [index, count, senders, out] = args.as_slice() else {
        bail!("usage: letters INDEX_URL COUNT SENDERS OUT_FILE");
    };
    let index = index.trim_end_matches('/');
    let count: u64 = count.parse().context("COUNT is a number of letters")?;
    let senders: u64 = senders.parse().context("SENDERS is a number of senders")?;
    if senders == 0 {
        bail!("at least one sender");
    }

    let client = reqwest::Client::new();
    let senders: Vec<Identity> = (0..senders).map(sender).collect();
    for id in &senders {
        register(&client, index, id).await?;
    }

    let recipient = Identity::from_secret(RECIPIENT_SECRET);
    let recipient_key = recipient.public_key();
    let path = format!("/peers/{}/mailbox", recipient.uuid());
    let timestamp = unix_now();
    let started = Instant::now();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let chunk = count.div_ceil(threads);
    let parts: Vec<Vec<u8>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (senders, path) = (&senders, &path);
                scope.spawn(move || {
                    let mut part = Vec::new();
                    for n in (t * chunk)..((t + 1) * chunk).min(count) {
                        part.extend_from_slice(
                            line(n, senders, &recipient_key, path, timestamp).as_bytes(),
                        );
                    }
                    part
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().expect("a sealing thread"))
            .collect()
    });
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(out).with_context(|| format!("creating {out}"))?,
    );
    let mut bytes = 0;
    for part in &parts {
        file.write_all(part)?;
        bytes += part.len();
    }
    file.flush()?;
    eprintln!(
        "{count} deposits from {} senders for {} signed at {timestamp} ({bytes} bytes, {:.1} s on \
         {threads} threads): {out}",
        senders.len(),
        recipient.uuid(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
