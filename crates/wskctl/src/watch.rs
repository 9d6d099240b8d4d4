//! `--watch`: redraw a view every few seconds, in place on a terminal, with a timestamp.

use std::io::{IsTerminal, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, in UTC, as `YYYY-MM-DD HH:MM:SS UTC`.
#[must_use]
pub fn utc_now() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = i64::try_from(seconds / 86_400).unwrap_or(0);
    let (year, month, day) = civil_from_days(days);
    let second_of_day = seconds % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        second_of_day / 3600,
        (second_of_day % 3600) / 60,
        second_of_day % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Shows one frame: on a terminal the screen is cleared and the frame drawn from the top; into a
/// pipe the frames follow each other.
pub fn show(title: &str, every: Duration, body: &str) {
    let mut out = std::io::stdout().lock();
    let header = format!(
        "{title}  {}  every {}s  (Ctrl-C to stop)",
        utc_now(),
        every.as_secs()
    );
    if std::io::stdout().is_terminal() {
        let _ = write!(out, "\x1b[H\x1b[2J{header}\n\n{body}");
    } else {
        let _ = write!(out, "{header}\n{body}\n");
    }
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_are_gregorian() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(20_775), (2026, 11, 18));
        assert_eq!(super::civil_from_days(11_016), (2000, 2, 29));
    }
}
