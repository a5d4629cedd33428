//! One group of changes (what queued while the writer lingered) made as small as gives the
//! same result, before it is written in one transaction.

use crate::history::{Change, Line};

/// One group's changes as few statements as give the same result: the lines (with the outcome
/// of any of them decided within the group folded in), then the outcomes of earlier lines in
/// order, then the last session list only (each replaces the one before it whole).
pub(super) fn coalesce(changes: &[Change]) -> (Vec<Line>, Vec<Change>) {
    let mut lines: Vec<Line> = Vec::new();
    let mut index: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();
    let mut rest = Vec::new();
    let mut sessions = None;
    for change in changes {
        match change {
            Change::Line(line) => {
                index.insert(line.id, lines.len());
                lines.push(line.clone());
            }
            Change::Outcome { id, delivery } => match index.get(id) {
                Some(&at) => lines[at].delivery = delivery.clone(),
                None => rest.push(change.clone()),
            },
            Change::Sessions(saved) => sessions = Some(saved),
            // In order, after the lines: a receipt's outcome and its row go together.
            Change::Mail(_) | Change::RoomState(_) => rest.push(change.clone()),
        }
    }
    rest.extend(sessions.map(|saved| Change::Sessions(saved.clone())));
    (lines, rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Delivery, SavedSession, SavedSessions, SessionKind};

    fn line(id: u64) -> Line {
        Line {
            id,
            at_ms: 1,
            session: SessionKind::Room("lobby".into()),
            from: None,
            name: None,
            text: format!("line {id}"),
            action: false,
            delivery: Delivery::Queued,
        }
    }

    fn sessions(unread: usize) -> Change {
        Change::Sessions(SavedSessions {
            sessions: vec![SavedSession {
                n: 0,
                kind: SessionKind::Room("lobby".into()),
                unread,
            }],
            active: 0,
            next_n: 1,
        })
    }

    #[test]
    fn a_group_folds_outcomes_into_its_lines_and_keeps_the_last_session_list() {
        let delivered = Delivery::Delivered {
            rtt_ms: 0.5,
            delivered: None,
            total: None,
        };
        let changes = vec![
            Change::Outcome {
                id: 1,
                delivery: delivered.clone(),
            },
            Change::Line(line(2)),
            sessions(1),
            Change::Line(line(3)),
            Change::Outcome {
                id: 2,
                delivery: delivered.clone(),
            },
            sessions(2),
        ];
        let (lines, rest) = coalesce(&changes);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].delivery, delivered, "folded into its line");
        assert_eq!(lines[1].delivery, Delivery::Queued);
        assert_eq!(
            rest,
            vec![
                Change::Outcome {
                    id: 1,
                    delivery: delivered
                },
                sessions(2)
            ],
            "an earlier line's outcome stays; only the last session list"
        );
    }
}
