//! What the mailbox keeps, and for how long: the caps (letters and bytes per mailbox, bytes in
//! all mailboxes, letters waiting per sender) and the sender rate limit refuse without
//! storing; letters expire and are purged; acknowledged letters survive a kill -9.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::mailbox::{
    alice, bob, carol, deposit, deposit_body, ids, metric, open_text, sealed, signed, stored, take,
};
use common::{assert_client_error, signature_header, test_app_with, test_app_with_clock, unix_now};
use proto::api::mailbox::decode_sealed;
use proto::identity::Identity;
use serde_json::Value;

/// Asserts a refused deposit: its status, `Retry-After`, and what it says.
fn assert_refused_with_retry(answer: &common::Answer, status: StatusCode, mentions: &str) {
    assert_client_error(answer.status, &answer.body, status, mentions);
    let retry: u64 = answer.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
}

#[tokio::test]
async fn a_full_mailbox_refuses_without_storing() {
    let app = test_app_with(|c| c.mailbox_max_letters = 3).await;
    let (alice, bob, carol) = (alice(), bob(), carol());
    assert_eq!(
        app.register_keyed(&alice, 7000, None).await.status,
        StatusCode::CREATED
    );
    for n in 1..=3 {
        assert_eq!(
            deposit(&app, &alice, &bob, n, "x").await.status,
            StatusCode::CREATED
        );
    }
    let full = deposit(&app, &alice, &bob, 4, "x").await;
    assert_refused_with_retry(
        &full,
        StatusCode::INSUFFICIENT_STORAGE,
        "the recipient's mailbox is full",
    );
    assert_eq!(stored(&app).await, 3);
    // Another mailbox is not full.
    assert_eq!(
        deposit(&app, &alice, &carol, 5, "x").await.status,
        StatusCode::CREATED
    );
    // Once bob takes his mail there is room again.
    assert_eq!(
        app.register_keyed(&bob, 7001, None).await.status,
        StatusCode::CREATED
    );
    let path = format!("/peers/{}/mailbox?through=999", bob.uuid());
    assert_eq!(signed(&app, &bob, "DELETE", &path).await.body["deleted"], 3);
    assert_eq!(
        deposit(&app, &alice, &bob, 6, "x").await.status,
        StatusCode::CREATED
    );
    assert!(metric(&app, r#"index_mailbox_refused_total{reason="full"} 1"#).await);
}

#[tokio::test]
async fn byte_caps_refuse_without_storing() {
    let (alice, bob, carol) = (alice(), bob(), carol());
    let size = decode_sealed(&sealed(&alice, &bob, 1, "x")).unwrap().len() as u64;
    // Two letters fit in a mailbox, three in all mailboxes.
    let app = test_app_with(|c| {
        c.mailbox_max_bytes = 2 * size + size / 2;
        c.mailbox_max_total_bytes = 3 * size + size / 2;
    })
    .await;
    assert_eq!(
        app.register_keyed(&alice, 7000, None).await.status,
        StatusCode::CREATED
    );
    for n in 1..=2 {
        assert_eq!(
            deposit(&app, &alice, &bob, n, "x").await.status,
            StatusCode::CREATED
        );
    }
    let full = deposit(&app, &alice, &bob, 3, "x").await;
    assert_refused_with_retry(
        &full,
        StatusCode::INSUFFICIENT_STORAGE,
        "the recipient's mailbox is full",
    );
    assert_eq!(stored(&app).await, 2);
    assert_eq!(
        deposit(&app, &alice, &carol, 4, "x").await.status,
        StatusCode::CREATED
    );
    let total = deposit(&app, &alice, &carol, 5, "x").await;
    assert_refused_with_retry(
        &total,
        StatusCode::INSUFFICIENT_STORAGE,
        "as much as it is configured to keep",
    );
    assert_eq!(stored(&app).await, 3);
    assert!(
        metric(
            &app,
            r#"index_mailbox_refused_total{reason="total_full"} 1"#
        )
        .await
    );
}

#[tokio::test]
async fn senders_are_capped_and_rate_limited() {
    let app = test_app_with(|c| {
        c.mailbox_max_per_sender = 3;
        c.mailbox_sender_rate_per_sec = 0.001;
        c.mailbox_sender_burst = 5;
    })
    .await;
    let (alice, bob, carol) = (alice(), bob(), carol());
    assert_eq!(
        app.register_keyed(&alice, 7000, None).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        app.register_keyed(&carol, 7002, None).await.status,
        StatusCode::CREATED
    );
    // Three letters waiting, in any mailboxes, is alice's most.
    for (n, to) in [(1, &bob), (2, &carol), (3, &bob)] {
        assert_eq!(
            deposit(&app, &alice, to, n, "x").await.status,
            StatusCode::CREATED
        );
    }
    let capped = deposit(&app, &alice, &bob, 4, "x").await;
    assert_refused_with_retry(&capped, StatusCode::TOO_MANY_REQUESTS, "letters waiting");
    assert_eq!(stored(&app).await, 3);
    // Carol takes hers: alice may send one more.
    let path = format!("/peers/{}/mailbox?through=999", carol.uuid());
    assert_eq!(
        signed(&app, &carol, "DELETE", &path).await.body["deleted"],
        1
    );
    assert_eq!(
        deposit(&app, &alice, &bob, 5, "x").await.status,
        StatusCode::CREATED
    );
    // Five deposits (refused ones too) spent alice's burst: the next waits ~1000 s.
    let limited = deposit(&app, &alice, &bob, 6, "x").await;
    assert_refused_with_retry(
        &limited,
        StatusCode::TOO_MANY_REQUESTS,
        "faster than the index accepts",
    );
    assert!(
        limited.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 100
    );
    assert_eq!(stored(&app).await, 3);
    // Another sender has its own budget.
    assert_eq!(
        deposit(&app, &carol, &bob, 7, "x").await.status,
        StatusCode::CREATED
    );
    assert!(
        metric(
            &app,
            r#"index_mailbox_refused_total{reason="sender_cap"} 1"#
        )
        .await
    );
    assert!(metric(&app, r#"index_mailbox_refused_total{reason="rate"} 1"#).await);
}

#[tokio::test]
async fn letters_expire_and_are_purged() {
    let (app, clock) = test_app_with_clock(|c| c.mailbox_ttl = Duration::from_secs(3600)).await;
    let (alice, bob) = (alice(), bob());
    assert_eq!(
        app.register_keyed(&alice, 7000, None).await.status,
        StatusCode::CREATED
    );
    let first = deposit(&app, &alice, &bob, 1, "old").await;
    assert_eq!(first.status, StatusCode::CREATED);
    clock.advance(Duration::from_secs(1800));
    let second = deposit(&app, &alice, &bob, 2, "newer").await;
    assert_eq!(second.status, StatusCode::CREATED);
    assert_eq!(
        app.register_keyed(&bob, 7001, None).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        take(&app, &bob, None).await["letters"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // The first letter's hour is up: it is never answered again, and the purge deletes it.
    clock.advance(Duration::from_secs(1801));
    let mailbox = take(&app, &bob, None).await;
    assert_eq!(ids(&mailbox), vec![second.body["id"].as_i64().unwrap()]);
    assert!(metric(&app, "index_mailbox_letters 2").await);
    let state = app.service.state();
    assert_eq!(
        index_service::maintenance::purge_expired_letters(state).await,
        1
    );
    assert_eq!(stored(&app).await, 1);
    assert!(metric(&app, "index_mailbox_expired_total 1").await);
    assert!(metric(&app, "index_mailbox_letters 1").await);
    // An expired letter is not the owner's to delete any more (the purge counts it).
    clock.advance(Duration::from_secs(3600));
    let path = format!("/peers/{}/mailbox?through=999", bob.uuid());
    let answer = signed(&app, &bob, "DELETE", &path).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["deleted"], 0);
    assert_eq!(
        index_service::maintenance::purge_expired_letters(state).await,
        1
    );
    assert!(metric(&app, "index_mailbox_expired_total 2").await);
    assert!(metric(&app, "index_mailbox_bytes 0").await);
}

/// The real binary, killed with SIGKILL when dropped.
struct Index {
    child: std::process::Child,
    base: String,
}

impl Index {
    async fn start(db: &std::path::Path) -> Index {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_index-service"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--database-url", &format!("sqlite://{}", db.display())])
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let index = Index {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        common::eventually(Duration::from_secs(30), "the index to start", || {
            let ready = client.get(format!("{}/readyz", index.base)).send();
            async move {
                ready
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
                    .map(drop)
            }
        })
        .await;
        index
    }

    /// A signed request by `id`; answers the status and the JSON body.
    async fn send(&self, id: &Identity, method: &str, path: &str, body: &str) -> (u16, Value) {
        let auth = signature_header(id, method, path, body.as_bytes(), unix_now());
        let request = reqwest::Client::new()
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .header("authorization", auth)
            .header("content-type", "application/json")
            .body(body.to_owned());
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    async fn register(&self, id: &Identity, port: u16) {
        let body = common::keyed_registration(id, port, None, unix_now());
        let response = reqwest::Client::new()
            .post(format!("{}/register", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201);
    }
}

impl Drop for Index {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_letters_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("index.db");
    let (alice, bob) = (alice(), bob());
    let index = Index::start(&db).await;
    index.register(&alice, 7000).await;
    let path = format!("/peers/{}/mailbox", bob.uuid());
    let mut acked = Vec::new();
    for n in 1..=20 {
        let body = deposit_body(
            alice.uuid(),
            &sealed(&alice, &bob, n, &format!("letter {n}")),
        );
        let (status, answer) = index.send(&alice, "POST", &path, &body).await;
        assert_eq!(status, 201, "{answer}");
        acked.push(answer["id"].as_i64().unwrap());
    }
    // SIGKILL right after the last acknowledgement: no shutdown code runs.
    let mut index = index;
    index.child.kill().unwrap();
    index.child.wait().unwrap();
    drop(index);

    let index = Index::start(&db).await;
    index.register(&bob, 7001).await;
    let (status, mailbox) = index.send(&bob, "GET", &path, "").await;
    assert_eq!(status, 200, "{mailbox}");
    assert_eq!(ids(&mailbox), acked);
    let texts: Vec<String> = mailbox["letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|letter| open_text(&bob, letter))
        .collect();
    assert_eq!(
        texts,
        (1..=20).map(|n| format!("letter {n}")).collect::<Vec<_>>()
    );
}
