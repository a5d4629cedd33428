//! What the chat remembers: every message sent and received goes to the store as a
//! [`Line`] (and its delivery outcome after it), and `/history` pages back through a session,
//! further back at each call.

use uuid::Uuid;

use super::roster::SessionKind;
use super::{Action, ChatCore};
use crate::history::{Change, Delivery, HistoryQuery, Line};
use crate::output::UiEvent;

impl ChatCore {
    pub(super) fn remember(&mut self, change: Change) {
        self.actions.push_back(Action::Store(change));
    }

    /// Our own message `id`, said in `session`, as it leaves.
    pub(super) fn remember_sent(
        &mut self,
        id: u64,
        session: SessionKind,
        text: &str,
        action: bool,
    ) {
        self.history_cursor = None;
        self.remember(Change::Line(Line {
            id,
            at_ms: 0,
            session,
            from: None,
            name: self.roster.own_name(),
            text: text.to_owned(),
            action,
            delivery: Delivery::Queued,
        }));
    }

    /// A message as it is shown (its sender's names filled in).
    pub(super) fn remember_received(&mut self, event: &UiEvent) {
        let UiEvent::Message {
            id,
            from,
            name,
            text,
            action,
            room,
            ..
        } = event
        else {
            return;
        };
        let session = match room {
            Some(room) => SessionKind::Room(room.clone()),
            None => SessionKind::Private(*from),
        };
        self.remember(Change::Line(Line {
            id: *id,
            at_ms: 0,
            session,
            from: Some(*from),
            name: name.clone(),
            text: text.clone(),
            action: *action,
            delivery: Delivery::Received,
        }));
    }

    /// `/history [count]`: the `count` lines of the active session before the ones shown last.
    pub(super) fn page_back(&mut self, count: usize) {
        let session = self.roster.active();
        let before = match &self.history_cursor {
            Some((shown, oldest)) if *shown == session => Some(*oldest),
            _ => None,
        };
        if before == Some(0) {
            let label = self.roster.kind_label(&session);
            return self.show(UiEvent::Info {
                message: format!("no earlier messages in {label}"),
            });
        }
        self.actions.push_back(Action::History {
            query: HistoryQuery {
                session: Some(session),
                before,
                limit: count,
            },
            reason: "requested",
        });
    }

    /// The driver showed `session`'s lines down to `oldest` (`None`: there were none): the
    /// next `/history` goes on from there.
    pub fn history_shown(&mut self, session: SessionKind, oldest: Option<u64>, reason: &str) {
        if reason == "requested" && oldest.is_none() {
            let label = self.roster.kind_label(&session);
            self.show(UiEvent::Info {
                message: format!("no earlier messages in {label}"),
            });
        }
        self.history_cursor = Some((session, oldest.unwrap_or(0)));
    }

    /// The `history` event for `lines` of `session`: what the driver shows once the store
    /// has answered.
    pub fn history_event(
        &self,
        session: &SessionKind,
        reason: &'static str,
        lines: Vec<Line>,
    ) -> UiEvent {
        let (room, peer): (Option<String>, Option<Uuid>) = match session {
            SessionKind::Room(room) => (Some(room.clone()), None),
            SessionKind::Private(peer) => (None, Some(*peer)),
        };
        // The name the index vouches for now, or the one it vouched for when the newest
        // line was received (after a restart, before the peer is back).
        let name = peer.and_then(|peer| {
            self.roster.name(&peer).or_else(|| {
                lines
                    .iter()
                    .rev()
                    .find(|line| line.from == Some(peer))
                    .and_then(|line| line.name.clone())
            })
        });
        UiEvent::History {
            room,
            peer,
            name,
            reason,
            lines,
        }
    }
}
