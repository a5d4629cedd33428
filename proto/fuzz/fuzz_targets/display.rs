//! Any text: the terminal sanitiser never lets a control, bidi or invisible format character
//! through, never returns nothing for something, and is idempotent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::display::{is_unsafe, sanitize, sanitize_lines};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let clean = sanitize(&text);
    assert!(!clean.chars().any(is_unsafe), "{clean:?}");
    assert!(!clean.bytes().any(|b| b == 0x1b || b == 0x07 || b == 0x7f || b < 0x20));
    assert_eq!(clean.is_empty(), text.is_empty());
    assert_eq!(sanitize(&clean), clean);
    let lines = sanitize_lines(&text);
    assert!(!lines.chars().any(|c| c != '\n' && is_unsafe(c)));
    assert_eq!(lines.is_empty(), text.is_empty());
});
