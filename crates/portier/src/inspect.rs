//! `portier get certificates|orders|challenges` and `portier describe certificate NAME`: the
//! ACME state of a running `portier serve`, read from its admin API and printed kubectl-style.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{bail, Context};
use portier_acme::{Attempt, CertificateStatus, ConditionStatus, ConditionType, Timestamp};

/// What `portier get` lists.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Resource {
    #[value(alias = "certificate", alias = "cert")]
    Certificates,
    #[value(alias = "order")]
    Orders,
    #[value(alias = "challenge")]
    Challenges,
}

/// What `portier describe` shows.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Describable {
    #[value(alias = "certificates", alias = "cert")]
    Certificate,
}

pub fn get(admin: SocketAddr, what: Resource) -> anyhow::Result<String> {
    let certs = certificates(admin)?;
    Ok(match what {
        Resource::Certificates => certificates_table(&certs),
        Resource::Orders => orders_table(&certs),
        Resource::Challenges => challenges_table(&certs),
    })
}

pub fn describe(admin: SocketAddr, _what: Describable, name: &str) -> anyhow::Result<String> {
    let certs = certificates(admin)?;
    let found: Vec<&CertificateStatus> = certs
        .iter()
        .filter(|c| c.secret.name == name || c.secret.to_string() == name)
        .collect();
    match found.as_slice() {
        [one] => Ok(describe_certificate(one)),
        [] => bail!(
            "certificate {name} not found: no Ingress tls entry or Certificate demands it (see `portier get certificates` and `portier check`)"
        ),
        _ => bail!("certificate {name} is ambiguous: use NAMESPACE/NAME"),
    }
}

fn certificates(admin: SocketAddr) -> anyhow::Result<Vec<CertificateStatus>> {
    let body = fetch(admin, "/api/v1/acme/certificates")?;
    serde_json::from_str(&body).context("decoding /api/v1/acme/certificates")
}

/// A plain HTTP/1.0 GET: the admin listener is on loopback and answers with a length-framed body.
fn fetch(admin: SocketAddr, path: &str) -> anyhow::Result<String> {
    let what = || format!("GET http://{admin}{path}: is `portier serve` running with --admin-listen {admin}?");
    let mut conn = TcpStream::connect_timeout(&admin, Duration::from_secs(5)).with_context(what)?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .with_context(what)?;
    write!(conn, "GET {path} HTTP/1.0\r\nHost: {admin}\r\n\r\n").with_context(what)?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).with_context(what)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("{}: malformed response", what()))?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        bail!("GET {path}: HTTP {status}: {}", body.trim());
    }
    Ok(body.to_owned())
}

fn certificates_table(certs: &[CertificateStatus]) -> String {
    let mut rows = vec![vec![
        "NAMESPACE".to_owned(),
        "NAME".into(),
        "READY".into(),
        "ISSUER".into(),
        "NOT AFTER".into(),
        "RENEWAL".into(),
        "FAILURES".into(),
        "MESSAGE".into(),
    ]];
    for c in certs {
        let ready = c.condition(ConditionType::Ready);
        rows.push(vec![
            c.secret.namespace.clone().unwrap_or_default(),
            c.secret.name.clone(),
            ready.map_or("Unknown", |r| status_word(r.status)).to_owned(),
            c.issuer.to_string(),
            time(c.not_after),
            time(c.renewal_time),
            c.failed_attempts.to_string(),
            ready.map(|r| r.message.clone()).unwrap_or_default(),
        ]);
    }
    table(&rows)
}

fn orders_table(certs: &[CertificateStatus]) -> String {
    let mut rows = vec![vec![
        "CERTIFICATE".to_owned(),
        "STATE".into(),
        "URL".into(),
        "ERROR".into(),
    ]];
    for c in certs {
        for o in c.history.iter().rev().filter_map(|a| a.order.as_ref()) {
            rows.push(vec![
                c.secret.to_string(),
                format!("{:?}", o.state).to_lowercase(),
                o.url.clone(),
                o.error.clone().unwrap_or_default(),
            ]);
        }
    }
    table(&rows)
}

fn challenges_table(certs: &[CertificateStatus]) -> String {
    let mut rows = vec![vec![
        "CERTIFICATE".to_owned(),
        "DNS NAME".into(),
        "TYPE".into(),
        "STATE".into(),
        "TOKEN/RECORD".into(),
        "LIKELY CAUSE".into(),
    ]];
    for c in certs {
        let Some(latest) = c.history.last() else { continue };
        for ch in &latest.challenges {
            rows.push(vec![
                c.secret.to_string(),
                ch.dns_name.clone(),
                kind(ch.kind).to_owned(),
                format!("{:?}", ch.state).to_lowercase(),
                ch.token.clone().or_else(|| ch.record.clone()).unwrap_or_default(),
                ch.explanation.clone().unwrap_or_default(),
            ]);
        }
    }
    table(&rows)
}

fn describe_certificate(c: &CertificateStatus) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{:<18}{v}\n", format!("{k}:")));
    line("Name", c.secret.name.clone());
    line("Namespace", c.secret.namespace.clone().unwrap_or_default());
    line("Issuer", c.issuer.to_string());
    line("DNS Names", c.dns_names.join(", "));
    line("Not Before", time(c.not_before));
    line("Not After", time(c.not_after));
    line("Renewal Time", time(c.renewal_time));
    line("Failed Attempts", c.failed_attempts.to_string());
    line("Next Attempt", time(c.next_attempt));
    out.push_str("Conditions:\n");
    let mut rows = vec![vec![
        "  TYPE".to_owned(),
        "STATUS".into(),
        "REASON".into(),
        "SINCE".into(),
        "MESSAGE".into(),
    ]];
    for cond in &c.conditions {
        rows.push(vec![
            format!("  {:?}", cond.kind),
            status_word(cond.status).to_owned(),
            cond.reason.clone(),
            time(Some(cond.last_transition_time)),
            cond.message.clone(),
        ]);
    }
    out.push_str(&table(&rows));
    out.push_str("Attempts (newest first):\n");
    if c.history.is_empty() {
        out.push_str("  <none>\n");
    }
    for a in c.history.iter().rev() {
        attempt(&mut out, a);
    }
    out
}

fn attempt(out: &mut String, a: &Attempt) {
    out.push_str(&format!(
        "  {}  {:?} after {} ms: {}\n",
        time(Some(a.started)),
        a.outcome,
        a.duration_ms,
        a.message
    ));
    if let Some(o) = &a.order {
        out.push_str(&format!(
            "    Order {} ({})\n",
            o.url,
            format!("{:?}", o.state).to_lowercase()
        ));
        if let Some(e) = &o.error {
            out.push_str(&format!("      error: {e}\n"));
        }
    }
    for ch in &a.challenges {
        let what = ch.token.as_deref().or(ch.record.as_deref()).unwrap_or("");
        out.push_str(&format!(
            "    Challenge {} {} {what} ({})\n",
            kind(ch.kind),
            ch.dns_name,
            format!("{:?}", ch.state).to_lowercase()
        ));
        if let Some(e) = &ch.error {
            // An errored challenge never reached the CA: the error is portier's own.
            let who = if ch.state == portier_acme::ChallengeState::Errored {
                "error:"
            } else {
                "CA said:"
            };
            out.push_str(&format!("      {who:<14}{e}\n"));
        }
        if let Some(x) = &ch.explanation {
            out.push_str(&format!("      likely cause: {x}\n"));
        }
    }
}

fn kind(k: portier_acme::ChallengeKind) -> &'static str {
    match k {
        portier_acme::ChallengeKind::Http01 => "HTTP-01",
        portier_acme::ChallengeKind::Dns01 => "DNS-01",
    }
}

fn status_word(s: ConditionStatus) -> &'static str {
    match s {
        ConditionStatus::True => "True",
        ConditionStatus::False => "False",
        ConditionStatus::Unknown => "Unknown",
    }
}

fn time(t: Option<Timestamp>) -> String {
    match t {
        Some(t) => {
            let s = portier_telemetry::rfc3339_millis(UNIX_EPOCH + Duration::from_secs(t.0));
            // Whole seconds are enough for certificates: drop ".000".
            s.replacen(".000Z", "Z", 1)
        }
        None => "-".to_owned(),
    }
}

/// Left-aligned columns separated by three spaces, as kubectl prints them.
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}   ", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let rows = vec![
            vec!["NAME".to_owned(), "READY".into(), "MESSAGE".into()],
            vec!["app-tls".into(), "True".into(), "ok".into()],
        ];
        assert_eq!(table(&rows), "NAME      READY   MESSAGE\napp-tls   True    ok\n");
    }

    /// The per-account order limit as the engine records it: describe says what to do.
    #[test]
    fn describe_explains_a_rate_limit() {
        use portier_acme::{AcmeError, AttemptOutcome, IssuerKind, IssuerRef, SecretRef};
        let err = AcmeError::OrderLimit {
            issuer: "ClusterIssuer letsencrypt".into(),
            limit: 50,
            retry_after: UNIX_EPOCH + Duration::from_secs(1_735_787_045),
        };
        let cause = err.likely_cause().expect("a likely cause");
        let message = format!("{err} (likely cause: {})", cause.explain());
        let mut s = CertificateStatus::new(
            SecretRef::new(Some("default"), "app-tls"),
            IssuerRef {
                kind: IssuerKind::ClusterIssuer,
                namespace: None,
                name: "letsencrypt".into(),
            },
            vec!["app.example.com".into()],
        );
        s.failed_attempts = 1;
        s.next_attempt = err.retry_after().map(Timestamp::from);
        s.set_condition(ConditionType::Ready, ConditionStatus::False, "Failed", message.clone());
        s.push_attempt(Attempt {
            started: Timestamp(1_735_783_445),
            duration_ms: 0,
            outcome: AttemptOutcome::Failed,
            message,
            order: None,
            challenges: Vec::new(),
        });
        let out = describe_certificate(&s);
        for want in [
            "Next Attempt:     2025-01-02T03:04:05Z",
            "limit of 50 new orders per hour is reached; portier orders again after 2025-01-02T03:04:05Z",
            "use the CA's staging directory",
            "Failed after 0 ms",
        ] {
            assert!(out.contains(want), "{want:?} in:\n{out}");
        }
    }
}
