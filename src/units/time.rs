//! Time: the clock, RFC 3339 as logs and events print it, the times and durations users write
//! (`--since 10m`, `--time 30s`) and how long ago things happened, as Docker's tables say it.
//! The calendar is the `time` crate's.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::time::format_description::well_known::Rfc3339;
use ::time::OffsetDateTime;

/// Seconds since the epoch (0 if the clock is before it).
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Nanoseconds since the epoch (0 if the clock is before it).
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// RFC 3339 in UTC with all nine digits of nanoseconds, as Docker prints with --timestamps.
pub fn rfc3339(time_ns: u64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(time_ns))
        .expect("u64 nanoseconds end in 2554, within the time crate's years");
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond()
    )
}

/// A point in time as users write it, in ns since the epoch: Unix seconds (`1795000000.5`),
/// RFC 3339 (`2026-11-18T11:06:40Z`, `...40.5+01:00`), or a duration ago (`10m`, `1h30m`).
pub fn parse_time(text: &str, now_ns: u64) -> Result<u64, String> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<f64>() {
        if secs >= 0.0 {
            return Ok((secs * 1e9) as u64);
        }
    }
    let since_epoch = OffsetDateTime::parse(t, &Rfc3339)
        .ok()
        .and_then(|time| u64::try_from(time.unix_timestamp_nanos()).ok());
    if let Some(time) = since_epoch {
        return Ok(time);
    }
    match parse_duration(t) {
        Ok(ago) => Ok(now_ns.saturating_sub(ago.as_nanos() as u64)),
        Err(_) => Err(format!(
            "'{text}' is not a time: give Unix seconds, RFC 3339 (2026-11-18T11:06:40Z) or a duration ago (10m)"
        )),
    }
}

/// A duration such as `30s`, `1m30s`, `500ms`, `2h` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("'{text}' is not a duration such as 30s, 2m, 1h30m or 500ms");
    let t = text.trim();
    if let Ok(secs) = t.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|_| bad());
    }
    let mut total = 0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    if t.is_empty() {
        return Err(bad());
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

/// "3 seconds ago" for a time in seconds since the epoch.
pub fn ago(then: u64) -> String {
    format!("{} ago", duration(now_secs().saturating_sub(then)))
}

/// "3 seconds", "5 minutes", "2 hours", "4 days".
pub fn duration(secs: u64) -> String {
    match secs {
        0 => "Less than a second".to_string(),
        1 => "1 second".to_string(),
        2..=59 => format!("{secs} seconds"),
        60..=119 => "About a minute".to_string(),
        120..=3599 => format!("{} minutes", secs / 60),
        3600..=7199 => "About an hour".to_string(),
        7200..=86_399 => format!("{} hours", secs / 3600),
        _ => format!("{} days", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn timestamps_are_rfc3339_utc_with_nine_digits() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(1), "1970-01-01T00:00:00.000000001Z");
        assert_eq!(
            rfc3339(1_795_000_000_123_456_789),
            "2026-11-18T11:06:40.123456789Z"
        );
        assert_eq!(rfc3339(u64::MAX), "2554-07-21T23:34:33.709551615Z");
    }

    #[test]
    fn timestamps_follow_leap_years() {
        assert_eq!(rfc3339(951_782_400 * SEC), "2000-02-29T00:00:00.000000000Z");
        assert_eq!(
            rfc3339(1_709_251_199 * SEC + 999_999_999),
            "2024-02-29T23:59:59.999999999Z"
        );
        // 2100 is not a leap year: the day after 28 February is 1 March.
        assert_eq!(
            rfc3339(4_107_542_400 * SEC),
            "2100-03-01T00:00:00.000000000Z"
        );
        assert_eq!(
            rfc3339(4_107_542_400 * SEC - 1),
            "2100-02-28T23:59:59.999999999Z"
        );
    }

    #[test]
    fn times_are_parsed_from_unix_seconds_rfc3339_and_durations_ago() {
        let now = 1_795_000_000_123_456_789;
        assert_eq!(parse_time("1795000000", now), Ok(1_795_000_000 * SEC));
        assert_eq!(
            parse_time("1795000000.5", now),
            Ok(1_795_000_000 * SEC + SEC / 2)
        );
        assert_eq!(
            parse_time("2026-11-18T11:06:40.123456789Z", now),
            Ok(1_795_000_000_123_456_789)
        );
        assert_eq!(parse_time("1970-01-01T00:00:00Z", now), Ok(0));
        assert_eq!(parse_time("10m", now), Ok(now - 600 * SEC));
        assert_eq!(parse_time("1h30m", now), Ok(now - 5400 * SEC));
        assert!(parse_time("yesterday", now).is_err());
        assert!(parse_time("", now).is_err());
    }

    #[test]
    fn rfc3339_times_keep_offsets_nanoseconds_and_the_calendar() {
        let now = 0;
        let t = |text| parse_time(text, now);
        assert_eq!(t("2026-11-18T12:06:40+01:00"), Ok(1_795_000_000 * SEC));
        assert_eq!(t("2026-11-18T05:36:40-05:30"), Ok(1_795_000_000 * SEC));
        assert_eq!(t("2026-11-18t11:06:40z"), Ok(1_795_000_000 * SEC));
        assert_eq!(t("2026-11-18 11:06:40Z"), Ok(1_795_000_000 * SEC));
        assert_eq!(
            t("2026-11-18T11:06:40.5Z"),
            Ok(1_795_000_000 * SEC + SEC / 2)
        );
        // Digits past the ninth are below a nanosecond: dropped.
        assert_eq!(
            t("2026-11-18T11:06:40.1234567891Z"),
            Ok(1_795_000_000_123_456_789)
        );
        assert_eq!(t("2024-02-29T00:00:00Z"), Ok(1_709_164_800 * SEC));
        // A leap second stands for the last nanosecond before it.
        assert_eq!(t("2016-12-31T23:59:60Z"), Ok(1_483_228_800 * SEC - 1));
        // The last nanosecond a u64 holds, and past it a refusal rather than a wrap.
        assert_eq!(t("2554-07-21T23:34:33.709551615Z"), Ok(u64::MAX));
        assert!(t("2554-07-21T23:34:33.709551616Z").is_err());
        for bad in [
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2100-02-29T00:00:00Z",
            "2026-11-18T24:00:00Z",
            "2026-11-18T11:06:40+24:00",
            "2026-11-18T11:06:40",
            "1969-12-31T23:59:59Z",
        ] {
            assert!(t(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn durations_parse_with_units_and_bare_seconds() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("2.5"), Ok(Duration::from_millis(2500)));
        for bad in ["", "s", "10x", "-1", "1m-2s", "ms"] {
            assert!(parse_duration(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn durations_ago_read_like_dockers() {
        assert_eq!(duration(0), "Less than a second");
        assert_eq!(duration(1), "1 second");
        assert_eq!(duration(5), "5 seconds");
        assert_eq!(duration(60), "About a minute");
        assert_eq!(duration(600), "10 minutes");
        assert_eq!(duration(3600), "About an hour");
        assert_eq!(duration(7200), "2 hours");
        assert_eq!(duration(86_400 * 3), "3 days");
        assert!(ago(now_secs()).ends_with(" ago"));
    }
}
