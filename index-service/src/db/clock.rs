//! Timestamps as the database stores them: RFC 3339 text with milliseconds in UTC
//! (`2026-11-24T12:00:00.000Z`, the format of SQLite's `strftime('%Y-%m-%dT%H:%M:%fZ')`), so
//! `sqlite3` shows them readably and text order is time order. In memory they are Unix
//! milliseconds; the `time` crate converts between the two.

use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::format_description::well_known::Rfc3339;

/// The stored form: always three fraction digits and a `Z`, so every timestamp has the same
/// length and text order is time order (RFC 3339 alone allows other fractions and offsets).
static STORED: LazyLock<Vec<BorrowedFormatItem<'static>>> = LazyLock::new(|| {
    time::format_description::parse_borrowed::<2>(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z",
    )
    .expect("a valid format description")
});

/// `0000-01-01T00:00:00.000Z` and `9999-12-31T23:59:59.999Z`: the instants with a four-digit
/// year, the range SQLite's date functions cover.
const FIRST_MS: i64 = -62_167_219_200_000;
const LAST_MS: i64 = 253_402_300_799_999;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `ms` as `YYYY-MM-DDTHH:MM:SS.mmmZ`; instants outside years 0 to 9999 are clamped to them.
pub fn format_ms(ms: i64) -> String {
    let nanos = i128::from(ms.clamp(FIRST_MS, LAST_MS)) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|at| at.format(&STORED).ok())
        .expect("instants of years 0 to 9999 are representable and formattable")
}

/// Parses an RFC 3339 timestamp such as `YYYY-MM-DDTHH:MM:SS[.fff]Z` (what [`format_ms`] and
/// SQLite write), to the millisecond (finer fractions are cut off).
pub fn parse_ms(text: &str) -> Option<i64> {
    let at = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    i64::try_from(at.unix_timestamp_nanos().div_euclid(1_000_000)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use sqlx::Connection;

    #[test]
    fn known_instants() {
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(format_ms(1_795_000_000_007), "2026-11-18T11:06:40.007Z");
        assert_eq!(format_ms(FIRST_MS - 1), "0000-01-01T00:00:00.000Z");
        assert_eq!(format_ms(i64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(parse_ms("2000-02-29T00:00:00.123Z"), Some(951_782_400_123));
        assert_eq!(parse_ms("2000-02-29T00:00:00Z"), Some(951_782_400_000));
        assert_eq!(parse_ms("2000-02-29T00:00:00.1Z"), Some(951_782_400_100));
        assert_eq!(parse_ms("1969-12-31T23:59:59.9999Z"), Some(-1));
        for bad in [
            "",
            "2000-02-29",
            "2000-02-29T00:00:00",
            "2000-13-01T00:00:00Z",
            "2000-02-29T00:00:00.Z",
            "x000-02-29T00:00:00Z",
        ] {
            assert_eq!(parse_ms(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn round_trips(ms in FIRST_MS..=LAST_MS) {
            let text = format_ms(ms);
            prop_assert_eq!(text.len(), 24);
            prop_assert_eq!(parse_ms(&text), Some(ms));
        }

        #[test]
        fn text_order_is_time_order(a in FIRST_MS..=LAST_MS, b in FIRST_MS..=LAST_MS) {
            prop_assert_eq!(format_ms(a).cmp(&format_ms(b)), a.cmp(&b));
        }
    }

    /// The text is byte for byte what SQLite's `strftime` writes for the same instant, so rows
    /// written before (by SQL) and after (by the index) compare as times.
    #[tokio::test]
    async fn writes_what_sqlite_writes() {
        let mut db = sqlx::SqliteConnection::connect("sqlite::memory:")
            .await
            .unwrap();
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        for _ in 0..2_000 {
            let ms = (FIRST_MS..=LAST_MS)
                .new_tree(&mut runner)
                .unwrap()
                .current();
            let sqlite: String =
                sqlx::query_scalar("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', ?1, 'unixepoch')")
                    .bind(ms as f64 / 1000.0)
                    .fetch_one(&mut db)
                    .await
                    .unwrap();
            assert_eq!(format_ms(ms), sqlite, "{ms}");
        }
    }
}
