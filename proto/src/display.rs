//! Making text from outside safe to print on a terminal.
//!
//! Names, message texts, room names and error strings come from peers and from the index, and
//! a terminal obeys what it prints: `ESC ] 0 ; … BEL` retitles the window, `ESC [ 2 J` clears
//! it, a bare `CR` or backspaces overwrite what was shown, and U+202E (right-to-left override)
//! makes `txt.exe` read as `exe.txt`. [`sanitize`] renders every such character visibly
//! instead: C0 controls and DEL as their Unicode control pictures (`ESC` → `␛`, `BEL` → `␇`),
//! and C1 controls, bidirectional controls, line/paragraph separators and other invisible
//! format characters as `\u{…}`. With `ESC` (and the C1 `CSI`, U+009B) visible, no escape
//! sequence can start, so the rest of a sequence is harmless text.
//!
//! A small function rather than a crate: the crates found strip ANSI sequences
//! (`strip-ansi-escapes`) but leave bidi and format characters alone, and stripping hides from
//! the reader that something was tried. This one maps each character on its own (no state),
//! never drops one (so the output is empty only for empty input), and is fuzzed
//! (`proto/fuzz`, target `display`).

use std::borrow::Cow;

/// Whether printing `c` as it is could move the cursor, change the terminal's state, reorder
/// or hide text: controls, bidi controls, line/paragraph separators and invisible format
/// characters (Unicode category Cf, and the invisible Hangul fillers).
pub fn is_unsafe(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}'
        // Soft hyphen, Arabic number signs and letter mark, Syriac abbreviation mark.
        | '\u{ad}' | '\u{600}'..='\u{605}' | '\u{61c}' | '\u{6dd}' | '\u{70f}'
        | '\u{890}'..='\u{891}' | '\u{8e2}'
        // Hangul fillers: letters that show nothing.
        | '\u{115f}' | '\u{1160}' | '\u{3164}' | '\u{ffa0}'
        // Mongolian vowel separator; zero-width space, joiners, LRM/RLM.
        | '\u{180e}' | '\u{200b}'..='\u{200f}'
        // Line and paragraph separators, bidi embeddings and overrides (LRE … RLO).
        | '\u{2028}'..='\u{202e}'
        // Word joiner, invisible operators, bidi isolates (LRI … PDI), deprecated format chars.
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206f}'
        // Byte order mark / zero-width no-break space; interlinear annotation.
        | '\u{feff}' | '\u{fff9}'..='\u{fffb}'
        // Other format characters: Kaithi, Egyptian, shorthand, musical, tags.
        | '\u{110bd}' | '\u{110cd}' | '\u{13430}'..='\u{1343f}' | '\u{1bca0}'..='\u{1bca3}'
        | '\u{1d173}'..='\u{1d17a}' | '\u{e0001}' | '\u{e0020}'..='\u{e007f}'
    )
}

/// `text` with every [`is_unsafe`] character rendered visibly: C0 controls and DEL as control
/// pictures (`␛`, `␇`, `␍`, `␈`, `␡`, …), everything else as `\u{202e}`. Borrowed when
/// nothing needed changing. Newlines are rendered too (`␊`): callers that show multi-line
/// text split it into lines first and sanitise each.
pub fn sanitize(text: &str) -> Cow<'_, str> {
    let Some(first) = text.find(is_unsafe) else {
        return Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len() + 8);
    out.push_str(&text[..first]);
    for c in text[first..].chars() {
        match c {
            '\u{0}'..='\u{1f}' => {
                out.push(char::from_u32(0x2400 + c as u32).expect("control pictures"))
            }
            '\u{7f}' => out.push('\u{2421}'),
            c if is_unsafe(c) => {
                use std::fmt::Write;
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Multi-line `text` made safe line by line, the lines joined with `\n` again (a `\r` before
/// a newline is dropped with it, any other `\r` is shown).
pub fn sanitize_lines(text: &str) -> String {
    let mut lines: Vec<&str> = text.split('\n').collect();
    let last = lines.len() - 1;
    for line in &mut lines[..last] {
        *line = line.strip_suffix('\r').unwrap_or(line);
    }
    lines
        .into_iter()
        .map(sanitize)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escapes_and_bidi_controls_become_visible() {
        assert_eq!(sanitize("alice"), Cow::Borrowed("alice"));
        assert_eq!(sanitize("\u{1b}]0;owned\u{7}\u{1b}[2J"), "␛]0;owned␇␛[2J");
        assert_eq!(sanitize("a\rb\u{8}\u{7f}"), "a␍b␈␡");
        assert_eq!(sanitize("txt\u{202e}exe"), "txt\\u{202e}exe");
        assert_eq!(sanitize("\u{9b}2J"), "\\u{9b}2J");
        assert_eq!(sanitize("a\u{200b}b\u{feff}"), "a\\u{200b}b\\u{feff}");
        assert_eq!(sanitize("日本 ✓ é"), "日本 ✓ é", "ordinary text is kept");
        assert_eq!(sanitize_lines("one\r\ntwo\n\u{1b}x\r"), "one\ntwo\n␛x␍");
    }

    proptest! {
        #[test]
        fn output_is_safe_and_never_empty(text in any::<String>()) {
            let clean = sanitize(&text);
            prop_assert!(!clean.chars().any(is_unsafe), "{clean:?}");
            prop_assert_eq!(clean.is_empty(), text.is_empty());
            prop_assert_eq!(sanitize(&clean), clean.clone(), "idempotent");
            let lines = sanitize_lines(&text);
            prop_assert!(!lines.chars().any(|c| c != '\n' && is_unsafe(c)));
            prop_assert_eq!(lines.is_empty(), text.is_empty());
        }

        #[test]
        fn controls_and_bidi_are_never_kept(
            text in proptest::collection::vec(
                prop_oneof![
                    (0u32..0x20).prop_map(|c| char::from_u32(c).unwrap()),
                    (0x7fu32..0xa0).prop_map(|c| char::from_u32(c).unwrap()),
                    (0x202au32..0x202f).prop_map(|c| char::from_u32(c).unwrap()),
                    (0x2066u32..0x206a).prop_map(|c| char::from_u32(c).unwrap()),
                    Just('\u{200e}'), Just('\u{200f}'), Just('\u{61c}'),
                    any::<char>(),
                ],
                0..64,
            ).prop_map(String::from_iter)
        ) {
            let clean = sanitize(&text);
            prop_assert!(!clean.chars().any(is_unsafe), "{clean:?}");
            prop_assert!(!clean.bytes().any(|b| b == 0x1b || b == 0x07));
        }
    }
}
