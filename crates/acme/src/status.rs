//! What a person inspects, mirroring cert-manager's chain:
//! Certificate (conditions, validity, renewal time, attempts) → Order → Challenge.
//! Everything here is plain data for the admin API, MCP and `portier describe`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::issuer::{IssuerRef, SecretRef};

/// Seconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

/// The state of one demanded certificate, named after its Secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateStatus {
    pub secret: SecretRef,
    pub issuer: IssuerRef,
    pub dns_names: Vec<String>,
    /// `Ready` and `Issuing`, as cert-manager sets them.
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_time: Option<Timestamp>,
    /// Failures since the last success; drives the backoff.
    pub failed_attempts: u32,
    /// Earliest time of the next attempt after a failure (backoff or the CA's `Retry-After`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<Timestamp>,
    /// The most recent attempts, oldest first, at most [`CertificateStatus::HISTORY`].
    pub history: Vec<Attempt>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: ConditionType,
    pub status: ConditionStatus,
    pub reason: String,
    pub message: String,
    pub last_transition_time: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConditionType {
    Ready,
    Issuing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// One issuance attempt: its order, its challenges and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    pub started: Timestamp,
    pub duration_ms: u64,
    pub outcome: AttemptOutcome,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<OrderStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub challenges: Vec<ChallengeStatus>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttemptOutcome {
    Issued,
    Failed,
}

/// An ACME order (RFC 8555 §7.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderStatus {
    pub url: String,
    pub state: OrderState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderState {
    Pending,
    Ready,
    Processing,
    Valid,
    Invalid,
}

/// One challenge of one authorization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChallengeStatus {
    /// The identifier as ordered (`*.example.com` for a wildcard).
    pub dns_name: String,
    #[serde(rename = "type")]
    pub kind: ChallengeKind,
    /// HTTP-01: the token served at `/.well-known/acme-challenge/<token>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// DNS-01: the TXT record name, fully qualified with its trailing dot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    pub state: ChallengeState,
    /// The CA's problem document, `type: detail`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub likely_cause: Option<LikelyCause>,
    /// [`LikelyCause::explain`] of `likely_cause`, so a reader of the JSON needs no lookup table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanation: Option<String>,
    /// Milliseconds from presenting the response (token served, TXT record written) to the CA's
    /// verdict; `None` while pending or when it was never presented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChallengeKind {
    #[serde(rename = "HTTP-01")]
    Http01,
    #[serde(rename = "DNS-01")]
    Dns01,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChallengeState {
    /// Token served or TXT record written, CA told to validate.
    Presented,
    Valid,
    Invalid,
    /// We could not present it (responder or DNS update failed).
    Errored,
}

/// The likely cause of a failure, in words a person can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LikelyCause {
    /// The CA could not connect to port 80 of the name.
    Port80Unreachable,
    /// The CA connected but did not get the key authorization (404 or other content).
    Http01WrongAnswer,
    /// The name does not resolve, or resolves to an address that is not ours.
    DnsPointsElsewhere,
    /// The CA saw no (or another) TXT record at `_acme-challenge.<name>`.
    TxtRecordNotSeen,
    /// The CA rate-limited the account or the name.
    RateLimited,
    /// No solver of the issuer fits the name, or the solver's class is not portier's.
    WrongSolver,
    /// The DNS server refused the TSIG-signed update (key name, algorithm or secret).
    TsigRefused,
    /// A CAA record forbids this CA.
    CaaForbids,
    /// The CA refuses to issue for the name (policy or blocklist).
    NameRejected,
    /// The CA requires an external account binding and none (or a wrong one) was given.
    AccountBindingRequired,
    /// The ACME server could not be reached or answered with a server error.
    CaUnreachable,
}

// === impl Timestamp ===

impl Timestamp {
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }

    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.0)
    }

    /// `2025-01-02T03:04:05Z` (UTC), for messages a person reads.
    pub fn rfc3339(self) -> String {
        let secs = self.0;
        let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
        let rem = secs % 86_400;
        // civil from days (Howard Hinnant's algorithm)
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        Self(t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0))
    }
}

// === impl CertificateStatus ===

impl CertificateStatus {
    /// How many attempts the history keeps.
    pub const HISTORY: usize = 10;

    pub fn new(secret: SecretRef, issuer: IssuerRef, dns_names: Vec<String>) -> Self {
        Self {
            secret,
            issuer,
            dns_names,
            conditions: Vec::new(),
            not_before: None,
            not_after: None,
            renewal_time: None,
            failed_attempts: 0,
            next_attempt: None,
            history: Vec::new(),
        }
    }

    pub fn condition(&self, kind: ConditionType) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.kind == kind)
    }

    /// Sets a condition; `last_transition_time` moves only when the status changes.
    pub fn set_condition(&mut self, kind: ConditionType, status: ConditionStatus, reason: &str, message: String) {
        let now = Timestamp::now();
        match self.conditions.iter_mut().find(|c| c.kind == kind) {
            Some(c) => {
                if c.status != status {
                    c.last_transition_time = now;
                }
                c.status = status;
                c.reason = reason.to_owned();
                c.message = message;
            }
            None => self.conditions.push(Condition {
                kind,
                status,
                reason: reason.to_owned(),
                message,
                last_transition_time: now,
            }),
        }
    }

    pub fn push_attempt(&mut self, attempt: Attempt) {
        self.history.push(attempt);
        let excess = self.history.len().saturating_sub(Self::HISTORY);
        self.history.drain(..excess);
    }
}

// === impl ChallengeKind, ChallengeState, OrderState ===

impl ChallengeKind {
    /// `HTTP-01` or `DNS-01`, as in the JSON and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeKind::Http01 => "HTTP-01",
            ChallengeKind::Dns01 => "DNS-01",
        }
    }
}

impl ChallengeState {
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeState::Presented => "presented",
            ChallengeState::Valid => "valid",
            ChallengeState::Invalid => "invalid",
            ChallengeState::Errored => "errored",
        }
    }
}

impl OrderState {
    /// RFC 8555 §7.1.6 order status, as the CA writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Pending => "pending",
            OrderState::Ready => "ready",
            OrderState::Processing => "processing",
            OrderState::Valid => "valid",
            OrderState::Invalid => "invalid",
        }
    }
}

// === impl LikelyCause ===

impl LikelyCause {
    /// The cause's name as in the JSON (`port80Unreachable`), for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            LikelyCause::Port80Unreachable => "port80Unreachable",
            LikelyCause::Http01WrongAnswer => "http01WrongAnswer",
            LikelyCause::DnsPointsElsewhere => "dnsPointsElsewhere",
            LikelyCause::TxtRecordNotSeen => "txtRecordNotSeen",
            LikelyCause::RateLimited => "rateLimited",
            LikelyCause::WrongSolver => "wrongSolver",
            LikelyCause::TsigRefused => "tsigRefused",
            LikelyCause::CaaForbids => "caaForbids",
            LikelyCause::NameRejected => "nameRejected",
            LikelyCause::AccountBindingRequired => "accountBindingRequired",
            LikelyCause::CaUnreachable => "caUnreachable",
        }
    }

    /// The cause and what to do, in one sentence.
    pub fn explain(self) -> &'static str {
        match self {
            LikelyCause::Port80Unreachable => {
                "port 80 is not reachable from the CA: open port 80 to the internet for this name and make sure it reaches portier's HTTP listener"
            }
            LikelyCause::Http01WrongAnswer => {
                "the CA reached port 80 but got a 404 or another answer instead of the challenge token: the name's DNS or a load balancer probably sends port 80 to a different server than portier"
            }
            LikelyCause::DnsPointsElsewhere => {
                "DNS for the name does not resolve or points elsewhere: create an A/AAAA record for it that points at portier's public address"
            }
            LikelyCause::TxtRecordNotSeen => {
                "the CA did not see the TXT record: the zone's public nameservers are probably not the rfc2136 nameserver that got the update, or it has not propagated yet"
            }
            LikelyCause::RateLimited => {
                "this account or name is rate-limited (by the CA, or by portier's own limit of new orders per account and hour): wait for the next attempt time shown, and use the CA's staging directory (e.g. https://acme-staging-v02.api.letsencrypt.org/directory) while testing"
            }
            LikelyCause::WrongSolver => {
                "no solver of the issuer fits this name: check solvers[].selector (dnsNames, dnsZones, matchLabels), and use a dns01 solver for wildcard names"
            }
            LikelyCause::TsigRefused => {
                "the DNS server refused the TSIG-signed update: check tsigKeyName, tsigAlgorithm and the secret, and that the key may update this zone"
            }
            LikelyCause::CaaForbids => {
                "a CAA record on the name or a parent forbids this CA: add the CA to the CAA record or remove it"
            }
            LikelyCause::NameRejected => {
                "the CA refuses to issue for this name (policy or blocklist): names like *.local or internal TLDs cannot get public certificates"
            }
            LikelyCause::AccountBindingRequired => {
                "the CA requires External Account Binding: set externalAccountBinding with the keyID and HMAC key the CA gave you"
            }
            LikelyCause::CaUnreachable => {
                "the ACME server could not be reached or failed: check spec.acme.server, the network path and caBundle; portier retries with backoff"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json<T: Serialize>(v: T) -> String {
        serde_json::to_value(v)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    #[test]
    fn timestamps_print_as_rfc3339() {
        for (secs, want) in [
            (0, "1970-01-01T00:00:00Z"),
            (1_735_787_045, "2025-01-02T03:04:05Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (4_102_444_799, "2099-12-31T23:59:59Z"),
        ] {
            assert_eq!(Timestamp(secs).rfc3339(), want);
        }
    }

    #[test]
    fn names_in_logs_and_metrics_are_the_json_names() {
        use LikelyCause::*;
        for c in [
            Port80Unreachable,
            Http01WrongAnswer,
            DnsPointsElsewhere,
            TxtRecordNotSeen,
            RateLimited,
            WrongSolver,
            TsigRefused,
            CaaForbids,
            NameRejected,
            AccountBindingRequired,
            CaUnreachable,
        ] {
            assert_eq!(c.as_str(), json(c));
        }
        for k in [ChallengeKind::Http01, ChallengeKind::Dns01] {
            assert_eq!(k.as_str(), json(k));
        }
        for s in [
            ChallengeState::Presented,
            ChallengeState::Valid,
            ChallengeState::Invalid,
            ChallengeState::Errored,
        ] {
            assert_eq!(s.as_str(), json(s));
        }
        for s in [
            OrderState::Pending,
            OrderState::Ready,
            OrderState::Processing,
            OrderState::Valid,
            OrderState::Invalid,
        ] {
            assert_eq!(s.as_str(), json(s));
        }
    }
}
