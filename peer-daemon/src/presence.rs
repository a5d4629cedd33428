//! Keeps the daemon registered: registers, heartbeats well inside the index's TTL, registers
//! again when the index has forgotten it, and backs off with jitter while the index is
//! unreachable. It runs beside the chat, which never waits on it.

use std::time::Duration;

use proto::api::Candidate;
use proto::identity::Identity;
use tokio::sync::{mpsc, watch};

use crate::chat::IndexReply;
use crate::index::{Heartbeat, IndexClient};

/// Backoff bounds while the index is unreachable.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const LAST_RETRY: Duration = Duration::from_secs(60);

/// Runs until the receiver of `news` is dropped; tells the chat core when the daemon is
/// (again) registered ([`IndexReply::Registered`]) and when it is in trouble. Registers again
/// at once whenever `candidates` change.
pub async fn maintain(
    index: IndexClient,
    identity: Identity,
    udp_port: u16,
    name: Option<String>,
    heartbeat_every: Duration,
    news: mpsc::Sender<IndexReply>,
    mut candidates: watch::Receiver<Vec<Candidate>>,
) {
    let mut retry = FIRST_RETRY;
    // Whether the index knows us: registering again only to update the candidates is not news
    // for the chat (it would join its rooms again), only for NAT traversal.
    let mut known = false;
    loop {
        let ours = candidates.borrow_and_update().clone();
        let record = match index
            .register(&identity, udp_port, name.clone(), ours)
            .await
        {
            Ok(record) => record,
            Err(error) => {
                // It may come back empty (restarted): the chat joins its rooms again then.
                known = false;
                let wait = jittered(retry);
                let message = format!("{error:#}; retrying in {:.1} s", wait.as_secs_f32());
                if news.send(IndexReply::Trouble(message)).await.is_err() {
                    return;
                }
                tokio::time::sleep(wait).await;
                retry = (retry * 2).min(LAST_RETRY);
                continue;
            }
        };
        retry = FIRST_RETRY;
        // Heartbeat at a third of the record's TTL at most, so two may be lost before it expires.
        let every = record
            .ttl_secs
            .map(|ttl| Duration::from_secs(ttl / 3).max(Duration::from_secs(1)))
            .map_or(heartbeat_every, |ttl| ttl.min(heartbeat_every));
        let reply = if known {
            IndexReply::IceServers(record.ice_servers)
        } else {
            IndexReply::Registered(record)
        };
        known = true;
        if news.send(reply).await.is_err() {
            return;
        }
        let mut wait = every;
        loop {
            tokio::select! {
                () = tokio::time::sleep(jittered(wait)) => {}
                changed = candidates.changed() => match changed {
                    Ok(()) => break,
                    // The daemon is stopping.
                    Err(_) => return,
                },
            }
            match index.heartbeat(&identity).await {
                Ok(Heartbeat::Refreshed(ice_servers)) => {
                    if !ice_servers.is_empty()
                        && news
                            .send(IndexReply::IceServers(ice_servers))
                            .await
                            .is_err()
                    {
                        return;
                    }
                    wait = every;
                    retry = FIRST_RETRY;
                }
                Ok(Heartbeat::Forgotten) => {
                    known = false;
                    break;
                }
                Err(error) => {
                    wait = retry.min(every);
                    retry = (retry * 2).min(LAST_RETRY);
                    let message = format!("{error:#}; the chat goes on, retrying the index later");
                    if news.send(IndexReply::Trouble(message)).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// `base` ± 20 %, so many daemons that lost the index together do not return in lockstep.
fn jittered(base: Duration) -> Duration {
    base.mul_f64(rand::random_range(0.8..1.2))
}
