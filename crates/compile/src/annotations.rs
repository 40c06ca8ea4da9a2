//! Ingress annotations portier understands. ingress-nginx annotations are read where they mean the
//! same thing here; every other annotation in a namespace we own is reported, never silently ignored.

use std::collections::BTreeMap;

use portier_core::{FieldPath, Severity};
use portier_model::Resource;

use crate::Cx;

const NGINX: &str = "nginx.ingress.kubernetes.io/";
const PORTIER: &str = "portier.dev/";
const CERT_MANAGER: &str = "cert-manager.io/";

/// The settings an Ingress' annotations give, with ingress-nginx's defaults.
#[derive(Debug, Clone)]
pub(crate) struct IngressAnnotations {
    /// Redirect HTTP to HTTPS for hosts in `spec.tls` (ingress-nginx `ssl-redirect`, default true).
    pub ssl_redirect: bool,
    /// Redirect HTTP to HTTPS even for hosts without TLS (`force-ssl-redirect`, default false).
    pub force_ssl_redirect: bool,
}

impl Default for IngressAnnotations {
    fn default() -> Self {
        Self {
            ssl_redirect: true,
            force_ssl_redirect: false,
        }
    }
}

pub(crate) fn parse(cx: &mut Cx<'_>, res: &Resource) -> IngressAnnotations {
    let mut out = IngressAnnotations::default();
    let Some(annotations) = res.meta().annotations.as_ref() else {
        return out;
    };
    for (key, value) in sorted(annotations) {
        let field = FieldPath::new("metadata.annotations").field(key);
        match key {
            "nginx.ingress.kubernetes.io/ssl-redirect" => {
                if let Some(b) = parse_bool(cx, res, &field, value) {
                    out.ssl_redirect = b;
                }
            }
            "nginx.ingress.kubernetes.io/force-ssl-redirect" => {
                if let Some(b) = parse_bool(cx, res, &field, value) {
                    out.force_ssl_redirect = b;
                }
            }
            k if k.starts_with(NGINX) || k.starts_with(PORTIER) => {
                cx.report(
                    Severity::Warning,
                    res,
                    field,
                    format!("annotation {k} is not supported by portier and has no effect"),
                )
                .set_help("remove it, or see docs/annotations.md for the annotations portier understands");
            }
            k if k.starts_with(CERT_MANAGER) => {
                cx.report(
                    Severity::Warning,
                    res,
                    field,
                    format!("annotation {k} is not acted on: portier does not issue certificates yet"),
                )
                .set_help("run cert-manager beside portier to issue the certificate into the Secret named in spec.tls");
            }
            _ => {}
        }
    }
    out
}

fn sorted(m: &BTreeMap<String, String>) -> impl Iterator<Item = (&str, &str)> {
    m.iter().map(|(k, v)| (k.as_str(), v.as_str()))
}

/// Go's `strconv.ParseBool`, which ingress-nginx uses for boolean annotations.
fn parse_bool(cx: &mut Cx<'_>, res: &Resource, field: &FieldPath, value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        other => {
            cx.report(
                Severity::Error,
                res,
                field.clone(),
                format!("{other:?} is not a boolean; the default applies"),
            )
            .set_help("use \"true\" or \"false\"");
            None
        }
    }
}
