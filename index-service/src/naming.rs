//! What makes a display name acceptable, and when two names are the same name.
//!
//! A name is shown to people, so it must not hide anything and must not pass for another: it
//! may not contain control or format characters (Unicode general categories Cc, Cf), line or
//! paragraph separators, private-use or unassigned code points, default-ignorable code points
//! (zero-width characters, bidi controls such as U+202E, the BOM, variation selectors, Hangul
//! fillers…) or any space but U+0020, and it may not start or end with a space.
//!
//! Two names are one name when their [`Name::key`]s are equal. The key is
//! `skeleton(casefold(NFKC(name)))` with runs of spaces collapsed:
//! - NFKC makes composed and decomposed `é`, fullwidth `ａ` and `a`, the Kelvin sign and `K`
//!   one string;
//! - full case folding (Unicode CaseFolding.txt, via `caseless`) rather than `to_lowercase`,
//!   because lowercasing keeps `ß` apart from `SS` and turns a final `Σ` into `ς` but a medial
//!   one into `σ`, so it is not the same on both sides of a comparison;
//! - the UTS #39 confusable skeleton (via `unicode-security`, the crate rustc uses for its
//!   confusable-identifier lint) maps look-alikes across scripts onto one prototype: Cyrillic
//!   `і` and `а` onto Latin `i` and `a`, `1` onto `l`, so `paypal` and `paypa1` collide.
//!
//! The key is only compared, never shown: the record keeps the name as given, in NFC.

use caseless::default_case_fold_str;
use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Longest display name accepted, in characters (as sent, before normalisation).
pub const MAX_NAME_CHARS: usize = 64;

/// An accepted name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    /// The name as shown: as given, in NFC.
    pub display: String,
    /// What uniqueness is checked on: see the module documentation.
    pub key: String,
}

/// Why a name is refused; the text says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty or longer than [`MAX_NAME_CHARS`].
    #[error("name must be 1 to {MAX_NAME_CHARS} characters, got {0}")]
    Length(usize),
    /// Only spaces.
    #[error("name must not be blank: give at least one visible character")]
    Blank,
    /// Starts or ends with a space.
    #[error("name must not start or end with a space")]
    OuterSpace,
    /// Holds a character that is invisible, reorders text or is not a plain space.
    #[error(
        "name must not contain U+{code:04X} ({what}): names may hold letters, digits, marks, \
         punctuation, symbols and plain spaces (U+0020), nothing invisible"
    )]
    Forbidden {
        /// The code point.
        code: u32,
        /// What kind of character it is.
        what: &'static str,
    },
}

impl NameError {
    /// Whether the name is out of range (422) rather than malformed (400).
    pub fn is_length(&self) -> bool {
        matches!(self, NameError::Length(_))
    }
}

/// Checks `raw` and computes its key.
pub fn check(raw: &str) -> Result<Name, NameError> {
    let chars = raw.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS {
        return Err(NameError::Length(chars));
    }
    if let Some((c, what)) = raw.chars().find_map(|c| forbidden(c).map(|what| (c, what))) {
        return Err(NameError::Forbidden {
            code: c as u32,
            what,
        });
    }
    if raw.chars().all(|c| c == ' ') {
        return Err(NameError::Blank);
    }
    if raw.starts_with(' ') || raw.ends_with(' ') {
        return Err(NameError::OuterSpace);
    }
    let folded = default_case_fold_str(&raw.nfkc().collect::<String>());
    // NFKC turns some visible characters into sequences with spaces (U+00B4 into a space and
    // a combining accent), so spaces are collapsed after the skeleton, not only checked above.
    let skeleton: String = unicode_security::skeleton(&folded).collect();
    let key = skeleton.split_whitespace().collect::<Vec<_>>().join(" ");
    if key.is_empty() {
        return Err(NameError::Blank);
    }
    Ok(Name {
        display: raw.nfc().collect(),
        key,
    })
}

/// What `c` is, if a name may not contain it.
fn forbidden(c: char) -> Option<&'static str> {
    if c == ' ' {
        return None;
    }
    if is_bidi_control(c) {
        return Some("a bidirectional text control, which reorders what is shown");
    }
    if matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}') {
        return Some("a zero-width character");
    }
    match c.general_category() {
        GeneralCategory::Control => return Some("a control character"),
        GeneralCategory::Format => return Some("a format character, which is invisible"),
        GeneralCategory::LineSeparator | GeneralCategory::ParagraphSeparator => {
            return Some("a line or paragraph separator");
        }
        GeneralCategory::PrivateUse => return Some("a private-use character"),
        GeneralCategory::Surrogate | GeneralCategory::Unassigned => {
            return Some("a code point Unicode has not assigned");
        }
        _ => {}
    }
    if is_default_ignorable(c) {
        return Some("a default-ignorable character, which is invisible");
    }
    if c.is_whitespace() {
        return Some("a space other than U+0020");
    }
    None
}

/// U+061C, U+200E/F, U+202A–202E and U+2066–2069.
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt): code points that
/// renderers show as nothing when they do not support them. Most are Cf or Cn, caught above;
/// this also catches the combining grapheme joiner, variation selectors and Hangul fillers.
fn is_default_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> String {
        check(name).unwrap_or_else(|e| panic!("{name:?}: {e}")).key
    }

    #[test]
    fn look_alikes_share_a_key() {
        for (a, b) in [
            ("alice", "ALICE"),
            ("alice", "\u{0430}lice"),           // Cyrillic а
            ("bill", "b\u{0456}ll"),             // Cyrillic і
            ("paypal", "paypa1"),                // digit one
            ("José", "Jose\u{0301}"),            // composed vs decomposed
            ("Kate", "\u{212A}ate"),             // Kelvin sign
            ("bob", "\u{FF42}\u{FF4F}\u{FF42}"), // fullwidth
            ("strasse", "STRAẞE"),
            ("zoë smith", "Zoë  Smith"),
        ] {
            assert_eq!(key(a), key(b), "{a:?} vs {b:?}");
        }
        assert_ne!(key("alice"), key("alicia"));
        assert_ne!(key("José"), key("Jose"));
    }

    #[test]
    fn invisible_and_blank_names_are_refused() {
        for bad in [
            "al\u{200B}ice",
            "\u{FEFF}alice",
            "alice\u{202E}",
            "al\u{2066}ice",
            "a\u{034F}lice",
            "alice\u{FE0F}",
            "\u{3164}",
            "a\u{0007}b",
            "a\u{00A0}b",
            " alice",
            "alice ",
            "   ",
            "\u{E0041}x",
        ] {
            assert!(check(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(check(""), Err(NameError::Length(0)));
        assert!(check(&"x".repeat(65)).unwrap_err().is_length());
    }

    #[test]
    fn international_names_are_accepted() {
        for good in [
            "Zoë Smith",
            "Дмитрий",
            "李雷",
            "Ἀλέξανδρος",
            "محمد",
            "O'Brien-Smith",
        ] {
            let name = check(good).unwrap();
            assert_eq!(name.display, good);
        }
    }
}
