//! What the front-ends (the terminal, stdin, the control API) hand the driver, and how a burst
//! of it is taken in one turn.

use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::Driver;
use crate::chat::SetError;
use crate::command::Command;
use crate::output::{StateLine, UiEvent};

/// Commands taken in one go before sending what they asked for.
const INPUT_BATCH: usize = 64;

/// What a front-end (the terminal, stdin, the control API) hands over: a parsed command, or
/// why a line did not parse.
#[derive(Debug)]
pub enum Input {
    /// A command.
    Command(Command),
    /// A read or write of a room's shared state (the control API), answered at once.
    State(StateRequest),
    /// What the user typed is not a command; the message says what to type instead.
    Invalid(String),
}

/// What to do with a room's shared state.
#[derive(Debug)]
pub enum StateOp {
    /// Read the key (or every key).
    Read,
    /// Set the key.
    Put(String),
    /// Unset the key.
    Delete,
}

/// A read or write of `room`'s shared state, answered on `reply`: the key as it is
/// afterwards (for a read without a key: every key; a key not set reads as nothing).
#[derive(Debug)]
pub struct StateRequest {
    /// The room.
    pub room: String,
    /// The key; `None` reads every key.
    pub key: Option<String>,
    /// What to do.
    pub op: StateOp,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Result<Vec<StateLine>, SetError>>,
}

impl Input {
    /// Parses one complete input (continuation lines joined, see
    /// [`crate::command::LineJoiner`]).
    pub fn parse(text: &str) -> Input {
        match crate::command::parse(text) {
            Ok(command) => Input::Command(command),
            Err(message) => Input::Invalid(message),
        }
    }
}

impl Driver {
    /// Hands `first` and whatever else is queued (up to [`INPUT_BATCH`]) to the core: a pasted
    /// or scripted burst is taken in one turn, so its messages go out together and their
    /// events in one write.
    pub(super) fn on_input(&mut self, first: Input, input: &mut mpsc::Receiver<Input>) {
        let mut next = Some(first);
        for taken in 1..=INPUT_BATCH {
            let Some(item) = next else { return };
            let now = Instant::now();
            match item {
                Input::Command(Command::Quit) => {
                    return self.core.handle_command(now, Command::Quit);
                }
                Input::Command(Command::Stats) => self.out.emit(self.stats()),
                Input::Command(Command::WhoAmI) => self.out.emit(self.whoami()),
                Input::Command(command) => self.core.handle_command(now, command),
                Input::State(request) => self.answer_state(now, request),
                Input::Invalid(message) => self.out.emit(UiEvent::Error { message }),
            }
            // Taken only when it will be handled: the rest wakes the next turn.
            next = (taken < INPUT_BATCH)
                .then(|| input.try_recv().ok())
                .flatten();
        }
    }

    /// A control API request about room state.
    fn answer_state(&mut self, now: Instant, request: StateRequest) {
        let StateRequest {
            room,
            key,
            op,
            reply,
        } = request;
        let result = match (op, key) {
            (StateOp::Read, key) => self.core.state_read(&room, key.as_deref()),
            (StateOp::Put(value), Some(key)) => self
                .core
                .state_put(now, &room, &key, Some(&value))
                .map(|line| vec![line]),
            (StateOp::Delete, Some(key)) => self
                .core
                .state_put(now, &room, &key, None)
                .map(|line| vec![line]),
            (_, None) => Ok(Vec::new()),
        };
        let _ = reply.send(result);
    }
}
