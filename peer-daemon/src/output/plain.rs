//! The plain-text renderer: events as lines for people, used for plain stdout and as the
//! fallback of the terminal's coloured renderer (`terminal/render.rs`). Every string from
//! outside is made safe for a terminal ([`clean`]), and peers are shown by the name the index
//! vouches for.

use uuid::Uuid;

use super::{PeerLine, UiEvent};

/// How a peer is shown in plain text, every part from outside made safe ([`clean`]): its
/// vouched name; or, when it claims a name the index did not vouch for, its full UUID with the
/// claim marked unverified, so two peers that differ only by a claim are told apart.
pub fn peer_label(id: &Uuid, name: Option<&str>, claimed: Option<&str>) -> String {
    match (name, claimed) {
        (Some(name), None) => clean(name).into_owned(),
        (name, Some(claim)) => claim_label(id, name.map(clean).as_deref(), claim),
        (None, None) => id.to_string(),
    }
}

/// A peer that claims a name the index did not vouch for: its `shown` vouched name (already
/// made safe, perhaps coloured) if any, its full UUID, and the claim marked unverified.
pub fn claim_label(id: &Uuid, shown: Option<&str>, claim: &str) -> String {
    match shown {
        Some(shown) => format!("{shown} ({id}, claims \"{}\", unverified)", clean(claim)),
        None => format!("{id} (claims \"{}\", unverified)", clean(claim)),
    }
}

/// Text from outside (names, rooms, reasons, error bodies) made safe for a terminal.
pub fn clean(text: &str) -> std::borrow::Cow<'_, str> {
    proto::display::sanitize(text)
}

fn who(id: &Uuid, name: &Option<String>, claimed: &Option<String>) -> String {
    peer_label(id, name.as_deref(), claimed.as_deref())
}

/// ", relayed" after a round-trip time that went through a relay.
pub(crate) fn relayed(via: Option<&str>) -> &'static str {
    if via == Some("relay") {
        ", relayed"
    } else {
        ""
    }
}

fn peer_list(peers: &[PeerLine]) -> String {
    if peers.is_empty() {
        return "nobody yet".into();
    }
    peers
        .iter()
        .map(|p| {
            let mut line = match (&p.name, &p.claimed_name) {
                _ if p.you => {
                    let name = p.name.as_deref().map(clean).unwrap_or_default();
                    return format!("you {name} ({})", p.uuid).replace("you  (", "you (");
                }
                (Some(name), None) => format!("{} ({})", clean(name), p.uuid),
                (name, claimed) => who(&p.uuid, name, claimed),
            };
            if let Some(addr) = p.addr {
                line += &format!(" {addr}");
            }
            if let Some(via) = p.via {
                line += &format!(" via {via}");
            }
            match p.rtt_ms {
                Some(rtt) => line += &format!(" rtt {rtt:.2} ms"),
                None if !p.reachable => line += " (not contacted yet)",
                None => {}
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// "1 other member", "3 other members", "nobody else here yet".
pub fn others(count: usize) -> String {
    match count {
        0 => "nobody else here yet".to_owned(),
        1 => "1 other member".to_owned(),
        n => format!("{n} other members"),
    }
}

/// A message as people read it: `[#room] <bob> text`, or `[#room] * bob waves` for an action.
pub fn said(room: Option<&str>, sender: &str, text: &str, action: bool) -> String {
    format!(
        "{} {}",
        message_context(room),
        utterance(sender, text, action)
    )
}

/// What follows a message that waited in our mailbox: when its sender wrote it.
pub fn from_mailbox(sent_at_ms: Option<u64>) -> String {
    sent_at_ms.map_or_else(String::new, |at| {
        format!(
            "  ✉ from your mailbox, written {}",
            super::stamp::written_at(at)
        )
    })
}

/// `<bob> text`, or `* bob waves` for an action; the text made safe, further lines indented.
fn utterance(sender: &str, text: &str, action: bool) -> String {
    if action {
        format!("* {sender} {}", indent_continuation(text))
    } else {
        format!("<{sender}> {}", indent_continuation(text))
    }
}

/// A block of history lines, each with its own time (and a day line where the day changes).
fn history(
    room: Option<&str>,
    peer: Option<&Uuid>,
    name: Option<&str>,
    reason: &str,
    lines: &[crate::history::Line],
) -> String {
    use super::stamp;
    let session = match (room, peer, name) {
        (Some(room), ..) => format!("#{}", clean(room)),
        (None, Some(_), Some(name)) => format!("@{}", clean(name)),
        (None, Some(peer), None) => format!("@{peer}"),
        (None, None, _) => "?".to_owned(),
    };
    let title = match reason {
        "unread" => format!("{} unread in {session}", lines.len()),
        "restored" => format!("last messages in {session}"),
        _ => format!("earlier in {session}"),
    };
    let mut out = format!("── {title} ──");
    let mut day = None;
    for line in lines {
        let this_day = stamp::day_of(line.at_ms);
        if day != Some(this_day) {
            out += "\n";
            out += &stamp::day_line(this_day);
            day = Some(this_day);
        }
        let sender = match (&line.from, &line.name) {
            (None, _) => "you".to_owned(),
            (Some(_), Some(name)) => clean(name).into_owned(),
            (Some(id), None) => id.to_string(),
        };
        let outcome = match &line.delivery {
            crate::history::Delivery::Received => String::new(),
            crate::history::Delivery::Queued => " (not acknowledged)".to_owned(),
            crate::history::Delivery::Mailbox => " ✉ in their mailbox".to_owned(),
            crate::history::Delivery::Delivered {
                delivered: Some(n),
                total: Some(t),
                ..
            } if n < t => format!(" ✓ {n}/{t}"),
            crate::history::Delivery::Delivered { .. } => " ✓".to_owned(),
            crate::history::Delivery::Failed { reason } => {
                format!(" ✗ not delivered: {}", clean(reason))
            }
        };
        // The title names the session already.
        let body = utterance(&sender, &line.text, line.action);
        out += &format!(
            "\n{} {}{outcome}",
            stamp::clock_of(line.at_ms),
            body.replace('\n', "\n      ")
        );
    }
    out += "\n── end of history ──";
    out
}

/// A message's text made safe, its further lines indented under the first so that they cannot
/// pass for lines of their own (both renderers put the sender before the first line).
pub fn indent_continuation(text: &str) -> String {
    proto::display::sanitize_lines(text).replace('\n', "\n    ")
}

/// Where a message was said, before its sender: `[#room]`, or `[private]`.
pub fn message_context(room: Option<&str>) -> String {
    match room {
        Some(room) => format!("[#{}]", clean(room)),
        None => "[private]".to_owned(),
    }
}

impl UiEvent {
    /// Human rendering; `None` for events people need not see.
    pub fn human(&self) -> Option<String> {
        Some(match self {
            UiEvent::Registered { uuid, addr } => {
                format!(
                    "registered as {uuid} at {}\ntype /help for commands",
                    clean(addr)
                )
            }
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
                said(
                    room.as_deref(),
                    &who(from, name, claimed_name),
                    text,
                    *action,
                ) + &from_mailbox(*sent_at_ms)
            }
            UiEvent::Sent { .. } => return None,
            UiEvent::Delivered {
                to: Some(to),
                name,
                rtt_ms,
                via,
                ..
            } if *via == Some("mailbox") => format!(
                "✓ delivered to {} (it took the message from its mailbox)",
                who(to, name, &None)
            ),
            UiEvent::Delivered {
                to: Some(to),
                name,
                rtt_ms,
                via,
                ..
            } => format!(
                "✓ delivered to {} ({rtt_ms:.2} ms{})",
                who(to, name, &None),
                relayed(*via)
            ),
            UiEvent::Path {
                peer,
                name,
                via,
                addr,
            } => format!("· path to {}: {via} ({addr})", who(peer, name, &None)),
            UiEvent::Queued { to, name, .. } => format!(
                "✉ {} is offline: the message waits, sealed, in their mailbox on the index",
                who(to, name, &None)
            ),
            UiEvent::Delivered {
                room,
                total: Some(0),
                ..
            } => format!(
                "· nobody else is in #{} to receive it",
                clean(room.as_deref().unwrap_or("?"))
            ),
            UiEvent::Delivered {
                room,
                delivered,
                total,
                rtt_ms,
                ..
            } => format!(
                "✓ delivered {}/{} in #{} ({rtt_ms:.2} ms)",
                delivered.unwrap_or(0),
                total.unwrap_or(0),
                clean(room.as_deref().unwrap_or("?"))
            ),
            UiEvent::Failed {
                to,
                name,
                room,
                reason,
                ..
            } => {
                let reason = clean(reason);
                match (to, room) {
                    (Some(to), _) => {
                        format!("✗ not delivered to {}: {reason}", who(to, name, &None))
                    }
                    (None, Some(room)) => {
                        format!("✗ not delivered in #{}: {reason}", clean(room))
                    }
                    (None, None) => format!("✗ not delivered: {reason}"),
                }
            }
            UiEvent::Joined {
                room,
                peer: None,
                members,
                ..
            } => format!("joined #{} ({})", clean(room), others(members.unwrap_or(0))),
            UiEvent::Joined {
                room,
                peer: Some(peer),
                name,
                claimed_name,
                ..
            } => format!(
                "→ {} joined #{}",
                who(peer, name, claimed_name),
                clean(room)
            ),
            UiEvent::Left {
                room, peer: None, ..
            } => format!("left #{}", clean(room)),
            UiEvent::Left {
                room,
                peer: Some(peer),
                name,
                claimed_name,
            } => format!("← {} left #{}", who(peer, name, claimed_name), clean(room)),
            UiEvent::PeerOffline { peer, name } => {
                format!("← {} went offline", who(peer, name, &None))
            }
            UiEvent::Renamed {
                peer: None, name, ..
            } => format!(
                "· you are now {} (registered with the index; peers are told)",
                clean(name.as_deref().unwrap_or("nameless"))
            ),
            UiEvent::Renamed {
                peer: Some(peer),
                old,
                name,
            } => format!(
                "· {} is now known as {}",
                clean(old.as_deref().unwrap_or("?")),
                who(peer, name, &None)
            ),
            UiEvent::Index {
                status: "online", ..
            } => "· the index answers again".to_owned(),
            UiEvent::Index { reason, .. } => format!(
                "· offline from the index: {}; peers you know can still reach you",
                clean(reason.as_deref().unwrap_or("no answer"))
            ),
            UiEvent::History {
                room,
                peer,
                name,
                reason,
                lines,
            } => history(
                room.as_deref(),
                peer.as_ref(),
                name.as_deref(),
                reason,
                lines,
            ),
            UiEvent::Whoami {
                uuid,
                name,
                addr,
                listen,
                candidates,
                index,
                index_status,
                index_error,
                state_dir,
                mdns,
                dht,
                lan_peers,
                contacts,
            } => {
                let status = match (*index_status, index_error) {
                    ("none", _) => "peers are found on the LAN and in the DHT".to_owned(),
                    (status, Some(error)) => format!("{status}: {}", clean(error)),
                    (status, None) => status.to_owned(),
                };
                let mut out = format!(
                    "you are {} ({uuid})\n  index:      {} ({status})",
                    clean(name.as_deref().unwrap_or("nameless")),
                    clean(index),
                );
                if let Some(addr) = addr {
                    out += &format!("\n  seen as:    {}", clean(addr));
                }
                out += &format!("\n  listening:  {listen}");
                let on = |on: &bool| if *on { "on" } else { "off" };
                out += &format!(
                    "\n  LAN (mDNS): {}, {lan_peers} peer(s) heard\n  DHT:        {}, {contacts} contact(s) kept",
                    on(mdns),
                    on(dht)
                );
                for candidate in candidates {
                    out += &format!(
                        "\n  candidate:  {} {}",
                        candidate.kind.as_str(),
                        candidate.addr
                    );
                }
                out += &format!("\n  state:      {}", state_dir.display());
                out
            }
            UiEvent::Sessions { sessions } => sessions
                .iter()
                .map(|s| {
                    let mark = if s.active { "*" } else { " " };
                    let unread = if s.unread > 0 {
                        format!(" ({} unread)", s.unread)
                    } else {
                        String::new()
                    };
                    format!("{mark}{} {}{unread}", s.n, clean(&s.label))
                })
                .collect::<Vec<_>>()
                .join("\n"),
            UiEvent::Peers { peers } => peer_list(peers),
            UiEvent::Stats { counters } => counters
                .iter()
                .map(|(name, value)| format!("{name} {value}"))
                .collect::<Vec<_>>()
                .join("\n"),
            UiEvent::Who { room, members } => {
                format!("#{}:\n{}", clean(room), peer_list(members))
            }
            UiEvent::State {
                room,
                key,
                value,
                author,
                author_name,
                reason,
            } => super::roomstate::state(
                room,
                key,
                value.as_deref(),
                author.as_ref(),
                author_name.as_deref(),
                reason,
            ),
            UiEvent::StateList { room, entries } => super::roomstate::list(room, entries),
            UiEvent::Rooms { rooms } if rooms.is_empty() => "no rooms".into(),
            UiEvent::Rooms { rooms } => rooms
                .iter()
                .map(|r| {
                    format!(
                        "{}#{} ({} members){}",
                        if r.joined { "*" } else { " " },
                        clean(&r.room),
                        r.members,
                        r.topic
                            .as_deref()
                            .map(|t| format!(": {}", clean(t)))
                            .unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
            UiEvent::Help { commands } => commands
                .iter()
                .map(|[usage, what]| format!("{usage:<28} {what}"))
                .collect::<Vec<_>>()
                .join("\n"),
            UiEvent::Info { message } => format!("· {}", proto::display::sanitize_lines(message)),
            // One line: a reason from outside must not start what looks like another event.
            UiEvent::Error { message } => format!("error: {}", clean(message)),
            UiEvent::Control { addr, token_file } => {
                format!(
                    "control API on http://{addr} (bearer token in {})",
                    token_file.display()
                )
            }
        })
    }
}

#[cfg(test)]
mod tests;
