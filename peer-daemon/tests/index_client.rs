//! The daemon's index client against the real index (and against no index at all): errors
//! sorted into permanent and transient with a sentence a person can act on, bounded waits,
//! going offline, and the two TTLs read from the fields that name them.

mod common;

use std::time::{Duration, Instant};

use common::Index;
use peer_daemon::index::{IndexClient, IndexErrorKind, REQUEST_TIMEOUT};
use proto::identity::Identity;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

fn identity(seed: u8) -> Identity {
    Identity::from_secret([seed; 32])
}

#[tokio::test]
async fn a_taken_name_is_permanent_and_named() {
    let index = Index::start().await;
    let client = IndexClient::new(&index.url()).unwrap();
    let alice = client
        .register(&identity(1), 4000, Some("alice".into()), Vec::new())
        .await
        .expect("the first alice registers");
    // The owner's answer says how long the record lives, in both names.
    assert_eq!(alice.record_ttl_secs, Some(7200));
    assert_eq!(alice.ttl_secs, Some(7200));
    assert_eq!(alice.cache_ttl_secs, None);

    let error = client
        .register(&identity(2), 4001, Some("alice".into()), Vec::new())
        .await
        .expect_err("a second alice is refused");
    assert_eq!(error.kind(), IndexErrorKind::Permanent, "{error}");
    assert_eq!(error.status().map(|s| s.as_u16()), Some(409));
    let message = error.to_string();
    assert!(message.contains("`alice`"), "{message}");
    assert!(message.contains("--state-dir"), "{message}");
    assert!(!message.contains('\n'), "{message}");
    assert!(
        error.detail().contains("POST /register"),
        "{}",
        error.detail()
    );
}

#[tokio::test]
async fn an_unreachable_index_is_transient_and_said_plainly() {
    // A port that was just bound and closed again: nothing listens there.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let client = IndexClient::new(&url).unwrap();
    let started = Instant::now();
    let error = client
        .register(&identity(1), 4000, None, Vec::new())
        .await
        .expect_err("nobody answers");
    assert!(
        started.elapsed() < REQUEST_TIMEOUT,
        "a refused connection fails at once, not after a timeout: {:?}",
        started.elapsed()
    );
    assert_eq!(error.kind(), IndexErrorKind::Transient, "{error}");
    assert_eq!(error.status(), None);
    assert_eq!(
        error.to_string(),
        format!("could not register: the index at {url} is unreachable (connection refused)")
    );
    // The raw chain is kept for the debug log, not shown.
    assert!(
        error.detail().len() > error.message().len(),
        "{}",
        error.detail()
    );
}

#[tokio::test]
async fn a_silent_index_is_given_up_on_within_the_clients_bound() {
    // Accepts connections and never says a word.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = silent.accept().await {
            let mut sink = [0u8; 1024];
            let _ = stream.read(&mut sink).await;
            held.push(stream);
        }
    });
    let client = IndexClient::new(&url)
        .unwrap()
        .with_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let error = client
        .go_offline(&identity(1))
        .await
        .expect_err("no answer");
    assert!(
        started.elapsed() < REQUEST_TIMEOUT,
        "{:?}",
        started.elapsed()
    );
    assert_eq!(error.kind(), IndexErrorKind::Transient, "{error}");
    assert_eq!(
        error.to_string(),
        format!(
            "could not take our record offline at the index: the index at {url} did not \
             answer within 300 ms"
        )
    );
}

#[tokio::test]
async fn an_index_url_without_a_scheme_is_permanent() {
    let client = IndexClient::new("localhost:8081").unwrap();
    let error = client
        .register(&identity(1), 4000, None, Vec::new())
        .await
        .expect_err("not a URL we can use");
    assert_eq!(error.kind(), IndexErrorKind::Permanent, "{error}");
    let message = error.to_string();
    assert!(
        message.contains("`localhost:8081`") && message.contains("http://"),
        "{message}"
    );
}

#[tokio::test]
async fn going_offline_removes_the_record_and_its_rooms() {
    let index = Index::start().await;
    let client = IndexClient::new(&index.url()).unwrap();
    let bob = identity(3);
    let carol = identity(4);
    for (who, port) in [(&bob, 5000), (&carol, 5001)] {
        client.register(who, port, None, Vec::new()).await.unwrap();
        client.join_room(who, "lobby").await.unwrap();
    }
    let found = client
        .lookup(bob.uuid())
        .await
        .unwrap()
        .expect("bob is live");
    // A lookup says how long it may be cached, in both names and in the header.
    assert_eq!(found.max_age, Some(Duration::from_secs(300)));
    assert_eq!(found.record.cache_ttl_secs, Some(300));
    assert_eq!(found.record.record_ttl_secs, None);
    let members = client.room_members("lobby").await.unwrap();
    assert_eq!(members.len(), 2);
    assert!(members.iter().all(|m| m.cache_ttl_secs == Some(300)));

    client.go_offline(&bob).await.expect("bob goes offline");
    assert!(client.lookup(bob.uuid()).await.unwrap().is_none());
    let (status, _) = index.get_peer(&bob.uuid().to_string()).await;
    assert_eq!(status, 404);
    let members = client.room_members("lobby").await.unwrap();
    assert_eq!(
        members.iter().map(|m| m.uuid).collect::<Vec<_>>(),
        [carol.uuid()]
    );
    let rooms = client.rooms().await.unwrap();
    assert_eq!(rooms.len(), 1);
    assert_eq!((rooms[0].room.as_str(), rooms[0].members), ("lobby", 1));
    // Offline already: still fine.
    client
        .go_offline(&bob)
        .await
        .expect("an unknown record is offline");

    // Leaving a room one is no longer in is fine too; joining needs a record again.
    client.leave_room(&bob, "lobby").await.unwrap();
    let error = client
        .join_room(&bob, "lobby")
        .await
        .expect_err("no record");
    assert_eq!(error.kind(), IndexErrorKind::Permanent);
    assert!(
        error.to_string().starts_with(
            "could not join #lobby on the index: the index refused it (404 Not Found): "
        ),
        "{error}"
    );
}
