//! `GET /history`: the daemon's message store, read for scripts (see docs/control.md).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use proto::chat::valid_room;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ControlError, ControlState};
use crate::command::{HISTORY_MAX, HISTORY_PAGE};
use crate::history::{HistoryQuery, SessionKind};

/// `GET /history`: `room=<name>` or `peer=<uuid>` (neither: every session), `limit` (1 to
/// [`HISTORY_MAX`], default [`HISTORY_PAGE`]), `before=<id>` to page back.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    /// A room (with or without its `#`).
    pub room: Option<String>,
    /// The other peer of a private session (UUID).
    pub peer: Option<String>,
    /// How many lines at most.
    pub limit: Option<String>,
    /// Only lines with a smaller id.
    pub before: Option<String>,
}

impl HistoryParams {
    /// The query, or what is wrong with the parameters.
    pub fn query(self) -> Result<HistoryQuery, ControlError> {
        let session = match (self.room, self.peer) {
            (Some(_), Some(_)) => {
                return Err(ControlError::BadRequest(
                    "give at most one of `room` and `peer`".into(),
                ));
            }
            (Some(room), None) => {
                let room = room.trim().trim_start_matches('#');
                if !valid_room(room) {
                    return Err(ControlError::BadRequest(format!(
                        "`{room}` is not a room name: use 1 to 32 of a-z, 0-9, - and _"
                    )));
                }
                Some(SessionKind::Room(room.to_owned()))
            }
            (None, Some(peer)) => Some(SessionKind::Private(
                uuid::Uuid::try_parse(peer.trim()).map_err(|_| {
                    ControlError::BadRequest(format!("`peer` must be a UUID, not {peer:?}"))
                })?,
            )),
            (None, None) => None,
        };
        let limit = match self.limit {
            None => HISTORY_PAGE,
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=HISTORY_MAX).contains(&n) => n,
                _ => {
                    return Err(ControlError::BadRequest(format!(
                        "`limit` must be a number from 1 to {HISTORY_MAX}"
                    )));
                }
            },
        };
        let before = match self.before {
            None => None,
            Some(text) => Some(text.parse::<u64>().map_err(|_| {
                ControlError::BadRequest("`before` must be a message id (a number)".into())
            })?),
        };
        Ok(HistoryQuery {
            session,
            before,
            limit,
        })
    }
}

pub(super) async fn history(
    State(state): State<ControlState>,
    params: Result<Query<HistoryParams>, QueryRejection>,
) -> Result<Json<Value>, ControlError> {
    let Query(params) = params.map_err(|rejection| {
        ControlError::BadRequest(format!(
            "{}; the parameters are room, peer, limit and before",
            rejection.body_text()
        ))
    })?;
    let query = params.query()?;
    let store = state
        .store
        .as_ref()
        .filter(|store| store.is_on())
        .ok_or(ControlError::NoHistory)?;
    let lines = store.history(query).await.map_err(|error| {
        tracing::warn!(error = %format!("{error:#}"), "reading the history for the control API");
        ControlError::Unavailable
    })?;
    Ok(Json(json!({ "lines": lines })))
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    #[test]
    fn history_parameters_are_checked() {
        let params = |room: Option<&str>,
                      peer: Option<&str>,
                      limit: Option<&str>,
                      before: Option<&str>| HistoryParams {
            room: room.map(Into::into),
            peer: peer.map(Into::into),
            limit: limit.map(Into::into),
            before: before.map(Into::into),
        };
        assert_eq!(
            params(Some("#rust"), None, Some("5"), Some("10"))
                .query()
                .unwrap(),
            HistoryQuery {
                session: Some(SessionKind::Room("rust".into())),
                before: Some(10),
                limit: 5
            }
        );
        let peer = uuid::Uuid::from_u128(7);
        assert_eq!(
            params(None, Some(&peer.simple().to_string()), None, None)
                .query()
                .unwrap()
                .session,
            Some(SessionKind::Private(peer))
        );
        assert_eq!(
            params(None, None, None, None).query().unwrap().limit,
            HISTORY_PAGE
        );
        for bad in [
            params(Some("a"), Some("b"), None, None),
            params(Some("Not A Room"), None, None, None),
            params(None, Some("bob"), None, None),
            params(None, None, Some("0"), None),
            params(None, None, Some("100000"), None),
            params(None, None, None, Some("-1")),
        ] {
            assert_eq!(
                bad.query().unwrap_err().status_code(),
                StatusCode::BAD_REQUEST
            );
        }
    }
}
