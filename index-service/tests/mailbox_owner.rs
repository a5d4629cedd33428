//! The owner's side: only the owner of a live record takes its letters (oldest first, in
//! pages) and deletes them; a signed take is accepted once; blocking a sender refuses its
//! deposits and deletes its waiting letters, at most 1000 senders per mailbox.

mod common;

use axum::http::StatusCode;
use common::mailbox::{alice, bob, carol, deposit, ids, metric, signed, stored, take};
use common::{assert_client_error, owner_request, signature_header, test_app, unix_now};
use serde_json::Value;

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
        // The query is signed too: bob's signature over the bare path deletes nothing.
        (
            "DELETE",
            format!("{path}?through=9"),
            Some(signature_header(&bob, "DELETE", &path, b"", now)),
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
        sqlx::query("INSERT INTO mailbox_blocks (recipient, sender) VALUES ($1, $2)")
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
