//! The store on real SQLite files in temporary directories.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Instant;

use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use uuid::Uuid;

use super::*;
use crate::history::{Delivery, SavedSession};

fn lobby() -> SessionKind {
    SessionKind::Room("lobby".into())
}

fn line(id: u64, session: &SessionKind, from: Option<Uuid>, delivery: Delivery) -> Line {
    Line {
        id,
        at_ms: 1_700_000_000_000 + id as i64,
        session: session.clone(),
        from,
        name: from.map(|_| "bob".to_string()),
        text: format!("message {id}"),
        action: id % 7 == 3,
        delivery,
    }
}

/// Someone else's line.
fn theirs(id: u64, session: &SessionKind, peer: Uuid) -> Line {
    line(id, session, Some(peer), Delivery::Received)
}

/// Our line, not acknowledged yet.
fn ours(id: u64, session: &SessionKind) -> Line {
    line(id, session, None, Delivery::Queued)
}

fn query(session: Option<&SessionKind>, before: Option<u64>, limit: usize) -> HistoryQuery {
    HistoryQuery {
        session: session.cloned(),
        before,
        limit,
    }
}

fn ids(lines: &[Line]) -> Vec<u64> {
    lines.iter().map(|line| line.id).collect()
}

/// A second connection to the store's file, as a person with `sqlite3` would have.
async fn by_hand(dir: &Path) -> SqliteConnection {
    SqliteConnectOptions::new()
        .filename(dir.join(STORE_FILE))
        .connect()
        .await
        .expect("opening the store by hand")
}

#[tokio::test]
async fn round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let peer = Uuid::new_v4();
    let private = SessionKind::Private(peer);
    let store = Store::open(dir.path()).await.unwrap();
    assert_eq!(
        store.load().await.unwrap(),
        Saved {
            sessions: None,
            next_id: 0,
            mail: Default::default(),
            states: Vec::new(),
        }
    );
    // Lines 0..10 in the lobby (even: ours, odd: theirs), 10..14 in private.
    for id in 0..10 {
        let line = if id % 2 == 0 {
            ours(id, &lobby())
        } else {
            theirs(id, &lobby(), peer)
        };
        store.record(Change::Line(line));
    }
    for id in 10..14 {
        store.record(Change::Line(ours(id, &private)));
    }
    let delivered = Delivery::Delivered {
        rtt_ms: 12.5,
        delivered: Some(2),
        total: Some(3),
    };
    store.record(Change::Outcome {
        id: 2,
        delivery: delivered.clone(),
    });
    let failed = Delivery::Failed {
        reason: "bob did not answer".into(),
    };
    store.record(Change::Outcome {
        id: 10,
        delivery: failed.clone(),
    });
    let private_delivered = Delivery::Delivered {
        rtt_ms: 3.0,
        delivered: None,
        total: None,
    };
    for id in 11..14 {
        store.record(Change::Outcome {
            id,
            delivery: private_delivered.clone(),
        });
    }
    // An unknown id is ignored, and so is a second line with an existing id.
    store.record(Change::Outcome {
        id: 999,
        delivery: delivered.clone(),
    });
    store.record(Change::Line(theirs(4, &private, peer)));
    let sessions = SavedSessions {
        sessions: vec![
            SavedSession {
                n: 1,
                kind: lobby(),
                unread: 0,
            },
            SavedSession {
                n: 3,
                kind: private.clone(),
                unread: 4,
            },
        ],
        active: 3,
        next_n: 4,
    };
    store.record(Change::Sessions(SavedSessions {
        sessions: vec![],
        active: 1,
        next_n: 2,
    }));
    store.record(Change::Sessions(sessions.clone()));
    store.flush().await;
    assert_eq!(store.write_errors(), 0);
    drop(store);

    let store = Store::open(dir.path()).await.unwrap();
    let saved = store.load().await.unwrap();
    assert_eq!(saved.sessions, Some(sessions));
    assert_eq!(saved.next_id, 14);

    // Paging back through the lobby, three at a time.
    let page = store.history(query(Some(&lobby()), None, 3)).await.unwrap();
    assert_eq!(ids(&page), [7, 8, 9]);
    let page = store
        .history(query(Some(&lobby()), Some(7), 3))
        .await
        .unwrap();
    assert_eq!(ids(&page), [4, 5, 6]);
    let page = store
        .history(query(Some(&lobby()), Some(1), 3))
        .await
        .unwrap();
    assert_eq!(ids(&page), [0]);
    assert!(
        store
            .history(query(Some(&lobby()), Some(0), 3))
            .await
            .unwrap()
            .is_empty()
    );
    // Every line comes back as it was recorded, with its outcome.
    let all = store
        .history(query(Some(&lobby()), None, 100))
        .await
        .unwrap();
    assert_eq!(ids(&all), (0..10).collect::<Vec<_>>());
    for got in &all {
        let mut want = if got.id % 2 == 0 {
            ours(got.id, &lobby())
        } else {
            theirs(got.id, &lobby(), peer)
        };
        if got.id == 2 {
            want.delivery = delivered.clone();
        } else if got.id % 2 == 0 {
            // Never acknowledged before the restart.
            want.delivery = Delivery::Failed {
                reason: STOPPED_REASON.into(),
            };
        }
        assert_eq!(*got, want);
    }
    let private_lines = store
        .history(query(Some(&private), None, 100))
        .await
        .unwrap();
    assert_eq!(ids(&private_lines), [10, 11, 12, 13]);
    assert_eq!(private_lines[0].delivery, failed);
    assert_eq!(private_lines[3].delivery, private_delivered);
    // Every session's lines together.
    let newest = store.history(query(None, Some(12), 4)).await.unwrap();
    assert_eq!(ids(&newest), [8, 9, 10, 11]);
    // What came after a line.
    let unread = store.since(lobby(), 5, 3).await.unwrap();
    assert_eq!(ids(&unread), [6, 7, 8]);
    assert!(store.since(lobby(), 9, 3).await.unwrap().is_empty());
    assert_eq!(
        ids(&store.since(private, 0, 100).await.unwrap()),
        [10, 11, 12, 13]
    );
}

#[tokio::test]
async fn the_file_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    store.record(Change::Line(ours(0, &lobby())));
    store.flush().await;
    for name in [
        STORE_FILE.to_string(),
        format!("{STORE_FILE}-wal"),
        format!("{STORE_FILE}-shm"),
    ] {
        let mode = std::fs::metadata(dir.path().join(&name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
}

#[tokio::test]
async fn an_unacknowledged_line_fails_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    store.record(Change::Line(ours(0, &lobby())));
    store.record(Change::Line(ours(1, &lobby())));
    store.record(Change::Outcome {
        id: 1,
        delivery: Delivery::Delivered {
            rtt_ms: 1.0,
            delivered: Some(1),
            total: Some(1),
        },
    });
    store.flush().await;
    let before = store.history(query(None, None, 10)).await.unwrap();
    assert_eq!(before[0].delivery, Delivery::Queued);
    drop(store);

    let store = Store::open(dir.path()).await.unwrap();
    let after = store.history(query(None, None, 10)).await.unwrap();
    assert_eq!(
        after[0].delivery,
        Delivery::Failed {
            reason: STOPPED_REASON.into()
        }
    );
    assert_eq!(after[1].delivery, before[1].delivery);
}

#[tokio::test]
async fn reads_see_what_was_recorded_before_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let peer = Uuid::new_v4();
    for id in 0..50 {
        store.record(Change::Line(theirs(id, &lobby(), peer)));
        let tail = store.history(query(Some(&lobby()), None, 1)).await.unwrap();
        assert_eq!(ids(&tail), [id]);
    }
    store.record(Change::Line(ours(50, &lobby())));
    store.record(Change::Outcome {
        id: 50,
        delivery: Delivery::Failed {
            reason: "nobody".into(),
        },
    });
    let since = store.since(lobby(), 49, 10).await.unwrap();
    assert_eq!(
        since[0].delivery,
        Delivery::Failed {
            reason: "nobody".into()
        }
    );
    store.record(Change::Line(ours(51, &lobby())));
    assert_eq!(store.load().await.unwrap().next_id, 52);
}

#[tokio::test]
async fn a_thousand_messages_reopen_fast() {
    let dir = tempfile::tempdir().unwrap();
    let peer = Uuid::new_v4();
    let private = SessionKind::Private(peer);
    let store = Store::open(dir.path()).await.unwrap();
    // 1000 lines in the lobby, every 10th followed by one in private (100 of them).
    let mut id = 0;
    for n in 0..1000 {
        let line = if n % 3 == 0 {
            ours(id, &lobby())
        } else {
            theirs(id, &lobby(), peer)
        };
        store.record(Change::Line(line));
        id += 1;
        if n % 10 == 9 {
            store.record(Change::Line(theirs(id, &private, peer)));
            id += 1;
        }
    }
    store.record(Change::Sessions(SavedSessions {
        sessions: vec![
            SavedSession {
                n: 1,
                kind: lobby(),
                unread: 0,
            },
            SavedSession {
                n: 2,
                kind: private.clone(),
                unread: 100,
            },
        ],
        active: 1,
        next_n: 3,
    }));
    store.flush().await;
    assert_eq!(store.write_errors(), 0);
    drop(store);

    let started = Instant::now();
    let store = Store::open(dir.path()).await.unwrap();
    let opened = started.elapsed();
    let saved = store.load().await.unwrap();
    let sessions = saved.sessions.expect("sessions were saved");
    let active = &sessions
        .sessions
        .iter()
        .find(|s| s.n == sessions.active)
        .unwrap()
        .kind;
    let tail = store.history(query(Some(active), None, 20)).await.unwrap();
    let elapsed = started.elapsed();
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    // The baseline, in the same run: the same steps on a store that holds nothing.
    let empty = tempfile::tempdir().unwrap();
    drop(Store::open(empty.path()).await.unwrap());
    let base_start = Instant::now();
    let bare = Store::open(empty.path()).await.unwrap();
    let _ = bare.load().await.unwrap();
    let _ = bare.history(query(Some(&lobby()), None, 20)).await.unwrap();
    let baseline = base_start.elapsed();
    eprintln!(
        "store: reopen + tail of 1000-line history in {:.2} ms (open {:.2} ms, load + tail {:.2} ms); \
         an empty store: {:.2} ms; ratio {:.2}",
        ms(elapsed),
        ms(opened),
        ms(elapsed - opened),
        ms(baseline),
        elapsed.as_secs_f64() / baseline.as_secs_f64()
    );
    assert_eq!(saved.next_id, 1100);
    // The last 20 lobby lines: ids 1078..=1098 but the private 1088.
    let want: Vec<u64> = (1078..1099).filter(|id| (id + 1) % 11 != 0).collect();
    assert_eq!(ids(&tail), want);
    assert!(tail.iter().all(|line| line.session == lobby()));
    assert_eq!(tail.last().unwrap().text, "message 1098");
}

#[tokio::test]
async fn the_oldest_lines_go_beyond_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let retention = Retention {
        max_lines: 100,
        check_every: 10,
    };
    let store = Store::open_with(dir.path(), retention).await.unwrap();
    for id in 0..205 {
        store.record(Change::Line(ours(id, &lobby())));
        if id % 5 == 4 {
            // Small groups, so the check runs while recording.
            store.flush().await;
        }
    }
    store.flush().await;
    let kept = store.history(query(None, None, 1000)).await.unwrap();
    assert!(
        (100..110).contains(&kept.len()),
        "kept {} lines while running",
        kept.len()
    );
    assert_eq!(kept.last().unwrap().id, 204);
    drop(store);

    let store = Store::open_with(dir.path(), retention).await.unwrap();
    let kept = store.history(query(None, None, 1000)).await.unwrap();
    assert_eq!(ids(&kept), (105..205).collect::<Vec<_>>());
    assert_eq!(store.load().await.unwrap().next_id, 205);
}

#[tokio::test]
async fn what_makes_no_sense_in_the_file_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let peer = Uuid::new_v4();
    store.record(Change::Line(theirs(0, &lobby(), peer)));
    store.flush().await;
    let mut hand = by_hand(dir.path()).await;
    // Twice the cap, in two-byte characters after one byte: the cap cuts one in two.
    let long = format!("a{}", "é".repeat(TEXT_CAP));
    for (id, kind, session, sender, text, state) in [
        (1, "room", "lobby", None, "unknown state", "lost"),
        (2, "channel", "lobby", None, "unknown kind", "queued"),
        (3, "room", "Not A Room!", None, "invalid room", "queued"),
        (4, "private", "not-a-uuid", None, "invalid peer", "queued"),
        (
            5,
            "room",
            "lobby",
            Some("nope"),
            "invalid sender",
            "received",
        ),
        (6, "room", "lobby", None, "ours, yet received", "received"),
        (7, "room", "lobby", None, long.as_str(), "delivered"),
    ] {
        sqlx::query(
            "INSERT INTO lines (id, at_ms, session_kind, session, sender, text, action, state) \
             VALUES (?1, 0, ?2, ?3, ?4, ?5, 0, ?6)",
        )
        .bind(id)
        .bind(kind)
        .bind(session)
        .bind(sender)
        .bind(text)
        .bind(state)
        .execute(&mut hand)
        .await
        .unwrap();
    }
    // Text that is not UTF-8.
    sqlx::query(
        "INSERT INTO lines (id, at_ms, session_kind, session, text, action, state) \
         VALUES (8, 0, 'room', 'lobby', CAST(x'68ff69' AS TEXT), 0, 'queued')",
    )
    .execute(&mut hand)
    .await
    .unwrap();
    sqlx::query("INSERT INTO meta (active, next_n) VALUES (-1, 2)")
        .execute(&mut hand)
        .await
        .unwrap();

    let lines = store
        .history(query(Some(&lobby()), None, 100))
        .await
        .unwrap();
    assert_eq!(ids(&lines), [0, 7, 8]);
    assert_eq!(lines[1].text.len(), TEXT_CAP - 1);
    assert!(lines[1].text.ends_with('é'));
    assert_eq!(
        lines[1].delivery,
        Delivery::Delivered {
            rtt_ms: 0.0,
            delivered: None,
            total: None
        }
    );
    assert_eq!(lines[2].text, "h\u{fffd}i");
    // Saved sessions that make no sense are as good as none.
    assert_eq!(store.load().await.unwrap().sessions, None);
}

#[tokio::test]
async fn write_errors_are_counted_and_the_rest_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    store.record(Change::Line(ours(0, &lobby())));
    store.flush().await;
    let mut hand = by_hand(dir.path()).await;
    sqlx::query("DROP TABLE lines")
        .execute(&mut hand)
        .await
        .unwrap();
    for id in 1..4 {
        store.record(Change::Line(ours(id, &lobby())));
    }
    let sessions = SavedSessions {
        sessions: vec![SavedSession {
            n: 1,
            kind: lobby(),
            unread: 0,
        }],
        active: 1,
        next_n: 2,
    };
    // Queued with the failing lines, in the same group: it is written all the same.
    store.record(Change::Sessions(sessions.clone()));
    store.flush().await;
    assert_eq!(store.write_errors(), 3);
    assert!(store.history(query(None, None, 10)).await.is_err());
    let saved: Option<i64> = sqlx::query_scalar("SELECT next_n FROM meta")
        .fetch_optional(&mut hand)
        .await
        .unwrap();
    assert_eq!(saved, Some(2));
}
