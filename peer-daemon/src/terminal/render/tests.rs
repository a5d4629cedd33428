use super::*;

fn renderer(colour: bool) -> Renderer {
    Renderer::new(colour, Names::default())
}

#[test]
fn a_name_keeps_its_colour_and_names_spread_over_the_palette() {
    assert_eq!(name_colour("alice"), name_colour("alice"));
    let used: std::collections::HashSet<u8> = [
        "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
    ]
    .iter()
    .map(|n| name_colour(n))
    .collect();
    assert!(
        used.len() >= 4,
        "ten names should not share two or three colours: {used:?}"
    );
    assert!(
        !NAME_COLOURS.contains(&AnsiColor::Red) && !used.contains(&31),
        "red is for errors"
    );
}

#[test]
fn styles_render_the_escapes_the_terminal_expects() {
    for name in ["alice", "bob", "carol", "dave", "erin", "frank"] {
        assert_eq!(
            paint(name_style(name), name),
            format!("\x1b[{}m{name}\x1b[0m", name_colour(name))
        );
    }
    assert_eq!(
        paint(Style::new(), "plain"),
        "plain",
        "no style, no escapes"
    );
    assert_eq!(
        styled_prompt("@bob", "@bob> ", false),
        format!("\x1b[1m\x1b[{}m@bob\x1b[0m> ", name_colour("bob"))
    );
    assert_eq!(
        styled_prompt("#lobby", "#lobby> ", false),
        "\x1b[1m#lobby\x1b[0m> "
    );
    assert_eq!(
        styled_prompt("#lobby", "      … ", true),
        "\x1b[2m      … \x1b[0m"
    );
}

#[test]
fn messages_show_coloured_names_and_indent_further_lines() {
    let bob = Uuid::from_u128(2);
    let r = renderer(true);
    let event = UiEvent::Message {
        id: 0,
        action: false,
        from: bob,
        name: Some("bob".into()),
        claimed_name: None,
        text: "hi\nthere".into(),
        room: Some("lobby".into()),
        session: None,
        via: None,
        sent_at_ms: None,
    };
    let code = name_colour("bob");
    assert_eq!(
        r.render(&event).unwrap(),
        format!("\x1b[2m[#lobby]\x1b[0m <\x1b[{code}mbob\x1b[0m> hi\n    there")
    );
    // The name learned from the message names the receipt.
    let receipt = UiEvent::Delivered {
        name: None,
        to: Some(bob),
        room: None,
        id: 0,
        rtt_ms: 1.5,
        delivered: None,
        total: None,
        via: Some("direct"),
    };
    assert_eq!(renderer_text(&r, &receipt), "✓ delivered to bob (1.50 ms)");
    let relayed = UiEvent::Delivered {
        name: None,
        to: Some(bob),
        room: None,
        id: 0,
        rtt_ms: 1.5,
        delivered: None,
        total: None,
        via: Some("relay"),
    };
    assert_eq!(
        renderer_text(&r, &relayed),
        "✓ delivered to bob (1.50 ms, relayed)"
    );
}

#[test]
fn errors_are_one_red_line_and_unknown_peers_are_short() {
    let r = renderer(true);
    let error = UiEvent::Error {
        message: "could not reach the index:\n  connection refused".into(),
    };
    assert_eq!(
        r.render(&error).unwrap(),
        "\x1b[31merror: could not reach the index: connection refused\x1b[0m"
    );
    let stranger = Uuid::from_u128(0xabcdef12_0000_0000_0000_000000000000);
    let failed = UiEvent::Failed {
        name: None,
        to: Some(stranger),
        room: None,
        id: Some(1),
        reason: "timed out".into(),
    };
    assert_eq!(
        renderer(false).render(&failed).unwrap(),
        "✗ not delivered to abcdef12: timed out"
    );
}

#[test]
fn text_from_outside_is_made_safe_before_it_is_coloured() {
    let stranger = Uuid::from_u128(0x3f2a);
    let event = UiEvent::Message {
        id: 0,
        action: false,
        from: stranger,
        name: None,
        claimed_name: Some("al\u{1b}[31mice".into()),
        text: "\u{1b}]0;owned\u{7}\u{202e}x".into(),
        room: Some("r\u{9b}2J".into()),
        session: None,
        via: None,
        sent_at_ms: None,
    };
    let plain = renderer(false).render(&event).unwrap();
    assert_eq!(
        plain,
        format!(
            "[#r\\u{{9b}}2J] <{stranger} (claims \"al␛[31mice\", unverified)> ␛]0;owned␇\\u{{202e}}x"
        )
    );
    // With colours, the only escape sequences are ours: the claim is not painted as a name.
    let coloured = renderer(true).render(&event).unwrap();
    assert_eq!(coloured.matches('\u{1b}').count(), 2, "{coloured:?}");
    let error = UiEvent::Error {
        message: "bad\u{1b}[2J\nnews".into(),
    };
    assert_eq!(
        renderer(false).render(&error).unwrap(),
        "error: bad␛[2J news"
    );
}

fn renderer_text(r: &Renderer, event: &UiEvent) -> String {
    let text = r.render(event).unwrap();
    // Strip the escape sequences to compare the words.
    let mut plain = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}
