use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// A DNS host name as Ingress allows it: lower-case RFC 1123 labels, not an IP address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct HostName(String);

/// An Ingress rule's `host`: an exact name, or `*.parent` which matches exactly one extra label.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HostMatch {
    Exact(HostName),
    Wildcard { parent: HostName },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidHost {
    #[error("host is empty")]
    Empty,
    #[error("host {0:?} is an IP address; Ingress hosts must be DNS names")]
    IpAddress(String),
    #[error("host {0:?} is longer than 253 characters")]
    TooLong(String),
    #[error("host {host:?} has an invalid label {label:?}: labels are 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'")]
    Label { host: String, label: String },
    #[error("host {0:?} has a '*' that is not the whole first label; only \"*.example.com\" wildcards are allowed")]
    Wildcard(String),
}

// === impl HostName ===

impl HostName {
    /// Parses and lower-cases a host name. A single trailing dot (fully qualified form) is dropped.
    pub fn parse(s: &str) -> Result<Self, InvalidHost> {
        let s = s.strip_suffix('.').unwrap_or(s);
        if s.is_empty() {
            return Err(InvalidHost::Empty);
        }
        if s.len() > 253 {
            return Err(InvalidHost::TooLong(s.to_owned()));
        }
        if s.parse::<std::net::IpAddr>().is_ok() {
            return Err(InvalidHost::IpAddress(s.to_owned()));
        }
        if s.contains('*') {
            return Err(InvalidHost::Wildcard(s.to_owned()));
        }
        let lower = s.to_ascii_lowercase();
        for label in lower.split('.') {
            if !valid_label(label) {
                return Err(InvalidHost::Label {
                    host: s.to_owned(),
                    label: label.to_owned(),
                });
            }
        }
        Ok(Self(lower))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn labels(&self) -> std::str::Split<'_, char> {
        self.0.split('.')
    }

    /// The name without its first label (`www.shop.example` → `shop.example`), if it has more than one.
    pub fn parent(&self) -> Option<&str> {
        self.0.split_once('.').map(|(_, p)| p)
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for HostName {
    type Err = InvalidHost;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

// === impl HostMatch ===

impl HostMatch {
    /// Whether a normalized (lower-case, port-free) request host matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Exact(h) => h.as_str() == host,
            HostMatch::Wildcard { parent } => match host.split_once('.') {
                Some((first, rest)) => !first.is_empty() && rest == parent.as_str(),
                None => false,
            },
        }
    }

    pub fn is_wildcard(&self) -> bool {
        matches!(self, HostMatch::Wildcard { .. })
    }
}

impl FromStr for HostMatch {
    type Err = InvalidHost;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix("*.") {
            Some(parent) => Ok(HostMatch::Wildcard {
                parent: HostName::parse(parent)?,
            }),
            None => Ok(HostMatch::Exact(HostName::parse(s)?)),
        }
    }
}

impl fmt::Display for HostMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostMatch::Exact(h) => write!(f, "{h}"),
            HostMatch::Wildcard { parent } => write!(f, "*.{parent}"),
        }
    }
}

impl Serialize for HostMatch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

fn valid_label(label: &str) -> bool {
    let b = label.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_covers_exactly_one_label() {
        let cases = [
            ("*.shop.example", "www.shop.example", true),
            ("*.shop.example", "a.b.shop.example", false),
            ("*.shop.example", "shop.example", false),
            ("*.shop.example", ".shop.example", false),
            ("shop.example", "shop.example", true),
            ("Shop.Example", "shop.example", true),
            ("shop.example", "www.shop.example", false),
        ];
        for (rule, host, want) in cases {
            let m: HostMatch = rule.parse().unwrap();
            assert_eq!(m.matches(host), want, "{rule} vs {host}");
        }
    }

    #[test]
    fn rejects_invalid_hosts() {
        let cases = [
            "",
            "1.2.3.4",
            "::1",
            "a..b",
            "-a.b",
            "a-.b",
            "foo.*.com",
            "a*.b",
            "a_b.c",
            "*",
        ];
        for s in cases {
            assert!(s.parse::<HostMatch>().is_err(), "{s:?} should be rejected");
        }
    }
}
