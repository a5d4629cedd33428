//! How room state reads to people: changes, answers to `/get` and `/topic`, and `/state`.

use uuid::Uuid;

use super::event::StateLine;
use super::plain::{clean, peer_label};

fn by(author: Option<&Uuid>, name: Option<&str>) -> String {
    author.map_or_else(|| "someone".to_owned(), |id| peer_label(id, name, None))
}

/// A `state` event, for people.
pub fn state(
    room: &str,
    key: &str,
    value: Option<&str>,
    author: Option<&Uuid>,
    author_name: Option<&str>,
    reason: &str,
) -> String {
    let (room, shown_key) = (clean(room), clean(key));
    let who = by(author, author_name);
    match (reason, key == crate::chat::TOPIC, value) {
        ("changed", true, Some(value)) => {
            format!("[#{room}] {who} set the topic: {}", clean(value))
        }
        ("changed", true, None) => format!("[#{room}] {who} removed the topic"),
        ("changed", false, Some(value)) => {
            format!("[#{room}] {who} set {shown_key} = {}", clean(value))
        }
        ("changed", false, None) => format!("[#{room}] {who} unset {shown_key}"),
        (_, true, Some(value)) => format!("[#{room}] topic: {} (set by {who})", clean(value)),
        (_, true, None) => format!("[#{room}] no topic; /topic <text> sets one"),
        (_, false, Some(value)) => {
            format!("[#{room}] {shown_key} = {} (set by {who})", clean(value))
        }
        (_, false, None) => format!("[#{room}] {shown_key} is not set"),
    }
}

/// A `state_list` event (`/state`), for people.
pub fn list(room: &str, entries: &[StateLine]) -> String {
    let room = clean(room);
    if entries.is_empty() {
        return format!("[#{room}] no shared state yet; /set <key> <value> adds some");
    }
    let mut text = format!(
        "[#{room}] shared state, {} key{}:",
        entries.len(),
        if entries.len() == 1 { "" } else { "s" }
    );
    for entry in entries {
        text.push_str(&format!(
            "\n  {} = {} ({})",
            clean(&entry.key),
            clean(entry.value.as_deref().unwrap_or("")),
            by(entry.author.as_ref(), entry.author_name.as_deref())
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_keys_from_members_are_made_safe() {
        let bob = Uuid::from_u128(7);
        let line = state(
            "rust",
            "k\u{202e}",
            Some("\u{1b}[2Jgone\nnext"),
            Some(&bob),
            Some("bob"),
            "changed",
        );
        assert!(!line.contains('\u{1b}') && !line.contains('\n'), "{line:?}");
        assert!(line.starts_with("[#rust] bob set k"), "{line}");
        assert_eq!(
            state("rust", "topic", None, None, None, "get"),
            "[#rust] no topic; /topic <text> sets one"
        );
        let entries = [StateLine {
            key: "k".into(),
            value: Some("v\u{7}".into()),
            author: Some(bob),
            author_name: None,
        }];
        let text = list("rust", &entries);
        assert!(!text.contains('\u{7}'), "{text}");
        assert!(text.contains(&format!("({bob})")), "{text}");
        assert_eq!(
            list("rust", &[]),
            "[#rust] no shared state yet; /set <key> <value> adds some"
        );
    }
}
