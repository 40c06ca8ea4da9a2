//! What the model keeps of the kinds there are thousands of: Ingress, Service and EndpointSlice.
//!
//! Objects are decoded as `k8s-openapi` defines them, then reduced to the fields compile reads.
//! Kept whole, one host's Ingress, Service and EndpointSlice took ~3.8 KiB at 10,000 hosts
//! (heaptrack of `portier serve`): the structs are mostly empty `Option`s (a `Service` is 824
//! bytes), and a one-entry `BTreeMap` of labels or annotations allocates a 544-byte node. Names
//! and namespaces live in the resource's `ObjectRef` only.
//!
//! The reduction keeps everything compile can act on or report about, with the same `None`s
//! where the distinction matters (a rule without `http`, a port without a name).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::api::networking::v1 as networking;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// A small string map sorted by key, as labels and annotations are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pairs(Box<[(Box<str>, Box<str>)]>);

/// What the model keeps of an Ingress.
#[derive(Debug, Clone, PartialEq)]
pub struct Ingress {
    pub labels: Pairs,
    pub annotations: Pairs,
    pub creation_timestamp: Option<Time>,
    pub spec: Option<IngressSpec>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IngressSpec {
    pub ingress_class_name: Option<Box<str>>,
    pub default_backend: Option<Box<Backend>>,
    pub rules: Box<[IngressRule]>,
    pub tls: Box<[IngressTls]>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IngressRule {
    pub host: Option<Box<str>>,
    /// `http.paths`; `None` when the rule has no `http`.
    pub paths: Option<Box<[IngressPath]>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IngressPath {
    pub path: Option<Box<str>>,
    pub path_type: Cow<'static, str>,
    pub backend: Backend,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    pub service: Option<ServiceBackend>,
    pub resource: Option<Box<ResourceBackend>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceBackend {
    pub name: Box<str>,
    pub port: Option<ServiceBackendPort>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceBackendPort {
    pub name: Option<Box<str>>,
    pub number: Option<i32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResourceBackend {
    pub api_group: Option<Box<str>>,
    pub kind: Box<str>,
    pub name: Box<str>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IngressTls {
    pub hosts: Box<[Box<str>]>,
    pub secret_name: Option<Box<str>>,
}

/// What the model keeps of a Service: its type and ports.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub type_: Option<Cow<'static, str>>,
    pub ports: Box<[ServicePort]>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServicePort {
    pub name: Option<Box<str>>,
    pub port: i32,
    pub protocol: Option<Cow<'static, str>>,
    pub target_port: Option<IntOrString>,
}

/// What the model keeps of an EndpointSlice: the Service it belongs to, its ports and endpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointSlice {
    /// The `kubernetes.io/service-name` label.
    pub service_name: Option<Box<str>>,
    pub address_type: Cow<'static, str>,
    pub ports: Box<[EndpointPort]>,
    pub endpoints: Box<[Endpoint]>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EndpointPort {
    pub name: Option<Box<str>>,
    pub port: Option<i32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// The first of `addresses`, if it is an IP address: the API makes an endpoint's addresses
    /// fungible and lets consumers use the first.
    pub address: Option<IpAddr>,
    /// `conditions.ready`; `None` (unknown) counts as ready.
    pub ready: Option<bool>,
}

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

// === impl Pairs ===

impl Pairs {
    pub fn get(&self, key: &str) -> Option<&str> {
        let i = self.0.binary_search_by(|(k, _)| (**k).cmp(key)).ok()?;
        Some(&self.0[i].1)
    }

    /// In key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
    }
}

impl From<Option<BTreeMap<String, String>>> for Pairs {
    fn from(m: Option<BTreeMap<String, String>>) -> Self {
        // BTreeMap iterates in key order, which `get` relies on.
        Pairs(
            m.unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k.into_boxed_str(), v.into_boxed_str()))
                .collect(),
        )
    }
}

// === conversions ===

fn boxed(s: Option<String>) -> Option<Box<str>> {
    s.map(String::into_boxed_str)
}

/// Values that repeat across thousands of objects are kept without an allocation of their own.
fn known(s: String, values: &[&'static str]) -> Cow<'static, str> {
    match values.iter().find(|v| **v == s) {
        Some(v) => Cow::Borrowed(*v),
        None => Cow::Owned(s),
    }
}

const PATH_TYPES: &[&str] = &["Prefix", "Exact", "ImplementationSpecific"];
const PROTOCOLS: &[&str] = &["TCP", "UDP", "SCTP"];
const SERVICE_TYPES: &[&str] = &["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];
const ADDRESS_TYPES: &[&str] = &["IPv4", "IPv6", "FQDN"];

impl From<networking::Ingress> for Ingress {
    fn from(o: networking::Ingress) -> Self {
        Ingress {
            labels: o.metadata.labels.into(),
            annotations: o.metadata.annotations.into(),
            creation_timestamp: o.metadata.creation_timestamp,
            spec: o.spec.map(|s| IngressSpec {
                ingress_class_name: boxed(s.ingress_class_name),
                default_backend: s.default_backend.map(|b| Box::new(b.into())),
                rules: s.rules.unwrap_or_default().into_iter().map(Into::into).collect(),
                tls: s.tls.unwrap_or_default().into_iter().map(Into::into).collect(),
            }),
        }
    }
}

impl From<networking::IngressRule> for IngressRule {
    fn from(r: networking::IngressRule) -> Self {
        IngressRule {
            host: boxed(r.host),
            paths: r.http.map(|h| h.paths.into_iter().map(Into::into).collect()),
        }
    }
}

impl From<networking::HTTPIngressPath> for IngressPath {
    fn from(p: networking::HTTPIngressPath) -> Self {
        IngressPath {
            path: boxed(p.path),
            path_type: known(p.path_type, PATH_TYPES),
            backend: p.backend.into(),
        }
    }
}

impl From<networking::IngressBackend> for Backend {
    fn from(b: networking::IngressBackend) -> Self {
        Backend {
            service: b.service.map(|s| ServiceBackend {
                name: s.name.into_boxed_str(),
                port: s.port.map(|p| ServiceBackendPort {
                    name: boxed(p.name),
                    number: p.number,
                }),
            }),
            resource: b.resource.map(|r| {
                Box::new(ResourceBackend {
                    api_group: boxed(r.api_group),
                    kind: r.kind.into_boxed_str(),
                    name: r.name.into_boxed_str(),
                })
            }),
        }
    }
}

impl From<networking::IngressTLS> for IngressTls {
    fn from(t: networking::IngressTLS) -> Self {
        IngressTls {
            hosts: t
                .hosts
                .unwrap_or_default()
                .into_iter()
                .map(String::into_boxed_str)
                .collect(),
            secret_name: boxed(t.secret_name),
        }
    }
}

impl From<core::Service> for Service {
    fn from(o: core::Service) -> Self {
        let spec = o.spec.unwrap_or_default();
        Service {
            type_: spec.type_.map(|t| known(t, SERVICE_TYPES)),
            ports: spec
                .ports
                .unwrap_or_default()
                .into_iter()
                .map(|p| ServicePort {
                    name: boxed(p.name),
                    port: p.port,
                    protocol: p.protocol.map(|p| known(p, PROTOCOLS)),
                    target_port: p.target_port,
                })
                .collect(),
        }
    }
}

impl From<discovery::EndpointSlice> for EndpointSlice {
    fn from(o: discovery::EndpointSlice) -> Self {
        EndpointSlice {
            service_name: o
                .metadata
                .labels
                .and_then(|mut l| l.remove(SERVICE_NAME_LABEL))
                .map(String::into_boxed_str),
            address_type: known(o.address_type, ADDRESS_TYPES),
            ports: o
                .ports
                .unwrap_or_default()
                .into_iter()
                .map(|p| EndpointPort {
                    name: boxed(p.name),
                    port: p.port,
                })
                .collect(),
            endpoints: o
                .endpoints
                .into_iter()
                .map(|e| Endpoint {
                    address: e.addresses.first().and_then(|a| a.parse().ok()),
                    ready: e.conditions.and_then(|c| c.ready),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_find_every_key_in_order() {
        let m: BTreeMap<String, String> = [("b", "2"), ("a", "1"), ("c", "3")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let p = Pairs::from(Some(m.clone()));
        for (k, v) in &m {
            assert_eq!(p.get(k), Some(v.as_str()));
        }
        assert_eq!(p.get("d"), None);
        assert_eq!(p.iter().map(|(k, _)| k).collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(p.to_map(), m);
        assert!(Pairs::from(None).is_empty());
    }

    #[test]
    fn known_values_are_not_allocated() {
        assert!(matches!(known("Prefix".into(), PATH_TYPES), Cow::Borrowed("Prefix")));
        assert!(matches!(known("prefix".into(), PATH_TYPES), Cow::Owned(s) if s == "prefix"));
    }
}
