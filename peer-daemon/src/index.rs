//! HTTP client of the index service: signed registration, heartbeats and lookups.
//!
//! The index is outside this daemon's trust: every answer is read chunk by chunk up to a cap
//! ([`MAX_ANSWER_BYTES`], [`MAX_LIST_BYTES`] for member and room lists) and refused at once
//! when its `Content-Length` announces more; every request (connecting, sending, reading the
//! whole answer) ends after [`REQUEST_TIMEOUT`] (or the client's own, [`IndexClient::with_timeout`]).
//! A record whose key does not hash to its UUID is refused wherever it appears.
//!
//! Every failure is an [`IndexError`]: permanent or transient, with one sentence for a person
//! and the raw chain for `RUST_LOG=debug`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use proto::api::{Candidate, IceServer, PeerRecord, RegisterRequest, RoomMembers};
use proto::identity::{self, Identity};
use reqwest::{Method, StatusCode, header};

mod error;
mod lookups;
mod mail;

pub use mail::MAIL_BATCH;
mod read;

use error::Doing;
pub use error::{IndexError, IndexErrorKind};
use read::{error_of, read_json, verified};

/// Largest answer read for one record, a registration or an error.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Largest answer read for a list (a room's members, the rooms).
pub const MAX_LIST_BYTES: usize = 1024 * 1024;
/// Longest time one request may take, from connecting to the end of the answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an idle connection to the index is kept for reuse.
const POOL_IDLE: Duration = Duration::from_secs(20);
/// Longest time connecting to the index may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Talks to one index; cheap to clone.
#[derive(Clone)]
pub struct IndexClient {
    http: reqwest::Client,
    base: String,
    /// A per-request bound shorter than [`REQUEST_TIMEOUT`], when set.
    timeout: Option<Duration>,
}

pub use crate::chat::Lookup;
use crate::chat::{Answer, IndexReply, IndexRequest};

/// Answer to a heartbeat.
#[derive(Debug, PartialEq, Eq)]
pub enum Heartbeat {
    /// The index refreshed our record; the ICE servers it handed out with fresh credentials.
    Refreshed(Vec<IceServer>),
    /// The index does not know us (restarted empty, or our record expired).
    Forgotten,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The last timestamp this process signed with.
static LAST_SIGNED: AtomicU64 = AtomicU64::new(0);

/// The timestamp for the next signature: now, or one past the last one when that is not in the
/// past. The index accepts each signature once, and Ed25519 signatures are deterministic, so two
/// identical requests in one second (join, leave, join) would otherwise carry the same one.
fn signing_time() -> u64 {
    let now = unix_now();
    let previous = LAST_SIGNED
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(now.max(last + 1))
        })
        .unwrap_or(now);
    now.max(previous + 1)
}

/// The index's words for a signature it has seen before (`index-service` `peers::replayed`).
const REPLAYED: &str = "already used";

impl IndexClient {
    /// A client for the index at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            // Shorter than the index's default idle timeout (30 s), so we drop a kept-alive
            // connection before the index does rather than reuse one it is just closing.
            .pool_idle_timeout(POOL_IDLE)
            .build()
            .context("building the HTTP client")?;
        Ok(IndexClient {
            http,
            base: base.trim_end_matches('/').to_owned(),
            timeout: None,
        })
    }

    /// The same client (same connections) with every request bounded by `timeout`: for
    /// quitting, which must stay quick when the index is down. A bound over
    /// [`REQUEST_TIMEOUT`] still ends at it.
    pub fn with_timeout(&self, timeout: Duration) -> IndexClient {
        IndexClient {
            timeout: Some(timeout.min(REQUEST_TIMEOUT)),
            ..self.clone()
        }
    }

    /// The index's base URL, as given.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// How long one request may take.
    fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(REQUEST_TIMEOUT)
    }

    /// Words for the errors of `method path`: `prefix` starts the message ("could not join
    /// #rust"), `answer` names a successful answer ("the room list").
    fn doing(
        &self,
        method: &Method,
        path: &str,
        prefix: Option<String>,
        answer: &'static str,
    ) -> Doing<'_> {
        Doing {
            base: &self.base,
            prefix,
            request: format!("{method} {path}"),
            timeout: self.timeout(),
            registering: false,
            answer,
        }
    }

    /// Registers our key, UDP port, name and candidates, signed; the index fills in the IP it
    /// sees us from and answers with the UUID derived from our key (and the ICE servers to
    /// gather candidates from). The record's `record_ttl_secs` and `ttl_secs` both say how
    /// long it lives without a heartbeat, whichever of the two the index sent.
    pub async fn register(
        &self,
        identity: &Identity,
        udp_port: u16,
        name: Option<String>,
        candidates: Vec<Candidate>,
    ) -> Result<PeerRecord, IndexError> {
        let mut doing = self.doing(
            &Method::POST,
            "/register",
            Some("could not register".to_owned()),
            "a registration answer",
        );
        doing.registering = true;
        let public_key = identity.public_key();
        let request = || {
            let timestamp = signing_time();
            let message = identity::register_message(
                &public_key,
                udp_port,
                name.as_deref(),
                &candidates,
                timestamp,
            );
            RegisterRequest {
                udp_port,
                name: name.clone(),
                public_key: Some(hex::encode(public_key)),
                timestamp: Some(timestamp),
                signature: Some(hex::encode(identity.sign(&message))),
                candidates: candidates.clone(),
            }
        };
        let result = async {
            let mut response = self
                .send(
                    self.request(Method::POST, "/register").json(&request()),
                    &doing,
                )
                .await?;
            if response.status() == StatusCode::UNAUTHORIZED {
                // Seen before: a run of this daemon a moment ago registered the same way in
                // the same second. Signed again, later.
                let error = error_of(response, &doing).await;
                if !error.detail().contains(REPLAYED) {
                    return Err(error);
                }
                response = self
                    .send(
                        self.request(Method::POST, "/register").json(&request()),
                        &doing,
                    )
                    .await?;
            }
            let status = response.status();
            if !status.is_success() {
                return Err(error_of(response, &doing).await);
            }
            let mut record: PeerRecord = read_json(response, MAX_ANSWER_BYTES, &doing).await?;
            if record.uuid != identity.uuid() {
                return Err(doing.unacceptable(
                    status,
                    &format!(
                        "the index registered us as {} instead of our key's UUID {}; it may be \
                         too old for keyed registrations",
                        record.uuid,
                        identity.uuid()
                    ),
                ));
            }
            if let Some(secs) = record.record_ttl() {
                record.set_record_ttl(secs);
            }
            Ok(record)
        };
        result.await.map_err(IndexError::logged)
    }

    /// A request to `path` on the index, bounded by this client's timeout.
    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match self.timeout {
            Some(timeout) => request.timeout(timeout),
            None => request,
        }
    }

    /// An owner-only request: signed over method, path (with `query`, if any), body and time.
    fn signed(
        &self,
        identity: &Identity,
        method: Method,
        path: &str,
        query: &str,
        body: Vec<u8>,
    ) -> reqwest::RequestBuilder {
        let timestamp = signing_time();
        let url = if query.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{query}")
        };
        let signature = identity.sign(&identity::owner_message(
            method.as_str(),
            &url,
            &body,
            timestamp,
        ));
        let mut request = self.request(method, &url).header(
            header::AUTHORIZATION,
            format!("Signature {timestamp}.{}", hex::encode(signature)),
        );
        if !body.is_empty() {
            request = request
                .header(header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        request
    }

    /// Sends an owner-only request; signed again (with a later timestamp) and sent once more
    /// when the index says it saw that signature already: an earlier run of this daemon may
    /// have made the very same request in the same second.
    async fn send_signed(
        &self,
        identity: &Identity,
        method: Method,
        path: &str,
        doing: &Doing<'_>,
    ) -> Result<reqwest::Response, IndexError> {
        self.send_signed_with(identity, method, path, "", Vec::new(), doing)
            .await
    }

    /// [`IndexClient::send_signed`] with a query and a body.
    async fn send_signed_with(
        &self,
        identity: &Identity,
        method: Method,
        path: &str,
        query: &str,
        body: Vec<u8>,
        doing: &Doing<'_>,
    ) -> Result<reqwest::Response, IndexError> {
        let response = self
            .send(
                self.signed(identity, method.clone(), path, query, body.clone()),
                doing,
            )
            .await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let error = error_of(response, doing).await;
        if !error.detail().contains(REPLAYED) {
            return Err(error);
        }
        tracing::debug!(%path, "signature seen before; signing again");
        self.send(self.signed(identity, method, path, query, body), doing)
            .await
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        doing: &Doing<'_>,
    ) -> Result<reqwest::Response, IndexError> {
        request
            .send()
            .await
            .map_err(|error| doing.transport(&error))
    }

    /// Refreshes our record's `last_seen`, proving ownership with a signature.
    pub async fn heartbeat(&self, identity: &Identity) -> Result<Heartbeat, IndexError> {
        let path = format!("/peers/{}/heartbeat", identity.uuid());
        let doing = self.doing(
            &Method::POST,
            &path,
            Some("could not send a heartbeat to the index".to_owned()),
            "a heartbeat answer",
        );
        let result = async {
            let response = self
                .send_signed(identity, Method::POST, &path, &doing)
                .await?;
            match response.status() {
                status if status.is_success() => {
                    // The record with fresh TURN credentials; an answer without them (an
                    // older index) is just as good a heartbeat.
                    let ice_servers = read_json::<PeerRecord>(response, MAX_ANSWER_BYTES, &doing)
                        .await
                        .map(|record| record.ice_servers)
                        .unwrap_or_default();
                    Ok(Heartbeat::Refreshed(ice_servers))
                }
                StatusCode::NOT_FOUND => Ok(Heartbeat::Forgotten),
                _ => Err(error_of(response, &doing).await),
            }
        };
        result.await.map_err(IndexError::logged)
    }

    /// Takes our record offline at once (`DELETE /peers/{uuid}`, signed), which also takes
    /// us out of every room: what quitting does, so peers do not see a ghost until the TTL
    /// ends. A record the index does not know (any more) is offline already.
    pub async fn go_offline(&self, identity: &Identity) -> Result<(), IndexError> {
        let path = format!("/peers/{}", identity.uuid());
        self.delete_owned(
            identity,
            &path,
            "could not take our record offline at the index".to_owned(),
        )
        .await
    }

    /// A signed `DELETE` of something of ours; what the index does not know (any more) is
    /// gone already.
    async fn delete_owned(
        &self,
        identity: &Identity,
        path: &str,
        failing: String,
    ) -> Result<(), IndexError> {
        let doing = self.doing(&Method::DELETE, path, Some(failing), "an answer");
        let result = async {
            let response = self
                .send_signed(identity, Method::DELETE, path, &doing)
                .await?;
            let status = response.status();
            if status.is_success() || status == StatusCode::NOT_FOUND {
                return Ok(());
            }
            Err(error_of(response, &doing).await)
        };
        result.await.map_err(IndexError::logged)
    }

    /// Joins `room` on the index and returns its members (us included).
    pub async fn join_room(
        &self,
        identity: &Identity,
        room: &str,
    ) -> Result<Vec<PeerRecord>, IndexError> {
        let path = format!("/rooms/{room}/members/{}", identity.uuid());
        let doing = self.doing(
            &Method::PUT,
            &path,
            Some(format!("could not join #{room} on the index")),
            "the member list",
        );
        let result = async {
            let response = self
                .send_signed(identity, Method::PUT, &path, &doing)
                .await?;
            if !response.status().is_success() {
                return Err(error_of(response, &doing).await);
            }
            let room: RoomMembers = read_json(response, MAX_LIST_BYTES, &doing).await?;
            Ok(verified(room.members))
        };
        result.await.map_err(IndexError::logged)
    }

    /// Leaves `room` on the index.
    pub async fn leave_room(&self, identity: &Identity, room: &str) -> Result<(), IndexError> {
        let path = format!("/rooms/{room}/members/{}", identity.uuid());
        self.delete_owned(
            identity,
            &path,
            format!("could not leave #{room} on the index"),
        )
        .await
    }

    /// Carries out one request of the chat core and puts the answer (or the error, in one
    /// sentence for a person; the detail went to the debug log) in the reply the core expects.
    pub async fn answer(&self, identity: &Identity, request: IndexRequest) -> IndexReply {
        fn text<T>(result: Result<T, IndexError>) -> Answer<T> {
            result.map_err(|error| error.to_string())
        }
        match request {
            IndexRequest::Lookup(peer) => IndexReply::Lookup(peer, text(self.lookup(peer).await)),
            IndexRequest::Verify(peer) => IndexReply::Verify(peer, text(self.lookup(peer).await)),
            IndexRequest::Name(name) => {
                let answer = text(self.lookup_name(&name).await);
                IndexReply::Name(name, answer)
            }
            IndexRequest::Join(room) => {
                let answer = text(self.join_room(identity, &room).await);
                IndexReply::Joined(room, answer)
            }
            IndexRequest::Leave(room) => {
                let answer = text(self.leave_room(identity, &room).await);
                IndexReply::Left(room, answer)
            }
            IndexRequest::Who(room) => {
                let answer = text(self.room_members(&room).await);
                IndexReply::Who(room, answer)
            }
            IndexRequest::Rooms => IndexReply::Rooms(text(self.rooms().await)),
        }
    }
}
