//! The interactive client, used when stdin and stdout are both terminals (and not `--json`):
//! a line editor with history and completion, a prompt naming the active session, and
//! incoming events printed above the prompt without disturbing what is being typed.
//!
//! Two OS threads do the blocking work, so the runtime never waits on the terminal: one runs
//! the line editor and hands typed lines to the driver; the other prints events (and log
//! lines) through the editor's external printer, which redraws the prompt and the half-typed
//! line below them.

mod complete;
mod reader;
mod render;

use std::io::Write;
use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::thread;
use std::time::Duration;

use anyhow::Context as _;
use nix::sys::termios::{SetArg, Termios, tcgetattr, tcsetattr};
use rustyline::history::FileHistory;
use rustyline::{CompletionType, Editor, EventHandler, ExternalPrinter, KeyEvent};
use tokio::runtime::Handle;
use tokio::sync::{broadcast, mpsc};

use complete::Completion;
use reader::{ClearOrQuit, Reader};
pub use render::{Names, Renderer, name_colour};

use crate::driver::Input;
use crate::output::{Output, Sink, UiEvent};

/// The history file inside the state directory.
pub const HISTORY_FILE: &str = "history.txt";
/// Lines of history kept.
const HISTORY_LINES: usize = 1000;
/// Longest wait of the next prompt for a `/switch`-like command to take effect, so that it
/// names the new session (a `/fork <name>` first asks the index who that is).
const SWITCH_WAIT: Duration = Duration::from_millis(1500);
/// How long after "now talking in …" the session list may take to follow (it does not change
/// at all when switching to the active session).
const SWITCH_SETTLE: Duration = Duration::from_millis(100);

/// A running terminal client.
pub struct Terminal {
    print: std_mpsc::Sender<Printable>,
    saved: Option<Termios>,
}

enum Printable {
    Event(Box<UiEvent>),
    Text(String),
}

/// Drops rendered lines: the terminal renders events itself, from a subscription.
struct Discard;

impl Sink for Discard {
    fn line(&mut self, _line: &str) -> std::io::Result<()> {
        Ok(())
    }
}

impl Terminal {
    /// Takes over the terminal; returns it with what the user types and where the driver
    /// reports (its events appear above the prompt), both for [`crate::run`]. Fails when the
    /// terminal cannot do line editing (e.g. `TERM=dumb`); the caller then falls back to plain
    /// lines. Must be called inside the runtime.
    pub fn start(state_dir: &Path) -> anyhow::Result<(Terminal, Output, mpsc::Receiver<Input>)> {
        let saved = tcgetattr(std::io::stdin()).ok();
        let colour = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        let config = rustyline::Config::builder()
            .max_history_size(HISTORY_LINES)?
            .history_ignore_dups(true)?
            .history_ignore_space(true)
            .auto_add_history(false)
            .completion_type(CompletionType::List)
            // (The default, said out loud:) asking the terminal where the cursor is would eat
            // keys typed just after Enter; everything printed here ends its line anyway.
            .check_cursor_position(false)
            .build();
        let out = Output::new(false, Discard);
        let names = Names::default();
        let mut editor: Editor<Completion, FileHistory> =
            Editor::with_config(config).context("starting the line editor")?;
        editor.set_helper(Some(Completion {
            names: names.clone(),
            sessions: out.sessions(),
        }));
        editor.bind_sequence(
            KeyEvent::ctrl('C'),
            EventHandler::Conditional(Box::new(ClearOrQuit)),
        );
        let history = state_dir.join(HISTORY_FILE);
        if let Err(error) = editor.load_history(&history) {
            tracing::debug!(%error, path = %history.display(), "no history loaded");
        }
        forget_what_was_said(&mut editor, &history);
        let printer = editor
            .create_external_printer()
            .context("this terminal cannot print above the prompt")?;

        let (print, printables) = std_mpsc::channel();
        let events = out.subscribe();
        tokio::spawn(forward_events(events, print.clone()));
        let renderer = Renderer::new(colour, names);
        thread::Builder::new()
            .name("terminal-print".into())
            .spawn(move || print_loop(printer, printables, renderer))
            .context("starting the terminal's printer thread")?;

        let (input_tx, input) = mpsc::channel(64);
        let reader = Reader {
            editor,
            history,
            input: input_tx,
            out: out.clone(),
            sessions: out.sessions(),
            online: out.online(),
            runtime: Handle::current(),
            colour,
        };
        thread::Builder::new()
            .name("terminal-read".into())
            .spawn(move || reader.run())
            .context("starting the terminal's reader thread")?;
        Ok((Terminal { print, saved }, out, input))
    }

    /// A `tracing` writer whose lines appear above the prompt instead of garbling it.
    pub fn log_writer(&self) -> LogWriter {
        LogWriter(self.print.clone())
    }

    /// Gives the terminal back as it was, even when the editor is still waiting for a key
    /// (the daemon was stopped by a signal).
    pub fn restore(&self) {
        if let Some(saved) = &self.saved {
            let _ = tcsetattr(std::io::stdin(), SetArg::TCSADRAIN, saved);
        }
        let _ = std::io::stdout().write_all(b"\n");
        let _ = std::io::stdout().flush();
    }
}

/// Makes [`LogLine`]s; see [`Terminal::log_writer`].
pub struct LogWriter(std_mpsc::Sender<Printable>);

/// One log record, printed when dropped.
pub struct LogLine {
    buf: Vec<u8>,
    print: std_mpsc::Sender<Printable>,
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;

    fn make_writer(&'a self) -> LogLine {
        LogLine {
            buf: Vec::new(),
            print: self.0.clone(),
        }
    }
}

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            let _ = self.print.send(Printable::Text(
                String::from_utf8_lossy(&self.buf).into_owned(),
            ));
        }
    }
}

/// Rewrites a history file an older version filled with everything typed (private messages
/// included) down to the commands, as [`reader::history_entry`] keeps them now.
fn forget_what_was_said(editor: &mut Editor<Completion, FileHistory>, path: &Path) {
    let entries: Vec<String> = editor.history().iter().cloned().collect();
    let kept: Vec<String> = entries
        .iter()
        .filter_map(|entry| reader::history_entry(entry))
        .collect();
    if kept == entries {
        return;
    }
    let _ = editor.clear_history();
    for entry in kept {
        let _ = editor.add_history_entry(entry);
    }
    if let Err(error) = editor.save_history(path) {
        tracing::debug!(%error, path = %path.display(), "could not rewrite the history");
    }
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

async fn forward_events(
    mut events: broadcast::Receiver<UiEvent>,
    print: std_mpsc::Sender<Printable>,
) {
    loop {
        let item = match events.recv().await {
            Ok(event) => Printable::Event(Box::new(event)),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                Printable::Text(format!("… {n} events not shown"))
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if print.send(item).is_err() {
            return;
        }
    }
}

fn print_loop(
    mut printer: impl ExternalPrinter,
    printables: std_mpsc::Receiver<Printable>,
    renderer: Renderer,
) {
    let mut stamper = crate::output::stamp::Stamper::default();
    for item in printables {
        let text = match item {
            Printable::Event(event) => match renderer.render(&event) {
                Some(text) => crate::output::fanout::stamp(&mut stamper, &event, &text),
                None => continue,
            },
            // Log lines may quote what peers or the index sent.
            Printable::Text(text) => proto::display::sanitize_lines(&text),
        };
        if printer
            .print(format!("{}\n", text.trim_end_matches('\n')))
            .is_err()
        {
            return;
        }
    }
}
