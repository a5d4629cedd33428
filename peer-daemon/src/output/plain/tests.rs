//! The plain rendering.

use super::*;

#[test]
fn claims_show_with_the_uuid_and_everything_from_outside_is_clean() {
    let peer = Uuid::from_u128(0x3f2a);
    let message = |name: Option<&str>, claimed: Option<&str>| UiEvent::Message {
        id: 0,
        action: false,
        from: peer,
        name: name.map(str::to_owned),
        claimed_name: claimed.map(str::to_owned),
        text: "hi\u{1b}[2J\nsecond\u{202e}".into(),
        room: Some("lo\u{7}bby".into()),
        session: None,
        via: None,
        sent_at_ms: None,
    };
    assert_eq!(
        message(Some("bob"), None).human().unwrap(),
        "[#lo␇bby] <bob> hi␛[2J\n    second\\u{202e}"
    );
    assert_eq!(
        message(None, Some("alice")).human().unwrap(),
        format!("[#lo␇bby] <{peer} (claims \"alice\", unverified)> hi␛[2J\n    second\\u{{202e}}")
    );
    assert_eq!(
        message(Some("mallory"), Some("al\u{1b}ice"))
            .human()
            .unwrap(),
        format!(
            "[#lo␇bby] <mallory ({peer}, claims \"al␛ice\", unverified)> hi␛[2J\n    second\\u{{202e}}"
        )
    );
    let error = UiEvent::Error {
        message: "index answered 500: \u{1b}]0;x\u{7}\nfake line".into(),
    };
    assert_eq!(
        error.human().unwrap(),
        "error: index answered 500: ␛]0;x␇␊fake line",
        "an error from outside stays on its line"
    );
}
