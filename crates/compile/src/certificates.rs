//! cert-manager objects and annotations → the snapshot's certificate demand.
//!
//! Issuers (ClusterIssuer, Issuer) are resolved with their referenced Secrets (EAB key, TSIG
//! secret). Each `spec.tls` entry of an Ingress annotated with `cert-manager.io/cluster-issuer`
//! or `cert-manager.io/issuer`, and each Certificate object, becomes one demanded certificate
//! named after its Secret. Names not served by one of our Ingresses are never ordered.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use base64::Engine as _;
use portier_core::{FieldPath, Severity};
use portier_model::{Certificate, IssuerObject, Resource, SecretKeySelector, Stored};
use portier_snapshot::certificates::{
    AcmeIssuer, CertificateRequest, CurrentCertificate, DemandedCertificate, Dns01Rfc2136, ExternalAccountBinding,
    Http01Ingress, Issuer, IssuerKind, IssuerRef, KeyAlgorithm, PrivateKeySpec, RotationPolicy, SecretBytes, SecretRef,
    Solver, SolverKind, SolverSelector, TsigAlgorithm,
};
use portier_snapshot::CertificateDemand;

use crate::{Cx, Options};

/// Where Secrets referenced by a ClusterIssuer live, as cert-manager's default
/// `--cluster-resource-namespace`.
pub const CLUSTER_RESOURCE_NAMESPACE: &str = "cert-manager";

/// The `cert-manager.io/*` annotations of one Ingress.
#[derive(Debug, Clone, Default)]
pub(crate) struct CertAnnotations {
    pub issuer: Option<IssuerRef>,
    pub common_name: Option<String>,
    pub duration: Option<Duration>,
    pub renew_before: Option<Duration>,
    pub private_key: PrivateKeySpec,
}

/// A certificate wanted by an Ingress tls entry or a Certificate object, before its issuer and
/// names are checked.
pub(crate) struct Candidate<'m> {
    pub res: &'m Resource,
    /// The field a problem is reported on (`spec.tls[0]`, `spec`).
    pub at: FieldPath,
    pub request: CertificateRequest,
}

// === annotations ===

/// Reads one `cert-manager.io/*` annotation; `false` when the key is not one portier knows.
pub(crate) fn annotation(
    cx: &mut Cx<'_>,
    res: &Resource,
    field: &FieldPath,
    key: &str,
    value: &str,
    out: &mut CertAnnotations,
) -> bool {
    let bad = |cx: &mut Cx<'_>, msg: String, help: &str| {
        cx.report(Severity::Error, res, field.clone(), msg)
            .set_help(help.to_owned());
    };
    match key {
        "cert-manager.io/cluster-issuer" => {
            out.issuer = Some(IssuerRef {
                kind: IssuerKind::ClusterIssuer,
                namespace: None,
                name: value.to_owned(),
            });
        }
        "cert-manager.io/issuer" => {
            out.issuer = Some(IssuerRef {
                kind: IssuerKind::Issuer,
                namespace: Some(res.namespace().to_owned()),
                name: value.to_owned(),
            });
        }
        "cert-manager.io/common-name" => out.common_name = Some(value.to_owned()),
        "cert-manager.io/duration" | "cert-manager.io/renew-before" => match parse_go_duration(value) {
            Some(d) if key.ends_with("duration") => out.duration = Some(d),
            Some(d) => out.renew_before = Some(d),
            None => bad(
                cx,
                format!("{value:?} is not a duration; the CA's default applies"),
                "use a Go duration such as 2160h, 720h or 1h30m",
            ),
        },
        "cert-manager.io/private-key-algorithm" => match parse_algorithm(value) {
            Some(a) => out.private_key.algorithm = a,
            None => bad(
                cx,
                format!("{value:?} is not a key algorithm; RSA applies"),
                "use RSA, ECDSA or Ed25519",
            ),
        },
        "cert-manager.io/private-key-size" => match value.parse::<u32>() {
            Ok(n) => out.private_key.size = Some(n),
            Err(_) => bad(
                cx,
                format!("{value:?} is not a key size"),
                "use 2048, 3072 or 4096 for RSA; 256 or 384 for ECDSA",
            ),
        },
        "cert-manager.io/private-key-rotation-policy" => match parse_rotation(value) {
            Some(p) => out.private_key.rotation_policy = p,
            None => bad(
                cx,
                format!("{value:?} is not a rotation policy; Always applies"),
                "use Always or Never",
            ),
        },
        _ => return false,
    }
    true
}

// === compile ===

/// Turns the collected candidates, the Certificate objects and the issuers into the demand.
/// `served` holds the hosts of our Ingresses' rules (`app.example.com`, `*.example.com`).
pub(crate) fn demand(cx: &mut Cx<'_>, opts: &Options, served: &HashSet<String>) -> CertificateDemand {
    let mut issuers = BTreeMap::new();
    let objects: Vec<&Resource> = cx.index.issuers.clone();
    for res in objects {
        let (kind, obj) = match &res.object {
            Stored::ClusterIssuer(o) => (IssuerKind::ClusterIssuer, o),
            Stored::Issuer(o) => (IssuerKind::Issuer, o),
            _ => continue,
        };
        if let Some(issuer) = issuer(cx, opts, res, kind, obj) {
            issuers.insert(issuer.reference.clone(), issuer);
        }
    }

    let mut candidates = std::mem::take(&mut cx.cert_candidates);
    let certs: Vec<&Resource> = cx.index.certificates.clone();
    for res in certs {
        if let Stored::Certificate(c) = &res.object {
            if let Some(c) = certificate_object(cx, res, c) {
                candidates.push(c);
            }
        }
    }

    let mut out: BTreeMap<SecretRef, DemandedCertificate> = BTreeMap::new();
    for Candidate { res, at, mut request } in candidates {
        if !issuers.contains_key(&request.issuer) {
            let present = cx.index.issuers.iter().any(|r| {
                r.name() == request.issuer.name
                    && match request.issuer.kind {
                        IssuerKind::ClusterIssuer => matches!(r.object, Stored::ClusterIssuer(_)),
                        IssuerKind::Issuer => {
                            matches!(r.object, Stored::Issuer(_))
                                && Some(r.namespace()) == request.issuer.namespace.as_deref()
                        }
                    }
            });
            let msg = if present {
                format!(
                    "{} cannot be used (see its own diagnostics); no certificate is ordered for Secret {}",
                    request.issuer, request.secret
                )
            } else {
                format!(
                    "{} not found; no certificate is ordered for Secret {}",
                    request.issuer, request.secret
                )
            };
            cx.report(Severity::Error, res, at, msg)
                .set_help("create the issuer in the configuration directory, or fix the name; until then the hosts get the existing Secret or the fallback certificate");
            continue;
        }
        let mut names = Vec::new();
        for name in std::mem::take(&mut request.dns_names) {
            let lower = name.to_ascii_lowercase();
            if served.contains(&lower) {
                names.push(lower);
            } else {
                cx.report(
                    Severity::Warning,
                    res,
                    at.clone(),
                    format!("{lower} is not a host of any Ingress portier serves; it is left out of the certificate for Secret {}", request.secret),
                )
                .set_help("portier orders certificates only for hosts it serves: add a rule for this host to an Ingress of our class");
            }
        }
        if names.is_empty() {
            continue;
        }
        request.dns_names = names;
        if let Some(cn) = request.common_name.as_ref().map(|c| c.to_ascii_lowercase()) {
            if !served.contains(&cn) {
                cx.report(
                    Severity::Warning,
                    res,
                    at.clone(),
                    format!("common name {cn} is not a host portier serves; it is left out"),
                );
                request.common_name = None;
            }
        }
        if let Err(e) = request.identifiers() {
            cx.report(Severity::Error, res, at, e.to_string())
                .set_help("fix the names or the key settings; no certificate is ordered until then");
            continue;
        }
        if out.contains_key(&request.secret) {
            cx.report(
                Severity::Warning,
                res,
                at,
                format!(
                    "Secret {} is already demanded by another Ingress or Certificate; this one is ignored",
                    request.secret
                ),
            )
            .set_help("give each certificate its own secretName");
            continue;
        }
        let current = current(cx, &request.secret);
        out.insert(request.secret.clone(), DemandedCertificate { request, current });
    }
    CertificateDemand {
        issuers,
        certificates: out.into_values().collect(),
    }
}

/// HTTP-01 tokens sent by the ACME wiring as `AcmeChallenge` objects.
pub(crate) fn http01_tokens(cx: &Cx<'_>) -> BTreeMap<String, String> {
    cx.index
        .challenges
        .iter()
        .map(|c| (c.token.clone(), c.key_authorization.clone()))
        .collect()
}

fn current(cx: &mut Cx<'_>, secret: &SecretRef) -> Option<CurrentCertificate> {
    let ns = secret.namespace.as_deref().unwrap_or("default");
    let (_, s) = cx.index.secrets.get(&(ns, secret.name.as_str())).copied()?;
    let (_, info) = cx.secrets.load(ns, &secret.name, s).ok()?;
    Some(CurrentCertificate {
        dns_names: info.dns_names.clone(),
        not_before: info.not_before,
        not_after: info.not_after,
    })
}

fn certificate_object<'m>(cx: &mut Cx<'_>, res: &'m Resource, c: &Certificate) -> Option<Candidate<'m>> {
    let spec = &c.spec;
    let at = FieldPath::new("spec");
    if spec.secret_name.is_empty() {
        cx.report(
            Severity::Error,
            res,
            at.field("secretName"),
            "Certificate has no secretName".into(),
        )
        .set_help("name the kubernetes.io/tls Secret the certificate is stored in");
        return None;
    }
    let kind = match spec.issuer_ref.kind.as_deref() {
        None | Some("Issuer") => IssuerKind::Issuer,
        Some("ClusterIssuer") => IssuerKind::ClusterIssuer,
        Some(other) => {
            cx.report(
                Severity::Error,
                res,
                at.join("issuerRef.kind"),
                format!("issuer kind {other} is not supported"),
            )
            .set_help("use Issuer or ClusterIssuer");
            return None;
        }
    };
    if let Some(g) = spec.issuer_ref.group.as_deref().filter(|g| *g != "cert-manager.io") {
        cx.report(
            Severity::Error,
            res,
            at.join("issuerRef.group"),
            format!("issuer group {g} is not supported"),
        )
        .set_help("portier issues from cert-manager.io ACME issuers only");
        return None;
    }
    let mut private_key = PrivateKeySpec::default();
    if let Some(pk) = &spec.private_key {
        if let Some(a) = pk.algorithm.as_deref() {
            match parse_algorithm(a) {
                Some(a) => private_key.algorithm = a,
                None => {
                    cx.report(
                        Severity::Error,
                        res,
                        at.join("privateKey.algorithm"),
                        format!("{a:?} is not a key algorithm; RSA applies"),
                    );
                }
            }
        }
        private_key.size = pk.size;
        if let Some(p) = pk.rotation_policy.as_deref() {
            match parse_rotation(p) {
                Some(p) => private_key.rotation_policy = p,
                None => {
                    cx.report(
                        Severity::Error,
                        res,
                        at.join("privateKey.rotationPolicy"),
                        format!("{p:?} is not a rotation policy; Always applies"),
                    );
                }
            }
        }
    }
    let duration = |cx: &mut Cx<'_>, field: &str, v: &Option<String>| {
        let v = v.as_deref()?;
        let d = parse_go_duration(v);
        if d.is_none() {
            cx.report(
                Severity::Error,
                res,
                at.field(field),
                format!("{v:?} is not a duration"),
            )
            .set_help("use a Go duration such as 2160h or 1h30m");
        }
        d
    };
    let duration_v = duration(cx, "duration", &spec.duration);
    let renew_before = duration(cx, "renewBefore", &spec.renew_before);
    Some(Candidate {
        res,
        at: at.clone(),
        request: CertificateRequest {
            secret: SecretRef::new(Some(res.namespace()), &spec.secret_name),
            issuer: IssuerRef {
                kind,
                namespace: (kind == IssuerKind::Issuer).then(|| res.namespace().to_owned()),
                name: spec.issuer_ref.name.clone(),
            },
            dns_names: spec.dns_names.clone(),
            common_name: spec.common_name.clone(),
            duration: duration_v,
            renew_before,
            private_key,
            labels: res.labels(),
        },
    })
}

fn issuer(cx: &mut Cx<'_>, opts: &Options, res: &Resource, kind: IssuerKind, obj: &IssuerObject) -> Option<Issuer> {
    let reference = IssuerRef {
        kind,
        namespace: (kind == IssuerKind::Issuer).then(|| res.namespace().to_owned()),
        name: res.name().to_owned(),
    };
    let secret_ns = match kind {
        IssuerKind::ClusterIssuer => CLUSTER_RESOURCE_NAMESPACE.to_owned(),
        IssuerKind::Issuer => res.namespace().to_owned(),
    };
    let Some(acme) = &obj.spec.acme else {
        let other: Vec<&str> = obj.spec.other.keys().map(String::as_str).collect();
        cx.report(
            Severity::Error,
            res,
            FieldPath::new("spec"),
            format!(
                "issuer type {} is not supported: portier issues from ACME issuers only",
                if other.is_empty() {
                    "(none)".to_owned()
                } else {
                    other.join(", ")
                }
            ),
        )
        .set_help("use spec.acme, or run cert-manager beside portier for this issuer");
        return None;
    };
    let at = FieldPath::new("spec.acme");
    if acme.server.is_empty() {
        cx.report(
            Severity::Error,
            res,
            at.field("server"),
            "spec.acme.server is missing".into(),
        )
        .set_help("set the ACME directory URL, e.g. https://acme-staging-v02.api.letsencrypt.org/directory");
        return None;
    }
    let Some(key_ref) = acme.private_key_secret_ref.as_ref().filter(|k| !k.name.is_empty()) else {
        cx.report(
            Severity::Error,
            res,
            at.field("privateKeySecretRef"),
            "spec.acme.privateKeySecretRef is missing".into(),
        )
        .set_help("name the Secret that holds the ACME account key; portier creates the key under --state-dir");
        return None;
    };
    let account_key = account_key(
        cx,
        res,
        &reference,
        &at.field("privateKeySecretRef"),
        &secret_ns,
        key_ref,
    )?;
    let ca_bundle = match acme.ca_bundle.as_deref() {
        None => None,
        Some(b) if b.trim_start().starts_with("-----BEGIN") => Some(b.to_owned()),
        Some(b) => match base64::engine::general_purpose::STANDARD
            .decode(b.trim())
            .ok()
            .and_then(|v| String::from_utf8(v).ok())
        {
            Some(pem) => Some(pem),
            None => {
                cx.report(
                    Severity::Error,
                    res,
                    at.field("caBundle"),
                    "caBundle is neither base64 of a PEM bundle nor PEM".into(),
                )
                .set_help("base64-encode the PEM file, as cert-manager expects");
                return None;
            }
        },
    };
    let external_account_binding = match &acme.external_account_binding {
        None => None,
        Some(eab) => {
            let field = at.join("externalAccountBinding.keySecretRef");
            let key = secret_value(cx, res, &field, &secret_ns, eab.key_secret_ref.as_ref(), "secret")?;
            let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(String::from_utf8_lossy(&key).trim().trim_end_matches('='))
                .unwrap_or(key);
            Some(ExternalAccountBinding {
                key_id: eab.key_id.clone(),
                key: SecretBytes(decoded),
            })
        }
    };
    let mut solvers = Vec::new();
    for (i, s) in acme.solvers.iter().enumerate() {
        let sat = at.field("solvers").index(i);
        let selector = s.selector.as_ref().map(|sel| SolverSelector {
            dns_names: sel.dns_names.clone(),
            dns_zones: sel.dns_zones.clone(),
            match_labels: sel.match_labels.clone(),
        });
        let kind = match (&s.http01, &s.dns01) {
            (Some(h), None) => match &h.ingress {
                Some(ing) if h.other.is_empty() => {
                    check_class(
                        cx,
                        opts,
                        res,
                        &sat.join("http01.ingress"),
                        ing.ingress_class_name.as_deref(),
                        ing.class.as_deref(),
                    );
                    SolverKind::Http01 {
                        ingress: Http01Ingress {
                            class: ing.class.clone(),
                            ingress_class_name: ing.ingress_class_name.clone(),
                            name: ing.name.clone(),
                        },
                    }
                }
                _ => {
                    let kinds: Vec<&str> = h.other.keys().map(String::as_str).collect();
                    cx.report(
                        Severity::Error,
                        res,
                        sat.field("http01"),
                        format!(
                            "HTTP-01 solver {} is not supported; the solver is left out",
                            kinds.join(", ")
                        ),
                    )
                    .set_help("use http01.ingress: portier answers the challenge on its own HTTP listener");
                    continue;
                }
            },
            (None, Some(d)) => match &d.rfc2136 {
                Some(r) if d.other.is_empty() => {
                    let field = sat.join("dns01.rfc2136.tsigSecretSecretRef");
                    let Some(raw) = secret_value(cx, res, &field, &secret_ns, r.tsig_secret_secret_ref.as_ref(), "")
                    else {
                        continue;
                    };
                    let text = String::from_utf8_lossy(&raw).trim().to_owned();
                    let Ok(secret) = base64::engine::general_purpose::STANDARD.decode(&text) else {
                        cx.report(Severity::Error, res, field, "the TSIG secret is not base64".into())
                            .set_help("store the secret exactly as tsig-keygen prints it");
                        continue;
                    };
                    let alg = match r.tsig_algorithm.as_deref().map(str::to_ascii_uppercase).as_deref() {
                        None | Some("HMACSHA256") => TsigAlgorithm::HmacSha256,
                        Some("HMACSHA512") => TsigAlgorithm::HmacSha512,
                        Some(other) => {
                            cx.report(
                                Severity::Error,
                                res,
                                sat.join("dns01.rfc2136.tsigAlgorithm"),
                                format!("TSIG algorithm {other} is not supported; the solver is left out"),
                            )
                            .set_help("use HMACSHA256 or HMACSHA512");
                            continue;
                        }
                    };
                    SolverKind::Dns01 {
                        rfc2136: Dns01Rfc2136 {
                            nameserver: r.nameserver.clone(),
                            tsig_key_name: r.tsig_key_name.clone(),
                            tsig_algorithm: alg,
                            tsig_secret: SecretBytes(secret),
                        },
                    }
                }
                _ => {
                    let kinds: Vec<&str> = d.other.keys().map(String::as_str).collect();
                    cx.report(
                        Severity::Error,
                        res,
                        sat.field("dns01"),
                        format!(
                            "DNS-01 provider {} is not supported; the solver is left out",
                            kinds.join(", ")
                        ),
                    )
                    .set_help("use dns01.rfc2136 (any DNS server that accepts TSIG-signed dynamic updates)");
                    continue;
                }
            },
            _ => {
                cx.report(
                    Severity::Error,
                    res,
                    sat,
                    "a solver needs exactly one of http01 or dns01; it is left out".into(),
                );
                continue;
            }
        };
        solvers.push(Solver {
            selector: selector.unwrap_or_default(),
            kind,
        });
    }
    if solvers.is_empty() {
        cx.report(
            Severity::Error,
            res,
            at.field("solvers"),
            "no usable solver; no certificate can be issued from this issuer".into(),
        )
        .set_help("add - http01: {ingress: {ingressClassName: portier}}");
        return None;
    }
    Some(Issuer {
        reference,
        acme: AcmeIssuer {
            server: acme.server.clone(),
            email: acme.email.clone(),
            private_key_secret_ref: SecretRef {
                namespace: (kind == IssuerKind::Issuer).then(|| res.namespace().to_owned()),
                name: key_ref.name.clone(),
            },
            account_key,
            ca_bundle,
            skip_tls_verify: acme.skip_tls_verify,
            external_account_binding,
            solvers,
        },
    })
}

/// The account key in the user's Secret named by `privateKeySecretRef`, as cert-manager reads it
/// (`key`, by default `tls.key`; `stringData` over `data`). `Some(None)` when the configuration
/// has no such Secret: the engine then uses the key it keeps under `--state-dir`, or registers a
/// new account. `None` (the issuer cannot be used, reported) when the Secret is there but holds no
/// key the ACME client can sign with: a new account would silently replace the user's.
fn account_key(
    cx: &mut Cx<'_>,
    res: &Resource,
    issuer: &IssuerRef,
    field: &FieldPath,
    ns: &str,
    sel: &SecretKeySelector,
) -> Option<Option<SecretBytes>> {
    let Some((_, secret)) = cx.index.secrets.get(&(ns, sel.name.as_str())).copied() else {
        return Some(None);
    };
    let key = sel.key.as_deref().filter(|k| !k.is_empty()).unwrap_or("tls.key");
    let value = secret
        .string_data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| v.as_bytes().to_vec())
        .or_else(|| secret.data.as_ref().and_then(|d| d.get(key)).map(|b| b.0.clone()));
    let keep = "portier never replaces a user's ACME account key with a new account; no certificate is ordered from this issuer until then";
    let Some(pem) = value else {
        cx.report(
            Severity::Error,
            res,
            field.clone(),
            format!(
                "Secret {ns}/{} has no {key:?}, so the ACME account key of {issuer} cannot be read; {keep}",
                sel.name
            ),
        )
        .set_help(format!(
            "put the PEM account key under data or stringData {key:?} of the Secret, or remove the Secret from the configuration directory to let portier register a new account"
        ));
        return None;
    };
    if let Err(why) = portier_snapshot::account_key::account_key_pkcs8(&pem) {
        cx.report(
            Severity::Error,
            res,
            field.clone(),
            format!(
                "Secret {ns}/{} {key:?} holds {why}, so {issuer} cannot use this ACME account; {keep}",
                sel.name
            ),
        )
        .set_help(
            "put a PEM ECDSA P-256 key in the Secret (openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256), or remove the Secret from the configuration directory (or name a new Secret in privateKeySecretRef) to let portier register a new account with its own key",
        );
        return None;
    }
    Some(Some(SecretBytes(pem)))
}

/// An `http01.ingress` class naming another controller is reported: portier answers anyway.
fn check_class(
    cx: &mut Cx<'_>,
    opts: &Options,
    res: &Resource,
    at: &FieldPath,
    class_name: Option<&str>,
    class: Option<&str>,
) {
    if let Some(c) = class_name {
        let ours = cx.index.classes.get(c).is_some_and(|(_, ic)| {
            ic.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(opts.controller_name.as_str())
        });
        if !ours {
            cx.report(
                Severity::Warning,
                res,
                at.field("ingressClassName"),
                format!(
                    "IngressClass {c} is not one of portier's; portier answers the HTTP-01 challenge itself anyway"
                ),
            )
            .set_help(format!(
                "set ingressClassName to an IngressClass with spec.controller: {}",
                opts.controller_name
            ));
        }
    }
    if let Some(c) = class.filter(|c| *c != opts.ingress_class) {
        cx.report(
            Severity::Warning,
            res,
            at.field("class"),
            format!(
                "class {c} is not portier's ({}); portier answers the HTTP-01 challenge itself anyway",
                opts.ingress_class
            ),
        );
    }
}

/// The bytes of a referenced Secret key (`key` defaults to `default_key`, or the only key).
fn secret_value(
    cx: &mut Cx<'_>,
    res: &Resource,
    field: &FieldPath,
    ns: &str,
    sel: Option<&SecretKeySelector>,
    default_key: &str,
) -> Option<Vec<u8>> {
    let Some(sel) = sel.filter(|s| !s.name.is_empty()) else {
        cx.report(
            Severity::Error,
            res,
            field.clone(),
            "the Secret reference is missing".into(),
        )
        .set_help("name the Secret and its key");
        return None;
    };
    let Some((_, secret)) = cx.index.secrets.get(&(ns, sel.name.as_str())).copied() else {
        cx.report(Severity::Error, res, field.clone(), format!("Secret {ns}/{} not found", sel.name))
            .set_help("create the Secret in the configuration directory (a ClusterIssuer's Secrets live in the namespace cert-manager)");
        return None;
    };
    let mut values: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    for (k, v) in secret.data.iter().flatten() {
        values.insert(k, v.0.clone());
    }
    for (k, v) in secret.string_data.iter().flatten() {
        values.insert(k, v.as_bytes().to_vec());
    }
    let key = sel.key.as_deref().unwrap_or(default_key);
    let found = if key.is_empty() && values.len() == 1 {
        values.into_values().next()
    } else {
        values.remove(key)
    };
    if found.is_none() {
        cx.report(
            Severity::Error,
            res,
            field.clone(),
            format!("Secret {ns}/{} has no key {key:?}", sel.name),
        )
        .set_help("set key: to the Secret key that holds the value");
    }
    found
}

fn parse_algorithm(s: &str) -> Option<KeyAlgorithm> {
    match s.to_ascii_lowercase().as_str() {
        "rsa" => Some(KeyAlgorithm::Rsa),
        "ecdsa" => Some(KeyAlgorithm::Ecdsa),
        "ed25519" => Some(KeyAlgorithm::Ed25519),
        _ => None,
    }
}

fn parse_rotation(s: &str) -> Option<RotationPolicy> {
    match s {
        "Always" => Some(RotationPolicy::Always),
        "Never" => Some(RotationPolicy::Never),
        _ => None,
    }
}

/// A Go `time.Duration` string as cert-manager accepts it: `2160h`, `1h30m`, `90s`, `500ms`.
pub(crate) fn parse_go_duration(s: &str) -> Option<Duration> {
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(digits);
        let n: f64 = num.parse().ok()?;
        let unit_len = tail.find(|c: char| c.is_ascii_digit()).unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let secs = match unit {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return None,
        };
        total += Duration::try_from_secs_f64(n * secs).ok()?;
        rest = tail;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let cases = [
            ("2160h", Some(2160 * 3600)),
            ("1h30m", Some(5400)),
            ("720h0m0s", Some(720 * 3600)),
            ("90s", Some(90)),
            ("", None),
            ("10d", None),
            ("h", None),
            ("5", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_go_duration(s).map(|d| d.as_secs()), want, "{s:?}");
        }
    }
}
