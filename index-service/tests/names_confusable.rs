//! Names are confusable-safe (issue 9, finding 7): look-alike spellings of a held name
//! collide (409) and find its holder, names with invisible or reordering characters are
//! refused (400), ordinary names in other scripts are accepted, and only keyed registrations
//! may carry a name.

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use common::names::{assert_one_winner, register_named};
use common::{assert_client_error, test_app};
use serde_json::json;

/// `name` as a query string value.
fn query(name: &str) -> String {
    name.bytes().map(|b| format!("%{b:02X}")).collect()
}

#[tokio::test]
async fn look_alike_names_collide_with_the_name_they_imitate() {
    let app = test_app().await;
    let pairs = [
        ("alice", "ALICE"),
        ("bill", "b\u{0456}ll"),                    // Cyrillic і
        ("sasha", "s\u{0430}sh\u{0430}"),           // Cyrillic а
        ("paypal", "paypa1"),                       // digit one for l
        ("Jos\u{00E9}", "Jose\u{0301}"),            // composed vs decomposed é
        ("Kelvin", "\u{212A}elvin"),                // Kelvin sign
        ("bob", "\u{FF42}\u{FF4F}\u{FF42}"),        // fullwidth
        ("stra\u{00DF}e", "STRASSE"),               // full case folding
        ("Zo\u{00EB} Smith", "zoe\u{0308}  smith"), // decomposed, case, double space
    ];
    for (i, (held, imitation)) in pairs.iter().enumerate() {
        let i = i as u16 * 2;
        let (status, holder) = register_named(&app, 4000 + i, held).await;
        assert_eq!(status, StatusCode::CREATED, "{held:?}: {holder}");
        let (status, body) = register_named(&app, 4000 + i + 1, imitation).await;
        assert_client_error(status, &body, StatusCode::CONFLICT, "looks the same");
        // Lookups match the same way.
        let (status, found) = app.get(&format!("/peers?name={}", query(imitation))).await;
        assert_eq!(status, StatusCode::OK, "{imitation:?}: {found}");
        assert_eq!(found["uuid"], holder["uuid"], "{imitation:?}");
    }
    // Different names stay different.
    for name in ["alicia", "Jose", "paypal2"] {
        let (status, body) = register_named(&app, 4100, name).await;
        assert_eq!(status, StatusCode::CREATED, "{name:?}: {body}");
    }
}

#[tokio::test]
async fn invisible_and_blank_names_are_refused_with_400() {
    let app = test_app().await;
    for bad in [
        "al\u{200B}ice", // zero-width space
        "al\u{200D}ice", // zero-width joiner
        "\u{FEFF}alice", // BOM
        "alice\u{202E}", // right-to-left override
        "\u{2066}alice", // left-to-right isolate
        "alice\u{200E}", // left-to-right mark
        "ali\u{061C}ce", // Arabic letter mark
        "ali\u{00AD}ce", // soft hyphen
        "ali\u{034F}ce", // combining grapheme joiner
        "alice\u{FE0F}", // variation selector
        "\u{3164}",      // Hangul filler
        "ali\u{E0063}e", // tag character
        "a\u{0007}b",    // control
        "a\u{00A0}b",    // no-break space
        "a\u{2028}b",    // line separator
        " alice",
        "alice ",
        "   ",
    ] {
        let (status, body) = register_named(&app, 4001, bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}: {body}");
        assert!(body["error"].as_str().unwrap().contains("name"), "{body}");
        // No record can hold it, so a lookup finds nothing.
        let (status, body) = app.get(&format!("/peers?name={}", query(bad))).await;
        assert_client_error(
            status,
            &body,
            StatusCode::NOT_FOUND,
            "no peer can be called",
        );
    }
}

#[tokio::test]
async fn names_in_other_scripts_are_accepted_as_given() {
    let app = test_app().await;
    for (i, name) in [
        "Zo\u{00EB} Smith",
        "\u{0414}\u{043C}\u{0438}\u{0442}\u{0440}\u{0438}\u{0439}", // Дмитрий
        "\u{674E}\u{96F7}",                                         // 李雷
        "\u{0645}\u{062D}\u{0645}\u{062F}",                         // محمد
        "\u{1F08}\u{03BB}\u{03AD}\u{03BE}\u{03B1}\u{03BD}\u{03B4}\u{03C1}\u{03BF}\u{03C2}",
        "O'Brien-Smith",
    ]
    .into_iter()
    .enumerate()
    {
        let (status, body) = register_named(&app, 4000 + i as u16, name).await;
        assert_eq!(status, StatusCode::CREATED, "{name:?}: {body}");
        assert_eq!(body["name"], name);
        let (status, found) = app.get(&format!("/peers?name={}", query(name))).await;
        assert_eq!(status, StatusCode::OK, "{name:?}");
        assert_eq!(found["uuid"], body["uuid"]);
    }
    // Stored in NFC: a decomposed é comes back composed.
    let (status, body) = register_named(&app, 4050, "Rene\u{0301}").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["name"], "Ren\u{00E9}");
}

#[tokio::test]
async fn a_name_needs_a_keyed_registration() {
    let app = test_app().await;
    let (status, body) = app
        .register(json!({ "udp_port": 4000, "name": "alice" }).to_string())
        .await;
    assert_client_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "names need a keyed registration",
    );
    assert!(body["error"].as_str().unwrap().contains("public_key"));
    let (status, _) = app.get("/peers?name=alice").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was stored");
    // Without a name, keyless registration works as before.
    let (status, body) = app.register(json!({ "udp_port": 4000 }).to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_look_alikes_have_one_winner() {
    let app = Arc::new(test_app().await);
    let spellings = ["alice", "\u{0430}lice", "ALICE", "\u{FF41}lice"];
    let claims = (0..16u16)
        .map(|i| (4000 + i, spellings[usize::from(i) % spellings.len()]))
        .collect();
    assert_one_winner(&app, claims).await;
}
