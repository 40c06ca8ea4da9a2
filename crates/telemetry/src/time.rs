//! RFC 3339 timestamps without a calendar crate: access logs need only UTC with milliseconds.

use std::time::{SystemTime, UNIX_EPOCH};

/// Formats `t` as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC). Times before 1970 print as the epoch: the
/// clock of a serving process is never there, and a log line must not fail over it.
pub fn rfc3339_millis(t: SystemTime) -> String {
    let mut out = Vec::with_capacity(24);
    write_rfc3339_millis(t, &mut out);
    // Only ASCII digits and separators were written.
    String::from_utf8(out).unwrap_or_default()
}

/// [`rfc3339_millis`] appended to `out`, digit by digit: the access log writes one per record,
/// and `format!` cost ~3,000 instructions of it (callgrind). The date and time of day of the
/// last second written are kept per thread: records come many to a second.
pub(crate) fn write_rfc3339_millis(t: SystemTime, out: &mut Vec<u8>) {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let cached = LAST_SECOND.try_with(|cell| {
        let (last, text) = &mut *cell.borrow_mut();
        if *last != Some(secs) {
            let mut fresh = Vec::with_capacity(SECOND_LEN);
            write_second(secs, &mut fresh);
            // Years past 9999 are longer; they are written without the cache.
            let Ok(fresh) = <[u8; SECOND_LEN]>::try_from(fresh.as_slice()) else {
                return false;
            };
            *text = fresh;
            *last = Some(secs);
        }
        out.extend_from_slice(text);
        true
    });
    if cached != Ok(true) {
        write_second(secs, out);
    }
    let ms = since.subsec_millis();
    let tail = [
        b'.',
        b'0' + (ms / 100) as u8,
        b'0' + (ms / 10 % 10) as u8,
        b'0' + (ms % 10) as u8,
        b'Z',
    ];
    out.extend_from_slice(&tail);
}

/// `YYYY-MM-DDTHH:MM:SS`.
const SECOND_LEN: usize = 19;

thread_local! {
    static LAST_SECOND: std::cell::RefCell<(Option<u64>, [u8; SECOND_LEN])> =
        const { std::cell::RefCell::new((None, [0; SECOND_LEN])) };
}

/// `secs` since the epoch as `YYYY-MM-DDTHH:MM:SS`.
fn write_second(secs: u64, out: &mut Vec<u8>) {
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(secs / 86_400);
    push_digits(out, y, 4);
    out.push(b'-');
    push_digits(out, m, 2);
    out.push(b'-');
    push_digits(out, d, 2);
    out.push(b'T');
    push_digits(out, rem / 3600, 2);
    out.push(b':');
    push_digits(out, (rem % 3600) / 60, 2);
    out.push(b':');
    push_digits(out, rem % 60, 2);
}

/// `v` in decimal, zero-padded to at least `width` digits.
fn push_digits(out: &mut Vec<u8>, v: u64, width: usize) {
    let mut buf = [0; 20];
    let digits = portier_core::decimal(v, &mut buf);
    for _ in digits.len()..width {
        out.push(b'0');
    }
    out.extend_from_slice(digits);
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
// Howard Hinnant's `civil_from_days` (http://howardhinnant.github.io/date_algorithms.html), for
// non-negative day counts only, which is all `rfc3339_millis` passes.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_known_instants() {
        let cases = [
            (0u64, 0u32, "1970-01-01T00:00:00.000Z"),
            (951_782_400, 5, "2000-02-29T00:00:00.005Z"), // leap day of a /400 year
            (1_709_251_199, 999, "2024-02-29T23:59:59.999Z"),
            (1_735_689_600, 120, "2025-01-01T00:00:00.120Z"),
            (4_107_542_400, 0, "2100-03-01T00:00:00.000Z"), // 2100 is not a leap year
        ];
        for (secs, millis, want) in cases {
            let t = UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(u64::from(millis));
            assert_eq!(rfc3339_millis(t), want, "{secs}s + {millis}ms");
        }
    }

    #[test]
    fn before_epoch_prints_epoch() {
        let t = UNIX_EPOCH - Duration::from_secs(10);
        assert_eq!(rfc3339_millis(t), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn the_cached_second_follows_the_clock() {
        // Same second twice (the cache), the next second, back, and a year past 9999 (no cache).
        let cases = [
            (1_735_689_600u64, 120u32, "2025-01-01T00:00:00.120Z"),
            (1_735_689_600, 999, "2025-01-01T00:00:00.999Z"),
            (1_735_689_601, 0, "2025-01-01T00:00:01.000Z"),
            (1_735_689_600, 7, "2025-01-01T00:00:00.007Z"),
            (253_402_300_800, 1, "10000-01-01T00:00:00.001Z"),
            (1_735_689_601, 50, "2025-01-01T00:00:01.050Z"),
        ];
        for (secs, millis, want) in cases {
            let t = UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(u64::from(millis));
            let mut out = b"x".to_vec();
            write_rfc3339_millis(t, &mut out);
            assert_eq!(
                String::from_utf8_lossy(&out),
                format!("x{want}"),
                "{secs}s + {millis}ms"
            );
        }
    }
}
