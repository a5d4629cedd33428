use super::*;

#[test]
fn claims_show_with_the_uuid_and_everything_from_outside_is_clean() {
    let peer = Uuid::from_u128(0x3f2a);
    let message = |name: Option<&str>, claimed: Option<&str>| UiEvent::Message {
        from: peer,
        name: name.map(str::to_owned),
        claimed_name: claimed.map(str::to_owned),
        text: "hi\u{1b}[2J\nsecond\u{202e}".into(),
        room: Some("lo\u{7}bby".into()),
        session: None,
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

#[test]
fn json_escapes_controls_and_keeps_lines_whole() {
    let event = UiEvent::Message {
        from: Uuid::from_u128(1),
        name: None,
        claimed_name: Some("\u{1b}]0;x\u{7}".into()),
        text: "a\u{2028}b\u{2029}c\u{202e}\r\n\u{1b}[2J".into(),
        room: None,
        session: None,
    };
    let line = serde_json::to_string(&event).unwrap();
    assert!(
        !line.bytes().any(|b| b < 0x20),
        "every C0 control (ESC, BEL, CR, LF) is escaped: {line}"
    );
    // U+2028/2029 stay raw, which JSON allows; a reader splitting on '\n' and parsing each
    // line gets the text back exactly.
    let back: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    assert_eq!(back["text"], "a\u{2028}b\u{2029}c\u{202e}\r\n\u{1b}[2J");
}
