//! Ingress backends → clusters of ready endpoints, or static replies.
//!
//! Service port resolution follows Kubernetes: the backend names a Service port by number or by name;
//! that ServicePort's name selects the port of the same name in each EndpointSlice (slices carry the
//! resolved target port number); legacy Endpoints are used only when no EndpointSlice exists.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use foldhash::HashMap;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use portier_core::{FieldPath, Severity};
use portier_model::slim::{Backend, ServicePort};
use portier_model::{k8s_openapi, Resource, StaticResponse, STATIC_RESPONSE_API_GROUP};
use portier_snapshot::{Action, Cluster, ClusterId, StaticReply};

use crate::{concat, Cx, Part::N, Part::S};

/// Clusters of this compile, one per Service port however many routes use it.
#[derive(Default)]
pub(crate) struct Clusters {
    by_name: HashMap<Arc<str>, ClusterId>,
    list: Vec<Cluster>,
}

impl Clusters {
    fn intern(&mut self, name: Arc<str>, service: Arc<str>, endpoints: Vec<SocketAddr>) -> ClusterId {
        if let Some(id) = self.by_name.get(&name) {
            return *id;
        }
        let id = ClusterId::new(self.list.len());
        self.list.push(Cluster::new(name.clone(), service, endpoints));
        self.by_name.insert(name, id);
        id
    }

    pub fn into_clusters(self) -> Vec<Cluster> {
        self.list
    }
}

/// What a backend resolved to: the action and the label metrics and logs use for it.
pub(crate) struct Resolved {
    pub action: Action,
    pub label: Arc<str>,
}

/// Resolves `backend` (at field `at` of Ingress `ing`, the `backend` itself). Problems are reported and give a route that
/// answers 503, so a request to it says what is wrong instead of falling through to another route.
pub(crate) fn resolve(cx: &mut Cx<'_>, ing: &Resource, backend: &Backend, at: &FieldPath) -> Resolved {
    let ns = ing.namespace();
    match (&backend.service, &backend.resource) {
        (Some(svc), None) => {
            // Paths of fields are built only for a diagnostic.
            let Some(port) = svc.port.as_ref() else {
                return unavailable(
                    cx,
                    ing,
                    at.join("service.port"),
                    format!("backend Service {ns}/{} names no port", svc.name),
                    "set port.number or port.name".into(),
                );
            };
            let port_ref = match (&port.number, port.name.as_deref()) {
                (Some(n), None) => PortRef::Number(*n),
                (None, Some(name)) if !name.is_empty() => PortRef::Name(name),
                _ => {
                    return unavailable(
                        cx,
                        ing,
                        at.join("service.port"),
                        "exactly one of port.number and port.name must be set".into(),
                        "name the Service port by its number or by its name".into(),
                    )
                }
            };
            service_backend(cx, ing, ns, &svc.name, port_ref, at)
        }
        (None, Some(r)) => {
            let at = at.field("resource");
            let group = r.api_group.as_deref().unwrap_or("");
            if group != STATIC_RESPONSE_API_GROUP || &*r.kind != "StaticResponse" {
                return unavailable(
                    cx,
                    ing,
                    at,
                    format!("backend resource {group}/{} is not supported", r.kind),
                    format!("the only resource backend portier serves is apiGroup: {STATIC_RESPONSE_API_GROUP}, kind: StaticResponse"),
                );
            }
            match cx.index.statics.get(&(ns, &*r.name)).copied() {
                Some((sr_res, sr)) => static_backend(cx, sr_res, sr),
                None => unavailable(
                    cx,
                    ing,
                    at.field("name"),
                    format!("StaticResponse {ns}/{} not found", r.name),
                    "create the StaticResponse in the Ingress' namespace, or fix the name".into(),
                ),
            }
        }
        (Some(_), Some(_)) => unavailable(
            cx,
            ing,
            at.clone(),
            "backend sets both service and resource".into(),
            "keep one of them".into(),
        ),
        (None, None) => unavailable(
            cx,
            ing,
            at.clone(),
            "backend sets neither service nor resource".into(),
            "add backend.service with a name and a port".into(),
        ),
    }
}

#[derive(Debug, Clone, Copy)]
enum PortRef<'a> {
    Number(i32),
    Name(&'a str),
}

impl std::fmt::Display for PortRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PortRef::Number(n) => write!(f, "{n}"),
            PortRef::Name(n) => f.write_str(n),
        }
    }
}

fn service_backend(
    cx: &mut Cx<'_>,
    ing: &Resource,
    ns: &str,
    name: &str,
    port: PortRef<'_>,
    at: &FieldPath,
) -> Resolved {
    let Some((svc_res, svc)) = cx.index.services.get(&(ns, name)).copied() else {
        return unavailable(
            cx,
            ing,
            at.join("service.name"),
            format!("Service {ns}/{name} not found"),
            "create the Service in the Ingress' namespace, or fix the name; requests to this path get 503 until then"
                .into(),
        );
    };
    if svc.type_.as_deref() == Some("ExternalName") {
        return unavailable(
            cx,
            ing,
            at.join("service.name"),
            format!("Service {ns}/{name} is of type ExternalName, which portier does not proxy to yet"),
            "point the Ingress at a Service with a selector or with EndpointSlices".into(),
        );
    }
    let ports: &[ServicePort] = &svc.ports;
    let found = ports.iter().find(|p| match port {
        PortRef::Number(n) => p.port == n,
        PortRef::Name(n) => p.name.as_deref() == Some(n),
    });
    let Some(sp) = found else {
        let list: Vec<String> = ports
            .iter()
            .map(|p| match &p.name {
                Some(n) => format!("{} ({n})", p.port),
                None => p.port.to_string(),
            })
            .collect();
        let field = match port {
            PortRef::Number(_) => at.join("service.port.number"),
            PortRef::Name(_) => at.join("service.port.name"),
        };
        let help = if list.is_empty() {
            format!("Service {ns}/{name} declares no ports; add one under spec.ports")
        } else {
            format!("use one of: {}", list.join(", "))
        };
        return unavailable(cx, ing, field, format!("Service {ns}/{name} has no port {port}"), help);
    };
    if sp.protocol.as_deref().is_some_and(|p| p != "TCP") {
        cx.report(
            Severity::Warning,
            svc_res,
            FieldPath::new("spec.ports"),
            format!(
                "port {} uses protocol {}; portier proxies HTTP over TCP",
                sp.port,
                sp.protocol.as_deref().unwrap_or("")
            ),
        );
    }
    let service = concat(&[S(ns), S("/"), S(name)]);
    let label: Arc<str> = concat(&[S(&service), S(":"), N(i64::from(sp.port))]).into();
    let service: Arc<str> = service.into();
    let endpoints = endpoints_for(cx, ns, name, sp);
    if endpoints.is_empty() {
        cx.report(
            Severity::Warning,
            ing,
            at.join("service.name"),
            format!("Service {ns}/{name} has no ready endpoints for port {}; requests get 503", sp.port),
        )
        .set_help("check that the Service's pods are running and ready, or add an EndpointSlice labelled kubernetes.io/service-name");
    }
    let id = cx.clusters.intern(label.clone(), service, endpoints);
    Resolved {
        action: Action::Proxy(id),
        label,
    }
}

/// Ready endpoint addresses of one Service port, sorted and without duplicates.
fn endpoints_for(cx: &Cx<'_>, ns: &str, name: &str, sp: &ServicePort) -> Vec<SocketAddr> {
    let port_name = sp.name.as_deref().unwrap_or("");
    let numeric_target = match &sp.target_port {
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(_)) => None,
        // Kubernetes defaults targetPort to port.
        None => Some(sp.port),
    };
    let mut out: BTreeSet<SocketAddr> = BTreeSet::new();
    if let Some(slices) = cx.index.slices.get(&(ns, name)) {
        for slice in slices {
            if !matches!(&*slice.address_type, "IPv4" | "IPv6") {
                continue; // FQDN slices name hosts, not addresses.
            }
            let slice_port = slice
                .ports
                .iter()
                .find(|p| p.name.as_deref().unwrap_or("") == port_name)
                .and_then(|p| p.port)
                .or(numeric_target);
            let Some(port) = slice_port.and_then(|p| u16::try_from(p).ok()) else {
                continue;
            };
            for ep in &slice.endpoints {
                // EndpointConditions: a nil `ready` means ready.
                if ep.ready == Some(false) {
                    continue;
                }
                if let Some(ip) = ep.address {
                    out.insert(SocketAddr::new(ip, port));
                }
            }
        }
        return out.into_iter().collect();
    }
    if let Some(eps) = cx.index.endpoints.get(&(ns, name)) {
        for subset in eps.subsets.as_deref().unwrap_or(&[]) {
            let ports = subset.ports.as_deref().unwrap_or(&[]);
            let port = ports
                .iter()
                .find(|p| p.name.as_deref().unwrap_or("") == port_name)
                .map(|p| p.port)
                .or(if ports.len() == 1 { Some(ports[0].port) } else { None })
                .or(numeric_target);
            let Some(port) = port.and_then(|p| u16::try_from(p).ok()) else {
                continue;
            };
            for addr in subset.addresses.as_deref().unwrap_or(&[]) {
                if let Ok(ip) = addr.ip.parse::<IpAddr>() {
                    out.insert(SocketAddr::new(ip, port));
                }
            }
        }
    }
    out.into_iter().collect()
}

fn static_backend(cx: &mut Cx<'_>, res: &Resource, sr: &StaticResponse) -> Resolved {
    let label: Arc<str> = format!("StaticResponse {}/{}", res.namespace(), res.name()).into();
    let spec = &sr.spec;
    let status = match StatusCode::from_u16(spec.status_code.unwrap_or(200)) {
        Ok(s) => s,
        Err(_) => {
            let d = cx.report(
                Severity::Error,
                res,
                FieldPath::new("spec.statusCode"),
                format!("{} is not an HTTP status code", spec.status_code.unwrap_or(0)),
            );
            d.set_help("use a status code between 100 and 999");
            return Resolved {
                action: Action::Unavailable {
                    reason: format!("{label} is invalid").into(),
                },
                label,
            };
        }
    };
    let mut headers = Vec::new();
    let content_type = spec.content_type.as_deref().unwrap_or("text/plain; charset=utf-8");
    match HeaderValue::from_str(content_type) {
        Ok(v) => headers.push((http::header::CONTENT_TYPE, v)),
        Err(_) => {
            cx.report(
                Severity::Error,
                res,
                FieldPath::new("spec.contentType"),
                "not a valid header value".into(),
            );
        }
    }
    for (k, v) in &spec.headers {
        let field = FieldPath::new("spec.headers").field(k);
        match (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
            (Ok(n), Ok(v)) => headers.push((n, v)),
            _ => {
                cx.report(
                    Severity::Error,
                    res,
                    field,
                    format!("header {k:?} is not a valid HTTP header; it is left out"),
                );
            }
        }
    }
    Resolved {
        action: Action::Static(Arc::new(StaticReply {
            status,
            headers,
            body: Bytes::from(spec.body.clone()),
        })),
        label,
    }
}

fn unavailable(cx: &mut Cx<'_>, ing: &Resource, field: FieldPath, message: String, help: String) -> Resolved {
    let reason: Arc<str> = message.clone().into();
    cx.report(Severity::Error, ing, field, message).set_help(help);
    Resolved {
        action: Action::Unavailable { reason },
        label: "".into(),
    }
}
