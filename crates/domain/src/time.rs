//! Wall-clock instants as Unix milliseconds, formatted as RFC 3339 at the edge.

use std::time::{SystemTime, UNIX_EPOCH};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Timestamp(pub i64);

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`
pub const RFC3339_MILLIS_LEN: usize = 24;

impl Timestamp {
    pub fn now() -> Self {
        Self(Self::now_ms())
    }

    pub fn now_ms() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    pub fn plus_seconds(self, seconds: i64) -> Self {
        Self(self.0.saturating_add(seconds.saturating_mul(1000)))
    }

    /// This instant `duration` later (saturating).
    pub fn plus(self, duration: std::time::Duration) -> Self {
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(millis))
    }

    /// An RFC 3339 date-time (any offset), to the millisecond; `None` when
    /// it is not one.
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        let parsed =
            ::time::OffsetDateTime::parse(text, &::time::format_description::well_known::Rfc3339)
                .ok()?;
        i64::try_from(parsed.unix_timestamp_nanos() / 1_000_000)
            .ok()
            .map(Self)
    }

    /// `2026-11-25T17:05:19.123Z`: UTC, always three fractional digits.
    pub fn to_rfc3339(self) -> String {
        let mut buffer = [0u8; RFC3339_MILLIS_LEN];
        self.write_rfc3339(&mut buffer).to_owned()
    }

    /// Formats into `buffer` without allocating (every page of posts
    /// formats dozens of these). Years outside 0000–9999 are clamped.
    pub fn write_rfc3339(self, buffer: &mut [u8; RFC3339_MILLIS_LEN]) -> &str {
        let millis = self.0.clamp(-62_167_219_200_000, 253_402_300_799_999);
        let days = millis.div_euclid(86_400_000);
        let of_day = millis.rem_euclid(86_400_000);
        let (year, month, day) = civil_from_days(days);
        let fields = [
            (0, year / 100, 2),
            (2, year % 100, 2),
            (5, month, 2),
            (8, day, 2),
            (11, of_day / 3_600_000, 2),
            (14, of_day / 60_000 % 60, 2),
            (17, of_day / 1000 % 60, 2),
            (20, of_day % 1000, 3),
        ];
        buffer.copy_from_slice(b"0000-00-00T00:00:00.000Z");
        for (start, value, width) in fields {
            let mut value = value;
            for position in (start..start + width).rev() {
                buffer[position] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        }
        // Only ASCII digits and separators were written.
        std::str::from_utf8(buffer).unwrap_or("1970-01-01T00:00:00.000Z")
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use ::time::OffsetDateTime;
    use ::time::format_description::well_known::Rfc3339;

    use super::*;

    #[test]
    fn parses_what_it_writes_and_other_offsets() {
        let at = Timestamp(1_764_090_319_123);
        assert_eq!(Timestamp::parse_rfc3339(&at.to_rfc3339()), Some(at));
        assert_eq!(
            Timestamp::parse_rfc3339("2025-11-25T18:05:19.123+01:00"),
            Some(at)
        );
        for bad in ["", "yesterday", "2025-11-25", "2025-13-01T00:00:00Z"] {
            assert_eq!(Timestamp::parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn formats_as_rfc3339_in_utc_with_milliseconds() {
        assert_eq!(
            Timestamp(1_764_090_319_123).to_rfc3339(),
            "2025-11-25T17:05:19.123Z"
        );
        assert_eq!(Timestamp(0).to_rfc3339(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            Timestamp(951_782_400_000).to_rfc3339(),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(Timestamp(-1).to_rfc3339(), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn agrees_with_the_time_crate_across_four_centuries() {
        let mut millis: i64 = -2_208_988_800_000; // 1900
        while millis < 10_413_792_000_000 {
            // 2300
            let ours = Timestamp(millis).to_rfc3339();
            let parsed = OffsetDateTime::parse(&ours, &Rfc3339).unwrap();
            assert_eq!(
                i64::try_from(parsed.unix_timestamp_nanos() / 1_000_000).unwrap(),
                millis,
                "{ours}"
            );
            millis += 7_919_999_977; // ~92 days, odd milliseconds
        }
    }
}
