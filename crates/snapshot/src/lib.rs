//! The snapshot: everything the data plane needs to serve requests, built aside by compile and
//! published with one atomic store. The data plane loads it once per request and keeps it for the
//! whole exchange, so routes, certificates and clusters always change together (STYLE.md §2).

pub mod account_key;
mod cell;
pub mod certificates;
mod cluster;
mod path;
mod policy;
mod route;
mod tls;

use std::collections::BTreeMap;
use std::sync::Arc;

use portier_core::{Diagnostic, Generation};

pub use cell::SnapshotCell;
pub use certificates::CertificateDemand;
pub use cluster::{Cluster, ClusterId};
pub use path::{normalize_path, PathError};
pub use policy::{GlobalSettings, RoutePolicy, SourceFilter};
pub use route::{
    normalize_host, Action, Attached, HostRoutes, Lookup, Name, PathMatch, PathType, Route, RouteTable,
    RouteTableBuilder, StaticReply,
};
pub use tls::{CertEntry, TlsStore, TlsStoreBuilder};

/// One immutable, complete configuration of the data plane.
#[derive(Debug)]
pub struct Snapshot {
    generation: Generation,
    routes: RouteTable,
    tls: TlsStore,
    clusters: Vec<Cluster>,
    settings: Arc<GlobalSettings>,
    diagnostics: Arc<[Diagnostic]>,
    certificates: Arc<CertificateDemand>,
    /// HTTP-01 token → key authorization, answered on the plain HTTP listener before routing.
    http01: Arc<BTreeMap<String, String>>,
}

// === impl Snapshot ===

impl Snapshot {
    pub fn new(routes: RouteTable, tls: TlsStore, clusters: Vec<Cluster>, diagnostics: Vec<Diagnostic>) -> Self {
        Self {
            generation: 0,
            routes,
            tls,
            clusters,
            settings: Arc::new(GlobalSettings::default()),
            diagnostics: diagnostics.into(),
            certificates: Arc::default(),
            http01: Arc::default(),
        }
    }

    /// Replaces the global settings (ConfigMap); the default is [`GlobalSettings::default`].
    pub fn with_settings(mut self, settings: GlobalSettings) -> Self {
        self.settings = Arc::new(settings);
        self
    }

    /// Sets the certificate demand for the ACME controller.
    pub fn with_certificates(mut self, demand: CertificateDemand) -> Self {
        self.certificates = Arc::new(demand);
        self
    }

    /// Sets the HTTP-01 tokens (token → key authorization) the data plane answers.
    pub fn with_http01_tokens(mut self, tokens: BTreeMap<String, String>) -> Self {
        self.http01 = Arc::new(tokens);
        self
    }

    pub fn certificates(&self) -> &CertificateDemand {
        &self.certificates
    }

    /// The key authorization to answer at `/.well-known/acme-challenge/{token}`.
    pub fn http01_key_authorization(&self, token: &str) -> Option<&str> {
        self.http01.get(token).map(String::as_str)
    }

    pub fn http01_tokens(&self) -> &BTreeMap<String, String> {
        &self.http01
    }

    pub fn settings(&self) -> &Arc<GlobalSettings> {
        &self.settings
    }

    /// Set by [`SnapshotCell::publish`]; 0 for a snapshot that was never published.
    pub fn generation(&self) -> Generation {
        self.generation
    }

    pub fn routes(&self) -> &RouteTable {
        &self.routes
    }

    pub fn tls(&self) -> &TlsStore {
        &self.tls
    }

    pub fn clusters(&self) -> &[Cluster] {
        &self.clusters
    }

    /// The cluster a route's [`Action::Proxy`] names. `None` only if the id came from another
    /// snapshot, which compile never produces.
    pub fn cluster(&self, id: ClusterId) -> Option<&Cluster> {
        self.clusters.get(id.index())
    }

    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }

    /// Whether two snapshots would serve identically; publishing is skipped when nothing changed.
    pub fn same_content(&self, other: &Snapshot) -> bool {
        self.routes == other.routes
            && self.tls.same_content(&other.tls)
            && self.clusters.len() == other.clusters.len()
            && self
                .clusters
                .iter()
                .zip(&other.clusters)
                .all(|(a, b)| a.same_content(b))
            && self.settings == other.settings
            && self.diagnostics == other.diagnostics
            && self.certificates == other.certificates
            && self.http01 == other.http01
    }
}
