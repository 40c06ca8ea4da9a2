//! Parsers for the values of ingress-nginx annotations and ConfigMap keys: nginx sizes and times,
//! CIDR lists, counts. Pure functions on strings, public so the fuzz targets can call them
//! (STYLE.md §12). Each one trims surrounding whitespace, never panics, and says what was wrong.
//!
//! The range checks (no zero timeout, no absurd header size) live here too, so the annotation and
//! the ConfigMap key of the same name accept exactly the same values.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

/// Longest timeout accepted anywhere: a week. Long-lived WebSocket routes commonly use an hour or a
/// day; anything beyond a week is a typo (ms taken for s) rather than an intent.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);
/// Smallest request-head limit (`large-client-header-buffers`): below 1 KiB ordinary browsers fail.
pub const MIN_HEADER_BYTES: usize = 1024;
/// Largest request-head limit: 1 MiB. nginx keeps every buffer per connection; so does portier.
pub const MAX_HEADER_BYTES: usize = 1024 * 1024;

/// Why a value was rejected. The message quotes the value and says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidValue {
    #[error("the value is empty")]
    Empty,
    #[error("{value:?} is not a size: expected a number of bytes with an optional k, m or g suffix, such as 8m")]
    Size { value: String },
    #[error("{value:?} is not a duration: expected seconds, or nginx time units such as 500ms, 10s, 2m, 1h")]
    Duration { value: String },
    #[error("{value:?} is not a whole number")]
    Number { value: String },
    #[error("{value:?} is not \"NUMBER SIZE\", such as \"4 8k\"")]
    Buffers { value: String },
    #[error("{value:?} is not an IP address or CIDR range, such as 10.0.0.0/8 or 192.168.1.7")]
    Cidr { value: String },
    #[error("{value:?} is not a boolean")]
    Bool { value: String },
    #[error("{value:?} is out of range: {allowed}")]
    OutOfRange { value: String, allowed: String },
}

/// The result of [`parse_cidrs`]: the entries that parsed, and one error per entry that did not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CidrList {
    pub valid: Vec<IpNet>,
    pub invalid: Vec<InvalidValue>,
}

/// An nginx size (`ngx_parse_size`/`ngx_parse_offset`): a whole number of bytes with an optional
/// suffix `k`/`K` (×1024), `m`/`M` (×1024²) or `g`/`G` (×1024³). No sign, no fraction, no `mb`.
pub fn parse_size(s: &str) -> Result<u64, InvalidValue> {
    let s = s.trim();
    if s.is_empty() {
        return Err(InvalidValue::Empty);
    }
    let bad = || InvalidValue::Size { value: s.to_owned() };
    let (digits, scale) = match s.as_bytes()[s.len() - 1] {
        b'k' | b'K' => (&s[..s.len() - 1], 1u64 << 10),
        b'm' | b'M' => (&s[..s.len() - 1], 1 << 20),
        b'g' | b'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let n = parse_digits(digits).ok_or_else(bad)?;
    n.checked_mul(scale).ok_or_else(|| InvalidValue::OutOfRange {
        value: s.to_owned(),
        allowed: "the size does not fit in 64 bits".into(),
    })
}

/// `proxy-body-size`: an nginx size where `0` means unlimited (`None`), as `client_max_body_size 0`.
pub fn parse_body_size(s: &str) -> Result<Option<u64>, InvalidValue> {
    parse_size(s).map(|n| (n != 0).then_some(n))
}

/// An nginx time (`ngx_parse_time`): a plain whole number is seconds (what ingress-nginx takes),
/// otherwise one or more `NUMBER UNIT` parts with the units `ms`, `s`, `m`, `h`, `d`, optionally
/// separated by spaces: `500ms`, `10s`, `2m`, `1h 30m`. Zero is allowed here; see
/// [`parse_timeout`].
pub fn parse_duration(s: &str) -> Result<Duration, InvalidValue> {
    let s = s.trim();
    if s.is_empty() {
        return Err(InvalidValue::Empty);
    }
    let bad = || InvalidValue::Duration { value: s.to_owned() };
    let too_long = || InvalidValue::OutOfRange {
        value: s.to_owned(),
        allowed: "the duration does not fit in 64 bits of milliseconds".into(),
    };
    let mut total_ms: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let n = parse_digits(&rest[..end]).ok_or_else(bad)?;
        rest = &rest[end..];
        let unit_end = rest.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len());
        let unit_ms: u64 = match &rest[..unit_end] {
            // A bare number is seconds, but only as the whole value or the last part ("1m 30").
            "" | "s" => 1000,
            "ms" => 1,
            "m" => 60 * 1000,
            "h" => 3600 * 1000,
            "d" => 24 * 3600 * 1000,
            _ => return Err(bad()),
        };
        rest = &rest[unit_end..];
        let part = n.checked_mul(unit_ms).ok_or_else(too_long)?;
        total_ms = total_ms.checked_add(part).ok_or_else(too_long)?;
        let trimmed = rest.trim_start();
        if unit_end == 0 && !trimmed.is_empty() {
            // "10 20": a number without a unit must be the last part.
            return Err(bad());
        }
        rest = trimmed;
    }
    Ok(Duration::from_millis(total_ms))
}

/// A timeout: an nginx time between 1 ms and [`MAX_TIMEOUT`].
pub fn parse_timeout(s: &str) -> Result<Duration, InvalidValue> {
    let d = parse_duration(s)?;
    if d.is_zero() || d > MAX_TIMEOUT {
        return Err(InvalidValue::OutOfRange {
            value: s.trim().to_owned(),
            allowed: "a timeout must be more than 0 and at most 7d".into(),
        });
    }
    Ok(d)
}

/// `large-client-header-buffers` as nginx reads it: `number` buffers of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderBuffers {
    /// The whole request head: `number × size`.
    pub total: usize,
    /// One line of it (the request line or one header field): `size`.
    pub line: usize,
}

/// `large-client-header-buffers` (`"4 8k"`): the request-head limit `number × size`, between
/// [`MIN_HEADER_BYTES`] and [`MAX_HEADER_BYTES`], and the line limit `size`.
pub fn parse_header_buffers(s: &str) -> Result<HeaderBuffers, InvalidValue> {
    let s = s.trim();
    if s.is_empty() {
        return Err(InvalidValue::Empty);
    }
    let bad = || InvalidValue::Buffers { value: s.to_owned() };
    let mut parts = s.split_ascii_whitespace();
    let (Some(number), Some(size), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let number = parse_digits(number).ok_or_else(bad)?;
    let size = parse_size(size).map_err(|_| bad())?;
    let out_of_range = || InvalidValue::OutOfRange {
        value: s.to_owned(),
        allowed: "number × size must be between 1k and 1m".into(),
    };
    let total = number.checked_mul(size).ok_or_else(out_of_range)?;
    let total = usize::try_from(total).map_err(|_| out_of_range())?;
    if !(MIN_HEADER_BYTES..=MAX_HEADER_BYTES).contains(&total) || number == 0 {
        return Err(out_of_range());
    }
    let line = usize::try_from(size).map_err(|_| out_of_range())?;
    Ok(HeaderBuffers { total, line })
}

/// A whole number between `min` and `max` (inclusive).
pub fn parse_count(s: &str, min: u32, max: u32) -> Result<u32, InvalidValue> {
    let s = s.trim();
    if s.is_empty() {
        return Err(InvalidValue::Empty);
    }
    let n = parse_digits(s).ok_or_else(|| InvalidValue::Number { value: s.to_owned() })?;
    match u32::try_from(n) {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(InvalidValue::OutOfRange {
            value: s.to_owned(),
            allowed: format!("expected a whole number from {min} to {max}"),
        }),
    }
}

/// A comma-separated list of CIDR ranges or single addresses (`10.0.0.1` is `10.0.0.1/32`), as
/// `whitelist-source-range` takes it. Whitespace around entries is ignored, and so are empty
/// entries (a trailing comma). Host bits are cleared: `10.1.2.3/8` is `10.0.0.0/8`, as Go's
/// `net.ParseCIDR` reads it.
pub fn parse_cidrs(s: &str) -> CidrList {
    let mut out = CidrList::default();
    for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        match parse_cidr(entry) {
            Ok(net) => out.valid.push(net),
            Err(e) => out.invalid.push(e),
        }
    }
    out
}

/// One CIDR range or one address.
pub fn parse_cidr(s: &str) -> Result<IpNet, InvalidValue> {
    let s = s.trim();
    if s.is_empty() {
        return Err(InvalidValue::Empty);
    }
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    s.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| InvalidValue::Cidr { value: s.to_owned() })
}

/// Go's `strconv.ParseBool`, which ingress-nginx uses for boolean annotations.
pub fn parse_bool(s: &str) -> Result<bool, InvalidValue> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        other => Err(InvalidValue::Bool {
            value: other.to_owned(),
        }),
    }
}

/// Renders a size the way nginx would write it: the largest exact suffix (`8m`, `1536k`, `100`).
pub fn format_size(n: u64) -> String {
    for (scale, suffix) in [(1u64 << 30, "g"), (1 << 20, "m"), (1 << 10, "k")] {
        if n != 0 && n.is_multiple_of(scale) {
            return format!("{}{suffix}", n / scale);
        }
    }
    n.to_string()
}

/// ASCII digits only (no sign, no `_`), as nginx reads numbers.
fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let ok: &[(&str, u64)] = &[
            ("0", 0),
            ("1", 1),
            ("1024", 1024),
            ("8k", 8 << 10),
            ("8K", 8 << 10),
            ("1m", 1 << 20),
            ("100M", 100 << 20),
            ("2g", 2 << 30),
            ("2G", 2 << 30),
            (" 8m ", 8 << 20),
            ("007k", 7 << 10),
            ("17179869183g", 17179869183 << 30),
        ];
        for (input, want) in ok {
            assert_eq!(parse_size(input), Ok(*want), "{input:?}");
        }
        let bad = [
            "",
            " ",
            "m",
            "k",
            "-1",
            "+1",
            "1.5m",
            "8mb",
            "8 m",
            "1t",
            "0x10",
            "1_000",
            "１",
            "8m8",
            "18446744073709551616",
            "17179869184g",
        ];
        for input in bad {
            assert!(parse_size(input).is_err(), "{input:?} should be rejected");
        }
    }

    #[test]
    fn body_size_zero_is_unlimited() {
        assert_eq!(parse_body_size("0"), Ok(None));
        assert_eq!(parse_body_size("0m"), Ok(None));
        assert_eq!(parse_body_size("1m"), Ok(Some(1 << 20)));
        assert!(parse_body_size("lots").is_err());
    }

    #[test]
    fn durations() {
        let ok: &[(&str, u64)] = &[
            ("0", 0),
            ("60", 60_000),
            ("500ms", 500),
            ("10s", 10_000),
            ("2m", 120_000),
            ("1h", 3_600_000),
            ("1d", 86_400_000),
            ("1h30m", 5_400_000),
            ("1h 30m", 5_400_000),
            ("1m 30", 90_000),
            ("1s500ms", 1_500),
            (" 5 ", 5_000),
        ];
        for (input, want) in ok {
            assert_eq!(parse_duration(input), Ok(Duration::from_millis(*want)), "{input:?}");
        }
        let bad = [
            "",
            "s",
            "ms",
            "-1",
            "1.5s",
            "10 20",
            "10x",
            "1y",
            "1M",
            "1w",
            "5 s",
            "1h-30m",
            "∞",
            "60sec",
            "18446744073709551615d",
        ];
        for input in bad {
            assert!(parse_duration(input).is_err(), "{input:?} should be rejected");
        }
    }

    #[test]
    fn timeouts_are_bounded() {
        let cases = [
            ("1ms", true),
            ("60", true),
            ("7d", true),
            ("0", false),
            ("0s", false),
            ("7d 1ms", false),
            ("604801", false),
        ];
        for (input, ok) in cases {
            assert_eq!(parse_timeout(input).is_ok(), ok, "{input:?}");
        }
    }

    #[test]
    fn header_buffers_line_is_one_buffer() {
        let b = parse_header_buffers("4 8k").unwrap();
        assert_eq!((b.total, b.line), (32 << 10, 8 << 10));
    }

    #[test]
    fn header_buffers() {
        let cases: &[(&str, Option<usize>)] = &[
            ("4 8k", Some(32 << 10)),
            ("  2   16k ", Some(32 << 10)),
            ("1 1k", Some(1024)),
            ("128 8k", Some(1 << 20)),
            ("1 1m", Some(1 << 20)),
            ("4", None),
            ("4 8k 2", None),
            ("8k", None),
            ("0 8k", None),
            ("4 0", None),
            ("1 1023", None),
            ("129 8k", None),
            ("99999999999 99999999999g", None),
            ("four 8k", None),
            ("4 8kb", None),
            ("", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_header_buffers(input).ok().map(|b| b.total), *want, "{input:?}");
        }
    }

    #[test]
    fn counts() {
        let cases: &[(&str, Option<u32>)] = &[
            ("1", Some(1)),
            ("1000", Some(1000)),
            (" 7 ", Some(7)),
            ("0", None),
            ("1001", None),
            ("-1", None),
            ("1e3", None),
            ("4294967296", None),
            ("", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_count(input, 1, 1000).ok(), *want, "{input:?}");
        }
    }

    #[test]
    fn cidr_lists() {
        let cases: &[(&str, &[&str], usize)] = &[
            ("10.0.0.0/8", &["10.0.0.0/8"], 0),
            ("10.0.0.1", &["10.0.0.1/32"], 0),
            ("10.1.2.3/8", &["10.0.0.0/8"], 0),
            (" 10.0.0.0/8 , 192.168.0.0/16,", &["10.0.0.0/8", "192.168.0.0/16"], 0),
            ("2001:db8::/32, ::1", &["2001:db8::/32", "::1/128"], 0),
            ("10.0.0.0/33, 10.0.0.0/8", &["10.0.0.0/8"], 1),
            ("10.0.0.256, bogus, fe80::1%eth0", &[], 3),
            ("10.0.0.0/8 192.168.0.0/16", &[], 1),
            ("", &[], 0),
            (",,", &[], 0),
        ];
        for (input, valid, invalid) in cases {
            let got = parse_cidrs(input);
            let got_valid: Vec<String> = got.valid.iter().map(ToString::to_string).collect();
            assert_eq!(&got_valid, valid, "{input:?}");
            assert_eq!(got.invalid.len(), *invalid, "{input:?}: {:?}", got.invalid);
        }
    }

    #[test]
    fn bools_follow_go_parse_bool() {
        for (input, want) in [
            ("true", Some(true)),
            ("T", Some(true)),
            ("0", Some(false)),
            ("yes", None),
            ("", None),
        ] {
            assert_eq!(parse_bool(input).ok(), want, "{input:?}");
        }
    }

    #[test]
    fn sizes_format_back() {
        for (n, want) in [
            (0, "0"),
            (100, "100"),
            (1024, "1k"),
            (1536 << 10, "1536k"),
            (8 << 20, "8m"),
            (1 << 30, "1g"),
        ] {
            assert_eq!(format_size(n), want, "{n}");
            assert_eq!(parse_size(want), Ok(n), "{want}");
        }
    }
}
