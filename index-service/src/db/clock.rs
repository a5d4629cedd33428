//! Timestamps as the database stores them: RFC 3339 text with milliseconds in UTC
//! (`2026-11-24T12:00:00.000Z`, the format of SQLite's `strftime('%Y-%m-%dT%H:%M:%fZ')`), so
//! `sqlite3` shows them readably and text order is time order. In memory they are Unix
//! milliseconds; the `time` crate converts between the two.
//!
//! Every liveness decision (is a record live, how long until it expires, what to purge, when a
//! used signature may be forgotten) reads the index's [`Clock`]: the system's in production, a
//! [`ManualClock`] in tests, which move time on past a TTL instead of sleeping through it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// Where the index reads the time; cheap to clone.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The system's wall clock.
    #[default]
    System,
    /// A clock a test sets (see [`ManualClock`]).
    Manual(ManualClock),
}

impl Clock {
    /// Milliseconds since the Unix epoch, now.
    pub fn now_ms(&self) -> i64 {
        match self {
            Clock::System => system_now_ms(),
            Clock::Manual(clock) => clock.now_ms(),
        }
    }
}

/// What decides whether a record is live: the clock, and the TTL after a record's last
/// refresh. The lookup cache, the writer and the read queries share one.
#[derive(Debug, Clone)]
pub struct Liveness {
    /// Where the time comes from.
    pub clock: Clock,
    /// How long a record lives after its last refresh.
    pub ttl: Duration,
}

impl Liveness {
    /// The clock read now.
    pub fn now(&self) -> Now {
        Now::at(self.clock.now_ms(), self.ttl)
    }
}

/// A clock that stands still until told to move, shared by its clones: a test hands one to
/// the index ([`crate::Service::open_with_clock`]) and advances it past a TTL instead of
/// sleeping in real time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock showing the system's time now (so signed requests, which are checked against
    /// the system clock, stay valid while it has not moved far).
    pub fn starting_now() -> ManualClock {
        ManualClock(Arc::new(AtomicI64::new(system_now_ms())))
    }

    /// Milliseconds since the Unix epoch, as the clock shows them.
    pub fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }

    /// Moves the clock `by` forward.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(duration_ms(by), Ordering::SeqCst);
    }
}

impl From<ManualClock> for Clock {
    fn from(clock: ManualClock) -> Clock {
        Clock::Manual(clock)
    }
}

/// One reading of the clock as queries use it: the time, and the oldest `last_seen` that is
/// still live, both as stored text (so `last_seen >= live_since` compares times).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Now {
    /// Milliseconds since the Unix epoch.
    pub ms: i64,
    /// [`Now::ms`] as stored: what `registered_at`, `last_seen` and `joined_at` are set to.
    pub text: String,
    /// The oldest `last_seen` of a live record, as stored.
    pub live_since: String,
}

impl Now {
    /// `ms` for records that live `ttl` after their last refresh.
    pub fn at(ms: i64, ttl: Duration) -> Now {
        Now {
            ms,
            text: format_ms(ms),
            live_since: format_ms(ms.saturating_sub(duration_ms(ttl))),
        }
    }

    /// Whole Unix seconds, as `used_signatures.expires_at` counts them.
    pub fn unix_secs(&self) -> i64 {
        self.ms.div_euclid(1000)
    }
}

/// `duration` in milliseconds, saturating.
pub fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Milliseconds since the Unix epoch, now, by the system's clock.
fn system_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(duration_ms)
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

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let manual = ManualClock::starting_now();
        let liveness = Liveness {
            clock: manual.clone().into(),
            ttl: Duration::from_secs(60),
        };
        let start = liveness.clock.now_ms();
        assert!((start - system_now_ms()).abs() < 60_000);
        assert_eq!(liveness.clock.now_ms(), start);
        manual.advance(Duration::from_millis(7_250));
        assert_eq!(liveness.clock.now_ms(), start + 7_250);
        let now = liveness.now();
        assert_eq!(now.text, format_ms(start + 7_250));
        assert_eq!(now.live_since, format_ms(start + 7_250 - 60_000));
        assert_eq!(now.unix_secs(), (start + 7_250).div_euclid(1000));
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
