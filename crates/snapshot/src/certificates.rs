//! Certificate demand: cert-manager's configuration objects as compile resolves them (an
//! Issuer's `spec.acme`, the demand for one certificate) and the HTTP-01 tokens being served.
//! The data plane reads only the tokens; the acme crate reads the demand. Secret material
//! (EAB key, TSIG secret, a user-supplied account key) is resolved by compile and is never
//! serialized.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use portier_core::HostMatch;
use serde::{Deserialize, Serialize};

/// What compile wants issued: every usable issuer and every demanded certificate, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertificateDemand {
    pub issuers: BTreeMap<IssuerRef, Issuer>,
    /// One per Secret, sorted by Secret.
    pub certificates: Vec<DemandedCertificate>,
}

/// One certificate to keep issued, with what its Secret holds today.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemandedCertificate {
    pub request: CertificateRequest,
    /// The certificate in the Secret now; `None` when the Secret is missing or unreadable.
    pub current: Option<CurrentCertificate>,
}

/// What the certificate in a demanded Secret covers and how long it is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentCertificate {
    /// Lower-case SAN DNS names.
    pub dns_names: Vec<String>,
    /// Seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
}

/// A ClusterIssuer or Issuer with an ACME spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Issuer {
    pub reference: IssuerRef,
    pub acme: AcmeIssuer,
}

/// `spec.acme` of a cert-manager ClusterIssuer or Issuer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcmeIssuer {
    /// The ACME directory URL, e.g. `https://acme-v02.api.letsencrypt.org/directory`.
    pub server: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Where the ACME account key lives (a PEM ECDSA P-256 key, like cert-manager's `tls.key`).
    pub private_key_secret_ref: SecretRef,
    /// The PEM account key from the user's own Secret named by `privateKeySecretRef` (its
    /// `tls.key`), when the configuration has that Secret; compile has checked that the engine can
    /// sign with it. The engine then uses this key (this ACME account) instead of the one it keeps
    /// under `--state-dir`, and never writes a copy. `None`: the engine's stored key, or a new
    /// account. Never serialized; `Debug` prints only its length.
    #[serde(skip)]
    pub account_key: Option<SecretBytes>,
    /// PEM bundle trusted for the ACME server's own HTTPS certificate, instead of the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<String>,
    /// Accept any HTTPS certificate from the ACME server. Only for test CAs.
    #[serde(default, rename = "skipTLSVerify")]
    pub skip_tls_verify: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_account_binding: Option<ExternalAccountBinding>,
    #[serde(default)]
    pub solvers: Vec<Solver>,
}

/// `externalAccountBinding`: the CA's key id and the HMAC key from `keySecretRef`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalAccountBinding {
    #[serde(rename = "keyID")]
    pub key_id: String,
    /// The decoded HMAC key bytes.
    #[serde(skip)]
    pub key: SecretBytes,
}

/// One entry of `spec.acme.solvers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Solver {
    #[serde(default)]
    pub selector: SolverSelector,
    #[serde(flatten)]
    pub kind: SolverKind,
}

/// `solvers[].selector`: an empty selector matches every name, with the lowest precedence.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SolverSelector {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_zones: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
}

/// The solver kinds portier implements. Other kinds are a diagnostic in compile, never silence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SolverKind {
    /// `http01.ingress`: portier answers the challenge on its own HTTP listener.
    Http01 { ingress: Http01Ingress },
    /// `dns01.rfc2136`.
    Dns01 { rfc2136: Dns01Rfc2136 },
}

/// `http01.ingress`. portier serves the token itself, so the fields only say which
/// controller the user meant; compile reports a class that is not portier's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Http01Ingress {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_class_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `dns01.rfc2136`: dynamic updates to `nameserver`, signed with a TSIG key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dns01Rfc2136 {
    /// `ip` or `ip:port` (port 53 when absent), as cert-manager accepts it.
    pub nameserver: String,
    pub tsig_key_name: String,
    #[serde(default)]
    pub tsig_algorithm: TsigAlgorithm,
    /// The decoded TSIG secret (the Secret holds it base64-encoded, as `tsig-keygen` prints it).
    #[serde(skip)]
    pub tsig_secret: SecretBytes,
}

/// cert-manager's `tsigAlgorithm` values. Only the SHA-2 ones are implemented by hickory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TsigAlgorithm {
    #[serde(rename = "HMACMD5")]
    HmacMd5,
    #[serde(rename = "HMACSHA1")]
    HmacSha1,
    #[default]
    #[serde(rename = "HMACSHA256")]
    HmacSha256,
    #[serde(rename = "HMACSHA512")]
    HmacSha512,
}

/// Bytes that must not reach a log or the admin API: `Debug` prints only their length.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretBytes(pub Vec<u8>);

/// `ClusterIssuer NAME` or `Issuer NAMESPACE/NAME`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuerRef {
    pub kind: IssuerKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum IssuerKind {
    ClusterIssuer,
    Issuer,
}

/// A Secret by namespace and name. `namespace` is `None` only for keys of a ClusterIssuer,
/// which the wiring stores in its own namespace (cert-manager's "cluster resource namespace").
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

/// The demand for one certificate: one `spec.tls` entry of an annotated Ingress, or a
/// cert-manager Certificate object. Named after the Secret it fills.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateRequest {
    pub secret: SecretRef,
    pub issuer: IssuerRef,
    pub dns_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
    /// Requested lifetime. instant-acme 0.8 cannot send newOrder's `notAfter`, so the CA's
    /// default applies; kept so the admin view can show what was asked for.
    #[serde(default, with = "opt_secs", skip_serializing_if = "Option::is_none")]
    pub duration: Option<Duration>,
    #[serde(default, with = "opt_secs", skip_serializing_if = "Option::is_none")]
    pub renew_before: Option<Duration>,
    #[serde(default)]
    pub private_key: PrivateKeySpec,
    /// Labels a solver's `matchLabels` is matched against.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// `cert-manager.io/private-key-*`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrivateKeySpec {
    #[serde(default)]
    pub algorithm: KeyAlgorithm,
    /// RSA: 2048 (default), 3072 or 4096 bits; ECDSA: 256 (default) or 384.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u32>,
    #[serde(default)]
    pub rotation_policy: RotationPolicy,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyAlgorithm {
    #[default]
    #[serde(rename = "RSA")]
    Rsa,
    #[serde(rename = "ECDSA")]
    Ecdsa,
    Ed25519,
}

/// cert-manager ≥ 1.18 defaults to `Always`: every issuance gets a fresh key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RotationPolicy {
    #[default]
    Always,
    Never,
}

/// Why a request cannot be ordered. Compile should already have turned these into diagnostics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRequest {
    #[error("certificate for Secret {secret}: no dnsNames: list at least one host in spec.tls[].hosts")]
    NoNames { secret: String },
    #[error("certificate for Secret {secret}: dnsNames: {reason}")]
    Name { secret: String, reason: String },
    #[error("certificate for Secret {secret}: privateKey: {algorithm:?} size {size} is not supported: use {hint}")]
    KeySize {
        secret: String,
        algorithm: KeyAlgorithm,
        size: u32,
        hint: &'static str,
    },
}

// === impl CertificateDemand ===

impl CertificateDemand {
    pub fn is_empty(&self) -> bool {
        self.issuers.is_empty() && self.certificates.is_empty()
    }

    pub fn issuer(&self, r: &IssuerRef) -> Option<&Issuer> {
        self.issuers.get(r)
    }
}

// === impl SecretRef ===

impl SecretRef {
    pub fn new(namespace: Option<&str>, name: &str) -> Self {
        Self {
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
        }
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

// === impl IssuerRef ===

impl fmt::Display for IssuerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.kind, &self.namespace) {
            (IssuerKind::Issuer, Some(ns)) => write!(f, "Issuer {ns}/{}", self.name),
            (IssuerKind::Issuer, None) => write!(f, "Issuer {}", self.name),
            (IssuerKind::ClusterIssuer, _) => write!(f, "ClusterIssuer {}", self.name),
        }
    }
}

// === impl CertificateRequest ===

impl CertificateRequest {
    /// The names to order: `dnsNames` lower-cased, plus `commonName` when it is not among them
    /// (CAs require the CN to be a SAN), without duplicates, in the order given.
    ///
    /// Fails on an empty list, a name that is not a DNS name or `*.parent` wildcard, or a key
    /// size rcgen cannot generate.
    pub fn identifiers(&self) -> Result<Vec<String>, InvalidRequest> {
        let secret = self.secret.to_string();
        let mut names: Vec<String> = Vec::new();
        for raw in self.dns_names.iter().chain(self.common_name.iter()) {
            let host = HostMatch::from_str(raw).map_err(|e| InvalidRequest::Name {
                secret: secret.clone(),
                reason: e.to_string(),
            })?;
            let name = match host {
                HostMatch::Exact(h) => h.as_str().to_owned(),
                HostMatch::Wildcard { parent } => format!("*.{}", parent.as_str()),
            };
            if !names.contains(&name) {
                names.push(name);
            }
        }
        if names.is_empty() {
            return Err(InvalidRequest::NoNames { secret });
        }
        self.private_key.check(&secret)?;
        Ok(names)
    }
}

// === impl PrivateKeySpec ===

impl PrivateKeySpec {
    fn check(&self, secret: &str) -> Result<(), InvalidRequest> {
        let bad = |hint| InvalidRequest::KeySize {
            secret: secret.to_owned(),
            algorithm: self.algorithm,
            size: self.size.unwrap_or_default(),
            hint,
        };
        match (self.algorithm, self.size) {
            (KeyAlgorithm::Rsa, None | Some(2048 | 3072 | 4096)) => Ok(()),
            (KeyAlgorithm::Rsa, Some(_)) => Err(bad("2048, 3072 or 4096")),
            (KeyAlgorithm::Ecdsa, None | Some(256 | 384)) => Ok(()),
            (KeyAlgorithm::Ecdsa, Some(_)) => Err(bad("256 or 384")),
            (KeyAlgorithm::Ed25519, _) => Ok(()),
        }
    }
}

// === impl SecretBytes ===

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} secret bytes>", self.0.len())
    }
}

/// Picks the solver for one name the way cert-manager does: a solver whose `dnsNames` lists the
/// name beats any `dnsZones` match; among zone matches the longest zone wins; then the one with
/// more `matchLabels`; an empty selector matches everything with the lowest precedence; ties go
/// to the first solver in the list. Wildcard names can only be solved by DNS-01 (RFC 8555 §7.1.3).
/// Returns `None` when no solver applies.
pub fn select_solver<'a>(solvers: &'a [Solver], name: &str, labels: &BTreeMap<String, String>) -> Option<&'a Solver> {
    let wildcard = name.starts_with("*.");
    let base = name.trim_start_matches("*.");
    let mut best: Option<(&Solver, (bool, usize, usize))> = None;
    for solver in solvers {
        if wildcard && !matches!(solver.kind, SolverKind::Dns01 { .. }) {
            continue;
        }
        let sel = &solver.selector;
        if !sel.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            continue;
        }
        let by_name = sel.dns_names.iter().any(|n| n.eq_ignore_ascii_case(name));
        let zone_len = sel
            .dns_zones
            .iter()
            .map(|z| z.trim_end_matches('.'))
            .filter(|z| in_zone(base, z))
            .map(str::len)
            .max();
        let constrained = !sel.dns_names.is_empty() || !sel.dns_zones.is_empty();
        if constrained && !by_name && zone_len.is_none() {
            continue;
        }
        let score = (by_name, zone_len.unwrap_or(0), sel.match_labels.len());
        if best.as_ref().is_none_or(|(_, s)| score > *s) {
            best = Some((solver, score));
        }
    }
    best.map(|(s, _)| s)
}

fn in_zone(name: &str, zone: &str) -> bool {
    let (name, zone) = (name.to_ascii_lowercase(), zone.to_ascii_lowercase());
    name == zone || name.ends_with(&format!(".{zone}"))
}

/// `Option<Duration>` as whole seconds, so the admin API shows `"renewBefore": 720`.
mod opt_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_secs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solver(id: &str, dns01: bool, names: &[&str], zones: &[&str], labels: &[(&str, &str)]) -> Solver {
        let kind = if dns01 {
            SolverKind::Dns01 {
                rfc2136: Dns01Rfc2136 {
                    nameserver: "127.0.0.1".into(),
                    tsig_key_name: id.into(),
                    tsig_algorithm: TsigAlgorithm::HmacSha256,
                    tsig_secret: SecretBytes::default(),
                },
            }
        } else {
            SolverKind::Http01 {
                ingress: Http01Ingress {
                    name: Some(id.into()),
                    ..Http01Ingress::default()
                },
            }
        };
        Solver {
            selector: SolverSelector {
                dns_names: names.iter().map(|s| s.to_string()).collect(),
                dns_zones: zones.iter().map(|s| s.to_string()).collect(),
                match_labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            },
            kind,
        }
    }

    fn id(s: &Solver) -> String {
        match &s.kind {
            SolverKind::Http01 { ingress } => ingress.name.clone().unwrap_or_default(),
            SolverKind::Dns01 { rfc2136 } => rfc2136.tsig_key_name.clone(),
        }
    }

    #[test]
    fn solver_selection_follows_cert_manager_precedence() {
        let solvers = vec![
            solver("default", false, &[], &[], &[]),
            solver("zone", true, &[], &["example.com"], &[]),
            solver("subzone", true, &[], &["shop.example.com."], &[]),
            solver("exact", false, &["www.shop.example.com"], &[], &[]),
            solver("labelled", false, &[], &[], &[("team", "a")]),
        ];
        let team_a: BTreeMap<String, String> = [("team".to_string(), "a".to_string())].into();
        let none = BTreeMap::new();
        let cases: [(&str, &BTreeMap<String, String>, Option<&str>); 7] = [
            ("other.org", &none, Some("default")),
            ("other.org", &team_a, Some("labelled")),
            ("example.com", &none, Some("zone")),
            ("api.example.com", &none, Some("zone")),
            ("cart.shop.example.com", &none, Some("subzone")),
            ("www.shop.example.com", &none, Some("exact")),
            ("*.example.com", &none, Some("zone")),
        ];
        for (name, labels, want) in cases {
            let got = select_solver(&solvers, name, labels).map(id);
            assert_eq!(got.as_deref(), want, "{name} {labels:?}");
        }
    }

    #[test]
    fn wildcards_need_dns01_and_constrained_selectors_exclude() {
        let http_only = vec![solver("http", false, &[], &[], &[])];
        assert!(select_solver(&http_only, "*.example.com", &BTreeMap::new()).is_none());
        let scoped = vec![solver("z", true, &[], &["example.com"], &[])];
        assert!(select_solver(&scoped, "example.org", &BTreeMap::new()).is_none());
        assert!(
            select_solver(&scoped, "notexample.com", &BTreeMap::new()).is_none(),
            "zone match is by label"
        );
    }

    #[test]
    fn identifiers_are_validated_and_deduplicated() {
        let req = |names: &[&str], cn: Option<&str>| CertificateRequest {
            secret: SecretRef::new(Some("shop"), "web-tls"),
            issuer: IssuerRef {
                kind: IssuerKind::ClusterIssuer,
                namespace: None,
                name: "le".into(),
            },
            dns_names: names.iter().map(|s| s.to_string()).collect(),
            common_name: cn.map(str::to_owned),
            duration: None,
            renew_before: None,
            private_key: PrivateKeySpec::default(),
            labels: BTreeMap::new(),
        };
        let ok = req(
            &["Shop.Example.com", "*.example.com", "shop.example.com"],
            Some("api.example.com"),
        );
        assert_eq!(
            ok.identifiers().ok(),
            Some(vec![
                "shop.example.com".into(),
                "*.example.com".into(),
                "api.example.com".into()
            ])
        );
        assert!(matches!(
            req(&[], None).identifiers(),
            Err(InvalidRequest::NoNames { .. })
        ));
        assert!(matches!(
            req(&["10.0.0.1"], None).identifiers(),
            Err(InvalidRequest::Name { .. })
        ));
        let mut big = req(&["a.example.com"], None);
        big.private_key.size = Some(1024);
        assert!(matches!(big.identifiers(), Err(InvalidRequest::KeySize { .. })));
    }

    #[test]
    fn secrets_never_serialize() {
        let b = ExternalAccountBinding {
            key_id: "kid-1".into(),
            key: SecretBytes(b"hmac".to_vec()),
        };
        let json = serde_json::to_string(&b).unwrap_or_default();
        assert_eq!(json, r#"{"keyID":"kid-1"}"#);
        assert_eq!(format!("{:?}", b.key), "<4 secret bytes>");
    }

    #[test]
    fn a_user_account_key_never_serializes_nor_prints() {
        let pem = "-----BEGIN PRIVATE KEY-----\nSECRETSECRET\n-----END PRIVATE KEY-----\n";
        let acme = AcmeIssuer {
            server: "https://ca.test/dir".into(),
            email: None,
            private_key_secret_ref: SecretRef::new(None, "le-account-key"),
            account_key: Some(SecretBytes(pem.as_bytes().to_vec())),
            ca_bundle: None,
            skip_tls_verify: false,
            external_account_binding: None,
            solvers: Vec::new(),
        };
        let json = serde_json::to_string(&acme).unwrap_or_default();
        assert!(!json.contains("SECRET") && !json.contains("accountKey"), "{json}");
        let debug = format!("{acme:?}");
        assert!(!debug.contains("SECRET"), "{debug}");
        assert!(debug.contains(&format!("<{} secret bytes>", pem.len())), "{debug}");
        let back: AcmeIssuer = serde_json::from_str(&json).expect("round trip");
        assert_eq!(back.account_key, None);
    }
}
