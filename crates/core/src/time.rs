//! Instants as microseconds since the Unix epoch, and the clock that makes them.
//!
//! Everything that depends on "now" (timestamps, TTLs, schedules) asks a
//! [`Clock`], so tests can drive a day through in milliseconds.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A UTC instant with microsecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_micros(micros: i64) -> Self {
        Self(micros)
    }

    pub const fn as_micros(self) -> i64 {
        self.0
    }

    pub const fn as_millis(self) -> i64 {
        self.0.div_euclid(1000)
    }

    #[must_use]
    pub fn saturating_add(self, duration: Duration) -> Self {
        let micros = i64::try_from(duration.as_micros()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(micros))
    }

    #[must_use]
    pub fn saturating_sub(self, duration: Duration) -> Self {
        let micros = i64::try_from(duration.as_micros()).unwrap_or(i64::MAX);
        Self(self.0.saturating_sub(micros))
    }

    /// RFC 3339 in UTC with six fractional digits and an explicit `+00:00`
    /// offset, the form the API promises: `2026-11-22T10:00:00.123456+00:00`.
    pub fn to_rfc3339(self) -> String {
        self.to_string()
    }

    /// RFC 3339 in UTC to the millisecond, as event timestamps are:
    /// `2026-11-22T10:00:00.123+00:00`.
    pub fn to_rfc3339_millis(self) -> String {
        let mut buf = [0u8; 32];
        if let Some(text) = self.rfc3339_millis_into(&mut buf) {
            return text.to_owned();
        }
        let full = self.to_string();
        // `…SS.uuuuuu+00:00`: keep three of the six fractional digits.
        format!("{}{}", &full[..full.len() - 9], &full[full.len() - 6..])
    }

    /// [`Timestamp::to_rfc3339_millis`] written into `buf`, for years 0 to
    /// 9999 (every webhook event carries one).
    pub(crate) fn rfc3339_millis_into(self, buf: &mut [u8; 32]) -> Option<&str> {
        self.rfc3339_into(buf)?;
        // `…SS.uuu` then `+00:00` moved over the last three digits.
        buf.copy_within(26..32, 23);
        std::str::from_utf8(&buf[..29]).ok()
    }

    /// Parses an RFC 3339 date-time (any offset, optional fraction up to
    /// nanoseconds, which are truncated to microseconds).
    pub fn parse_rfc3339(raw: &str) -> Option<Self> {
        let b = raw.as_bytes();
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
            return None;
        }
        if b[13] != b':' || b[16] != b':' {
            return None;
        }
        // Digits only: `str::parse` would also take a sign (`+1`, `-1`).
        let digits = |s: &str| -> Option<i64> {
            if !s.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        };
        let num = |range: std::ops::Range<usize>| digits(raw.get(range)?);
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 60
        {
            return None;
        }
        let mut rest = &raw[19..];
        let mut micros = 0i64;
        if let Some(frac) = rest.strip_prefix('.') {
            let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 || digits > 9 {
                return None;
            }
            let mut scaled = 0i64;
            for (i, c) in frac[..digits].bytes().enumerate() {
                if i < 6 {
                    scaled = scaled * 10 + i64::from(c - b'0');
                }
            }
            for _ in digits..6 {
                scaled *= 10;
            }
            micros = scaled;
            rest = &frac[digits..];
        }
        let offset_seconds = match rest {
            "Z" | "z" => 0,
            _ => {
                let ob = rest.as_bytes();
                if ob.len() != 6 || !matches!(ob[0], b'+' | b'-') || ob[3] != b':' {
                    return None;
                }
                let (hours, minutes) = (digits(rest.get(1..3)?)?, digits(rest.get(4..6)?)?);
                if hours > 23 || minutes > 59 {
                    return None;
                }
                let sign = if ob[0] == b'-' { -1 } else { 1 };
                sign * (hours * 3600 + minutes * 60)
            }
        };
        let days = days_from_civil(year, month, day);
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset_seconds;
        Some(Self(seconds * 1_000_000 + micros))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 32];
        match self.rfc3339_into(&mut buf) {
            Some(text) => f.write_str(text),
            None => self.write_general(f),
        }
    }
}

impl Timestamp {
    /// The same text as [`Timestamp::rfc3339_into`], for any year, through
    /// the formatting machinery.
    fn write_general(self, out: &mut impl fmt::Write) -> fmt::Result {
        let [year, month, day, hour, minute, second, micros] = self.fields();
        write!(
            out,
            "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{micros:06}+00:00"
        )
    }
}

impl Timestamp {
    /// Year, month, day, hour, minute, second and microsecond, in UTC.
    fn fields(self) -> [i64; 7] {
        let seconds = self.0.div_euclid(1_000_000);
        let days = seconds.div_euclid(86_400);
        let in_day = seconds.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        [
            year,
            month,
            day,
            in_day / 3600,
            (in_day / 60) % 60,
            in_day % 60,
            self.0.rem_euclid(1_000_000),
        ]
    }

    /// The [`Display`](fmt::Display) form written digit by digit into
    /// `buf`, for years 0 to 9999 (every answer carries two or three
    /// timestamps, and the formatting machinery costs more than the data).
    pub(crate) fn rfc3339_into(self, buf: &mut [u8; 32]) -> Option<&str> {
        let [year, month, day, hour, minute, second, micros] = self.fields();
        if !(0..=9999).contains(&year) {
            return None;
        }
        let mut put = |at: usize, value: i64, digits: usize| {
            let mut value = value;
            for i in (at..at + digits).rev() {
                // `value % 10` is 0..=9: the cast cannot truncate.
                buf[i] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        put(0, year, 4);
        put(5, month, 2);
        put(8, day, 2);
        put(11, hour, 2);
        put(14, minute, 2);
        put(17, second, 2);
        put(20, micros, 6);
        for (at, byte) in [
            (4, b'-'),
            (7, b'-'),
            (10, b'T'),
            (13, b':'),
            (16, b':'),
            (19, b'.'),
        ] {
            buf[at] = byte;
        }
        buf[26..32].copy_from_slice(b"+00:00");
        std::str::from_utf8(&buf[..]).ok()
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 32];
        match self.rfc3339_into(&mut buf) {
            Some(text) => serializer.serialize_str(text),
            // Years outside 0..=9999: the general formatting.
            None => serializer.collect_str(self),
        }
    }
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's days-from-civil algorithm (proleptic Gregorian calendar).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Where "now" comes from.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Timestamp(i64::try_from(since_epoch.as_micros()).unwrap_or(i64::MAX))
    }
}

/// A clock that only moves when told to; for tests that drive TTLs.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        Self(AtomicI64::new(start.as_micros()))
    }

    pub fn advance(&self, by: Duration) {
        let micros = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.0.fetch_add(micros, Ordering::SeqCst);
    }

    pub fn set(&self, to: Timestamp) {
        self.0.store(to.as_micros(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn formats_with_microseconds_and_explicit_offset() {
        let ts = Timestamp::from_micros(1_795_773_600_123_456);
        assert_eq!(ts.to_rfc3339(), "2026-11-27T10:00:00.123456+00:00");
        assert_eq!(
            Timestamp::from_micros(0).to_rfc3339(),
            "1970-01-01T00:00:00.000000+00:00"
        );
    }

    #[test]
    fn parses_offsets_and_fractions() {
        let ts = Timestamp::parse_rfc3339("2026-11-27T12:00:00.123456789+02:00");
        assert_eq!(ts, Some(Timestamp::from_micros(1_795_773_600_123_456)));
        assert_eq!(
            Timestamp::parse_rfc3339("1970-01-01T00:00:01Z"),
            Some(Timestamp::from_micros(1_000_000))
        );
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-01-01",
            "2026-01-01T00:00:00",
            "2026-01-01T00:00:00++1:00",
            "2026-01-01T00:00:00+-1:00",
            "2026-01-01T00:00:00-+1:00",
            "2026-01-01T00:00:00+01:+1",
            "2026-01-01T00:00:00+24:00",
        ] {
            assert_eq!(Timestamp::parse_rfc3339(bad), None, "{bad}");
        }
    }

    proptest! {
        /// Request input (`since` of a recovery) reaches the parser: any
        /// text is refused or read, never a panic.
        #[test]
        fn parsing_any_text_never_panics(text in "\\PC{0,40}", prefix in "20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9]") {
            let _ = Timestamp::parse_rfc3339(&text);
            let _ = Timestamp::parse_rfc3339(&format!("{prefix}{text}"));
        }

        /// To the millisecond: the general text with three of its six
        /// fractional digits, whichever way it is written.
        #[test]
        fn the_millisecond_form_cuts_the_general_text(
            any_time in any::<i64>(),
            years_0_to_9999 in -62_167_219_200_000_000i64..253_402_300_800_000_000,
        ) {
            for micros in [any_time, years_0_to_9999] {
                let full = Timestamp::from_micros(micros).to_string();
                let (head, tail) = full.split_at(full.len() - 6);
                prop_assert_eq!(
                    Timestamp::from_micros(micros).to_rfc3339_millis(),
                    format!("{}{tail}", &head[..head.len() - 3])
                );
            }
        }

        /// The digit-by-digit form is the general one, and both the
        /// displayed and the serialized text are it.
        #[test]
        fn every_form_writes_the_general_text(
            any_time in any::<i64>(),
            years_0_to_9999 in -62_167_219_200_000_000i64..253_402_300_800_000_000,
        ) {
            for micros in [any_time, years_0_to_9999] {
                let ts = Timestamp::from_micros(micros);
                let mut general = String::new();
                ts.write_general(&mut general).unwrap();
                prop_assert_eq!(&ts.to_string(), &general);
                prop_assert_eq!(serde_json::to_value(ts).unwrap(), serde_json::Value::String(general));
            }
        }

        #[test]
        fn formatting_then_parsing_is_the_identity(micros in -62_135_596_800_000_000i64..253_402_300_799_999_999) {
            let ts = Timestamp::from_micros(micros);
            prop_assert_eq!(Timestamp::parse_rfc3339(&ts.to_rfc3339()), Some(ts));
        }
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(Timestamp::from_micros(5));
        assert_eq!(clock.now(), Timestamp::from_micros(5));
        clock.advance(Duration::from_secs(1));
        assert_eq!(clock.now(), Timestamp::from_micros(1_000_005));
    }
}
