use std::fmt;

use serde::Serialize;

/// The kinds of object portier reads. The set is closed so that a typo cannot create a new kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Kind {
    Ingress,
    IngressClass,
    Service,
    EndpointSlice,
    Endpoints,
    Secret,
    ConfigMap,
    StaticResponse,
    /// `cert-manager.io/v1` ClusterIssuer (cluster-scoped).
    ClusterIssuer,
    /// `cert-manager.io/v1` Issuer.
    Issuer,
    /// `cert-manager.io/v1` Certificate.
    Certificate,
    /// An HTTP-01 token portier is answering; sent by the ACME wiring, never read from files.
    AcmeChallenge,
}

/// Names one object: `Ingress shop/web`, or `IngressClass portier` for cluster-scoped kinds.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ObjectRef {
    pub kind: Kind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

// === impl Kind ===

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ingress => "Ingress",
            Kind::IngressClass => "IngressClass",
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::Endpoints => "Endpoints",
            Kind::Secret => "Secret",
            Kind::ConfigMap => "ConfigMap",
            Kind::StaticResponse => "StaticResponse",
            Kind::ClusterIssuer => "ClusterIssuer",
            Kind::Issuer => "Issuer",
            Kind::Certificate => "Certificate",
            Kind::AcmeChallenge => "AcmeChallenge",
        }
    }

    /// Cluster-scoped kinds carry no namespace.
    pub fn is_namespaced(self) -> bool {
        !matches!(self, Kind::IngressClass | Kind::ClusterIssuer | Kind::AcmeChallenge)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl ObjectRef ===

impl ObjectRef {
    pub fn new(kind: Kind, namespace: Option<&str>, name: &str) -> Self {
        Self {
            kind,
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
        }
    }

    pub fn namespaced(kind: Kind, namespace: &str, name: &str) -> Self {
        Self::new(kind, Some(namespace), name)
    }

    pub fn cluster(kind: Kind, name: &str) -> Self {
        Self::new(kind, None, name)
    }

    /// `namespace/name`, or `name` for cluster-scoped objects.
    pub fn key(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}/{}", self.name),
            None => self.name.clone(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}
