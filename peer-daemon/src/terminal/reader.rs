//! The line-editor thread of the terminal client: reads what the user types (with history
//! and completion), joins continuation lines, parses each complete input once and hands it to
//! the driver, and draws the prompt naming the active session.

use std::path::PathBuf;

use proto::chat::LOBBY;
use rustyline::error::ReadlineError;
use rustyline::history::FileHistory;
use rustyline::{Cmd, ConditionalEventHandler, Editor, Event, EventContext, Movement, RepeatCount};
use tokio::runtime::Handle;
use tokio::sync::{broadcast, mpsc, watch};

use super::complete::Completion;
use super::{SWITCH_SETTLE, SWITCH_WAIT, render};
use crate::command::{Command, LineJoiner};
use crate::driver::Input;
use crate::output::{Output, SessionLine, UiEvent};

/// Longest wait of the first prompt for the driver's first session list.
const FIRST_PROMPT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Ctrl-C clears a half-typed line, and quits on an empty one.
pub(super) struct ClearOrQuit;

impl ConditionalEventHandler for ClearOrQuit {
    fn handle(&self, _: &Event, _: RepeatCount, _: bool, ctx: &EventContext) -> Option<Cmd> {
        (!ctx.line().is_empty()).then_some(Cmd::Kill(Movement::WholeLine))
    }
}

/// The line-editor thread.
pub(super) struct Reader {
    pub(super) editor: Editor<Completion, FileHistory>,
    pub(super) history: PathBuf,
    pub(super) input: mpsc::Sender<Input>,
    pub(super) out: Output,
    pub(super) sessions: watch::Receiver<Vec<SessionLine>>,
    /// Whether the index answers: the prompt says `(offline)` while it does not.
    pub(super) online: watch::Receiver<bool>,
    pub(super) runtime: Handle,
    pub(super) colour: bool,
}

impl Reader {
    pub(super) fn run(mut self) {
        // The first prompt names the session the driver starts in (after a restart, the one
        // that was active), not a guess.
        let sessions = &mut self.sessions;
        self.runtime.block_on(async {
            let _ = tokio::time::timeout(
                FIRST_PROMPT_WAIT,
                sessions.wait_for(|sessions| !sessions.is_empty()),
            )
            .await;
        });
        let mut joiner = LineJoiner::default();
        loop {
            let label = active_label(&self.sessions.borrow_and_update());
            let offline = !*self.online.borrow_and_update();
            let prompt = prompt(&label, joiner.continuing(), self.colour, offline);
            let line = match self.editor.readline(&prompt) {
                Ok(line) => line,
                Err(ReadlineError::Eof | ReadlineError::Interrupted) => break,
                Err(error) => {
                    tracing::error!(%error, "reading the terminal");
                    break;
                }
            };
            // Commands only: what people say (message text, continued lines) never goes to
            // the history file.
            if let Some(entry) = history_entry(&line).filter(|_| !joiner.continuing())
                && self.editor.add_history_entry(entry).unwrap_or(false)
            {
                self.save_history();
            }
            let Some(complete) = joiner.push(&line) else {
                continue;
            };
            let input = Input::parse(&complete);
            let switches = matches!(
                input,
                Input::Command(
                    Command::Fork { .. }
                        | Command::Switch { .. }
                        | Command::Lobby
                        | Command::Join { .. }
                        | Command::Leave { .. }
                )
            );
            let quit = matches!(input, Input::Command(Command::Quit));
            // Subscribed before the driver sees the command, so its answer cannot slip by.
            let answers = self.out.subscribe();
            if self.input.blocking_send(input).is_err() || quit {
                return;
            }
            if switches {
                self.wait_for_switch(&label, answers);
            }
        }
        let _ = self.input.blocking_send(Input::Command(Command::Quit));
    }

    fn save_history(&mut self) {
        if let Err(error) = self.editor.append_history(&self.history) {
            tracing::debug!(%error, path = %self.history.display(), "could not save history");
            return;
        }
        // What people typed to whom is nobody else's business.
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&self.history, std::fs::Permissions::from_mode(0o600));
    }

    /// Waits until the active session is no longer `before`, the driver refused (an error,
    /// e.g. no such session) or said the switch happened (which it does just before the
    /// session list changes), or [`SWITCH_WAIT`] passed.
    fn wait_for_switch(&mut self, before: &str, mut answers: broadcast::Receiver<UiEvent>) {
        let sessions = &mut self.sessions;
        self.runtime.block_on(async {
            let switched = async {
                while sessions.changed().await.is_ok() {
                    if active_label(&sessions.borrow_and_update()) != before {
                        return;
                    }
                }
                std::future::pending().await
            };
            tokio::pin!(switched);
            let answered = async {
                loop {
                    match answers.recv().await {
                        Ok(event @ (UiEvent::Info { .. } | UiEvent::Error { .. })) => return event,
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
                    }
                }
            };
            let answer = tokio::time::timeout(SWITCH_WAIT, async {
                tokio::select! {
                    () = &mut switched => None,
                    event = answered => Some(event),
                }
            })
            .await;
            if let Ok(Some(UiEvent::Info { .. })) = answer {
                let _ = tokio::time::timeout(SWITCH_SETTLE, switched).await;
            }
        });
    }
}

/// What of a typed line the line editor's history keeps: commands, but never what is said.
/// `/msg bob hello` is kept as `/msg bob `, `/me waves` as `/me `, text for the active
/// session not at all.
pub(super) fn history_entry(line: &str) -> Option<String> {
    let line = line.trim_end_matches(['\r', '\n']);
    let rest = line.strip_prefix('/')?;
    let (command, args) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    match command {
        "msg" | "m" => {
            let peer = args.split_whitespace().next()?;
            Some(format!("/{command} {peer} "))
        }
        "me" => Some("/me ".to_owned()),
        _ if rest.trim().is_empty() => None,
        _ => Some(line.trim_end_matches('\\').trim_end().to_owned()),
    }
}

/// `#room` or `@peer` of the active session.
fn active_label(sessions: &[SessionLine]) -> String {
    sessions
        .iter()
        .find(|s| s.active)
        .map_or_else(|| format!("#{LOBBY}"), |s| s.label.clone())
}

/// The prompt as `(plain, styled)`: `#lobby> `, or a continuation mark under it. A peer
/// whose name is not known yet shows as the start of its UUID.
fn prompt(label: &str, continuing: bool, colour: bool, offline: bool) -> (String, String) {
    let short;
    let label = match label.strip_prefix('@').map(uuid::Uuid::try_parse) {
        Some(Ok(id)) => {
            short = format!("@{}", &id.to_string()[..8]);
            short.as_str()
        }
        _ => label,
    };
    // A session label may carry a name from the index.
    let label = proto::display::sanitize(label);
    let label = label.as_ref();
    let plain = if continuing {
        format!("{}… ", " ".repeat(label.chars().count()))
    } else {
        format!("{label}> ")
    };
    let mut styled = if colour {
        render::styled_prompt(label, &plain, continuing)
    } else {
        plain.clone()
    };
    let mut plain = plain;
    if offline && !continuing {
        plain = format!("{label} (offline)> ");
        let mark = if colour {
            render::paint(anstyle::Style::new().dimmed(), " (offline)")
        } else {
            " (offline)".to_owned()
        };
        styled = format!("{}{mark}> ", styled.trim_end_matches("> "));
    }
    (plain, styled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_names_the_active_session() {
        assert_eq!(active_label(&[]), "#lobby");
        assert_eq!(
            active_label(&[
                SessionLine::test(0, "#lobby", false),
                SessionLine::test(1, "@bob", true)
            ]),
            "@bob"
        );
        assert_eq!(prompt("#lobby", false, false, false).0, "#lobby> ");
        assert_eq!(prompt("#lobby", true, false, false).0, "      … ");
        let (plain, styled) = prompt("@bob", false, true, false);
        assert_eq!(plain, "@bob> ");
        assert_eq!(
            styled,
            format!(
                "\x1b[1m\x1b[{}m@bob\x1b[0m> ",
                crate::terminal::name_colour("bob")
            )
        );
        assert_eq!(
            prompt("@463c4b4f-bc1e-8c83-b21e-562437e0a7ef", false, false, false).0,
            "@463c4b4f> "
        );
        assert_eq!(prompt("#lobby", false, false, true).0, "#lobby (offline)> ");
        assert!(
            prompt("#lobby", false, true, true)
                .1
                .ends_with("(offline)\x1b[0m> ")
        );
    }

    #[test]
    fn the_history_keeps_commands_never_what_is_said() {
        assert_eq!(history_entry("hello there"), None);
        assert_eq!(
            history_entry("/msg bob my secret"),
            Some("/msg bob ".into())
        );
        assert_eq!(history_entry("/m bob secret\\"), Some("/m bob ".into()));
        assert_eq!(history_entry("/me waves"), Some("/me ".into()));
        assert_eq!(history_entry("/join rust"), Some("/join rust".into()));
        assert_eq!(history_entry("/sw 2\n"), Some("/sw 2".into()));
        assert_eq!(history_entry("/msg"), None);
        assert_eq!(history_entry("/"), None);
    }
}
