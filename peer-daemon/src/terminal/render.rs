//! How events look on a terminal: peer names in a colour of their own that stays the same
//! across runs and machines, a green tick with the round-trip time, and errors as one red
//! line. Events without a terminal-specific look fall back to [`UiEvent::human`].
//!
//! Everything from outside is made safe ([`proto::display::sanitize`]) before it is coloured,
//! so that only our own escape sequences reach the terminal. A name a peer claims without the
//! index vouching for it is never coloured like a name: it shows as the peer's UUID with the
//! claim marked unverified.
//!
//! Styles are `anstyle` values, rendered to escape sequences only here ([`paint`]); the
//! prompt's look ([`styled_prompt`]) lives here too, so that no escape is written by hand.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anstyle::{Ansi256Color, AnsiColor, Style};
use uuid::Uuid;

use proto::display::{sanitize, sanitize_lines};

use crate::output::{PeerLine, UiEvent, claim_label, clean, indent_continuation, message_context};

/// Colours for names. Red is kept for errors.
const NAME_COLOURS: [AnsiColor; 6] = [
    AnsiColor::Green,
    AnsiColor::Yellow,
    AnsiColor::Blue,
    AnsiColor::Magenta,
    AnsiColor::Cyan,
    AnsiColor::BrightBlue,
];

/// What matters less: the context of a message, joins and leaves, feedback, round-trip times.
const DIM: Style = Style::new().dimmed();
/// The delivery tick.
const TICK: Style = AnsiColor::Green.on_default();
/// Errors and failed deliveries.
const ERROR: Style = AnsiColor::Red.on_default();

/// Names learned from events, so that receipts say "bob" rather than a UUID; shared with the
/// line editor's completion.
pub type Names = Arc<Mutex<HashMap<Uuid, String>>>;

/// Turns events into (optionally coloured) text.
pub struct Renderer {
    colour: bool,
    names: Names,
}

/// The colour of a name: FNV-1a of its bytes, so it depends on nothing but the name.
fn palette_colour(name: &str) -> AnsiColor {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    NAME_COLOURS[(hash % NAME_COLOURS.len() as u64) as usize]
}

/// The style of a name, the same for a name wherever it shows (messages, receipts, prompt).
pub fn name_style(name: &str) -> Style {
    palette_colour(name).on_default()
}

/// The SGR parameter of a name's colour (`32` for green, `94` for bright blue), for tests that
/// look for the exact bytes on a terminal.
pub fn name_colour(name: &str) -> u8 {
    let index = Ansi256Color::from_ansi(palette_colour(name)).index();
    if index < 8 {
        30 + index
    } else {
        90 + index - 8
    }
}

/// `text` in `style` followed by a reset; no escapes at all for the plain style.
pub fn paint(style: Style, text: &str) -> String {
    format!("{style}{text}{style:#}")
}

/// The styled form of a prompt whose plain form is `plain` (`#lobby> `, `@bob> `, or a
/// continuation mark), for session `label`: a room in bold, a peer in bold in its name's
/// colour, a continuation mark dimmed. `label` must already be safe to print.
pub fn styled_prompt(label: &str, plain: &str, continuing: bool) -> String {
    match label.strip_prefix('@') {
        _ if continuing => paint(DIM, plain),
        Some(name) => format!("{}> ", paint(name_style(name).bold(), label)),
        None => format!("{}> ", paint(Style::new().bold(), label)),
    }
}

impl Renderer {
    /// A renderer; `colour` is off for `NO_COLOR` or dumb terminals.
    pub fn new(colour: bool, names: Names) -> Self {
        Renderer { colour, names }
    }

    fn paint(&self, style: Style, text: &str) -> String {
        if self.colour {
            paint(style, text)
        } else {
            text.to_owned()
        }
    }

    /// A peer's name in its colour (made safe first).
    pub fn name(&self, name: &str) -> String {
        self.paint(name_style(name), &sanitize(name))
    }

    /// A peer as people know it: its vouched name when known, else the start of its UUID;
    /// with an unverified claim, the whole UUID and the claim, uncoloured.
    fn peer(&self, id: &Uuid, name: Option<&String>, claimed: Option<&String>) -> String {
        let known = name.cloned().or_else(|| {
            self.names
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(id)
                .cloned()
        });
        match (known, claimed) {
            (Some(name), None) => self.name(&name),
            (known, Some(claim)) => {
                claim_label(id, known.map(|name| self.name(&name)).as_deref(), claim)
            }
            (None, None) => id.to_string()[..8].to_owned(),
        }
    }

    fn learn(&self, id: Uuid, name: &Option<String>) {
        if let Some(name) = name.as_ref().filter(|n| !n.is_empty()) {
            self.names
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id, name.clone());
        }
    }

    fn learn_all(&self, peers: &[PeerLine]) {
        for peer in peers {
            self.learn(peer.uuid, &peer.name);
        }
    }

    /// One red line: a reason spread over several lines would push the prompt around.
    fn error_line(&self, text: &str) -> String {
        self.paint(ERROR, text)
    }

    /// The text for `event`, or `None` for events people need not see.
    pub fn render(&self, event: &UiEvent) -> Option<String> {
        match event {
            UiEvent::Message {
                from,
                name,
                claimed_name,
                text,
                room,
                action,
                sent_at_ms,
                ..
            } => {
                self.learn(*from, name);
                let sender = self.peer(from, name.as_ref(), claimed_name.as_ref());
                let context = self.paint(DIM, &message_context(room.as_deref()));
                let mailbox = match sent_at_ms {
                    Some(_) => self.paint(DIM, &crate::output::plain::from_mailbox(*sent_at_ms)),
                    None => String::new(),
                };
                Some(if *action {
                    format!(
                        "{context} * {sender} {}{mailbox}",
                        indent_continuation(text)
                    )
                } else {
                    format!(
                        "{context} <{sender}> {}{mailbox}",
                        indent_continuation(text)
                    )
                })
            }
            UiEvent::Delivered {
                room,
                total: Some(0),
                ..
            } => Some(self.paint(
                DIM,
                &format!(
                    "· nobody else is in #{} to receive it",
                    clean(room.as_deref().unwrap_or("?"))
                ),
            )),
            UiEvent::Delivered {
                to: Some(to),
                name,
                rtt_ms,
                via,
                ..
            } => Some(format!(
                "{} delivered to {} {}",
                self.paint(TICK, "✓"),
                self.peer(to, name.as_ref(), None),
                self.paint(
                    DIM,
                    &format!("({rtt_ms:.2} ms{})", crate::output::plain::relayed(*via))
                )
            )),
            UiEvent::Path {
                peer,
                name,
                via,
                addr,
            } => Some(self.paint(
                DIM,
                &format!(
                    "· path to {}: {via} ({addr})",
                    flat(&name.clone().unwrap_or_else(|| peer.to_string()))
                ),
            )),
            UiEvent::Delivered {
                room,
                delivered,
                total,
                rtt_ms,
                ..
            } => Some(format!(
                "{} delivered {}/{} in #{} {}",
                self.paint(TICK, "✓"),
                delivered.unwrap_or(0),
                total.unwrap_or(0),
                clean(room.as_deref().unwrap_or("?")),
                self.rtt(*rtt_ms)
            )),
            UiEvent::Failed {
                to,
                name,
                room,
                reason,
                ..
            } => {
                let reason = flat(reason);
                Some(self.error_line(&match (to, room) {
                    (Some(to), _) => format!(
                        "✗ not delivered to {}: {reason}",
                        self.peer(to, name.as_ref(), None)
                    ),
                    (None, Some(room)) => format!("✗ not delivered in #{}: {reason}", clean(room)),
                    (None, None) => format!("✗ not delivered: {reason}"),
                }))
            }
            UiEvent::Error { message } => {
                Some(self.error_line(&format!("error: {}", flat(message))))
            }
            UiEvent::Joined {
                room,
                peer: Some(peer),
                name,
                claimed_name,
                ..
            } => Some(self.coming_or_going(("→", "joined"), room, *peer, name, claimed_name)),
            UiEvent::Left {
                room,
                peer: Some(peer),
                name,
                claimed_name,
            } => Some(self.coming_or_going(("←", "left"), room, *peer, name, claimed_name)),
            UiEvent::Info { message } => {
                Some(self.paint(DIM, &format!("· {}", sanitize_lines(message))))
            }
            UiEvent::Peers { peers } | UiEvent::Who { members: peers, .. } => {
                self.learn_all(peers);
                event.human()
            }
            other => other.human(),
        }
    }

    /// `→ bob joined #room` or `← bob left #room`, dimmed; the name is learned for receipts.
    fn coming_or_going(
        &self,
        (arrow, verb): (&str, &str),
        room: &str,
        peer: Uuid,
        name: &Option<String>,
        claimed: &Option<String>,
    ) -> String {
        self.learn(peer, name);
        let who = self.peer(&peer, name.as_ref(), claimed.as_ref());
        self.paint(DIM, &format!("{arrow} {who} {verb} #{}", clean(room)))
    }

    fn rtt(&self, rtt_ms: f64) -> String {
        self.paint(DIM, &format!("({rtt_ms:.2} ms)"))
    }
}

/// Text from outside on one line, made safe.
fn flat(text: &str) -> String {
    sanitize(&text.split_whitespace().collect::<Vec<_>>().join(" ")).into_owned()
}

#[cfg(test)]
mod tests;
