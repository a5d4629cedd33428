//! `GET/PUT/DELETE /rooms/{room}/state[/{key}]`: a room's shared state, read and written by
//! scripts (see docs/control.md). Answered by the driver at once, from the chat core.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use proto::chat::valid_room;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::{ControlError, ControlState};
use crate::chat::SetError;
use crate::driver::{Input, StateOp, StateRequest};
use crate::output::StateLine;
use crate::roomstate::StateError;

/// `PUT /rooms/{room}/state/{key}`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutBody {
    /// The value (text, at most 1024 bytes).
    pub value: String,
}

fn room_of(room: &str) -> Result<String, ControlError> {
    let room = room.trim_start_matches('#');
    if valid_room(room) {
        Ok(room.to_owned())
    } else {
        Err(ControlError::BadRequest(format!(
            "`{room}` is not a room name: use 1 to 32 of a-z, 0-9, - and _"
        )))
    }
}

fn path_error(rejection: PathRejection) -> ControlError {
    ControlError::BadRequest(rejection.body_text())
}

/// What the core said, as the API answers it.
fn refused(error: SetError) -> ControlError {
    let status = match &error {
        SetError::NotInRoom(_) | SetError::NoRoom => StatusCode::NOT_FOUND,
        SetError::State(StateError::BadKey(_)) => StatusCode::BAD_REQUEST,
        SetError::State(StateError::ValueTooLong { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
        SetError::State(StateError::TooManyKeys { .. } | StateError::HistoryFull { .. }) => {
            StatusCode::INSUFFICIENT_STORAGE
        }
    };
    ControlError::Body(status, error.to_string())
}

async fn ask(
    state: &ControlState,
    room: String,
    key: Option<String>,
    op: StateOp,
) -> Result<Vec<StateLine>, ControlError> {
    let (reply, answer) = oneshot::channel();
    let request = StateRequest {
        room,
        key,
        op,
        reply,
    };
    state
        .input
        .send(Input::State(request))
        .await
        .map_err(|_| ControlError::Unavailable)?;
    answer
        .await
        .map_err(|_| ControlError::Unavailable)?
        .map_err(refused)
}

fn line_json(room: &str, line: &StateLine) -> Value {
    json!({
        "room": room,
        "key": line.key,
        "value": line.value,
        "author": line.author,
        "author_name": line.author_name,
    })
}

/// `GET /rooms/{room}/state`: every key.
pub async fn list(
    State(state): State<ControlState>,
    room: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ControlError> {
    let room = room_of(&room.map_err(path_error)?.0)?;
    let lines = ask(&state, room.clone(), None, StateOp::Read).await?;
    Ok(Json(json!({ "room": room, "entries": lines })))
}

/// `GET /rooms/{room}/state/{key}`: one key; 404 when it is not set.
pub async fn get(
    State(state): State<ControlState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Value>, ControlError> {
    let Path((room, key)) = path.map_err(path_error)?;
    let room = room_of(&room)?;
    let lines = ask(&state, room.clone(), Some(key.clone()), StateOp::Read).await?;
    match lines.first() {
        Some(line) => Ok(Json(line_json(&room, line))),
        None => Err(ControlError::Body(
            StatusCode::NOT_FOUND,
            format!("#{room} has no key `{key}`"),
        )),
    }
}

/// `PUT /rooms/{room}/state/{key}` with `{"value": "..."}`: sets the key.
pub async fn put(
    State(state): State<ControlState>,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Json<PutBody>, JsonRejection>,
) -> Result<Json<Value>, ControlError> {
    let Path((room, key)) = path.map_err(path_error)?;
    let room = room_of(&room)?;
    let Json(body) =
        body.map_err(|rejection| ControlError::Body(rejection.status(), rejection.body_text()))?;
    let lines = ask(&state, room.clone(), Some(key), StateOp::Put(body.value)).await?;
    let line = lines.first().ok_or(ControlError::Unavailable)?;
    Ok(Json(line_json(&room, line)))
}

/// `DELETE /rooms/{room}/state/{key}`: unsets the key (done when it was not set either).
pub async fn delete(
    State(state): State<ControlState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Value>, ControlError> {
    let Path((room, key)) = path.map_err(path_error)?;
    let room = room_of(&room)?;
    let lines = ask(&state, room.clone(), Some(key), StateOp::Delete).await?;
    let line = lines.first().ok_or(ControlError::Unavailable)?;
    Ok(Json(line_json(&room, line)))
}
