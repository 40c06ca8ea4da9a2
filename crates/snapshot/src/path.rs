//! Request path normalization, shared by route matching and forwarding, so the gateway and the
//! upstream always agree on which path a request is for (path-confusion attacks such as
//! `/public/..%2fadmin` or `/%2e%2e/admin` rely on the two disagreeing).
//!
//! What [`normalize_path`] does, in order, on the path of an origin-form request target:
//! - percent-encoding is validated; encoded unreserved characters (RFC 3986 §2.3: ALPHA DIGIT
//!   `-` `.` `_` `~`) are decoded and the hex of every other escape is upper-cased (§6.2.2.1/2);
//! - `%2F` stays encoded: an encoded slash is data inside one path element, never a separator, so
//!   `/admin%2Fx` is the single element `admin%2Fx` and does not match a `Prefix /admin` route;
//! - dot segments, including decoded ones (`%2e%2E`), are resolved (§5.2.4; `..` above the root
//!   is dropped);
//! - runs of `/` are merged into one (a trailing slash is kept).
//!
//! Refused ([`PathError`], answered with 400): a path that does not start with `/`, a raw
//! backslash (some servers treat it as a separator), a NUL byte raw or as `%00`, and a `%` that is
//! not followed by two hex digits.

use std::borrow::Cow;
use std::fmt;

/// Why a request path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// The path does not start with `/`.
    NotAbsolute,
    /// A raw `\`.
    Backslash,
    /// A NUL byte, raw or as `%00`.
    Nul,
    /// A `%` not followed by two hex digits.
    BadPercent,
}

/// Normalizes a request path (without the query) as described in the [module](self) docs.
/// Borrows when the path is already normal, which is the common case.
pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    if is_normal(bytes)? {
        return Ok(Cow::Borrowed(raw));
    }
    // Segments between literal slashes, each with its escapes normalized. The output is never
    // longer than the input: decoding shrinks, upper-casing keeps the length.
    let mut out = String::with_capacity(raw.len());
    let mut seg = String::new();
    let mut parts = raw[1..].split('/').peekable();
    // Start offsets of the kept segments in `out` (each segment is written as "/seg").
    let mut starts: Vec<usize> = Vec::new();
    let mut trailing_slash = false;
    while let Some(part) = parts.next() {
        let last = parts.peek().is_none();
        seg.clear();
        normalize_segment(part, &mut seg)?;
        match seg.as_str() {
            "" => {
                // `//` merges; an empty last segment is the trailing slash.
                trailing_slash = last;
            }
            "." => trailing_slash = last,
            ".." => {
                if let Some(start) = starts.pop() {
                    out.truncate(start);
                }
                trailing_slash = last;
            }
            s => {
                starts.push(out.len());
                out.push('/');
                out.push_str(s);
                trailing_slash = false;
            }
        }
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotAbsolute => "the request path does not start with /",
            PathError::Backslash => "the request path contains a backslash",
            PathError::Nul => "the request path contains a NUL byte",
            PathError::BadPercent => "the request path has an invalid percent-encoding",
        })
    }
}

impl std::error::Error for PathError {}

/// Whether `bytes` (starting with `/`) is already normal; validates on the way.
fn is_normal(bytes: &[u8]) -> Result<bool, PathError> {
    let mut normal = true;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => return Err(PathError::Backslash),
            0 => return Err(PathError::Nul),
            b'%' => {
                let (hi, lo, value) = percent_escape(bytes, i)?;
                if is_unreserved(value) || hi.is_ascii_lowercase() || lo.is_ascii_lowercase() {
                    normal = false;
                }
                i += 3;
                continue;
            }
            b'/' => {
                // A segment that is empty, `.` or `..` needs work.
                let rest = &bytes[i + 1..];
                let end = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
                let seg = &rest[..end];
                if (seg.is_empty() && end < rest.len()) || seg == b"." || seg == b".." {
                    normal = false;
                }
            }
            _ => {}
        }
        i += 1;
    }
    Ok(normal)
}

/// The escape `%XY` at `i`: its two hex digits as written and the byte they encode. `%00` is a
/// NUL smuggled past the raw check, refused like one.
fn percent_escape(bytes: &[u8], i: usize) -> Result<(u8, u8, u8), PathError> {
    let (hi, lo) = hex_pair(bytes, i)?;
    let value = (hex(hi) << 4) | hex(lo);
    if value == 0 {
        return Err(PathError::Nul);
    }
    Ok((hi, lo, value))
}

fn normalize_segment(part: &str, out: &mut String) -> Result<(), PathError> {
    let bytes = part.as_bytes();
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => return Err(PathError::Backslash),
            0 => return Err(PathError::Nul),
            b'%' => {
                let (hi, lo, value) = percent_escape(bytes, i)?;
                out.push_str(&part[copied..i]);
                if is_unreserved(value) {
                    out.push(char::from(value));
                } else {
                    out.push('%');
                    out.push(char::from(hi.to_ascii_uppercase()));
                    out.push(char::from(lo.to_ascii_uppercase()));
                }
                i += 3;
                copied = i;
            }
            _ => i += 1,
        }
    }
    out.push_str(&part[copied..]);
    Ok(())
}

fn hex_pair(bytes: &[u8], i: usize) -> Result<(u8, u8), PathError> {
    match (bytes.get(i + 1), bytes.get(i + 2)) {
        (Some(&hi), Some(&lo)) if hi.is_ascii_hexdigit() && lo.is_ascii_hexdigit() => Ok((hi, lo)),
        _ => Err(PathError::BadPercent),
    }
}

fn hex(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b.to_ascii_uppercase().wrapping_sub(b'A').wrapping_add(10),
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{Action, PathMatch, PathType, Route, RouteTableBuilder};

    #[test]
    fn normalizes_paths() {
        let cases: &[(&str, Result<&str, PathError>)] = &[
            ("/", Ok("/")),
            ("/a/b", Ok("/a/b")),
            ("/a/b/", Ok("/a/b/")),
            ("/a//b", Ok("/a/b")),
            ("//", Ok("/")),
            ("///a///", Ok("/a/")),
            ("/a/./b", Ok("/a/b")),
            ("/a/../b", Ok("/b")),
            ("/a/b/..", Ok("/a/")),
            ("/a/b/.", Ok("/a/b/")),
            ("/../../x", Ok("/x")),
            ("/..", Ok("/")),
            ("/%2e%2E/admin", Ok("/admin")),
            ("/public/%2e%2e/admin", Ok("/admin")),
            ("/public/.%2e/admin", Ok("/admin")),
            ("/public/..%2Fadmin", Ok("/public/..%2Fadmin")),
            ("/public/..%2fadmin", Ok("/public/..%2Fadmin")),
            ("/admin%2Fx", Ok("/admin%2Fx")),
            ("/%41%62c%7e%2D", Ok("/Abc~-")),
            ("/a%2fb%c3%a9", Ok("/a%2Fb%C3%A9")),
            ("/a%20b", Ok("/a%20b")),
            ("/...", Ok("/...")),
            ("/.a/..b", Ok("/.a/..b")),
            ("a/b", Err(PathError::NotAbsolute)),
            ("", Err(PathError::NotAbsolute)),
            ("*", Err(PathError::NotAbsolute)),
            ("/a\\b", Err(PathError::Backslash)),
            ("/a\0b", Err(PathError::Nul)),
            ("/a%00b", Err(PathError::Nul)),
            ("/a/../%00", Err(PathError::Nul)),
            ("/a%", Err(PathError::BadPercent)),
            ("/a%2", Err(PathError::BadPercent)),
            ("/a%zz", Err(PathError::BadPercent)),
            ("/a/./%g1", Err(PathError::BadPercent)),
        ];
        for (raw, want) in cases {
            let got = normalize_path(raw);
            assert_eq!(got.as_deref().map_err(|e| *e), *want, "{raw:?}");
        }
        assert!(matches!(normalize_path("/a/b"), Ok(Cow::Borrowed(_))));
    }

    #[test]
    fn encoded_slash_is_not_a_separator() {
        let m = PathMatch::new(PathType::Prefix, "/admin");
        let path = normalize_path("/admin%2fx").unwrap();
        assert!(!m.matches(&path), "{path}");
        assert!(m.matches(&normalize_path("/x/../admin/y").unwrap()));
    }

    fn table() -> crate::RouteTable {
        let mut b = RouteTableBuilder::new();
        for (i, p) in ["/", "/admin", "/a/b", "/a/b/c", "/x.y"].iter().enumerate() {
            b.add(Route {
                host: None,
                path: PathMatch::new(PathType::Prefix, p),
                path_type: PathType::Prefix,
                ingress: "ns/ing".into(),
                backend: format!("b{i}").into(),
                action: Action::Unavailable { reason: "test".into() },
                https_redirect: false,
                policy: Default::default(),
                attached: Default::default(),
            })
            .expect("distinct test paths");
        }
        b.build()
    }

    proptest! {
        #[test]
        fn normalize_is_idempotent_and_clean(
            parts in proptest::collection::vec(
                prop_oneof!["[a-c]{0,2}", Just(".".to_owned()), Just("..".to_owned()),
                            Just("%2e".to_owned()), Just("%2E%2e".to_owned()), Just("%2f".to_owned()),
                            Just("%41".to_owned()), Just("%c3".to_owned()), Just("admin".to_owned()),
                            Just("x.y".to_owned())],
                0..8)
        ) {
            let raw = format!("/{}", parts.join("/"));
            let once = normalize_path(&raw).expect("generated paths are valid");
            let twice = normalize_path(&once).expect("normal paths are valid");
            prop_assert_eq!(&*once, &*twice, "not idempotent for {}", raw);
            prop_assert!(matches!(twice, Cow::Borrowed(_)), "normal path {} reallocated", once);
            for bad in ["/./", "/../", "//"] {
                prop_assert!(!once.contains(bad), "{} in {} (from {})", bad, once, raw);
            }
            prop_assert!(!once.ends_with("/.") && !once.ends_with("/.."), "{}", once);
            // What the upstream would route from the forwarded path is what we routed.
            let t = table();
            let ours = t.find("", &once).map(|r| r.backend.clone());
            let theirs = t.find("", &normalize_path(&once).expect("valid")).map(|r| r.backend.clone());
            prop_assert_eq!(ours, theirs);
        }

        #[test]
        fn never_panics(raw in "\\PC{0,40}") {
            let _ = normalize_path(&raw);
            let _ = normalize_path(&format!("/{raw}"));
        }
    }
}
