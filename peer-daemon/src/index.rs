//! HTTP client of the index service: signed registration, heartbeats and lookups.
//!
//! The index is outside this daemon's trust: every answer is read chunk by chunk up to a cap
//! ([`MAX_ANSWER_BYTES`], [`MAX_LIST_BYTES`] for member and room lists) and refused at once
//! when its `Content-Length` announces more; every request (connecting, sending, reading the
//! whole answer) ends after [`REQUEST_TIMEOUT`]. A record whose key does not hash to its UUID
//! is refused wherever it appears.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use proto::api::{
    Candidate, IceServer, PeerRecord, RegisterRequest, RoomList, RoomMembers, RoomSummary,
};
use proto::identity::{self, Identity};
use reqwest::{StatusCode, header};
use uuid::Uuid;

mod read;

use read::{check_key, error_of, explained, parse_max_age, read_json, verified};

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
        })
    }

    /// Registers our key, UDP port, name and candidates, signed; the index fills in the IP it
    /// sees us from and answers with the UUID derived from our key (and the ICE servers to
    /// gather candidates from).
    pub async fn register(
        &self,
        identity: &Identity,
        udp_port: u16,
        name: Option<String>,
        candidates: Vec<Candidate>,
    ) -> anyhow::Result<PeerRecord> {
        let public_key = identity.public_key();
        let timestamp = unix_now();
        let message = identity::register_message(
            &public_key,
            udp_port,
            name.as_deref(),
            &candidates,
            timestamp,
        );
        let request = RegisterRequest {
            udp_port,
            name,
            public_key: Some(hex::encode(public_key)),
            timestamp: Some(timestamp),
            signature: Some(hex::encode(identity.sign(&message))),
            candidates,
        };
        let response = self
            .send(
                self.http
                    .post(format!("{}/register", self.base))
                    .json(&request),
            )
            .await?;
        if !response.status().is_success() {
            return Err(error_of(response).await).context("registering with the index");
        }
        let record: PeerRecord = read_json(response, MAX_ANSWER_BYTES)
            .await
            .context("reading the index's registration answer")?;
        if record.uuid != identity.uuid() {
            anyhow::bail!(
                "the index registered us as {} instead of our key's UUID {}; it may be too old for keyed registrations",
                record.uuid,
                identity.uuid()
            );
        }
        Ok(record)
    }

    /// An owner-only request: signed over method, path, body and time.
    fn signed(
        &self,
        identity: &Identity,
        method: reqwest::Method,
        path: &str,
        body: Vec<u8>,
    ) -> reqwest::RequestBuilder {
        let timestamp = unix_now();
        let signature = identity.sign(&identity::owner_message(
            method.as_str(),
            path,
            &body,
            timestamp,
        ));
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header(
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

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        request
            .send()
            .await
            .map_err(explained)
            .with_context(|| format!("reaching the index at {}", self.base))
    }

    /// Refreshes our record's `last_seen`, proving ownership with a signature.
    pub async fn heartbeat(&self, identity: &Identity) -> anyhow::Result<Heartbeat> {
        let path = format!("/peers/{}/heartbeat", identity.uuid());
        let response = self
            .send(self.signed(identity, reqwest::Method::POST, &path, Vec::new()))
            .await?;
        match response.status() {
            status if status.is_success() => {
                // The record with fresh TURN credentials; an answer without them (an older
                // index) is just as good a heartbeat.
                let ice_servers = read_json::<PeerRecord>(response, MAX_ANSWER_BYTES)
                    .await
                    .map(|record| record.ice_servers)
                    .unwrap_or_default();
                Ok(Heartbeat::Refreshed(ice_servers))
            }
            StatusCode::NOT_FOUND => Ok(Heartbeat::Forgotten),
            _ => Err(error_of(response).await).context("sending a heartbeat"),
        }
    }

    /// The record of `uuid`, or `None` when the index does not know it. A record whose key
    /// does not hash to its UUID is refused: the index cannot vouch for someone else's key.
    pub async fn lookup(&self, uuid: Uuid) -> anyhow::Result<Option<Lookup>> {
        let found = self.get_record(&format!("/peers/{uuid}")).await?;
        if let Some(found) = &found {
            anyhow::ensure!(
                found.record.uuid == uuid,
                "the index answered with another peer than {uuid}"
            );
        }
        Ok(found)
    }

    /// The peer registered under `name`, or `None`.
    pub async fn lookup_name(&self, name: &str) -> anyhow::Result<Option<Lookup>> {
        let mut url = reqwest::Url::parse(&format!("{}/peers", self.base)).context("index URL")?;
        url.query_pairs_mut().append_pair("name", name);
        let query = url.query().unwrap_or_default().to_owned();
        self.get_record(&format!("/peers?{query}")).await
    }

    /// Joins `room` on the index and returns its members (us included).
    pub async fn join_room(
        &self,
        identity: &Identity,
        room: &str,
    ) -> anyhow::Result<Vec<PeerRecord>> {
        let path = format!("/rooms/{room}/members/{}", identity.uuid());
        let response = self
            .send(self.signed(identity, reqwest::Method::PUT, &path, Vec::new()))
            .await?;
        if !response.status().is_success() {
            return Err(error_of(response).await)
                .with_context(|| format!("joining #{room} on the index"));
        }
        let members = read_json::<RoomMembers>(response, MAX_LIST_BYTES)
            .await
            .context("reading the room's members")?
            .members;
        Ok(verified(members))
    }

    /// Leaves `room` on the index.
    pub async fn leave_room(&self, identity: &Identity, room: &str) -> anyhow::Result<()> {
        let path = format!("/rooms/{room}/members/{}", identity.uuid());
        let response = self
            .send(self.signed(identity, reqwest::Method::DELETE, &path, Vec::new()))
            .await?;
        if response.status().is_success() || response.status() == StatusCode::NOT_FOUND {
            return Ok(());
        }
        Err(error_of(response).await).with_context(|| format!("leaving #{room} on the index"))
    }

    /// Members of `room` according to the index.
    pub async fn room_members(&self, room: &str) -> anyhow::Result<Vec<PeerRecord>> {
        let response = self
            .send(self.http.get(format!("{}/rooms/{room}", self.base)))
            .await?;
        if !response.status().is_success() {
            return Err(error_of(response).await).with_context(|| format!("listing #{room}"));
        }
        let members = read_json::<RoomMembers>(response, MAX_LIST_BYTES)
            .await
            .context("reading the room's members")?
            .members;
        Ok(verified(members))
    }

    /// Rooms on the index with their member counts.
    pub async fn rooms(&self) -> anyhow::Result<Vec<RoomSummary>> {
        let response = self
            .send(self.http.get(format!("{}/rooms", self.base)))
            .await?;
        if !response.status().is_success() {
            return Err(error_of(response).await).context("listing rooms");
        }
        Ok(read_json::<RoomList>(response, MAX_LIST_BYTES)
            .await
            .context("reading the room list")?
            .rooms)
    }

    /// Carries out one request of the chat core and puts the answer (or the error, for a
    /// person) in the reply the core expects.
    pub async fn answer(&self, identity: &Identity, request: IndexRequest) -> IndexReply {
        fn text<T>(result: anyhow::Result<T>) -> Answer<T> {
            result.map_err(|error| format!("{error:#}"))
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

    async fn get_record(&self, path_and_query: &str) -> anyhow::Result<Option<Lookup>> {
        let response = self
            .send(self.http.get(format!("{}{path_and_query}", self.base)))
            .await?;
        match response.status() {
            StatusCode::OK => {
                let max_age = response
                    .headers()
                    .get(header::CACHE_CONTROL)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_max_age);
                let record: PeerRecord = read_json(response, MAX_ANSWER_BYTES)
                    .await
                    .context("reading a lookup answer")?;
                check_key(&record)?;
                let max_age = max_age.or(record.ttl_secs.map(Duration::from_secs));
                Ok(Some(Lookup { record, max_age }))
            }
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(error_of(response).await).context("looking a peer up"),
        }
    }
}
