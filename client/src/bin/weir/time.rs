//! Times on the command line: milliseconds since the Unix epoch, or simple
//! RFC 3339 (`2025-11-28`, `2025-11-28T10:15:00Z`,
//! `2025-11-28T10:15:00.250+01:00`), and back to RFC 3339 (UTC) for
//! printing. No time-zone database: only `Z` and numeric offsets.

/// Milliseconds since the Unix epoch, from `ms` digits or RFC 3339.
pub fn parse_time(s: &str) -> Result<u64, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse()
            .map_err(|_| format!("`{s}` is too large for a timestamp in ms"));
    }
    parse_rfc3339(s).ok_or_else(|| {
        format!(
            "`{s}` is not a time: give milliseconds since the Unix epoch or RFC 3339 \
             (`2025-11-28`, `2025-11-28T10:15:00Z`, `2025-11-28T10:15:00+01:00`)"
        )
    })
}

fn parse_rfc3339(s: &str) -> Option<u64> {
    let bytes = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = s.get(from..from + len)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    if bytes.get(4) != Some(&b'-') || bytes.get(7) != Some(&b'-') {
        return None;
    }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let mut millis_of_day = 0i64;
    let mut offset_minutes = 0i64;
    if s.len() > 10 {
        if !matches!(bytes[10], b'T' | b't' | b' ') {
            return None;
        }
        let (hour, minute) = (num(11, 2)?, num(14, 2)?);
        if bytes.get(13) != Some(&b':') || hour > 23 || minute > 59 {
            return None;
        }
        let mut at = 16;
        let mut second = 0;
        if bytes.get(at) == Some(&b':') {
            second = num(17, 2)?;
            if second > 60 {
                return None;
            }
            at = 19;
        }
        let mut millis = 0i64;
        if bytes.get(at) == Some(&b'.') {
            let digits = s[at + 1..].bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return None;
            }
            let fraction = &s[at + 1..at + 1 + digits];
            let padded: String = fraction.chars().chain("000".chars()).take(3).collect();
            millis = padded.parse().ok()?;
            at += 1 + digits;
        }
        match s.get(at..)? {
            "Z" | "z" => {}
            zone if zone.len() == 6 && matches!(zone.as_bytes()[0], b'+' | b'-') => {
                let (h, m) = (num(at + 1, 2)?, num(at + 4, 2)?);
                if zone.as_bytes()[3] != b':' || h > 23 || m > 59 {
                    return None;
                }
                let sign = if zone.starts_with('-') { -1 } else { 1 };
                offset_minutes = sign * (h * 60 + m);
            }
            _ => return None,
        }
        millis_of_day = ((hour * 60 + minute) * 60 + second) * 1000 + millis;
    }
    let days = days_from_civil(year, month, day);
    let ms = days * 86_400_000 + millis_of_day - offset_minutes * 60_000;
    u64::try_from(ms).ok()
}

/// `ms` since the Unix epoch as RFC 3339 in UTC, to the millisecond.
pub fn format_time(ms: u64) -> String {
    let ms = i64::try_from(ms).unwrap_or(i64::MAX);
    let (days, rest) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (year, month, day) = civil_from_days(days);
    let (h, m, s, milli) = (
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000,
    );
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
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

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (H. Hinnant).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_and_rfc3339_parse() {
        assert_eq!(parse_time("1764300000000"), Ok(1_764_300_000_000));
        assert_eq!(parse_time("1970-01-01"), Ok(0));
        assert_eq!(parse_time("1970-01-01T00:00:01Z"), Ok(1000));
        assert_eq!(parse_time("1970-01-01T00:00:01.5Z"), Ok(1500));
        assert_eq!(parse_time("1970-01-01T01:00:00+01:00"), Ok(0));
        assert_eq!(parse_time("1970-01-01T00:00:00-00:30"), Ok(1_800_000));
        assert_eq!(parse_time("1970-01-01T00:01Z"), Ok(60_000));
        assert_eq!(parse_time("2025-11-28T03:20:00Z"), Ok(1_764_300_000_000));
        assert_eq!(parse_time("2024-02-29"), Ok(1_709_164_800_000));
        for bad in [
            "",
            "yesterday",
            "2023-02-29",
            "2025-13-01",
            "2025-11-28T25:00:00Z",
            "2025-11-28T10:00:00",
            "2025-11-28T10:00:00+0100",
            "1969-12-31",
            "-5",
        ] {
            assert!(parse_time(bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn times_print_as_utc_rfc3339_and_round_trip() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_time(1_764_300_000_123), "2025-11-28T03:20:00.123Z");
        for ms in [0, 951_782_400_000, 1_709_164_800_000, 4_102_444_800_999] {
            assert_eq!(parse_time(&format_time(ms)), Ok(ms));
        }
    }
}
