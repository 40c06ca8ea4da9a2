//! Ingress annotations portier understands. ingress-nginx annotations are read where they mean the
//! same thing here; every other annotation in a namespace we own is reported, never silently ignored.

use portier_core::{FieldPath, Severity};
use portier_model::Resource;
use portier_snapshot::RoutePolicy;

use crate::certificates::{self, CertAnnotations};
use crate::settings::{Layer, PolicyBuilder};
use crate::{values, Cx};

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
    /// Body size, timeouts and source ranges for every route of the Ingress: its annotations
    /// over the ConfigMap's defaults.
    pub policy: RoutePolicy,
    /// `cert-manager.io/*`: which issuer fills the Secrets of `spec.tls`, and how.
    pub cert: CertAnnotations,
}

/// Reads the annotations of one Ingress; `defaults` is the route policy from the ConfigMap.
pub(crate) fn parse(cx: &mut Cx<'_>, res: &Resource, defaults: &PolicyBuilder) -> IngressAnnotations {
    let mut policy = defaults.clone();
    let mut out = IngressAnnotations {
        ssl_redirect: true,
        force_ssl_redirect: false,
        policy: RoutePolicy::default(),
        cert: CertAnnotations::default(),
    };
    for (key, value) in res.annotations() {
        let field = FieldPath::new(format!("metadata.annotations.{key}"));
        if let Some(short) = key.strip_prefix(NGINX) {
            if policy.apply(cx, res, &field, short, value, Layer::Annotation) {
                continue;
            }
        }
        if key.starts_with(CERT_MANAGER) && certificates::annotation(cx, res, &field, key, value, &mut out.cert) {
            continue;
        }
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
                    format!("annotation {k} is not supported by portier and has no effect"),
                )
                .set_help("see docs/configuration.md (Certificates) for the cert-manager annotations portier reads");
            }
            _ => {}
        }
    }
    out.policy = policy.build();
    out
}

/// A boolean annotation ([`values::parse_bool`]); an invalid value is reported and `None`.
fn parse_bool(cx: &mut Cx<'_>, res: &Resource, field: &FieldPath, value: &str) -> Option<bool> {
    match values::parse_bool(value) {
        Ok(b) => Some(b),
        Err(e) => {
            cx.report(Severity::Error, res, field.clone(), format!("{e}; the default applies"))
                .set_help("use \"true\" or \"false\"");
            None
        }
    }
}
