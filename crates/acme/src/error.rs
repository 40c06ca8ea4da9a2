//! Errors of an issuance, classified so the caller can decide: retry now (badNonce), retry
//! after the CA's time (rateLimited), back off, or show a person what to fix.

use std::time::{Duration, SystemTime};

use crate::dns01::DnsError;
use crate::http01::ResponderError;
use crate::issuer::InvalidRequest;
use crate::status::{ChallengeKind, ChallengeStatus, LikelyCause};
use crate::storage::StorageError;

/// RFC 8555 §6.7 problem types, as far as they change what portier does or says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    BadNonce,
    RateLimited,
    AccountDoesNotExist,
    ExternalAccountRequired,
    Unauthorized,
    Connection,
    Dns,
    Caa,
    IncorrectResponse,
    RejectedIdentifier,
    ServerInternal,
    Other,
}

/// An issuance that did not produce a certificate.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error(transparent)]
    Request(#[from] InvalidRequest),
    #[error("{issuer}: spec.acme.solvers: no solver selects {name}")]
    NoSolver { issuer: String, name: String },
    #[error("{issuer}: spec.acme: {message}")]
    Config { issuer: String, message: String },
    /// The ACME server answered with a problem document, or could not be reached.
    #[error("{step}: {kind:?}: {detail}")]
    Acme {
        step: &'static str,
        kind: ProblemKind,
        detail: String,
        retry_after: Option<SystemTime>,
    },
    /// Validation failed: each failed challenge carries the CA's error and a likely cause.
    #[error("validation failed: {}", summary(.challenges))]
    Validation { challenges: Vec<ChallengeStatus> },
    #[error("DNS-01 for {name}: {source}")]
    Dns {
        name: String,
        #[source]
        source: Box<DnsError>,
    },
    #[error("HTTP-01 for {name}: {source}")]
    Responder {
        name: String,
        #[source]
        source: ResponderError,
    },
    /// portier's own per-account order limit (not the CA's): nothing was sent to the CA.
    #[error("{issuer}: the account's limit of {limit} new orders per hour is reached; portier orders again after {}", crate::status::Timestamp::from(*.retry_after).rfc3339())]
    OrderLimit {
        issuer: String,
        limit: usize,
        retry_after: SystemTime,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Key(String),
    #[error("the CA returned a certificate portier cannot read: {0}")]
    Certificate(String),
}

// === impl AcmeError ===

impl AcmeError {
    pub(crate) fn acme(step: &'static str, err: instant_acme::Error) -> Self {
        match err {
            instant_acme::Error::Api(p) => {
                let kind = p.r#type.as_deref().map(classify_problem).unwrap_or(ProblemKind::Other);
                let detail = p.detail.clone().unwrap_or_else(|| p.to_string());
                let retry_after = match kind {
                    ProblemKind::RateLimited => Some(retry_after_from_detail(&detail).unwrap_or_else(
                        // no time in the problem: an hour, Let's Encrypt's shortest window
                        || SystemTime::now() + Duration::from_secs(3600),
                    )),
                    _ => None,
                };
                AcmeError::Acme {
                    step,
                    kind,
                    detail,
                    retry_after,
                }
            }
            other => AcmeError::Acme {
                step,
                kind: ProblemKind::Connection,
                detail: other.to_string(),
                retry_after: None,
            },
        }
    }

    /// A problem worth retrying at once (a fresh nonce or a new order fixes it).
    pub fn is_bad_nonce(&self) -> bool {
        matches!(
            self,
            AcmeError::Acme {
                kind: ProblemKind::BadNonce,
                ..
            }
        )
    }

    /// When the CA said to come back (`rateLimited`), if it did.
    pub fn retry_after(&self) -> Option<SystemTime> {
        match self {
            AcmeError::Acme { retry_after, .. } => *retry_after,
            AcmeError::OrderLimit { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// The failed challenges of a validation failure.
    pub fn challenges(&self) -> &[ChallengeStatus] {
        match self {
            AcmeError::Validation { challenges } => challenges,
            _ => &[],
        }
    }

    /// The likely cause in plain words, when one is known.
    pub fn likely_cause(&self) -> Option<LikelyCause> {
        match self {
            AcmeError::Validation { challenges } => challenges.iter().find_map(|c| c.likely_cause),
            AcmeError::NoSolver { .. } => Some(LikelyCause::WrongSolver),
            AcmeError::OrderLimit { .. } => Some(LikelyCause::RateLimited),
            AcmeError::Dns { source, .. } if source.is_refused() => Some(LikelyCause::TsigRefused),
            AcmeError::Acme { kind, detail, .. } => match kind {
                ProblemKind::RateLimited => Some(LikelyCause::RateLimited),
                ProblemKind::RejectedIdentifier => Some(LikelyCause::NameRejected),
                ProblemKind::ExternalAccountRequired => Some(LikelyCause::AccountBindingRequired),
                ProblemKind::Caa => Some(LikelyCause::CaaForbids),
                ProblemKind::Connection | ProblemKind::ServerInternal => Some(LikelyCause::CaUnreachable),
                ProblemKind::Unauthorized if detail.contains("External Account Binding") => {
                    Some(LikelyCause::AccountBindingRequired)
                }
                _ => None,
            },
            _ => None,
        }
    }
}

/// Maps an RFC 8555 problem type (`urn:ietf:params:acme:error:rateLimited`) to its kind.
pub fn classify_problem(problem_type: &str) -> ProblemKind {
    let short = problem_type.rsplit(':').next().unwrap_or(problem_type);
    match short {
        "badNonce" => ProblemKind::BadNonce,
        "rateLimited" => ProblemKind::RateLimited,
        "accountDoesNotExist" => ProblemKind::AccountDoesNotExist,
        "externalAccountRequired" => ProblemKind::ExternalAccountRequired,
        "unauthorized" => ProblemKind::Unauthorized,
        "connection" => ProblemKind::Connection,
        "dns" => ProblemKind::Dns,
        "caa" => ProblemKind::Caa,
        "incorrectResponse" => ProblemKind::IncorrectResponse,
        "rejectedIdentifier" => ProblemKind::RejectedIdentifier,
        "serverInternal" => ProblemKind::ServerInternal,
        _ => ProblemKind::Other,
    }
}

/// The likely cause of a failed challenge, from the CA's problem type and detail.
pub(crate) fn challenge_cause(kind: ChallengeKind, problem: ProblemKind, detail: &str) -> Option<LikelyCause> {
    let d = detail.to_ascii_lowercase();
    match (kind, problem) {
        (_, ProblemKind::RateLimited) => Some(LikelyCause::RateLimited),
        (_, ProblemKind::Caa) => Some(LikelyCause::CaaForbids),
        (_, ProblemKind::Dns) => Some(LikelyCause::DnsPointsElsewhere),
        (ChallengeKind::Http01, ProblemKind::Connection) => {
            // Boulder: "no valid A records", "NXDOMAIN"; Go's resolver: "no such host";
            // pebble: "could not resolve URL".
            let dns = [
                "no such host",
                "nxdomain",
                "servfail",
                "no valid a records",
                "could not resolve",
            ];
            if dns.iter().any(|w| d.contains(w)) {
                Some(LikelyCause::DnsPointsElsewhere)
            } else {
                Some(LikelyCause::Port80Unreachable)
            }
        }
        (ChallengeKind::Http01, ProblemKind::Unauthorized | ProblemKind::IncorrectResponse) => {
            Some(LikelyCause::Http01WrongAnswer)
        }
        (ChallengeKind::Dns01, ProblemKind::Unauthorized | ProblemKind::IncorrectResponse) => {
            Some(LikelyCause::TxtRecordNotSeen)
        }
        (ChallengeKind::Dns01, ProblemKind::Connection) => Some(LikelyCause::DnsPointsElsewhere),
        _ => None,
    }
}

/// Let's Encrypt writes the time into the detail: "... retry after 2025-01-01 12:00:00 UTC: see ...".
/// instant-acme 0.8 does not expose the `Retry-After` header, so this is the one source we have.
fn retry_after_from_detail(detail: &str) -> Option<SystemTime> {
    let at = detail.find("retry after ")? + "retry after ".len();
    let rest = &detail[at..];
    let stamp: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || "-: T".contains(*c))
        .collect();
    let stamp = stamp.trim().trim_end_matches(':').trim();
    parse_utc(stamp)
}

/// `YYYY-MM-DD HH:MM:SS` or `YYYY-MM-DDTHH:MM:SS` (UTC) to a `SystemTime`.
fn parse_utc(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // days from civil (Howard Hinnant's algorithm)
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + se;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

fn summary(challenges: &[ChallengeStatus]) -> String {
    let parts: Vec<String> = challenges
        .iter()
        .map(|c| {
            let err = c.error.as_deref().unwrap_or("no error reported");
            match c.likely_cause {
                Some(cause) => format!("{}: {err} (likely cause: {})", c.dns_name, cause.explain()),
                None => format!("{}: {err}", c.dns_name),
            }
        })
        .collect();
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_types_classify() {
        let cases = [
            ("urn:ietf:params:acme:error:rateLimited", ProblemKind::RateLimited),
            ("urn:ietf:params:acme:error:badNonce", ProblemKind::BadNonce),
            (
                "urn:ietf:params:acme:error:accountDoesNotExist",
                ProblemKind::AccountDoesNotExist,
            ),
            ("urn:ietf:params:acme:error:connection", ProblemKind::Connection),
            ("urn:ietf:params:acme:error:unauthorized", ProblemKind::Unauthorized),
            ("urn:ietf:params:acme:error:dns", ProblemKind::Dns),
            ("urn:ietf:params:acme:error:caa", ProblemKind::Caa),
            (
                "urn:ietf:params:acme:error:rejectedIdentifier",
                ProblemKind::RejectedIdentifier,
            ),
            ("about:blank", ProblemKind::Other),
        ];
        for (t, want) in cases {
            assert_eq!(classify_problem(t), want, "{t}");
        }
    }

    #[test]
    fn challenge_failures_explain() {
        use ChallengeKind::*;
        let cases = [
            (
                Http01,
                ProblemKind::Connection,
                "127.0.0.1: Fetching http://a/.well-known/acme-challenge/x: Connection refused",
                Some(LikelyCause::Port80Unreachable),
            ),
            (
                Http01,
                ProblemKind::Connection,
                "lookup a.example: no such host",
                Some(LikelyCause::DnsPointsElsewhere),
            ),
            (
                Http01,
                ProblemKind::Connection,
                r#"Get "http://a.mock.test:14102/.well-known/acme-challenge/x": could not resolve URL "http://a.mock.test:14102/""#,
                Some(LikelyCause::DnsPointsElsewhere),
            ),
            (
                Http01,
                ProblemKind::Unauthorized,
                "The key authorization file from the server did not match this challenge; returned 404",
                Some(LikelyCause::Http01WrongAnswer),
            ),
            (
                Dns01,
                ProblemKind::Unauthorized,
                "No TXT records found for DNS challenge",
                Some(LikelyCause::TxtRecordNotSeen),
            ),
            (
                Dns01,
                ProblemKind::Dns,
                "SERVFAIL looking up TXT",
                Some(LikelyCause::DnsPointsElsewhere),
            ),
            (
                Http01,
                ProblemKind::RateLimited,
                "too many failed authorizations",
                Some(LikelyCause::RateLimited),
            ),
            (Http01, ProblemKind::Other, "something new", None),
        ];
        for (kind, problem, detail, want) in cases {
            assert_eq!(
                challenge_cause(kind, problem, detail),
                want,
                "{kind:?} {problem:?} {detail}"
            );
        }
    }

    #[test]
    fn retry_after_is_read_from_the_detail() {
        let d = "too many certificates (5) already issued for this exact set of domains in the last 168h0m0s, retry after 2025-01-02 03:04:05 UTC: see https://letsencrypt.org/docs/rate-limits/";
        let t = retry_after_from_detail(d).expect("time in detail");
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH).ok(),
            Some(Duration::from_secs(1_735_787_045))
        );
        assert_eq!(retry_after_from_detail("no time here"), None);
    }

    #[test]
    fn rate_limited_without_time_waits_an_hour() {
        let p = instant_acme::Problem {
            r#type: Some("urn:ietf:params:acme:error:rateLimited".into()),
            detail: Some("slow down".into()),
            status: Some(429),
            subproblems: Vec::new(),
        };
        let e = AcmeError::acme("newOrder", instant_acme::Error::Api(p));
        let wait = e.retry_after().and_then(|t| t.duration_since(SystemTime::now()).ok());
        assert!(wait.is_some_and(|w| w > Duration::from_secs(3500)), "{wait:?}");
        assert_eq!(e.likely_cause(), Some(LikelyCause::RateLimited));
    }
}
