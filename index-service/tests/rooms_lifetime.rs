//! Room members vanish with their records: at once when a record is deleted or expires, and
//! from the database when the purge deletes an expired record.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::rooms::{member_uuids, signed, uuids, with_token};
use common::{
    assert_client_error, keyed_registration, owner_request, signature_header, test_app,
    test_app_with_clock, unix_now,
};
use proto::identity::{Identity, uuid_for_key};
use serde_json::json;

#[tokio::test]
async fn members_vanish_with_deleted_records() {
    let app = test_app().await;
    let (ann, ann_token) = app.register_keyless(4000).await;
    let (bea, bea_token) = app.register_keyless(4001).await;
    for (uuid, token) in [(&ann, &ann_token), (&bea, &bea_token)] {
        assert_eq!(
            with_token(&app, "PUT", "rust", uuid, token).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(
        with_token(&app, "PUT", "lobby", &ann, &ann_token)
            .await
            .status,
        StatusCode::OK
    );
    let answer = app
        .send(owner_request(
            "DELETE",
            &format!("/peers/{ann}"),
            "",
            Some(&format!("Bearer {ann_token}")),
        ))
        .await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    assert_eq!(member_uuids(&app, "rust").await, [bea.as_str()]);
    let (_, body) = app.get("/rooms").await;
    assert_eq!(body, json!({ "rooms": [{ "room": "rust", "members": 1 }] }));
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM room_members WHERE uuid = $1")
        .bind(&ann)
        .fetch_one(&app.service.state().pool)
        .await
        .unwrap();
    assert_eq!(rows, 0, "the memberships went with the record");

    // A deleted record cannot join or leave any more.
    let answer = with_token(&app, "PUT", "rust", &ann, &ann_token).await;
    assert_client_error(
        answer.status,
        &answer.body,
        StatusCode::NOT_FOUND,
        "no peer",
    );
    let answer = with_token(&app, "DELETE", "rust", &ann, &ann_token).await;
    assert_client_error(
        answer.status,
        &answer.body,
        StatusCode::NOT_FOUND,
        "no peer",
    );
}

/// What a daemon does when it quits: one signed `DELETE /peers/{uuid}` takes the record and
/// every membership with it, with no leave per room.
#[tokio::test]
async fn a_signed_delete_takes_the_record_out_of_every_room() {
    let app = test_app().await;
    let bob = Identity::from_secret([2; 32]);
    let bob_uuid = uuid_for_key(&bob.public_key()).to_string();
    assert_eq!(
        app.register_keyed(&bob, 5000, Some("bob")).await.status,
        StatusCode::CREATED
    );
    let (ann, ann_token) = app.register_keyless(4000).await;
    let now = unix_now();
    for (room, timestamp) in [("rust", now), ("lobby", now + 1)] {
        let answer = signed(&app, "PUT", room, &bob, timestamp).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    }
    assert_eq!(
        with_token(&app, "PUT", "rust", &ann, &ann_token)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.get("/rooms").await.1,
        json!({ "rooms": [{ "room": "lobby", "members": 1 }, { "room": "rust", "members": 2 }] })
    );

    // Somebody else's signature does not take bob offline.
    let path = format!("/peers/{bob_uuid}");
    let mallory = Identity::from_secret([9; 32]);
    let forged = signature_header(&mallory, "DELETE", &path, b"", now);
    let answer = app
        .send(owner_request("DELETE", &path, "", Some(&forged)))
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    assert_eq!(app.lookup(&bob_uuid).await.0, StatusCode::OK);

    let auth = signature_header(&bob, "DELETE", &path, b"", now + 2);
    let answer = app
        .send(owner_request("DELETE", &path, "", Some(&auth)))
        .await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{}", answer.body);
    assert_eq!(app.lookup(&bob_uuid).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/peers?name=bob").await.0, StatusCode::NOT_FOUND);
    assert!(member_uuids(&app, "lobby").await.is_empty());
    assert_eq!(member_uuids(&app, "rust").await, [ann.as_str()]);
    assert_eq!(
        app.get("/rooms").await.1,
        json!({ "rooms": [{ "room": "rust", "members": 1 }] })
    );

    // Registering again starts in no room.
    let again = keyed_registration(&bob, 5000, Some("bob"), now + 3);
    let (status, body) = app.register(again.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(member_uuids(&app, "lobby").await.is_empty());
    assert_eq!(member_uuids(&app, "rust").await, [ann.as_str()]);
}

#[tokio::test]
async fn members_vanish_when_their_records_expire() {
    let (app, clock) = test_app_with_clock(|c| {
        c.peer_ttl = Duration::from_secs(2);
        c.purge_interval = Some(Duration::from_secs(3600));
    })
    .await;
    let (ann, ann_token) = app.register_keyless(4000).await;
    let bob = Identity::from_secret([2; 32]);
    assert_eq!(
        app.register_keyed(&bob, 5000, None).await.status,
        StatusCode::CREATED
    );
    let bob_uuid = uuid_for_key(&bob.public_key()).to_string();
    let answer = with_token(&app, "PUT", "rust", &ann, &ann_token).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    // Members are listed in the order they joined; the manual clock stands still unless moved.
    clock.advance(Duration::from_millis(10));
    let answer = signed(&app, "PUT", "rust", &bob, unix_now()).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(uuids(&answer.body), [ann.as_str(), bob_uuid.as_str()]);

    // Expired members leave every list at once, before any purge.
    clock.advance(Duration::from_secs(3));
    assert_eq!(app.get("/rooms").await.1, json!({ "rooms": [] }));
    assert!(member_uuids(&app, "rust").await.is_empty());

    // Bob's key registering again is a new record, in no room: the old membership does not
    // come back.
    let again = keyed_registration(&bob, 5000, None, unix_now() + 1);
    let (status, body) = app.register(again.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(member_uuids(&app, "rust").await.is_empty());

    // The purge deletes the expired record, and its memberships with it.
    let state = app.service.state();
    assert!(index_service::maintenance::purge_expired(state).await >= 1);
    let count = |sql: &'static str| async move {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&state.pool)
            .await
            .unwrap()
    };
    assert_eq!(
        count("SELECT count(*) FROM peers").await,
        1,
        "only bob is left"
    );
    assert_eq!(count("SELECT count(*) FROM room_members").await, 0);
}
