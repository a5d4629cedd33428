//! Timestamps on what people read: every line starts with the local time (`HH:MM`), and a line
//! with the full date comes first whenever the day is not the one of the line before (at
//! start-up too). History lines carry the time they were sent or received; everything else is
//! stamped when it is shown. JSON output is not stamped (history lines carry `at_ms`).

use chrono::{DateTime, Local, NaiveDate, TimeZone};

/// `HH:MM` of Unix milliseconds in the local time zone.
pub fn clock_of(at_ms: i64) -> String {
    local(at_ms).format("%H:%M").to_string()
}

/// When a peer says it wrote something (its clock, so only a hint): `HH:MM` today, with the
/// date on other days.
pub fn written_at(at_ms: u64) -> String {
    let at = local(i64::try_from(at_ms).unwrap_or(i64::MAX));
    if at.date_naive() == Local::now().date_naive() {
        at.format("%H:%M").to_string()
    } else {
        at.format("%a %-d %b %H:%M").to_string()
    }
}

/// The day line for a date: `── Tuesday 1 December 2026 ──`.
pub fn day_line(date: NaiveDate) -> String {
    format!("── {} ──", date.format("%A %-d %B %Y"))
}

/// The local date of Unix milliseconds.
pub fn day_of(at_ms: i64) -> NaiveDate {
    local(at_ms).date_naive()
}

fn local(at_ms: i64) -> DateTime<Local> {
    Local
        .timestamp_millis_opt(at_ms)
        .single()
        .unwrap_or_else(Local::now)
}

/// Puts the time before each line shown, and the date when the day changes.
#[derive(Debug, Default)]
pub struct Stamper {
    last_day: Option<NaiveDate>,
}

impl Stamper {
    /// `text` as shown now: `HH:MM text` (its further lines indented to match), after a day
    /// line when today is not the day of the last line shown.
    pub fn now(&mut self, text: &str) -> String {
        self.at(Local::now().timestamp_millis(), text)
    }

    /// `text` as shown for a moment `at_ms`.
    pub fn at(&mut self, at_ms: i64, text: &str) -> String {
        let day = day_of(at_ms);
        let mut out = String::new();
        if self.last_day != Some(day) {
            out.push_str(&day_line(day));
            out.push('\n');
            self.last_day = Some(day);
        }
        out.push_str(&clock_of(at_ms));
        out.push(' ');
        out.push_str(&text.replace('\n', "\n      "));
        out
    }

    /// Text that stamped itself (a block of history lines ending on `last_day`): the next
    /// line shown now gets a day line if its day differs.
    pub fn stamped(&mut self, last_day: Option<NaiveDate>) {
        if last_day.is_some() {
            self.last_day = last_day;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_line_comes_first_and_when_the_day_changes() {
        let mut stamper = Stamper::default();
        let day = 86_400_000;
        let first = stamper.at(10 * day + 3_600_000, "hello\nworld");
        let (date, rest) = first.split_once('\n').unwrap();
        assert!(date.starts_with("── ") && date.ends_with(" ──"), "{first}");
        assert_eq!(rest.len(), "HH:MM hello\n      world".len(), "{first}");
        assert!(rest.contains(" hello\n      world"), "{first}");
        let same_day = stamper.at(10 * day + 3_660_000, "again");
        assert!(
            !same_day.contains('\n'),
            "no day line on the same day: {same_day}"
        );
        let next_day = stamper.at(11 * day + 3_600_000, "later");
        assert!(next_day.starts_with("── "), "{next_day}");
    }
}
