//! The offline mailbox: signed senders deposit sealed letters for peers that are offline (even
//! never registered), owners take them in order and delete them, block senders; caps, rate
//! limits and expiry hold, nothing readable reaches the database, and acknowledged letters
//! survive a kill -9.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::mailbox::{deposit, deposit_body, deposit_signed, ids, sealed, signed, stored, take};
use common::{
    assert_client_error, owner_request, signature_header, test_app, test_app_with,
    test_app_with_clock, unix_now,
};
use http_body_util::BodyExt;
use proto::api::mailbox::decode_sealed;
use proto::identity::{Identity, MAX_CLOCK_SKEW_SECS};
use proto::mailbox::{Content, MAX_SEALED, open};
use serde_json::Value;
use tower::ServiceExt;

fn alice() -> Identity {
    Identity::from_secret([1; 32])
}
fn bob() -> Identity {
    Identity::from_secret([2; 32])
}
fn carol() -> Identity {
    Identity::from_secret([3; 32])
}

/// The text of a letter `me` opens from a mailbox answer.
fn open_text(me: &Identity, letter: &Value) -> String {
    let sealed = decode_sealed(letter["sealed"].as_str().unwrap()).unwrap();
    assert_eq!(letter["size"].as_u64().unwrap(), sealed.len() as u64);
    let from = letter["from"].as_str().unwrap().parse().unwrap();
    let opened = open(me, from, &sealed).unwrap();
    match opened.letter.content {
        Content::Text { text, .. } => text,
        other => panic!("not a text: {other:?}"),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Whether `GET /metrics` (which refreshes the gauges) has exactly this line.
async fn metric(app: &common::TestApp, line: &str) -> bool {
    let answer = app
        .router
        .clone()
        .oneshot(owner_request("GET", "/metrics", "", None))
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let bytes = answer.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    text.lines().any(|l| l == line)
}

#[tokio::test]
async fn letters_wait_for_an_offline_recipient_and_open_only_for_it() {
    let app = test_app().await;
    let (alice, bob) = (alice(), bob());
    assert_eq!(
        app.register_keyed(&alice, 7000, None).await.status,
        StatusCode::CREATED
    );
    // Bob has never registered: his mailbox takes letters anyway.
    let texts = [
        "first secret plaintext 4fa1",
        "second secret plaintext 9c2e",
        "third secret plaintext 77d0",
    ];
    let mut deposited = Vec::new();
    for (n, text) in texts.iter().enumerate() {
        let answer = deposit(&app, &alice, &bob, n as u64 + 1, text).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        assert_eq!(answer.headers["cache-control"], "no-store");
        assert!(answer.body["expires_at"].as_str().unwrap().ends_with('Z'));
        deposited.push(answer.body["id"].as_i64().unwrap());
    }
    assert!(deposited.windows(2).all(|w| w[0] < w[1]), "{deposited:?}");
    // The 32-hex-digit form of the recipient, upper case, is the same mailbox.
    let simple = bob.uuid().simple().to_string().to_uppercase();
    let body = deposit_body(alice.uuid(), &sealed(&alice, &bob, 4, "fourth secret 1b3b"));
    let answer = deposit_signed(&app, &alice, &simple, &body, unix_now()).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    deposited.push(answer.body["id"].as_i64().unwrap());

    // Nothing the letters say is in the database file or its WAL. They are read by another
    // process: closing a descriptor of the file in this one would drop SQLite's POSIX locks.
    let dir = app.dir.path();
    let bytes = std::process::Command::new("cat")
        .arg(dir.join("index.db"))
        .arg(dir.join("index.db-wal"))
        .output()
        .unwrap()
        .stdout;
    assert!(bytes.len() > 4096, "read the database");
    for text in texts.iter().chain(["fourth secret 1b3b"].iter()) {
        assert!(
            !contains(&bytes, text.as_bytes()),
            "`{text}` is readable on disk"
        );
    }
    // What is there is the sealed bytes, as deposited (so the search above reads the data).
    let sealed_4 = decode_sealed(&sealed(&alice, &bob, 4, "fourth secret 1b3b")).unwrap();
    assert!(contains(&bytes, &sealed_4[..64]));
    let recipient: Vec<String> = sqlx::query_scalar("SELECT DISTINCT recipient FROM mailbox")
        .fetch_all(&app.service.state().pool)
        .await
        .unwrap();
    assert_eq!(recipient, vec![bob.uuid().to_string()]);

    // Bob comes online and takes his mail, oldest first; each letter opens with his key only.
    assert_eq!(
        app.register_keyed(&bob, 7001, None).await.status,
        StatusCode::CREATED
    );
    let mailbox = take(&app, &bob, None).await;
    assert_eq!(ids(&mailbox), deposited);
    assert_eq!(mailbox["more"], false);
    let letters = mailbox["letters"].as_array().unwrap();
    for (letter, text) in letters.iter().zip(texts) {
        assert_eq!(open_text(&bob, letter), text);
        assert_eq!(letter["from"], alice.uuid().to_string());
        let sealed = decode_sealed(letter["sealed"].as_str().unwrap()).unwrap();
        assert!(open(&carol(), alice.uuid(), &sealed).is_err());
    }
    assert_eq!(open_text(&bob, &letters[3]), "fourth secret 1b3b");

    // A replayed (captured) GET is refused.
    let path = format!("/peers/{}/mailbox", bob.uuid());
    let auth = signature_header(&bob, "GET", &path, b"", unix_now() - 3);
    let first = app.send(owner_request("GET", &path, "", Some(&auth))).await;
    assert_eq!(first.status, StatusCode::OK);
    let again = app.send(owner_request("GET", &path, "", Some(&auth))).await;
    assert_client_error(
        again.status,
        &again.body,
        StatusCode::UNAUTHORIZED,
        "already used",
    );

    // Deleting through the second letter leaves the rest.
    let answer = signed(
        &app,
        &bob,
        "DELETE",
        &format!("{path}?through={}", deposited[1]),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["deleted"], 2);
    assert_eq!(ids(&take(&app, &bob, None).await), deposited[2..]);
    let answer = signed(
        &app,
        &bob,
        "DELETE",
        &format!("{path}?through={}", deposited[1]),
    )
    .await;
    assert_eq!(answer.body["deleted"], 0, "already gone");
    let answer = signed(&app, &bob, "DELETE", &format!("{path}?through=999999")).await;
    assert_eq!(answer.body["deleted"], 2);
    assert_eq!(ids(&take(&app, &bob, None).await), Vec::<i64>::new());
    assert_eq!(stored(&app).await, 0);
    assert!(metric(&app, "index_mailbox_deposits_total 4").await);
    assert!(metric(&app, "index_mailbox_taken_total 4").await);
}

#[tokio::test]
async fn deposits_need_the_senders_signature() {
    let app = test_app().await;
    let (alice, bob, mallory) = (alice(), bob(), Identity::from_secret([9; 32]));
    assert_eq!(
        app.register_keyed(&alice, 7000, None).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        app.register_keyed(&mallory, 7002, None).await.status,
        StatusCode::CREATED
    );
    let (keyless, token) = app.register_keyless(7003).await;
    let recipient = bob.uuid().to_string();
    let path = format!("/peers/{recipient}/mailbox");
    let letter = sealed(&alice, &bob, 1, "hello");
    let body = deposit_body(alice.uuid(), &letter);
    let now = unix_now();
    let sign = |id: &Identity, body: &str, ts: u64| {
        signature_header(id, "POST", &path, body.as_bytes(), ts)
    };

    let keyless_body = format!(r#"{{"from": "{keyless}", "sealed": "{letter}"}}"#);
    let stranger = Identity::from_secret([5; 32]);
    let stranger_body = deposit_body(stranger.uuid(), &letter);
    let too_large = STANDARD.encode(vec![1u8; MAX_SEALED + 1]);
    let cases: Vec<(String, String, Option<String>, StatusCode, &str)> = vec![
        // The path, the body, the letter.
        (
            "/peers/not-a-uuid/mailbox".into(),
            body.clone(),
            Some(sign(&alice, &body, now)),
            StatusCode::BAD_REQUEST,
            "not a UUID",
        ),
        (
            path.clone(),
            "{not json".into(),
            Some(sign(&alice, "{not json", now)),
            StatusCode::BAD_REQUEST,
            "not valid JSON",
        ),
        (
            path.clone(),
            format!(
                r#"{{"from": "{}", "sealed": "AA==", "to": 1}}"#,
                alice.uuid()
            ),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown field",
        ),
        (
            path.clone(),
            deposit_body(alice.uuid(), "not base64!"),
            None,
            StatusCode::BAD_REQUEST,
            "base64",
        ),
        (
            path.clone(),
            deposit_body(alice.uuid(), ""),
            None,
            StatusCode::BAD_REQUEST,
            "base64",
        ),
        (
            path.clone(),
            deposit_body(alice.uuid(), &too_large),
            None,
            StatusCode::PAYLOAD_TOO_LARGE,
            "10240",
        ),
        (
            path.clone(),
            deposit_body(alice.uuid(), &"A".repeat(13_660)),
            None,
            StatusCode::PAYLOAD_TOO_LARGE,
            "10240",
        ),
        // Credentials.
        (
            path.clone(),
            body.clone(),
            None,
            StatusCode::UNAUTHORIZED,
            "signed by the sender",
        ),
        (
            path.clone(),
            body.clone(),
            Some(format!("Bearer {token}")),
            StatusCode::UNAUTHORIZED,
            "keyed sender",
        ),
        (
            path.clone(),
            body.clone(),
            Some("Signature nonsense".into()),
            StatusCode::UNAUTHORIZED,
            "Authorization",
        ),
        (
            path.clone(),
            keyless_body.clone(),
            Some(sign(&alice, &keyless_body, now)),
            StatusCode::FORBIDDEN,
            "register with a key first",
        ),
        (
            path.clone(),
            stranger_body.clone(),
            Some(sign(&stranger, &stranger_body, now)),
            StatusCode::FORBIDDEN,
            "register with a key first",
        ),
        // Mallory signs a deposit in alice's name.
        (
            path.clone(),
            body.clone(),
            Some(sign(&mallory, &body, now)),
            StatusCode::FORBIDDEN,
            "not by the key of the sender",
        ),
        (
            path.clone(),
            body.clone(),
            Some(sign(&alice, &body, now - MAX_CLOCK_SKEW_SECS - 10)),
            StatusCode::UNAUTHORIZED,
            "",
        ),
        // Signed for another recipient.
        (
            path.clone(),
            body.clone(),
            Some(signature_header(
                &alice,
                "POST",
                "/peers/00000000-0000-0000-0000-000000000001/mailbox",
                body.as_bytes(),
                now,
            )),
            StatusCode::FORBIDDEN,
            "not by the key",
        ),
    ];
    for (path, body, auth, expected, mentions) in cases {
        let answer = app
            .send(owner_request("POST", &path, &body, auth.as_deref()))
            .await;
        assert_client_error(answer.status, &answer.body, expected, mentions);
        if expected == StatusCode::UNAUTHORIZED {
            assert!(answer.headers.contains_key("www-authenticate"));
        }
    }
    assert_eq!(stored(&app).await, 0, "nothing refused was stored");

    let auth = sign(&alice, &body, now);
    let answer = app
        .send(owner_request("POST", &path, &body, Some(&auth)))
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    let replay = app
        .send(owner_request("POST", &path, &body, Some(&auth)))
        .await;
    assert_client_error(
        replay.status,
        &replay.body,
        StatusCode::UNAUTHORIZED,
        "already used",
    );
    assert_eq!(stored(&app).await, 1);
    assert!(metric(&app, r#"index_mailbox_refused_total{reason="too_large"} 2"#).await);
}

#[tokio::test]
async fn only_the_owner_reads_and_deletes_mail() {
    let app = test_app().await;
    let (alice, bob) = (alice(), bob());
    for (id, port) in [(&alice, 7000), (&bob, 7001)] {
        assert_eq!(
            app.register_keyed(id, port, None).await.status,
            StatusCode::CREATED
        );
    }
    let (_, token) = app.register_keyless(7003).await;
    let mut deposited = Vec::new();
    for n in 1..=5 {
        let answer = deposit(&app, &alice, &bob, n, &format!("letter {n}")).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        deposited.push(answer.body["id"].as_i64().unwrap());
    }
    let path = format!("/peers/{}/mailbox", bob.uuid());
    let now = unix_now();
    let refusals: Vec<(&str, String, Option<String>, StatusCode, &str)> = vec![
        (
            "GET",
            path.clone(),
            None,
            StatusCode::UNAUTHORIZED,
            "Authorization",
        ),
        (
            "DELETE",
            format!("{path}?through=9"),
            None,
            StatusCode::UNAUTHORIZED,
            "Authorization",
        ),
        (
            "GET",
            path.clone(),
            Some(signature_header(&alice, "GET", &path, b"", now)),
            StatusCode::FORBIDDEN,
            "not by this record's key",
        ),
        (
            "DELETE",
            format!("{path}?through=9"),
            Some(signature_header(&alice, "DELETE", &path, b"", now)),
            StatusCode::FORBIDDEN,
            "not by this record's key",
        ),
        (
            "GET",
            path.clone(),
            Some(format!("Bearer {token}")),
            StatusCode::FORBIDDEN,
            "keyed",
        ),
        (
            "GET",
            format!("{path}?limit=0"),
            None,
            StatusCode::BAD_REQUEST,
            "limit=0",
        ),
        (
            "GET",
            format!("{path}?limit=101"),
            None,
            StatusCode::BAD_REQUEST,
            "1 to 100",
        ),
        (
            "GET",
            format!("{path}?limit=x"),
            None,
            StatusCode::BAD_REQUEST,
            "limit=x",
        ),
        (
            "DELETE",
            path.clone(),
            None,
            StatusCode::BAD_REQUEST,
            "through",
        ),
        (
            "DELETE",
            format!("{path}?through=-1"),
            None,
            StatusCode::BAD_REQUEST,
            "through=-1",
        ),
        (
            "DELETE",
            format!("{path}?through=x"),
            None,
            StatusCode::BAD_REQUEST,
            "non-negative",
        ),
        (
            "GET",
            "/peers/nope/mailbox".into(),
            None,
            StatusCode::BAD_REQUEST,
            "not a UUID",
        ),
        // Carol never registered: her mailbox has no owner to prove.
        (
            "GET",
            format!("/peers/{}/mailbox", carol().uuid()),
            Some(signature_header(
                &carol(),
                "GET",
                &format!("/peers/{}/mailbox", carol().uuid()),
                b"",
                now,
            )),
            StatusCode::NOT_FOUND,
            "register",
        ),
    ];
    for (method, path, auth, expected, mentions) in refusals {
        let answer = app
            .send(owner_request(method, &path, "", auth.as_deref()))
            .await;
        assert_client_error(answer.status, &answer.body, expected, mentions);
    }
    assert_eq!(stored(&app).await, 5, "nothing was deleted");

    // Paging: two at a time, `more` until the last page.
    let page = take(&app, &bob, Some(2)).await;
    assert_eq!(
        (ids(&page), page["more"].clone()),
        (deposited[..2].to_vec(), Value::Bool(true))
    );
    let through = format!("{path}?through={}", deposited[1]);
    assert_eq!(
        signed(&app, &bob, "DELETE", &through).await.body["deleted"],
        2
    );
    let page = take(&app, &bob, Some(2)).await;
    assert_eq!(
        (ids(&page), page["more"].clone()),
        (deposited[2..4].to_vec(), Value::Bool(true))
    );
    let page = take(&app, &bob, Some(3)).await;
    assert_eq!(
        (ids(&page), page["more"].clone()),
        (deposited[2..].to_vec(), Value::Bool(false))
    );
    let page = take(&app, &bob, Some(100)).await;
    assert_eq!(ids(&page), deposited[2..].to_vec());
}

#[tokio::test]
async fn blocking_refuses_and_deletes_waiting_letters() {
    let app = test_app().await;
    let (alice, bob, carol) = (alice(), bob(), carol());
    for (id, port) in [(&alice, 7000), (&bob, 7001), (&carol, 7002)] {
        assert_eq!(
            app.register_keyed(id, port, None).await.status,
            StatusCode::CREATED
        );
    }
    for n in 1..=2 {
        assert_eq!(
            deposit(&app, &alice, &bob, n, "from alice").await.status,
            StatusCode::CREATED
        );
    }
    let from_carol = deposit(&app, &carol, &bob, 3, "from carol").await;
    assert_eq!(from_carol.status, StatusCode::CREATED);

    let blocked = format!("/peers/{}/blocked/{}", bob.uuid(), alice.uuid());
    let answer = signed(&app, &bob, "PUT", &blocked).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{}", answer.body);
    assert_eq!(
        ids(&take(&app, &bob, None).await),
        vec![from_carol.body["id"].as_i64().unwrap()]
    );
    let refused = deposit(&app, &alice, &bob, 4, "still there?").await;
    assert_client_error(
        refused.status,
        &refused.body,
        StatusCode::FORBIDDEN,
        "does not accept mail from you",
    );
    // Blocking again changes nothing; others still get alice's mail.
    assert_eq!(
        signed(&app, &bob, "PUT", &blocked).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        deposit(&app, &alice, &carol, 5, "hi carol").await.status,
        StatusCode::CREATED
    );
    // Only bob may change his blocks; the sender must be a UUID.
    let answer = signed(&app, &alice, "DELETE", &blocked).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    let answer = signed(
        &app,
        &bob,
        "PUT",
        &format!("/peers/{}/blocked/alice", bob.uuid()),
    )
    .await;
    assert_client_error(
        answer.status,
        &answer.body,
        StatusCode::BAD_REQUEST,
        "not a UUID",
    );
    assert_eq!(
        app.send(owner_request("PUT", &blocked, "", None))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    // Unblocked, alice's letters are accepted again (the deleted ones stay deleted).
    assert_eq!(
        signed(&app, &bob, "DELETE", &blocked).await.status,
        StatusCode::NO_CONTENT
    );
    let again = deposit(&app, &alice, &bob, 6, "again").await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.body);
    assert_eq!(
        take(&app, &bob, None).await["letters"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(metric(&app, r#"index_mailbox_refused_total{reason="blocked"} 1"#).await);
    assert!(metric(&app, "index_mailbox_taken_total 2").await);

    // At most 1000 blocked senders per mailbox.
    let pool = &app.service.state().pool;
    for n in 0..999u128 {
        sqlx::query("INSERT INTO mailbox_blocks (recipient, sender) VALUES (?1, ?2)")
            .bind(bob.uuid().to_string())
            .bind(uuid::Uuid::from_u128(n + 1).to_string())
            .execute(pool)
            .await
            .unwrap();
    }
    assert_eq!(
        signed(&app, &bob, "PUT", &blocked).await.status,
        StatusCode::NO_CONTENT
    );
    let one_more = format!("/peers/{}/blocked/{}", bob.uuid(), carol.uuid());
    let answer = signed(&app, &bob, "PUT", &one_more).await;
    assert_client_error(
        answer.status,
        &answer.body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "1000 senders",
    );
    assert_eq!(
        signed(&app, &bob, "PUT", &blocked).await.status,
        StatusCode::NO_CONTENT
    );
    let blocks: i64 = sqlx::query_scalar("SELECT count(*) FROM mailbox_blocks")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(blocks, 1000);
}

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
