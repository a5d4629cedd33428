//! The local control API, for scripts and other front-ends: send to a peer or a room, list
//! the sessions, read the message history, and follow every event as server-sent events. Off unless `--control` names a
//! loopback address. Every request carries `Authorization: Bearer <token>`; the token is made
//! afresh at each start and written to `<state-dir>/control.token` (0600), so only whoever can
//! read the daemon's state directory can drive it. The routes are described in docs/control.md.

use std::convert::Infallible;
use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use proto::chat::valid_room;
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::{Stream, StreamExt};

use crate::command::{Command, PeerRef};
use crate::driver::Input;
use crate::output::{Output, UiEvent};
use crate::store::Store;

mod history;
mod state;

/// The token file inside the state directory.
pub const TOKEN_FILE: &str = "control.token";

/// What the handlers share.
#[derive(Clone)]
pub struct ControlState {
    input: mpsc::Sender<Input>,
    out: Output,
    token: Arc<str>,
    token_file: Arc<Path>,
    store: Option<Store>,
}

impl ControlState {
    /// Handlers that queue commands on `input`, read `out`, and admit requests bearing `token`
    /// (which `token_file` holds, as the 401 answer tells).
    pub fn new(
        input: mpsc::Sender<Input>,
        out: Output,
        token: String,
        token_file: PathBuf,
    ) -> Self {
        ControlState {
            input,
            out,
            token: token.into(),
            token_file: token_file.into(),
            store: None,
        }
    }

    /// Serves `GET /history` from `store`.
    pub fn with_store(mut self, store: Store) -> Self {
        self.store = Some(store);
        self
    }
}

/// Everything the API answers besides success; every body is JSON `{"error": "..."}`.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No token, or the wrong one.
    #[error(
        "missing or wrong bearer token: send `Authorization: Bearer <token>` with the token from {0}"
    )]
    Unauthorized(String),
    /// The request cannot be carried out as written.
    #[error("{0}")]
    BadRequest(String),
    /// The body is not the JSON asked for (the status says how: 400, 413, 415, 422).
    #[error("{1}")]
    Body(StatusCode, String),
    /// No such route.
    #[error(
        "no such route; the API has POST /send, GET /sessions, GET /history, GET /events and GET/PUT/DELETE /rooms/{{room}}/state/{{key}}"
    )]
    NotFound,
    /// A route exists, with another method.
    #[error(
        "method not allowed: POST /send, GET /sessions, GET /history, GET /events, GET /rooms/{{room}}/state, GET/PUT/DELETE /rooms/{{room}}/state/{{key}}"
    )]
    MethodNotAllowed,
    /// The daemon is shutting down.
    #[error("the daemon is stopping")]
    Unavailable,
    /// The daemon keeps no history (`--no-history`).
    #[error("{}", crate::store::OFF)]
    NoHistory,
}

impl ControlError {
    /// The HTTP status for this error.
    pub fn status_code(&self) -> StatusCode {
        match self {
            ControlError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ControlError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ControlError::Body(status, _) => *status,
            ControlError::NotFound => StatusCode::NOT_FOUND,
            ControlError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ControlError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ControlError::NoHistory => StatusCode::NOT_FOUND,
        }
    }
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status_code(),
            Json(json!({ "error": self.to_string() })),
        )
            .into_response();
        if let ControlError::Unauthorized(_) = self {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The API's routes, every one behind the token check.
pub fn app(state: ControlState) -> Router {
    Router::new()
        .route("/send", post(send))
        .route("/sessions", get(sessions))
        .route("/history", get(history::history))
        .route("/events", get(events))
        .route("/rooms/{room}/state", get(state::list))
        .route(
            "/rooms/{room}/state/{key}",
            get(state::get).put(state::put).delete(state::delete),
        )
        .fallback(|| async { ControlError::NotFound })
        .method_not_allowed_fallback(|| async { ControlError::MethodNotAllowed })
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .with_state(state)
}

async fn authorize(State(state): State<ControlState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    if bool::from(presented.as_bytes().ct_eq(state.token.as_bytes())) {
        next.run(request).await
    } else {
        ControlError::Unauthorized(state.token_file.display().to_string()).into_response()
    }
}

/// `POST /send`: exactly one of `to` and `room`, and the text.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// A peer's name or UUID.
    pub to: Option<String>,
    /// A room we are in (with or without its `#`).
    pub room: Option<String>,
    /// What to say; may span lines.
    pub text: String,
}

impl SendRequest {
    /// The command to queue, or what is wrong with the request.
    pub fn command(self) -> Result<Command, ControlError> {
        if self.text.trim().is_empty() {
            return Err(ControlError::BadRequest("`text` is empty".into()));
        }
        match (self.to, self.room) {
            (Some(to), None) => {
                let to = to.trim();
                if to.is_empty() || to.contains(char::is_whitespace) {
                    return Err(ControlError::BadRequest(format!("`to` must be a peer's name or UUID, not {to:?}")));
                }
                Ok(Command::Msg { to: PeerRef::parse(to), text: self.text })
            }
            (None, Some(room)) => {
                let room = room.trim().trim_start_matches('#');
                if !valid_room(room) {
                    return Err(ControlError::BadRequest(format!(
                        "`{room}` is not a room name: use 1 to 32 of a-z, 0-9, - and _"
                    )));
                }
                Ok(Command::RoomMsg { room: room.to_owned(), text: self.text })
            }
            _ => Err(ControlError::BadRequest(
                "give exactly one of `to` (a peer's name or UUID) and `room` (a room this daemon is in)".into(),
            )),
        }
    }
}

async fn send(
    State(state): State<ControlState>,
    body: Result<Json<SendRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ControlError> {
    let Json(request) =
        body.map_err(|rejection| ControlError::Body(rejection.status(), rejection.body_text()))?;
    let command = request.command()?;
    state
        .input
        .send(Input::Command(command))
        .await
        .map_err(|_| ControlError::Unavailable)?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "queued": true }))))
}

async fn sessions(State(state): State<ControlState>) -> Json<Value> {
    let sessions = state.out.sessions().borrow().clone();
    Json(json!({ "sessions": sessions }))
}

async fn events(
    State(state): State<ControlState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = BroadcastStream::new(state.out.subscribe()).map(|item| {
        Ok(match item {
            Ok(event) => sse_event(&event),
            // A reader too slow for the daemon misses events rather than slowing the chat.
            Err(BroadcastStreamRecvError::Lagged(skipped)) => Event::default()
                .event("lagged")
                .data(json!({ "event": "lagged", "skipped": skipped }).to_string()),
        })
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// The event exactly as `--json` prints it, named by its `event` field.
fn sse_event(event: &UiEvent) -> Event {
    let value = serde_json::to_value(event).expect("events serialise");
    let name = value["event"].as_str().unwrap_or("event");
    Event::default()
        .event(name)
        .data(serde_json::to_string(event).expect("events serialise"))
}

/// Writes a fresh random token to `<dir>/control.token`, readable by its owner only, and
/// returns it with the file's path.
pub fn write_token(dir: &Path) -> anyhow::Result<(String, PathBuf)> {
    let token = hex::encode(rand::random::<[u8; 32]>());
    let path = dir.join(TOKEN_FILE);
    // Written beside and renamed over, so a reader never sees half a token and the mode
    // applies to a file nobody else could have opened before.
    let partial = dir.join(format!("{TOKEN_FILE}.new"));
    let _ = fs::remove_file(&partial);
    let mut file = crate::state::create_private(&partial)?;
    writeln!(file, "{token}")?;
    file.sync_all()?;
    fs::rename(&partial, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok((token, path))
}

/// The API serving in the background; stops when dropped.
pub struct ControlServer {
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        // Event streams never end on their own, so a graceful shutdown would wait forever.
        self.task.abort();
    }
}

/// Binds `addr` (which must be loopback), writes the token to `state_dir`, serves the API
/// in the background, and announces the address with a `control` event.
pub async fn start(
    addr: SocketAddr,
    state_dir: &Path,
    input: mpsc::Sender<Input>,
    out: Output,
    store: Store,
) -> anyhow::Result<ControlServer> {
    anyhow::ensure!(
        addr.ip().is_loopback(),
        "the control API only listens on loopback addresses, not {addr}"
    );
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the control API on {addr}"))?;
    let addr = listener
        .local_addr()
        .context("reading the control API's address")?;
    let (token, token_file) = write_token(state_dir)?;
    let app =
        app(ControlState::new(input, out.clone(), token, token_file.clone()).with_store(store));
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "the control API stopped");
        }
    });
    tracing::info!(%addr, "control API listening");
    out.emit(UiEvent::Control { addr, token_file });
    out.flush();
    Ok(ControlServer { addr, task })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn request(to: Option<&str>, room: Option<&str>, text: &str) -> SendRequest {
        SendRequest {
            to: to.map(Into::into),
            room: room.map(Into::into),
            text: text.into(),
        }
    }

    #[test]
    fn send_requests_become_commands() {
        assert_eq!(
            request(Some("bob"), None, "hi").command().unwrap(),
            Command::Msg {
                to: PeerRef::Name("bob".into()),
                text: "hi".into()
            }
        );
        assert_eq!(
            request(None, Some("#lobby"), "a\nb").command().unwrap(),
            Command::RoomMsg {
                room: "lobby".into(),
                text: "a\nb".into()
            }
        );
        for bad in [
            request(Some("bob"), Some("lobby"), "hi"),
            request(None, None, "hi"),
            request(Some("bob"), None, "  "),
            request(Some("bo b"), None, "hi"),
            request(None, Some("No Such Room!"), "hi"),
        ] {
            let error = bad.command().unwrap_err();
            assert_eq!(error.status_code(), StatusCode::BAD_REQUEST, "{error}");
        }
    }

    #[test]
    fn tokens_are_private_and_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let (first, path) = write_token(dir.path()).unwrap();
        assert_eq!(first.len(), 64);
        assert_eq!(fs::read_to_string(&path).unwrap().trim(), first);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (second, _) = write_token(dir.path()).unwrap();
        assert_ne!(first, second);
        assert_eq!(fs::read_to_string(&path).unwrap().trim(), second);
    }
}
