//! Parsing what people type.

use super::*;

#[test]
fn parses_room_state_commands() {
    assert_eq!(
        parse("/set deploy v1.2  on friday"),
        Ok(Command::Set {
            room: None,
            key: "deploy".into(),
            value: "v1.2  on friday".into()
        })
    );
    assert_eq!(
        parse("/get deploy"),
        Ok(Command::Get {
            room: None,
            key: "deploy".into()
        })
    );
    assert_eq!(
        parse("/unset deploy"),
        Ok(Command::Unset {
            room: None,
            key: "deploy".into()
        })
    );
    assert_eq!(parse("/state"), Ok(Command::State { room: None }));
    assert_eq!(
        parse("/state #rust"),
        Ok(Command::State {
            room: Some("rust".into())
        })
    );
    assert_eq!(parse("/topic"), Ok(Command::Topic { text: None }));
    assert_eq!(
        parse("/topic Rust, mostly"),
        Ok(Command::Topic {
            text: Some("Rust, mostly".into())
        })
    );
    for bad in [
        "/set",
        "/set key",
        "/set key   ",
        "/get",
        "/get a b",
        "/unset",
    ] {
        assert!(parse(bad).unwrap_err().starts_with("usage:"), "{bad}");
    }
}

#[test]
fn parses_commands() {
    let id = Uuid::from_u128(42);
    assert_eq!(
        parse(&format!("/msg {} hello  there ", id.simple())),
        Ok(Command::Msg {
            to: PeerRef::Id(id),
            text: "hello  there ".into()
        })
    );
    assert_eq!(
        parse("/msg alice hi"),
        Ok(Command::Msg {
            to: PeerRef::Name("alice".into()),
            text: "hi".into()
        })
    );
    assert_eq!(
        parse("/dm bob"),
        Ok(Command::Fork {
            peer: PeerRef::Name("bob".into())
        })
    );
    assert_eq!(parse("/sw 2"), Ok(Command::Switch { target: "2".into() }));
    assert_eq!(parse("/leave"), Ok(Command::Leave { room: None }));
    assert_eq!(parse("/peers"), Ok(Command::Peers));
    assert_eq!(parse("/stats"), Ok(Command::Stats));
    assert_eq!(
        parse("/me waves  at you"),
        Ok(Command::Me {
            text: "waves  at you".into()
        })
    );
    assert!(parse("/me  ").unwrap_err().contains("usage"));
    assert_eq!(
        parse("/nick carol"),
        Ok(Command::Nick {
            name: "carol".into()
        })
    );
    assert!(parse("/nick a b").unwrap_err().contains("usage"));
    assert_eq!(parse("/close"), Ok(Command::Close { target: None }));
    assert_eq!(
        parse("/close 3"),
        Ok(Command::Close {
            target: Some("3".into())
        })
    );
    assert_eq!(parse("/whoami"), Ok(Command::WhoAmI));
    assert_eq!(
        parse("/history"),
        Ok(Command::History {
            count: HISTORY_PAGE
        })
    );
    assert_eq!(parse("/history 5"), Ok(Command::History { count: 5 }));
    assert!(parse("/history 0").unwrap_err().contains("usage"));
    assert!(parse("/history lots").unwrap_err().contains("usage"));
    assert_eq!(parse("/quit\r\n"), Ok(Command::Quit));
    assert_eq!(parse("   "), Ok(Command::Nothing));
    assert_eq!(
        parse("hello"),
        Ok(Command::Say {
            text: "hello".into()
        })
    );
    assert!(parse("/msg").unwrap_err().contains("usage"));
    assert!(parse("/join a b").unwrap_err().contains("usage"));
    assert!(parse("/bogus").unwrap_err().contains("/help"));
}

#[test]
fn joins_continued_lines() {
    let mut joiner = LineJoiner::default();
    assert_eq!(joiner.push("/msg bob first\\\n"), None);
    assert!(joiner.continuing());
    assert_eq!(joiner.push("second\\"), None);
    assert_eq!(
        joiner.push("third\n").as_deref(),
        Some("/msg bob first\nsecond\nthird")
    );
    assert_eq!(
        joiner.push("a literal backslash \\\\").as_deref(),
        Some("a literal backslash \\")
    );
    assert_eq!(
        parse("/msg bob a\nb"),
        Ok(Command::Msg {
            to: PeerRef::Name("bob".into()),
            text: "a\nb".into()
        })
    );
}
