//! Deposits: signed senders leave sealed letters for peers that are offline (even never
//! registered), which open for their recipient only; nothing readable reaches the database;
//! every check a deposit passes (path, body, letter, credentials, sender, signature) refuses
//! without storing, and a signature is accepted once.

mod common;

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::mailbox::{
    alice, bob, carol, deposit, deposit_body, deposit_signed, ids, metric, open_text, sealed,
    signed, stored, take,
};
use common::{assert_client_error, owner_request, signature_header, test_app, unix_now};
use proto::api::mailbox::decode_sealed;
use proto::identity::{Identity, MAX_CLOCK_SKEW_SECS};
use proto::mailbox::{MAX_SEALED, open};

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
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
    let on_sqlite = !common::on_postgres();
    let bytes = std::process::Command::new("cat")
        .arg(dir.join("index.db"))
        .arg(dir.join("index.db-wal"))
        .output()
        .unwrap()
        .stdout;
    // (On PostgreSQL the files are the server's: this part runs in the SQLite pass.)
    assert!(!on_sqlite || bytes.len() > 4096, "read the database");
    for text in texts.iter().chain(["fourth secret 1b3b"].iter()) {
        assert!(
            !contains(&bytes, text.as_bytes()),
            "`{text}` is readable on disk"
        );
    }
    // What is there is the sealed bytes, as deposited (so the search above reads the data).
    let sealed_4 = decode_sealed(&sealed(&alice, &bob, 4, "fourth secret 1b3b")).unwrap();
    assert!(!on_sqlite || contains(&bytes, &sealed_4[..64]));
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
