//! Parsing of what a user types: IRC-style slash commands, and plain text for the active
//! session. A line ending in `\` continues on the next one (see [`LineJoiner`]).

use uuid::Uuid;

/// A peer as the user names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PeerRef {
    /// By UUID (hyphenated or 32 hex digits).
    Id(Uuid),
    /// By display name.
    Name(String),
}

impl PeerRef {
    /// A UUID if it parses as one, a name otherwise.
    pub fn parse(text: &str) -> PeerRef {
        match Uuid::try_parse(text) {
            Ok(id) => PeerRef::Id(id),
            Err(_) => PeerRef::Name(text.to_owned()),
        }
    }
}

impl std::fmt::Display for PeerRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerRef::Id(id) => write!(f, "{id}"),
            PeerRef::Name(name) => f.write_str(name),
        }
    }
}

/// One parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/msg <peer> <text>`: a private message from anywhere.
    Msg {
        /// Recipient.
        to: PeerRef,
        /// Everything after the peer, exactly as typed.
        text: String,
    },
    /// Text for a room we are in, without switching to it (the control API's `POST /send`).
    RoomMsg {
        /// The room.
        room: String,
        /// The text.
        text: String,
    },
    /// A line without a slash: text for the active session.
    Say {
        /// The text.
        text: String,
    },
    /// `/fork <peer>` or `/dm <peer>`: open (and switch to) a private session.
    Fork {
        /// The other peer.
        peer: PeerRef,
    },
    /// `/sessions` or `/ss`.
    Sessions,
    /// `/switch <n|name>` or `/sw`.
    Switch {
        /// A session number from `/sessions`, a room, or a peer name.
        target: String,
    },
    /// `/lobby`: back to the lobby.
    Lobby,
    /// `/join <room>`.
    Join {
        /// Room name.
        room: String,
    },
    /// `/leave <room>` (the active room when omitted).
    Leave {
        /// Room name.
        room: Option<String>,
    },
    /// `/rooms`: rooms on the index and which ones we are in.
    Rooms,
    /// `/who [room]`: members of a room (the active one when omitted).
    Who {
        /// Room name.
        room: Option<String>,
    },
    /// `/users`: known peers and whether they are reachable.
    Users,
    /// `/peers`: known peers with their addresses.
    Peers,
    /// `/stats`: the daemon's counters.
    Stats,
    /// `/me <action>`: an action in the active session (`* alice waves`).
    Me {
        /// The action, exactly as typed.
        text: String,
    },
    /// `/nick <name>`: registers another name with the index and tells peers.
    Nick {
        /// The new name.
        name: String,
    },
    /// `/close [n|name]`: closes a private session (the active one by default).
    Close {
        /// A session number or a peer name/UUID.
        target: Option<String>,
    },
    /// `/whoami`: our name, UUID, addresses and whether the index is reachable.
    WhoAmI,
    /// `/history [n]`: earlier messages of the active session, further back each time.
    History {
        /// How many (default [`HISTORY_PAGE`]).
        count: usize,
    },
    /// `/block <peer>`: drop its messages, and have the index refuse its mail for us.
    Block {
        /// The peer.
        peer: PeerRef,
    },
    /// `/unblock <peer>`.
    Unblock {
        /// The peer.
        peer: PeerRef,
    },
    /// `/set <key> <value>`: sets a key of the room's shared state (the active room's, or
    /// `room`'s from the control API).
    Set {
        /// The room; the active one when `None`.
        room: Option<String>,
        /// The key.
        key: String,
        /// The value, exactly as typed.
        value: String,
    },
    /// `/unset <key>`.
    Unset {
        /// The room; the active one when `None`.
        room: Option<String>,
        /// The key.
        key: String,
    },
    /// `/get <key>`: answered by a `state` event with `key` and `value`.
    Get {
        /// The room; the active one when `None`.
        room: Option<String>,
        /// The key.
        key: String,
    },
    /// `/state [room]`: every key of a room's shared state.
    State {
        /// The room; the active one when `None`.
        room: Option<String>,
    },
    /// `/topic [text]`: shows or sets the active room's topic (the key `topic`).
    Topic {
        /// The new topic; `None` shows it.
        text: Option<String>,
    },
    /// `/help`.
    Help,
    /// `/quit`.
    Quit,
    /// A blank line.
    Nothing,
}

/// Messages `/history` shows when no count is given.
pub const HISTORY_PAGE: usize = 20;
/// Most messages one `/history` shows.
pub const HISTORY_MAX: usize = 1000;

/// The help text: `(usage, what it does)`.
pub const HELP: &[(&str, &str)] = &[
    ("<text>", "say <text> in the active session"),
    (
        "/msg <peer> <text>",
        "private message to a peer (name or UUID) from anywhere",
    ),
    (
        "/fork <peer>, /dm <peer>",
        "open a private session with a peer and switch to it",
    ),
    (
        "/sessions, /ss",
        "list sessions (* active) with unread counts",
    ),
    (
        "/switch <n|name>, /sw",
        "switch to a session by number, room or peer name",
    ),
    (
        "/me <action>",
        "an action in the active session: * you <action>",
    ),
    (
        "/close [n|peer]",
        "close a private session (the active one by default)",
    ),
    (
        "/history [n]",
        "show earlier messages of the active session (again: further back)",
    ),
    (
        "/lobby",
        "switch back to the lobby (joining it again if you left)",
    ),
    ("/join <room>", "join (or create) a room and switch to it"),
    ("/leave [room]", "leave a room (the active one by default)"),
    ("/rooms", "list the rooms on the index"),
    ("/who [room]", "list a room's members"),
    ("/users", "list known peers and whether they are reachable"),
    ("/peers", "list known peers with addresses, path and RTT"),
    (
        "/whoami",
        "your name, UUID, addresses and the index's status",
    ),
    (
        "/nick <name>",
        "change your name (registered with the index, peers are told)",
    ),
    (
        "/stats",
        "show the daemon's counters (datagrams, paths, NAT traversal)",
    ),
    (
        "/block <peer>, /unblock <peer>",
        "ignore a peer's messages and refuse its mail (or take it back)",
    ),
    (
        "/set <key> <value>",
        "set a key of the active room's shared state (every member sees it)",
    ),
    ("/get <key>", "show a key of the active room's shared state"),
    (
        "/unset <key>",
        "remove a key from the active room's shared state",
    ),
    (
        "/state [room]",
        "list a room's shared state (the active room's by default)",
    ),
    ("/topic [text]", "show or set the active room's topic"),
    ("/help", "show this list"),
    ("/quit", "leave"),
    ("line ending in \\", "continue the message on the next line"),
];

/// Parses one (possibly multi-line) input; the error says what to type instead.
pub fn parse(input: &str) -> Result<Command, String> {
    let input = input.strip_suffix('\n').unwrap_or(input);
    let input = input.strip_suffix('\r').unwrap_or(input);
    if input.trim().is_empty() {
        return Ok(Command::Nothing);
    }
    let Some(rest) = input.strip_prefix('/') else {
        return Ok(Command::Say {
            text: input.to_owned(),
        });
    };
    let (name, args) = rest.split_once([' ', '\n']).unwrap_or((rest, ""));
    let arg = args.trim();
    let one_arg = |usage: &str| -> Result<String, String> {
        if arg.is_empty() || arg.contains(char::is_whitespace) {
            Err(format!("usage: {usage}"))
        } else {
            Ok(arg.to_owned())
        }
    };
    let optional = || (!arg.is_empty()).then(|| arg.to_owned());
    match name {
        "msg" | "m" => {
            let args = args.trim_start();
            let (peer, text) = args.split_once([' ', '\n']).unwrap_or((args, ""));
            if peer.is_empty() || text.is_empty() {
                return Err("usage: /msg <peer> <text>".into());
            }
            Ok(Command::Msg {
                to: PeerRef::parse(peer),
                text: text.to_owned(),
            })
        }
        "fork" | "dm" => Ok(Command::Fork {
            peer: PeerRef::parse(&one_arg("/fork <peer>")?),
        }),
        "sessions" | "ss" => Ok(Command::Sessions),
        "switch" | "sw" => Ok(Command::Switch {
            target: one_arg("/switch <n|name>")?,
        }),
        "lobby" | "lob" => Ok(Command::Lobby),
        "join" | "j" => Ok(Command::Join {
            room: one_arg("/join <room>")?,
        }),
        "leave" | "part" => Ok(Command::Leave { room: optional() }),
        "rooms" => Ok(Command::Rooms),
        "who" => Ok(Command::Who { room: optional() }),
        "users" => Ok(Command::Users),
        "peers" => Ok(Command::Peers),
        "stats" => Ok(Command::Stats),
        "me" => {
            let text = args.trim_start();
            if text.trim().is_empty() {
                return Err("usage: /me <action>".into());
            }
            Ok(Command::Me {
                text: text.to_owned(),
            })
        }
        "nick" | "name" => Ok(Command::Nick {
            name: one_arg("/nick <name>")?,
        }),
        "close" => Ok(Command::Close { target: optional() }),
        "whoami" => Ok(Command::WhoAmI),
        "history" | "hist" => {
            let count = match arg {
                "" => HISTORY_PAGE,
                n => match n.parse::<usize>() {
                    Ok(n) if (1..=HISTORY_MAX).contains(&n) => n,
                    _ => {
                        return Err(format!(
                            "usage: /history [n] with n from 1 to {HISTORY_MAX}"
                        ));
                    }
                },
            };
            Ok(Command::History { count })
        }
        "block" => Ok(Command::Block {
            peer: PeerRef::parse(&one_arg("/block <peer>")?),
        }),
        "unblock" => Ok(Command::Unblock {
            peer: PeerRef::parse(&one_arg("/unblock <peer>")?),
        }),
        "set" => {
            let args = args.trim_start();
            let (key, value) = args.split_once([' ', '\n']).unwrap_or((args, ""));
            if key.is_empty() || value.trim().is_empty() {
                return Err("usage: /set <key> <value> (/unset <key> removes it)".into());
            }
            Ok(Command::Set {
                room: None,
                key: key.to_owned(),
                value: value.to_owned(),
            })
        }
        "unset" => Ok(Command::Unset {
            room: None,
            key: one_arg("/unset <key>")?,
        }),
        "get" => Ok(Command::Get {
            room: None,
            key: one_arg("/get <key>")?,
        }),
        "state" => Ok(Command::State {
            room: optional().map(|room| room.trim_start_matches('#').to_owned()),
        }),
        "topic" => Ok(Command::Topic { text: optional() }),
        "help" | "h" | "?" => Ok(Command::Help),
        "quit" | "exit" | "q" => Ok(Command::Quit),
        other => Err(format!("unknown command /{other}; type /help for the list")),
    }
}

/// Joins continuation lines: a line ending in a single `\` continues the message.
#[derive(Debug, Default)]
pub struct LineJoiner {
    pending: Option<String>,
}

impl LineJoiner {
    /// Takes one raw line; returns the complete input once its last line arrives.
    pub fn push(&mut self, line: &str) -> Option<String> {
        let line = line.trim_end_matches(['\r', '\n']);
        match line.strip_suffix('\\').filter(|l| !l.ends_with('\\')) {
            Some(head) => {
                let pending = self.pending.get_or_insert_with(String::new);
                pending.push_str(head);
                pending.push('\n');
                None
            }
            None => {
                let mut all = self.pending.take().unwrap_or_default();
                all.push_str(
                    line.strip_suffix("\\\\")
                        .map_or(line, |l| &line[..l.len() + 1]),
                );
                Some(all)
            }
        }
    }

    /// Whether a message is being continued.
    pub fn continuing(&self) -> bool {
        self.pending.is_some()
    }
}

#[cfg(test)]
mod tests;
