//! What anyone may ask the index, without signing: a peer by UUID or by name, a room's members,
//! the rooms. Every record is checked against its key before it is believed.

use std::time::Duration;

use proto::api::{PeerRecord, RoomList, RoomMembers, RoomSummary};
use reqwest::{Method, StatusCode, header};
use uuid::Uuid;

use super::error::Doing;
use super::read::{check_key, error_of, parse_max_age, read_json, verified};
use super::{IndexClient, IndexError, Lookup, MAX_ANSWER_BYTES, MAX_LIST_BYTES};

impl IndexClient {
    /// The record of `uuid`, or `None` when the index does not know it. A record whose key
    /// does not hash to its UUID is refused: the index cannot vouch for someone else's key.
    pub async fn lookup(&self, uuid: Uuid) -> Result<Option<Lookup>, IndexError> {
        let path = format!("/peers/{uuid}");
        let doing = self.doing(&Method::GET, &path, None, "a lookup answer");
        let result = async {
            let found = self.get_record(&path, &doing).await?;
            if let Some(found) = &found
                && found.record.uuid != uuid
            {
                return Err(doing.unacceptable(
                    StatusCode::OK,
                    &format!("the index answered with another peer than {uuid}"),
                ));
            }
            Ok(found)
        };
        result.await.map_err(IndexError::logged)
    }

    /// The peer registered under `name`, or `None`.
    pub async fn lookup_name(&self, name: &str) -> Result<Option<Lookup>, IndexError> {
        let doing = self.doing(&Method::GET, "/peers?name=…", None, "a lookup answer");
        let result = async {
            let mut url = reqwest::Url::parse(&format!("{}/peers", self.base))
                .map_err(|error| doing.bad_url(&error))?;
            url.query_pairs_mut().append_pair("name", name);
            let query = url.query().unwrap_or_default().to_owned();
            self.get_record(&format!("/peers?{query}"), &doing).await
        };
        result.await.map_err(IndexError::logged)
    }

    /// Members of `room` according to the index.
    pub async fn room_members(&self, room: &str) -> Result<Vec<PeerRecord>, IndexError> {
        let path = format!("/rooms/{room}");
        let doing = self.doing(
            &Method::GET,
            &path,
            Some(format!("could not get the member list of #{room}")),
            "the member list",
        );
        let result = async {
            let response = self.send(self.request(Method::GET, &path), &doing).await?;
            if !response.status().is_success() {
                return Err(error_of(response, &doing).await);
            }
            let room: RoomMembers = read_json(response, MAX_LIST_BYTES, &doing).await?;
            Ok(verified(room.members))
        };
        result.await.map_err(IndexError::logged)
    }

    /// Rooms on the index with their member counts.
    pub async fn rooms(&self) -> Result<Vec<RoomSummary>, IndexError> {
        let doing = self.doing(
            &Method::GET,
            "/rooms",
            Some("could not get the room list".to_owned()),
            "the room list",
        );
        let result = async {
            let response = self
                .send(self.request(Method::GET, "/rooms"), &doing)
                .await?;
            if !response.status().is_success() {
                return Err(error_of(response, &doing).await);
            }
            let list: RoomList = read_json(response, MAX_LIST_BYTES, &doing).await?;
            Ok(list.rooms)
        };
        result.await.map_err(IndexError::logged)
    }

    /// A lookup: the record and how long it may be cached (`Cache-Control: max-age`, else
    /// `cache_ttl_secs`, else the deprecated `ttl_secs`), or `None` on 404.
    async fn get_record(
        &self,
        path_and_query: &str,
        doing: &Doing<'_>,
    ) -> Result<Option<Lookup>, IndexError> {
        let response = self
            .send(self.request(Method::GET, path_and_query), doing)
            .await?;
        match response.status() {
            status if status.is_success() => {
                let max_age = response
                    .headers()
                    .get(header::CACHE_CONTROL)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_max_age);
                let record: PeerRecord = read_json(response, MAX_ANSWER_BYTES, doing).await?;
                check_key(&record)
                    .map_err(|error| doing.unacceptable(status, &format!("{error:#}")))?;
                let max_age = max_age.or(record.cache_ttl().map(Duration::from_secs));
                Ok(Some(Lookup::index(record, max_age)))
            }
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(error_of(response, doing).await),
        }
    }
}
