//! The mailbox's rows survive a restart; a receipt ends a wait; a letter nobody took for longer
//! than the index keeps letters is given up at the next start.

use proto::mailbox::Stamp;
use uuid::Uuid;

use crate::history::{Change, Delivery, Line, MailChange, SessionKind};
use crate::store::Store;

fn ours(id: u64, peer: Uuid) -> Change {
    Change::Line(Line {
        id,
        at_ms: 1,
        session: SessionKind::Private(peer),
        from: None,
        name: None,
        text: format!("letter {id}"),
        action: false,
        delivery: Delivery::Queued,
    })
}

fn mailbox(id: u64) -> Change {
    Change::Outcome {
        id,
        delivery: Delivery::Mailbox,
    }
}

#[tokio::test]
async fn what_waits_what_was_taken_and_whom_we_block_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (bob, carol) = (Uuid::new_v4(), Uuid::new_v4());
    let now = crate::driver::unix_millis() as u64;
    let stamp = Stamp { id: 9, at: now };
    {
        let store = Store::open(dir.path()).await.unwrap();
        for id in 0..3 {
            store.record(ours(id, bob));
            store.record(mailbox(id));
        }
        store.record(Change::Mail(MailChange::Waiting {
            id: 0,
            peer: bob,
            at: now,
        }));
        store.record(Change::Mail(MailChange::Waiting {
            id: 1,
            peer: bob,
            at: now + 1,
        }));
        // Sealed 9 days ago and never taken.
        let old = now - 9 * 24 * 3600 * 1000;
        store.record(Change::Mail(MailChange::Waiting {
            id: 2,
            peer: bob,
            at: old,
        }));
        store.record(Change::Mail(MailChange::Receipted { id: 1 }));
        store.record(Change::Mail(MailChange::Seen { from: carol, stamp }));
        store.record(Change::Mail(MailChange::Seen { from: carol, stamp }));
        store.record(Change::Mail(MailChange::Blocked {
            peer: carol,
            blocked: true,
        }));
        store.record(Change::Mail(MailChange::Blocked {
            peer: bob,
            blocked: true,
        }));
        store.record(Change::Mail(MailChange::Blocked {
            peer: bob,
            blocked: false,
        }));
        store.flush().await;
    }
    let store = Store::open(dir.path()).await.unwrap();
    let mail = store.load().await.unwrap().mail;
    assert_eq!(mail.waiting, [(0, bob, now)], "1 was receipted, 2 expired");
    assert_eq!(mail.seen, [(carol, stamp)]);
    assert_eq!(mail.blocked, [carol]);
    let lines = store
        .history(crate::history::HistoryQuery {
            session: Some(SessionKind::Private(bob)),
            before: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(lines[0].delivery, Delivery::Mailbox, "still waiting");
    assert_eq!(
        lines[2].delivery,
        Delivery::Failed {
            reason: super::EXPIRED_REASON.to_owned()
        }
    );
}
