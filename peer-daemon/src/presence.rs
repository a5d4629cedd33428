//! Keeps the daemon registered: registers, heartbeats well inside the index's TTL, registers
//! again when the index has forgotten it, and backs off with jitter while the index is
//! unreachable. It runs beside the chat, which never waits on it.

use std::time::Duration;

use proto::api::Candidate;
use proto::identity::Identity;
use tokio::sync::{mpsc, watch};

use crate::chat::IndexReply;
use crate::index::{Heartbeat, IndexClient};

/// What the chat asks of the registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Register this name instead (`/nick`); answered with [`IndexReply::Renamed`].
    Rename(String),
    /// Send a heartbeat now: a request to the index just failed.
    Check,
}

/// Backoff bounds while the index is unreachable.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const LAST_RETRY: Duration = Duration::from_secs(60);

/// Runs until the receiver of `news` is dropped; tells the chat core when the daemon is
/// (again) registered ([`IndexReply::Registered`]), when the index answers again after trouble
/// ([`IndexReply::Online`]) and when it is in trouble. Registers again at once whenever
/// `candidates` change, under a new name when `requests` asks (answered with
/// [`IndexReply::Renamed`]), and heartbeats at once when asked to check the index. A first registration that no retry can fix (a taken name, a
/// refused request) ends it with [`IndexReply::Fatal`]: the daemon stops with that advice.
#[allow(clippy::too_many_arguments)]
pub async fn maintain(
    index: IndexClient,
    identity: Identity,
    udp_port: u16,
    mut name: Option<String>,
    heartbeat_every: Duration,
    news: mpsc::Sender<IndexReply>,
    mut candidates: watch::Receiver<Vec<Candidate>>,
    mut requests: mpsc::Receiver<Request>,
) {
    let mut retry = FIRST_RETRY;
    // Whether the index knows us: registering again only to update the candidates is not news
    // for the chat (it would join its rooms again), only for NAT traversal.
    let mut known = false;
    // Whether any registration went through in this run: before that, a permanent refusal
    // is fatal (the user must change something); after it, it is trouble to report and retry.
    let mut ever = false;
    loop {
        let ours = candidates.borrow_and_update().clone();
        let record = match index
            .register(&identity, udp_port, name.clone(), ours)
            .await
        {
            Ok(record) => record,
            Err(error) => {
                tracing::debug!(detail = %error.detail(), "registration failed");
                if error.is_permanent() && !ever {
                    let _ = news.send(IndexReply::Fatal(error.to_string())).await;
                    return;
                }
                // It may come back empty (restarted): the chat joins its rooms again then.
                known = false;
                let wait = jittered(if error.is_permanent() {
                    LAST_RETRY
                } else {
                    retry
                });
                let message = format!("{error}; retrying in {:.0} s", wait.as_secs_f32().ceil());
                if news.send(IndexReply::Trouble(message)).await.is_err() {
                    return;
                }
                tokio::time::sleep(wait).await;
                retry = (retry * 2).min(LAST_RETRY);
                continue;
            }
        };
        ever = true;
        retry = FIRST_RETRY;
        // Heartbeat at a third of the record's TTL at most, so two may be lost before it expires.
        let every = record
            .record_ttl()
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
        // Whether the last heartbeat failed (the next success is news: the index is back).
        let mut troubled = false;
        loop {
            tokio::select! {
                () = tokio::time::sleep(jittered(wait)) => {}
                changed = candidates.changed() => match changed {
                    Ok(()) => break,
                    // The daemon is stopping.
                    Err(_) => return,
                },
                Some(request) = requests.recv() => match request {
                    Request::Rename(wanted) => {
                        let answer =
                            rename(&index, &identity, udp_port, &wanted, &candidates).await;
                        if answer.is_ok() {
                            name = Some(wanted);
                        }
                        if news.send(IndexReply::Renamed(answer)).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    // A request of the chat failed: find out now whether the index is away
                    // (rather than at the next heartbeat, minutes later).
                    Request::Check => {}
                },
            }
            match index.heartbeat(&identity).await {
                Ok(Heartbeat::Refreshed(ice_servers)) => {
                    if std::mem::take(&mut troubled) && news.send(IndexReply::Online).await.is_err()
                    {
                        return;
                    }
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
                    tracing::debug!(detail = %error.detail(), "heartbeat failed");
                    troubled = true;
                    wait = retry.min(every);
                    retry = (retry * 2).min(LAST_RETRY);
                    let message = error.to_string();
                    if news.send(IndexReply::Trouble(message)).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// Registers `wanted` as our name (`/nick`); the index's refusal (a taken name: 409) or its
/// silence, in one sentence.
async fn rename(
    index: &IndexClient,
    identity: &Identity,
    udp_port: u16,
    wanted: &str,
    candidates: &watch::Receiver<Vec<Candidate>>,
) -> Result<String, String> {
    let ours = candidates.borrow().clone();
    match index
        .register(identity, udp_port, Some(wanted.to_owned()), ours)
        .await
    {
        Ok(record) if record.name.as_deref() == Some(wanted) => Ok(wanted.to_owned()),
        Ok(record) => Ok(record.name.unwrap_or_else(|| wanted.to_owned())),
        Err(error) => {
            tracing::debug!(detail = %error.detail(), "renaming failed");
            Err(format!("could not take the name {wanted}: {error}"))
        }
    }
}

/// `base` ± 20 %, so many daemons that lost the index together do not return in lockstep.
fn jittered(base: Duration) -> Duration {
    base.mul_f64(rand::random_range(0.8..1.2))
}
