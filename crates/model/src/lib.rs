//! The model: every object portier has read, decoded with `k8s-openapi`'s types, keyed by
//! [`ObjectRef`] and tagged with where it came from (Ingresses, Services and EndpointSlices are kept
//! reduced to what compile reads, [`slim`]). Providers describe what they see as [`Change`]s; the
//! [`ModelStore`] applies them and hands out immutable [`Model`]s for compile.

mod cert_manager;
mod origin;
pub mod slim;
mod static_response;
mod store;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use k8s_openapi;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use portier_core::{Diagnostic, FieldPath, Kind, ObjectRef};

pub use cert_manager::{
    AcmeChallenge, AcmeSpec, Certificate, CertificateSpec, Dns01Spec, EabSpec, Http01IngressSpec, Http01Spec,
    IssuerObject, IssuerRefSpec, IssuerSpec, PrivateKeySpec, Rfc2136Spec, SecretKeySelector, SelectorSpec, SolverSpec,
};
pub use origin::{lookup_in, Locate, Origin, SpanMap};
pub use static_response::{StaticResponse, StaticResponseSpec, STATIC_RESPONSE_API_GROUP};
pub use store::{order_by_id, Model, ModelStore, ProviderId};

/// One object with its identity and origin.
#[derive(Debug, Clone)]
pub struct Resource {
    pub id: ObjectRef,
    pub object: Stored,
    pub origin: Origin,
}

/// Every kind portier understands, as the Kubernetes API defines it: what providers decode.
#[derive(Debug, Clone)]
pub enum Object {
    Ingress(Box<Ingress>),
    IngressClass(Box<IngressClass>),
    Service(Box<Service>),
    EndpointSlice(Box<EndpointSlice>),
    Endpoints(Box<Endpoints>),
    Secret(Box<Secret>),
    ConfigMap(Box<ConfigMap>),
    StaticResponse(Box<StaticResponse>),
    ClusterIssuer(Box<IssuerObject>),
    Issuer(Box<IssuerObject>),
    Certificate(Box<Certificate>),
    AcmeChallenge(Box<AcmeChallenge>),
}

/// What the model keeps of an [`Object`]: the kinds there are thousands of reduced to what compile
/// reads ([`slim`]), the others whole.
// Boxed, although objects already live behind `Arc<Resource>`: inline, every object takes the
// size of the largest kind.
#[derive(Debug, Clone)]
pub enum Stored {
    Ingress(Box<slim::Ingress>),
    IngressClass(Box<IngressClass>),
    Service(Box<slim::Service>),
    EndpointSlice(Box<slim::EndpointSlice>),
    Endpoints(Box<Endpoints>),
    Secret(Box<Secret>),
    ConfigMap(Box<ConfigMap>),
    StaticResponse(Box<StaticResponse>),
    ClusterIssuer(Box<IssuerObject>),
    Issuer(Box<IssuerObject>),
    Certificate(Box<Certificate>),
    AcmeChallenge(Box<AcmeChallenge>),
}

/// What a provider tells the model store.
#[derive(Debug, Clone)]
pub enum Change {
    Apply(Arc<Resource>),
    Delete(ObjectRef),
    /// Atomically replaces everything this provider has contributed so far, including the problems
    /// it found while reading (files that do not parse, unknown kinds, …).
    Resync {
        resources: Vec<Arc<Resource>>,
        diagnostics: Vec<Diagnostic>,
    },
}

// === impl Resource ===

impl Resource {
    /// Builds a resource, deriving its [`ObjectRef`] from the object's metadata. A namespaced object
    /// without `metadata.namespace` lands in `default`, as `kubectl apply` would put it.
    pub fn new(object: Object, origin: Origin) -> Self {
        let kind = object.kind();
        let meta = object.meta();
        let name = meta.name.clone().unwrap_or_default();
        let namespace = kind
            .is_namespaced()
            .then(|| meta.namespace.clone().unwrap_or_else(|| "default".to_owned()));
        Self {
            id: ObjectRef { kind, namespace, name },
            object: object.into(),
            origin,
        }
    }

    pub fn namespace(&self) -> &str {
        self.id.namespace.as_deref().unwrap_or("")
    }

    pub fn name(&self) -> &str {
        &self.id.name
    }

    /// The value of annotation `key`. Services and EndpointSlices keep none.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        match &self.object {
            Stored::Ingress(o) => o.annotations.get(key),
            o => Some(o.meta()?.annotations.as_ref()?.get(key)?.as_str()),
        }
    }

    /// Every annotation, in key order. Services and EndpointSlices keep none.
    pub fn annotations(&self) -> impl Iterator<Item = (&str, &str)> {
        // One of the two is empty; chained, the iterator needs no allocation and no boxing.
        let (slim, whole) = match &self.object {
            Stored::Ingress(o) => (Some(&o.annotations), None),
            o => (None, o.meta().and_then(|m| m.annotations.as_ref())),
        };
        let whole = whole.into_iter().flatten().map(|(k, v)| (k.as_str(), v.as_str()));
        slim.into_iter().flat_map(slim::Pairs::iter).chain(whole)
    }

    /// The object's labels. Services and EndpointSlices keep none (a slice's Service name is
    /// [`slim::EndpointSlice::service_name`]).
    pub fn labels(&self) -> BTreeMap<String, String> {
        match &self.object {
            Stored::Ingress(o) => o.labels.to_map(),
            o => o.meta().and_then(|m| m.labels.clone()).unwrap_or_default(),
        }
    }

    pub fn creation_timestamp(&self) -> Option<&Time> {
        match &self.object {
            Stored::Ingress(o) => o.creation_timestamp.as_ref(),
            o => o.meta()?.creation_timestamp.as_ref(),
        }
    }
}

// === impl Stored ===

impl Stored {
    /// The metadata of the kinds kept whole; `None` for those reduced by [`slim`].
    fn meta(&self) -> Option<&ObjectMeta> {
        Some(match self {
            Stored::Ingress(_) | Stored::Service(_) | Stored::EndpointSlice(_) => return None,
            Stored::IngressClass(o) => &o.metadata,
            Stored::Endpoints(o) => &o.metadata,
            Stored::Secret(o) => &o.metadata,
            Stored::ConfigMap(o) => &o.metadata,
            Stored::StaticResponse(o) => &o.metadata,
            Stored::ClusterIssuer(o) | Stored::Issuer(o) => &o.metadata,
            Stored::Certificate(o) => &o.metadata,
            Stored::AcmeChallenge(o) => &o.metadata,
        })
    }
}

impl From<Object> for Stored {
    fn from(o: Object) -> Self {
        match o {
            Object::Ingress(o) => Stored::Ingress(Box::new((*o).into())),
            Object::IngressClass(o) => Stored::IngressClass(o),
            Object::Service(o) => Stored::Service(Box::new((*o).into())),
            Object::EndpointSlice(o) => Stored::EndpointSlice(Box::new((*o).into())),
            Object::Endpoints(o) => Stored::Endpoints(o),
            Object::Secret(o) => Stored::Secret(o),
            Object::ConfigMap(o) => Stored::ConfigMap(o),
            Object::StaticResponse(o) => Stored::StaticResponse(o),
            Object::ClusterIssuer(o) => Stored::ClusterIssuer(o),
            Object::Issuer(o) => Stored::Issuer(o),
            Object::Certificate(o) => Stored::Certificate(o),
            Object::AcmeChallenge(o) => Stored::AcmeChallenge(o),
        }
    }
}

// === impl Object ===

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Object::Ingress(_) => Kind::Ingress,
            Object::IngressClass(_) => Kind::IngressClass,
            Object::Service(_) => Kind::Service,
            Object::EndpointSlice(_) => Kind::EndpointSlice,
            Object::Endpoints(_) => Kind::Endpoints,
            Object::Secret(_) => Kind::Secret,
            Object::ConfigMap(_) => Kind::ConfigMap,
            Object::StaticResponse(_) => Kind::StaticResponse,
            Object::ClusterIssuer(_) => Kind::ClusterIssuer,
            Object::Issuer(_) => Kind::Issuer,
            Object::Certificate(_) => Kind::Certificate,
            Object::AcmeChallenge(_) => Kind::AcmeChallenge,
        }
    }

    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Object::Ingress(o) => &o.metadata,
            Object::IngressClass(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::EndpointSlice(o) => &o.metadata,
            Object::Endpoints(o) => &o.metadata,
            Object::Secret(o) => &o.metadata,
            Object::ConfigMap(o) => &o.metadata,
            Object::StaticResponse(o) => &o.metadata,
            Object::ClusterIssuer(o) | Object::Issuer(o) => &o.metadata,
            Object::Certificate(o) => &o.metadata,
            Object::AcmeChallenge(o) => &o.metadata,
        }
    }

    /// Maps `apiVersion` and `kind` to a kind portier reads. `None` for anything else, which the
    /// caller skips.
    pub fn kind_of(api_version: &str, kind: &str) -> Option<Kind> {
        Some(match (api_version, kind) {
            ("networking.k8s.io/v1", "Ingress") => Kind::Ingress,
            ("networking.k8s.io/v1", "IngressClass") => Kind::IngressClass,
            ("v1", "Service") => Kind::Service,
            ("discovery.k8s.io/v1", "EndpointSlice") => Kind::EndpointSlice,
            ("v1", "Endpoints") => Kind::Endpoints,
            ("v1", "Secret") => Kind::Secret,
            ("v1", "ConfigMap") => Kind::ConfigMap,
            (v, "StaticResponse") if v == static_response::API_VERSION => Kind::StaticResponse,
            (cert_manager::API_VERSION, "ClusterIssuer") => Kind::ClusterIssuer,
            (cert_manager::API_VERSION, "Issuer") => Kind::Issuer,
            (cert_manager::API_VERSION, "Certificate") => Kind::Certificate,
            _ => return None,
        })
    }

    /// Deserializes a JSON value of the given kind. The error names the field that failed
    /// (`spec.rules[0].http`), so the caller can point at its line.
    pub fn from_json(kind: Kind, value: serde_json::Value) -> Result<Object, DecodeError> {
        fn typed<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, DecodeError> {
            serde_path_to_error::deserialize(v).map_err(|e| {
                let path = e.path().to_string();
                DecodeError {
                    field: FieldPath::new(if path == "." { String::new() } else { path }),
                    message: e.into_inner().to_string(),
                }
            })
        }
        Ok(match kind {
            Kind::Ingress => Object::Ingress(Box::new(typed(value)?)),
            Kind::IngressClass => Object::IngressClass(Box::new(typed(value)?)),
            Kind::Service => Object::Service(Box::new(typed(value)?)),
            Kind::EndpointSlice => Object::EndpointSlice(Box::new(typed(value)?)),
            Kind::Endpoints => Object::Endpoints(Box::new(typed(value)?)),
            Kind::Secret => Object::Secret(Box::new(typed(value)?)),
            Kind::ConfigMap => Object::ConfigMap(Box::new(typed(value)?)),
            Kind::StaticResponse => Object::StaticResponse(Box::new(typed(value)?)),
            Kind::ClusterIssuer => Object::ClusterIssuer(Box::new(typed(value)?)),
            Kind::Issuer => Object::Issuer(Box::new(typed(value)?)),
            Kind::Certificate => Object::Certificate(Box::new(typed(value)?)),
            Kind::AcmeChallenge => {
                return Err(DecodeError {
                    field: FieldPath::root(),
                    message: "AcmeChallenge objects are created by portier itself, not read from manifests".into(),
                })
            }
        })
    }
}

/// A manifest whose fields do not fit the kind's schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// The field that failed; root when the object itself has the wrong shape.
    pub field: FieldPath,
    pub message: String,
}
