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
#[cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "for terminal.rs's prompt, which still writes its escapes by hand; drop this once it calls styled_prompt"
    )
)]
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
                ..
            } => {
                self.learn(*from, name);
                Some(format!(
                    "{} <{}> {}",
                    self.paint(DIM, &message_context(room.as_deref())),
                    self.peer(from, name.as_ref(), claimed_name.as_ref()),
                    indent_continuation(text)
                ))
            }
            UiEvent::Delivered {
                to: Some(to),
                rtt_ms,
                ..
            } => Some(format!(
                "{} delivered to {} {}",
                self.paint(TICK, "✓"),
                self.peer(to, None, None),
                self.rtt(*rtt_ms)
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
                to, room, reason, ..
            } => {
                let reason = flat(reason);
                Some(self.error_line(&match (to, room) {
                    (Some(to), _) => {
                        format!("✗ not delivered to {}: {reason}", self.peer(to, None, None))
                    }
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
mod tests {
    use super::*;

    fn renderer(colour: bool) -> Renderer {
        Renderer::new(colour, Names::default())
    }

    #[test]
    fn a_name_keeps_its_colour_and_names_spread_over_the_palette() {
        assert_eq!(name_colour("alice"), name_colour("alice"));
        let used: std::collections::HashSet<u8> = [
            "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
        ]
        .iter()
        .map(|n| name_colour(n))
        .collect();
        assert!(
            used.len() >= 4,
            "ten names should not share two or three colours: {used:?}"
        );
        assert!(
            !NAME_COLOURS.contains(&AnsiColor::Red) && !used.contains(&31),
            "red is for errors"
        );
    }

    #[test]
    fn styles_render_the_escapes_the_terminal_expects() {
        for name in ["alice", "bob", "carol", "dave", "erin", "frank"] {
            assert_eq!(
                paint(name_style(name), name),
                format!("\x1b[{}m{name}\x1b[0m", name_colour(name))
            );
        }
        assert_eq!(
            paint(Style::new(), "plain"),
            "plain",
            "no style, no escapes"
        );
        assert_eq!(
            styled_prompt("@bob", "@bob> ", false),
            format!("\x1b[1m\x1b[{}m@bob\x1b[0m> ", name_colour("bob"))
        );
        assert_eq!(
            styled_prompt("#lobby", "#lobby> ", false),
            "\x1b[1m#lobby\x1b[0m> "
        );
        assert_eq!(
            styled_prompt("#lobby", "      … ", true),
            "\x1b[2m      … \x1b[0m"
        );
    }

    #[test]
    fn messages_show_coloured_names_and_indent_further_lines() {
        let bob = Uuid::from_u128(2);
        let r = renderer(true);
        let event = UiEvent::Message {
            from: bob,
            name: Some("bob".into()),
            claimed_name: None,
            text: "hi\nthere".into(),
            room: Some("lobby".into()),
            session: None,
        };
        let code = name_colour("bob");
        assert_eq!(
            r.render(&event).unwrap(),
            format!("\x1b[2m[#lobby]\x1b[0m <\x1b[{code}mbob\x1b[0m> hi\n    there")
        );
        // The name learned from the message names the receipt.
        let receipt = UiEvent::Delivered {
            to: Some(bob),
            room: None,
            id: 0,
            rtt_ms: 1.5,
            delivered: None,
            total: None,
        };
        assert_eq!(renderer_text(&r, &receipt), "✓ delivered to bob (1.50 ms)");
    }

    #[test]
    fn errors_are_one_red_line_and_unknown_peers_are_short() {
        let r = renderer(true);
        let error = UiEvent::Error {
            message: "could not reach the index:\n  connection refused".into(),
        };
        assert_eq!(
            r.render(&error).unwrap(),
            "\x1b[31merror: could not reach the index: connection refused\x1b[0m"
        );
        let stranger = Uuid::from_u128(0xabcdef12_0000_0000_0000_000000000000);
        let failed = UiEvent::Failed {
            to: Some(stranger),
            room: None,
            id: Some(1),
            reason: "timed out".into(),
        };
        assert_eq!(
            renderer(false).render(&failed).unwrap(),
            "✗ not delivered to abcdef12: timed out"
        );
    }

    #[test]
    fn text_from_outside_is_made_safe_before_it_is_coloured() {
        let stranger = Uuid::from_u128(0x3f2a);
        let event = UiEvent::Message {
            from: stranger,
            name: None,
            claimed_name: Some("al\u{1b}[31mice".into()),
            text: "\u{1b}]0;owned\u{7}\u{202e}x".into(),
            room: Some("r\u{9b}2J".into()),
            session: None,
        };
        let plain = renderer(false).render(&event).unwrap();
        assert_eq!(
            plain,
            format!(
                "[#r\\u{{9b}}2J] <{stranger} (claims \"al␛[31mice\", unverified)> ␛]0;owned␇\\u{{202e}}x"
            )
        );
        // With colours, the only escape sequences are ours: the claim is not painted as a name.
        let coloured = renderer(true).render(&event).unwrap();
        assert_eq!(coloured.matches('\u{1b}').count(), 2, "{coloured:?}");
        let error = UiEvent::Error {
            message: "bad\u{1b}[2J\nnews".into(),
        };
        assert_eq!(
            renderer(false).render(&error).unwrap(),
            "error: bad␛[2J news"
        );
    }

    fn renderer_text(r: &Renderer, event: &UiEvent) -> String {
        let text = r.render(event).unwrap();
        // Strip the escape sequences to compare the words.
        let mut plain = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                for c in chars.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                plain.push(c);
            }
        }
        plain
    }
}
