//! One Ingress → routes, certificates and default backends.

use std::collections::HashSet;
use std::sync::Arc;

use portier_core::{FieldPath, HostMatch, Severity};
use portier_model::slim::Ingress;
use portier_model::Resource;
use portier_snapshot::{PathMatch, PathType, Route};

use crate::{annotations, backends, concat, describe, tls, Cx, Part::N, Part::S};

/// Candidates for the catch-all default backend, collected while compiling and decided at the end.
#[derive(Default)]
pub(crate) struct DefaultBackends {
    /// `spec.defaultBackend` of Ingresses without rules, oldest first. The first one serves every
    /// request no rule matches (ingress-nginx's rule: an Ingress with rules does not capture the
    /// traffic of hosts it does not name).
    catch_all: Vec<Route>,
}

pub(crate) fn compile_ingress<'m>(cx: &mut Cx<'m>, (res, ing): (&'m Resource, &'m Ingress)) {
    let defaults = cx.default_policy.clone();
    let ann = annotations::parse(cx, res, &defaults);
    let Some(spec) = ing.spec.as_ref() else {
        cx.report(Severity::Error, res, FieldPath::root(), "Ingress has no spec".into())
            .set_help("add spec.rules or spec.defaultBackend");
        return;
    };
    let ingress_label: Arc<str> = concat(&[S(res.namespace()), S("/"), S(res.name())]).into();
    let tls_hosts = compile_tls(cx, res, ing, &ann);
    let policy = cx.policy(&ann.policy);

    let rules = &*spec.rules;
    if rules.is_empty() && spec.default_backend.is_none() {
        cx.report(
            Severity::Error,
            res,
            FieldPath::new("spec"),
            "Ingress has neither rules nor a defaultBackend".into(),
        )
        .set_help("add spec.rules with paths, or a spec.defaultBackend");
        return;
    }

    let default_backend = spec.default_backend.as_ref().map(|b| {
        let at = FieldPath::new("spec.defaultBackend");
        (b, at)
    });

    let mut hosts_with_rules: Vec<Option<HostMatch>> = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let at = FieldPath::new("spec.rules").index(i);
        let host = match rule.host.as_deref() {
            None | Some("") => None,
            Some(h) => match h.parse::<HostMatch>() {
                Ok(m) => Some(m),
                Err(e) => {
                    cx.report(Severity::Error, res, at.field("host"), e.to_string())
                        .set_help("use a DNS name such as app.example.com or a wildcard such as *.example.com; the rule is left out");
                    continue;
                }
            },
        };
        let redirect = https_redirect(&ann, &tls_hosts, host.as_ref());
        if let Some(h) = &host {
            cx.served_hosts.push(h.clone());
        }
        if !hosts_with_rules.contains(&host) {
            hosts_with_rules.push(host.clone());
        }
        let Some(paths) = rule.paths.as_deref() else {
            if default_backend.is_none() {
                cx.report(
                    Severity::Warning,
                    res,
                    at.clone(),
                    "rule has no http paths and the Ingress has no defaultBackend; it serves nothing".into(),
                )
                .set_help("add http.paths to the rule");
            }
            continue;
        };
        for (j, p) in paths.iter().enumerate() {
            // One allocation for `spec.rules[i].http.paths[j]`: at ten thousand Ingresses the
            // paths of fields cost more than the routes.
            let at = FieldPath::new(concat(&[
                S("spec.rules["),
                N(i as i64),
                S("].http.paths["),
                N(j as i64),
                S("]"),
            ]));
            let Ok(path_type) = p.path_type.parse::<PathType>() else {
                cx.report(
                    Severity::Error,
                    res,
                    at.field("pathType"),
                    format!("unknown pathType {:?}", p.path_type),
                )
                .set_help("use Exact, Prefix or ImplementationSpecific; the path is left out");
                continue;
            };
            let path = p.path.as_deref().unwrap_or("/");
            if let Err(msg) = validate_path(path_type, path) {
                cx.report(Severity::Error, res, at.field("path"), msg)
                    .set_help("write an absolute path such as /api; the path is left out");
                continue;
            }
            let resolved = backends::resolve(cx, res, &p.backend, &at.field("backend"));
            let route = Route {
                host: host.clone(),
                path: PathMatch::new(path_type, path),
                path_type,
                ingress: ingress_label.clone(),
                backend: resolved.label,
                action: resolved.action,
                https_redirect: redirect,
                policy: policy.clone(),
                attached: Default::default(),
            };
            add_route(cx, res, at, route);
        }
    }

    if let Some((backend, at)) = default_backend {
        let resolved = backends::resolve(cx, res, backend, &at);
        let make = |host: Option<HostMatch>, redirect: bool| Route {
            host,
            path: PathMatch::any(),
            path_type: PathType::Prefix,
            ingress: ingress_label.clone(),
            backend: resolved.label.clone(),
            action: resolved.action.clone(),
            https_redirect: redirect,
            policy: policy.clone(),
            attached: Default::default(),
        };
        if rules.is_empty() {
            cx.defaults.catch_all.push(make(None, ann.force_ssl_redirect));
        } else {
            // The Ingress' default backend serves the paths of its own hosts that no rule matches.
            for host in hosts_with_rules {
                let redirect = https_redirect(&ann, &tls_hosts, host.as_ref());
                if let Err(existing) = cx.routes.fallback(make(host.clone(), redirect)) {
                    let host_s = host.map_or_else(
                        || "requests without a matching host".to_owned(),
                        |h| format!("host {h}"),
                    );
                    cx.report(
                        Severity::Warning,
                        res,
                        at.clone(),
                        format!(
                            "the default backend for {host_s} is already set by Ingress {}; this one is ignored",
                            existing.ingress
                        ),
                    )
                    .set_help("the oldest Ingress wins; remove one of the defaultBackends");
                }
            }
        }
    }
}

pub(crate) fn finish_default_backends(cx: &mut Cx<'_>) {
    let mut candidates = std::mem::take(&mut cx.defaults.catch_all).into_iter();
    if let Some(first) = candidates.next() {
        let winner = first.ingress.clone();
        if cx.routes.fallback(first).is_err() {
            return;
        }
        for other in candidates {
            let ingress = other.ingress.to_string();
            let d = portier_core::Diagnostic::warning(format!(
                "spec.defaultBackend is ignored: the catch-all default backend is already set by Ingress {winner}"
            ))
            .help("only one Ingress without rules can own the default backend; the oldest wins");
            let d = match ingress.split_once('/') {
                Some((ns, name)) => {
                    let id = portier_core::ObjectRef::namespaced(portier_core::Kind::Ingress, ns, name);
                    let res = cx.index.ingresses.iter().find(|(r, _)| r.id == id).map(|(r, _)| *r);
                    let field = FieldPath::new("spec.defaultBackend");
                    match res {
                        Some(r) => d.object(id).span(r.origin.span(&field)).field(field),
                        None => d.object(id),
                    }
                }
                None => d,
            };
            cx.diags.push(d);
        }
    }
}

fn add_route(cx: &mut Cx<'_>, res: &Resource, at: FieldPath, route: Route) {
    let path_type = route.path_type;
    if let Err(existing) = cx.routes.add(route) {
        // The route already there has the same host and path.
        let host = existing
            .host
            .as_ref()
            .map_or_else(|| "*".to_owned(), ToString::to_string);
        let desc = format!("{} {} on host {host}", path_type.as_str(), existing.path.as_str());
        let msg = if *existing.ingress == *format!("{}/{}", res.namespace(), res.name()) {
            format!("path {desc} appears twice in this Ingress; the first one is used")
        } else {
            format!(
                "path {desc} is already served by Ingress {}; this path is ignored",
                existing.ingress
            )
        };
        cx.report(Severity::Warning, res, at.field("path"), msg).set_help(
            "the oldest Ingress (then namespace/name order) wins a conflict; remove or change one of the paths",
        );
    }
}

/// Kubernetes' own validation of Ingress paths (networking/validation): absolute, and for `Exact` and
/// `Prefix` free of sequences that make the match ambiguous.
fn validate_path(path_type: PathType, path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("path {path:?} must begin with '/'"));
    }
    if path_type == PathType::ImplementationSpecific {
        return Ok(());
    }
    for bad in ["//", "/./", "/../", "%2f", "%2F"] {
        if path.contains(bad) {
            return Err(format!("path {path:?} must not contain {bad:?}"));
        }
    }
    for bad in ["/..", "/."] {
        if path.ends_with(bad) {
            return Err(format!("path {path:?} must not end with {bad:?}"));
        }
    }
    Ok(())
}

/// TLS entries: loads each Secret into the TLS store and returns the hosts the Ingress wants served
/// over HTTPS (lower-case, as written: `*.example.com` stays a wildcard).
fn compile_tls<'m>(
    cx: &mut Cx<'m>,
    res: &'m Resource,
    ing: &Ingress,
    ann: &annotations::IngressAnnotations,
) -> HashSet<String> {
    let mut hosts_out = HashSet::new();
    let entries = ing.spec.as_ref().map_or(&[][..], |s| &s.tls);
    let ns = res.namespace();
    if let (Some(issuer), true) = (&ann.cert.issuer, entries.is_empty()) {
        cx.report(
            Severity::Warning,
            res,
            FieldPath::new("spec"),
            format!("the Ingress names {issuer} but has no spec.tls entry; no certificate is ordered"),
        )
        .set_help("add spec.tls with hosts and a secretName for the certificate");
    }
    for (i, entry) in entries.iter().enumerate() {
        let at = FieldPath::new("spec.tls").index(i);
        let hosts: Vec<String> = entry.hosts.iter().map(|h| h.to_ascii_lowercase()).collect();
        for (k, h) in hosts.iter().enumerate() {
            if let Err(e) = h.parse::<HostMatch>() {
                cx.report(Severity::Error, res, at.field("hosts").index(k), e.to_string());
            }
        }
        hosts_out.extend(hosts.iter().cloned());
        let Some(secret_name) = entry.secret_name.as_deref().filter(|s| !s.is_empty()) else {
            if !hosts.is_empty() {
                cx.report(
                    Severity::Warning,
                    res,
                    at.clone(),
                    "tls entry has no secretName; its hosts get the fallback certificate".into(),
                )
                .set_help("set secretName to a kubernetes.io/tls Secret in this namespace");
            }
            continue;
        };
        let field = at.field("secretName");
        // An issuer annotation: portier fills this Secret itself (certificates::demand).
        let issued = ann.cert.issuer.is_some();
        if let Some(issuer) = &ann.cert.issuer {
            let c = &ann.cert;
            cx.cert_candidates.push(crate::certificates::Candidate {
                res,
                at: at.clone(),
                request: portier_snapshot::certificates::CertificateRequest {
                    secret: portier_snapshot::certificates::SecretRef::new(Some(ns), secret_name),
                    issuer: issuer.clone(),
                    dns_names: hosts.clone(),
                    common_name: c.common_name.clone(),
                    duration: c.duration,
                    renew_before: c.renew_before,
                    private_key: c.private_key,
                    labels: res.labels(),
                },
            });
        }
        let Some((secret_res, secret)) = cx.index.secrets.get(&(ns, secret_name)).copied() else {
            if issued {
                continue; // not issued yet: the fallback certificate serves meanwhile
            }
            cx.report(Severity::Error, res, field, format!("Secret {ns}/{secret_name} not found"))
                .set_help("create the Secret, or remove this tls entry to serve the host over plain HTTP; until then the fallback certificate is served");
            continue;
        };
        if let Some(t) = secret.type_.as_deref().filter(|t| *t != "kubernetes.io/tls") {
            cx.report(
                Severity::Warning,
                res,
                field.clone(),
                format!("Secret {ns}/{secret_name} is of type {t}, not kubernetes.io/tls"),
            )
            .set_help("TLS Secrets should have type: kubernetes.io/tls; portier reads tls.crt and tls.key anyway");
        }
        let (entry_cert, info) = match cx.secrets.load(ns, secret_name, secret) {
            Ok(v) => v,
            Err(e) => {
                let secret_ref = describe(&secret_res.id);
                cx.report(Severity::Error, res, field, format!("{secret_ref}: {e}"))
                    .set_help(
                    "fix the Secret's tls.crt and tls.key (PEM); until then these hosts get the fallback certificate",
                );
                continue;
            }
        };
        let names: Vec<String> = if hosts.is_empty() {
            info.dns_names.clone()
        } else {
            hosts.clone()
        };
        for (k, h) in names.iter().enumerate() {
            let covered = tls::cert_covers(&info.dns_names, h) || (h.starts_with("*.") && info.dns_names.contains(h));
            if !covered && !issued {
                cx.report(
                    Severity::Warning,
                    res,
                    at.field("hosts").index(k),
                    format!(
                        "the certificate in Secret {ns}/{secret_name} does not cover {h} (it covers {})",
                        info.dns_names.join(", ")
                    ),
                )
                .set_help("clients will reject the certificate for this host; issue one that includes it");
            }
            if !cx.tls.insert(h, entry_cert.clone()) {
                tracing::debug!(host = %h, secret = %entry_cert.source, "host already has a certificate; first one kept");
            }
        }
    }
    hosts_out
}

fn https_redirect(
    ann: &annotations::IngressAnnotations,
    tls_hosts: &HashSet<String>,
    host: Option<&HostMatch>,
) -> bool {
    if ann.force_ssl_redirect {
        return true;
    }
    ann.ssl_redirect && !tls_hosts.is_empty() && host.is_some_and(|h| tls_hosts.contains(&h.to_string()))
}
