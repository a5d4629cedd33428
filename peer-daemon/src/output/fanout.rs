//! The fan-out: every event goes once to a renderer's sink (plain text or JSON lines) and to
//! every subscriber (the control API's event stream), and the session list is published to its
//! watchers (the terminal's prompt, the control API).

use std::io::Write;
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, watch};

use super::stamp::Stamper;
use super::{SessionLine, UiEvent};

/// Where a rendered line goes.
pub trait Sink: Send {
    /// Writes one line (without its newline); it may wait in a buffer until [`Sink::flush`].
    fn line(&mut self, line: &str) -> std::io::Result<()>;
    /// Puts buffered lines out.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A plain writer (stdout, a file, a buffer); lines are put out on [`Sink::flush`], so a
/// burst of events costs one write.
pub struct WriteSink<W>(pub W);

impl<W: Write + Send> Sink for WriteSink<W> {
    fn line(&mut self, line: &str) -> std::io::Result<()> {
        writeln!(self.0, "{line}")
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// `text` (the rendering of `event`) with its time: a history block stamped its lines itself.
pub fn stamp(stamper: &mut Stamper, event: &UiEvent, text: &str) -> String {
    match event {
        UiEvent::History { lines, .. } => {
            stamper.stamped(lines.last().map(|line| super::stamp::day_of(line.at_ms)));
            text.to_owned()
        }
        _ => stamper.now(text),
    }
}

/// Where events go: a renderer (stdout, or the terminal's printer) and any subscribers.
#[derive(Clone)]
pub struct Output {
    json: bool,
    sink: Arc<Mutex<dyn Sink>>,
    subscribers: broadcast::Sender<UiEvent>,
    /// The current session list, for the terminal's prompt and the control API.
    sessions: watch::Sender<Vec<SessionLine>>,
    /// Whether the index answers (`false` while it is known to be unreachable), for the
    /// terminal's prompt.
    online: watch::Sender<bool>,
    /// Times and day lines on human output.
    stamper: Arc<Mutex<Stamper>>,
}

impl Output {
    /// Writes to stdout.
    pub fn stdout(json: bool) -> Self {
        Self::new(
            json,
            WriteSink(std::io::BufWriter::with_capacity(
                1 << 16,
                std::io::stdout(),
            )),
        )
    }

    /// Writes to `sink`.
    pub fn new(json: bool, sink: impl Sink + 'static) -> Self {
        let (subscribers, _) = broadcast::channel(1024);
        let (sessions, _) = watch::channel(Vec::new());
        let (online, _) = watch::channel(true);
        Output {
            json,
            sink: Arc::new(Mutex::new(sink)),
            subscribers,
            sessions,
            online,
            stamper: Arc::default(),
        }
    }

    /// Whether the index answers, as the last `index` event said.
    pub fn online(&self) -> watch::Receiver<bool> {
        self.online.subscribe()
    }

    /// A stream of every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<UiEvent> {
        self.subscribers.subscribe()
    }

    /// The session list as the driver last published it (empty before the driver starts).
    pub fn sessions(&self) -> watch::Receiver<Vec<SessionLine>> {
        self.sessions.subscribe()
    }

    /// Publishes the session list; watchers wake only when it changed.
    pub fn publish_sessions(&self, lines: Vec<SessionLine>) {
        self.sessions.send_if_modified(|current| {
            let changed = *current != lines;
            if changed {
                *current = lines;
            }
            changed
        });
    }

    /// Puts out every line emitted so far. The driver calls it once per turn of its loop,
    /// after the turn's datagrams went out; anyone else emitting calls it right after.
    pub fn flush(&self) {
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(error) = sink.flush() {
            tracing::debug!(%error, "could not write output");
        }
    }

    /// Reports one event (put out at the next [`Output::flush`]); a closed stdout is not a
    /// reason to stop chatting, so write errors are only logged.
    pub fn emit(&self, event: UiEvent) {
        let line = if self.json {
            // JSON escapes every C0 control (ESC, BEL, CR, LF) as `\u00XX`; what it leaves
            // raw (bidi controls, U+2028) is data for a program, not for a terminal.
            Some(serde_json::to_string(&event).expect("events serialise"))
        } else {
            // Every field from outside is cleaned where it is rendered; this catches anything
            // missed there, line by line.
            event.human().map(|text| {
                let text = proto::display::sanitize_lines(&text);
                let mut stamper = self.stamper.lock().unwrap_or_else(|e| e.into_inner());
                stamp(&mut stamper, &event, &text)
            })
        };
        if let UiEvent::Index { status, .. } = &event {
            self.online.send_if_modified(|online| {
                let now = *status == "online";
                std::mem::replace(online, now) != now
            });
        }
        if let Some(line) = line {
            let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(error) = sink.line(&line) {
                tracing::debug!(%error, "could not write output");
            }
        }
        let _ = self.subscribers.send(event);
    }
}
