//! DNS-01 through RFC 2136 dynamic updates signed with TSIG (RFC 8945), as cert-manager's
//! `dns01.rfc2136` solver does. hickory builds, signs and verifies the messages; this module
//! only decides which records to add and remove, and in which zone.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_client::client::{Client, ClientHandle};
use hickory_client::{ClientError, ClientErrorKind};
use hickory_proto::dnssec::rdata::tsig::TsigAlgorithm as HickoryTsig;
use hickory_proto::dnssec::tsig::TSigner;
use hickory_proto::op::{MessageFinalizer, ResponseCode};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::runtime::TokioRuntimeProvider;
use hickory_proto::tcp::TcpClientStream;

use crate::issuer::{Dns01Rfc2136, TsigAlgorithm};

/// TTL of challenge records: short, so a stale value does not outlive a retry by much.
const TXT_TTL: u32 = 60;
/// Allowed clock skew for TSIG (RFC 8945 recommends 300 s).
const TSIG_FUDGE: u16 = 300;
const TIMEOUT: Duration = Duration::from_secs(10);

/// Writes and removes `_acme-challenge` TXT records on one RFC 2136 server.
#[derive(Clone)]
pub struct Rfc2136Client {
    server: SocketAddr,
    signer: TSigner,
}

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("dns01.rfc2136.nameserver {0:?} is not an address: use ip or ip:port (port 53 when absent)")]
    Nameserver(String),
    #[error("dns01.rfc2136.tsigAlgorithm {0:?} is not supported: use HMACSHA256 or HMACSHA512 (tsig-keygen's default is hmac-sha256)")]
    Algorithm(TsigAlgorithm),
    #[error("dns01.rfc2136.tsigKeyName {name:?}: {reason}")]
    KeyName { name: String, reason: String },
    #[error("{record}: {reason}")]
    Name { record: String, reason: String },
    /// `detail` is the whole error chain: hickory's top-level message alone ("proto error")
    /// says nothing.
    #[error("nameserver {server}: {detail}")]
    Transport { server: SocketAddr, detail: String },
    #[error("nameserver {server} answered {rcode} to the update of {record}: check tsigKeyName, tsigAlgorithm and the secret, and that the server's update-policy lets this key change TXT records in zone {zone}")]
    Refused {
        server: SocketAddr,
        record: String,
        zone: String,
        rcode: String,
    },
    /// The server's answer came back unsigned or badly signed: it did not accept our TSIG.
    #[error("nameserver {server} rejected the TSIG signature of the update of {record} (BADKEY or BADSIG: it answered unsigned): check tsigKeyName, tsigAlgorithm and the secret")]
    TsigRejected { server: SocketAddr, record: String },
    #[error("nameserver {server} is not authoritative for any zone above {record}: point dns01.rfc2136.nameserver at the zone's primary server")]
    NoZone { server: SocketAddr, record: String },
}

// === impl Rfc2136Client ===

impl Rfc2136Client {
    /// Checks the solver's nameserver, key name and algorithm. Fails before any traffic.
    pub fn new(cfg: &Dns01Rfc2136) -> Result<Self, DnsError> {
        let server = parse_nameserver(&cfg.nameserver)?;
        let alg = match cfg.tsig_algorithm {
            TsigAlgorithm::HmacSha256 => HickoryTsig::HmacSha256,
            TsigAlgorithm::HmacSha512 => HickoryTsig::HmacSha512,
            other => return Err(DnsError::Algorithm(other)),
        };
        let key_err = |reason: String| DnsError::KeyName {
            name: cfg.tsig_key_name.clone(),
            reason,
        };
        let key_name = Name::from_ascii(&cfg.tsig_key_name).map_err(|e| key_err(e.to_string()))?;
        let signer =
            TSigner::new(cfg.tsig_secret.0.clone(), alg, key_name, TSIG_FUDGE).map_err(|e| key_err(e.to_string()))?;
        Ok(Self { server, signer })
    }

    /// Adds `value` to the TXT set at `record` (`_acme-challenge.<name>.`). Appends, so a
    /// wildcard and its apex can both have a value on the same name.
    pub async fn present(&self, record: &str, value: &str) -> Result<(), DnsError> {
        let (mut client, zone, rec) = self.txt_update(record, value).await?;
        let rsp = client
            .append(rec, zone.clone(), false)
            .await
            .map_err(|e| self.tsig(self.client_error(&e), record))?;
        self.check(rsp.response_code(), record, &zone)
    }

    /// Removes exactly `value` from the TXT set at `record`; other values stay.
    pub async fn cleanup(&self, record: &str, value: &str) -> Result<(), DnsError> {
        let (mut client, zone, rec) = self.txt_update(record, value).await?;
        let rsp = client
            .delete_by_rdata(rec, zone.clone())
            .await
            .map_err(|e| self.tsig(self.client_error(&e), record))?;
        self.check(rsp.response_code(), record, &zone)
    }

    /// A signed connection, the zone that holds `record`, and the TXT record carrying `value`:
    /// what adding and removing a value both start from.
    async fn txt_update(&self, record: &str, value: &str) -> Result<(Client, Name, Record), DnsError> {
        let name = fqdn(record)?;
        let mut client = self.client().await?;
        let zone = self
            .zone_of(&mut client, &name)
            .await
            .map_err(|e| self.tsig(e, record))?;
        let rec = Record::from_rdata(name, TXT_TTL, RData::TXT(TXT::new(vec![value.to_owned()])));
        Ok((client, zone, rec))
    }

    /// The TXT values at `record` as the server answers them now (unsigned query).
    pub async fn txt(&self, record: &str) -> Result<Vec<String>, DnsError> {
        let name = fqdn(record)?;
        let mut client = self.client().await?;
        let rsp = client
            .query(name, DNSClass::IN, RecordType::TXT)
            .await
            .map_err(|e| self.client_error(&e))?;
        Ok(rsp
            .answers()
            .iter()
            .filter_map(|r| match r.data() {
                RData::TXT(txt) => Some(txt.to_string()),
                _ => None,
            })
            .collect())
    }

    async fn client(&self) -> Result<Client, DnsError> {
        // TCP: updates with TSIG can exceed 512 bytes, and TCP needs no retransmit logic.
        let (stream, handle) = TcpClientStream::new(self.server, None, Some(TIMEOUT), TokioRuntimeProvider::new());
        let signer: Arc<dyn MessageFinalizer> = Arc::new(self.signer.clone());
        let (client, bg) = Client::with_timeout(stream, handle, TIMEOUT, Some(signer))
            .await
            .map_err(|e| self.transport(&e))?;
        tokio::spawn(bg);
        Ok(client)
    }

    /// The zone that holds `name`: the owner of the SOA the server returns for it, in the
    /// answer (an apex) or the authority section (a name inside the zone, or NXDOMAIN).
    async fn zone_of(&self, client: &mut Client, name: &Name) -> Result<Name, DnsError> {
        let rsp = client
            .query(name.clone(), DNSClass::IN, RecordType::SOA)
            .await
            .map_err(|e| self.client_error(&e))?;
        rsp.answers()
            .iter()
            .chain(rsp.name_servers())
            .find(|r| r.record_type() == RecordType::SOA)
            .map(|r| r.name().clone())
            .ok_or_else(|| DnsError::NoZone {
                server: self.server,
                record: name.to_string(),
            })
    }

    fn check(&self, rcode: ResponseCode, record: &str, zone: &Name) -> Result<(), DnsError> {
        if rcode == ResponseCode::NoError {
            return Ok(());
        }
        Err(DnsError::Refused {
            server: self.server,
            record: record.to_owned(),
            zone: zone.to_string(),
            rcode: rcode.to_string(),
        })
    }

    /// A transport error that is really the server refusing our TSIG key becomes `TsigRejected`.
    fn tsig(&self, err: DnsError, record: &str) -> DnsError {
        match &err {
            DnsError::Transport { .. } if err.is_refused() => DnsError::TsigRejected {
                server: self.server,
                record: record.to_owned(),
            },
            _ => err,
        }
    }

    /// hickory-client's error prints "proto error" and hides its cause; unwrap it.
    fn client_error(&self, err: &ClientError) -> DnsError {
        match err.kind() {
            ClientErrorKind::Proto(p) => self.transport(p),
            #[allow(unreachable_patterns)] // kinds hickory may add (the enum is non-exhaustive)
            kind => DnsError::Transport {
                server: self.server,
                detail: kind.to_string(),
            },
        }
    }

    fn transport(&self, err: &dyn std::error::Error) -> DnsError {
        let mut detail = err.to_string();
        let mut next = err.source();
        while let Some(e) = next {
            detail = format!("{detail}: {e}");
            next = e.source();
        }
        DnsError::Transport {
            server: self.server,
            detail,
        }
    }
}

impl std::fmt::Debug for Rfc2136Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rfc2136Client")
            .field("server", &self.server)
            .field("key", &self.signer.signer_name().to_string())
            .finish_non_exhaustive()
    }
}

// === impl DnsError ===

impl DnsError {
    /// The server refused the update, or its answer failed TSIG verification: a server that
    /// does not know the key (BADKEY) or sees a wrong MAC (BADSIG) answers unsigned.
    pub fn is_refused(&self) -> bool {
        match self {
            DnsError::Refused { .. } | DnsError::TsigRejected { .. } => true,
            DnsError::Transport { detail, .. } => {
                let s = detail.to_ascii_lowercase();
                s.contains("tsig") || s.contains("hmac") || s.contains("notauth")
            }
            _ => false,
        }
    }
}

/// The DNS-01 record name for an identifier: `_acme-challenge.` + the name without `*.`,
/// fully qualified with its trailing dot (RFC 8555 §8.4).
pub(crate) fn challenge_record(identifier: &str) -> String {
    format!(
        "_acme-challenge.{}.",
        identifier.trim_start_matches("*.").trim_end_matches('.')
    )
}

fn fqdn(record: &str) -> Result<Name, DnsError> {
    let mut name = Name::from_ascii(record).map_err(|e| DnsError::Name {
        record: record.to_owned(),
        reason: e.to_string(),
    })?;
    name.set_fqdn(true);
    Ok(name)
}

fn parse_nameserver(s: &str) -> Result<SocketAddr, DnsError> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bare = s.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| DnsError::Nameserver(s.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameservers_parse_like_cert_manager() {
        let cases = [
            ("10.0.0.53", Some("10.0.0.53:53")),
            ("10.0.0.53:5353", Some("10.0.0.53:5353")),
            ("[::1]:53", Some("[::1]:53")),
            ("::1", Some("[::1]:53")),
            ("ns1.example.com", None),
            ("", None),
        ];
        for (input, want) in cases {
            let got = parse_nameserver(input).ok().map(|a| a.to_string());
            assert_eq!(got.as_deref(), want, "{input}");
        }
    }

    #[test]
    fn challenge_records_have_the_trailing_dot() {
        let cases = [
            ("app.portier.test", "_acme-challenge.app.portier.test."),
            ("*.portier.test", "_acme-challenge.portier.test."),
            ("app.portier.test.", "_acme-challenge.app.portier.test."),
        ];
        for (id, want) in cases {
            assert_eq!(challenge_record(id), want, "{id}");
        }
    }

    #[test]
    fn unsupported_algorithms_are_refused_before_any_traffic() {
        let cfg = Dns01Rfc2136 {
            nameserver: "127.0.0.1".into(),
            tsig_key_name: "k".into(),
            tsig_algorithm: TsigAlgorithm::HmacMd5,
            tsig_secret: crate::SecretBytes(vec![1; 32]),
        };
        assert!(matches!(
            Rfc2136Client::new(&cfg),
            Err(DnsError::Algorithm(TsigAlgorithm::HmacMd5))
        ));
    }
}
