//! compile: `Model` → `Snapshot`. Pure, total and deterministic: a broken object becomes a
//! [`Diagnostic`] and is left out, everything else keeps serving (DESIGN.md rule 6).
//!
//! The order of work follows the Ingress specification:
//! 0. global settings from the ConfigMap named by `--configmap` ([`Options::configmap`]);
//! 1. class selection: which Ingresses are ours ([`classes`]);
//! 2. oldest Ingress first (creationTimestamp, then namespace/name), so conflicts resolve the same
//!    way on every replica and every reload;
//! 3. per Ingress: annotations, TLS entries, rules and paths, backends, default backend.

mod annotations;
mod backends;
mod certificates;
mod classes;
mod index;
mod ingress;
mod settings;
mod tls;
pub mod values;

use std::collections::HashSet;
use std::sync::Arc;

use portier_core::{Diagnostic, Diagnostics, FieldPath, HostMatch, ObjectRef, Severity};
use portier_model::{Model, Resource};
use portier_snapshot::{CertEntry, RoutePolicy, RouteTableBuilder, Snapshot, TlsStore};

pub use certificates::CLUSTER_RESOURCE_NAMESPACE;
pub use tls::{certified_key_from_pem, TlsError};

/// What compile needs besides the model.
#[derive(Debug, Clone)]
pub struct Options {
    /// Value of the legacy `kubernetes.io/ingress.class` annotation that selects us.
    pub ingress_class: String,
    /// `spec.controller` of the IngressClasses that are ours.
    pub controller_name: String,
    /// Served when no configured certificate matches the SNI name.
    pub fallback_cert: CertEntry,
    /// `namespace` and `name` of the ingress-nginx-style ConfigMap holding global settings
    /// (`--configmap NS/NAME`). `None`: portier's defaults, which are ingress-nginx's.
    pub configmap: Option<(String, String)>,
}

/// The result of one compile: a snapshot ready to publish and every problem found on the way.
#[derive(Debug)]
pub struct Compiled {
    pub snapshot: Snapshot,
    /// The same list the snapshot carries; kept here for callers that print it (`portier check`).
    pub diagnostics: Vec<Diagnostic>,
}

// === impl Compiled ===

impl Compiled {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(|d| d.severity == Severity::Error)
    }
}

/// Compiles the model. Never fails as a whole.
pub fn compile(model: &Model, opts: &Options) -> Compiled {
    let mut cx = Cx::new(model, opts);
    cx.diags.extend(model.diagnostics().iter().cloned());
    let (settings, default_policy) = settings::from_configmap(&mut cx, opts);
    cx.default_policy = default_policy;

    let ours = classes::select(&cx.index, opts, &mut cx.diags);
    for ing in ours {
        ingress::compile_ingress(&mut cx, ing);
    }
    ingress::finish_default_backends(&mut cx);
    // Only certificates need the served hosts as strings; most configurations order none.
    let served: HashSet<String> = if cx.cert_candidates.is_empty() && cx.index.certificates.is_empty() {
        HashSet::new()
    } else {
        cx.served_hosts.iter().map(ToString::to_string).collect()
    };
    let demand = certificates::demand(&mut cx, opts, &served);
    let tokens = certificates::http01_tokens(&cx);

    let Cx {
        routes,
        tls,
        clusters,
        diags,
        ..
    } = cx;
    let diagnostics = diags.into_sorted();
    let snapshot = Snapshot::new(
        routes.build(),
        tls.build(),
        clusters.into_clusters(),
        diagnostics.clone(),
    )
    .with_settings(settings)
    .with_certificates(demand)
    .with_http01_tokens(tokens);
    Compiled { snapshot, diagnostics }
}

/// Compile's working state.
pub(crate) struct Cx<'m> {
    pub index: index::Index<'m>,
    pub routes: RouteTableBuilder,
    pub tls: portier_snapshot::TlsStoreBuilder,
    pub secrets: tls::SecretCache,
    pub clusters: backends::Clusters,
    pub defaults: ingress::DefaultBackends,
    /// The route policy before annotations: the ConfigMap's values over portier's defaults.
    pub default_policy: settings::PolicyBuilder,
    pub diags: Diagnostics,
    /// Hosts of our Ingresses' rules (`app.example.com`, `*.example.com`): the only names a
    /// certificate may be ordered for.
    pub served_hosts: Vec<HostMatch>,
    /// Certificates wanted by annotated Ingress tls entries, checked at the end.
    pub cert_candidates: Vec<certificates::Candidate<'m>>,
    /// Route policies handed out so far: Ingresses with the same settings share one.
    pub policies: HashSet<Arc<RoutePolicy>>,
}

impl<'m> Cx<'m> {
    fn new(model: &'m Model, opts: &Options) -> Self {
        Self {
            index: index::Index::new(model),
            routes: RouteTableBuilder::new(),
            tls: TlsStore::builder(opts.fallback_cert.clone()),
            secrets: tls::SecretCache::default(),
            clusters: backends::Clusters::default(),
            defaults: ingress::DefaultBackends::default(),
            default_policy: settings::PolicyBuilder::default(),
            diags: Diagnostics::new(),
            served_hosts: Vec::new(),
            cert_candidates: Vec::new(),
            policies: HashSet::new(),
        }
    }

    /// `policy`, shared with every other Ingress that has the same one.
    pub fn policy(&mut self, policy: &RoutePolicy) -> Arc<RoutePolicy> {
        if let Some(p) = self.policies.get(policy) {
            return p.clone();
        }
        let p = Arc::new(policy.clone());
        self.policies.insert(p.clone());
        p
    }

    /// Records a problem with a field of an object, with the field's position when the object came
    /// from a file.
    pub fn report(&mut self, severity: Severity, res: &Resource, field: FieldPath, message: String) -> &mut Diagnostic {
        let d = Diagnostic::new(severity, message)
            .object(res.id.clone())
            .span(res.origin.span(&field))
            .field(field);
        self.diags.push_mut(d)
    }
}

/// `Kind ns/name` for messages about another object.
pub(crate) fn describe(r: &ObjectRef) -> String {
    r.to_string()
}

#[cfg(test)]
mod tests;

/// Strings and numbers written one after another: the names compile makes for every route
/// (`ns/name`, `ns/name:port`, `spec.rules[i].http.paths[j]`) cost a tenth of a 10,000-route
/// compile when built with `format!`.
pub(crate) fn concat(parts: &[Part<'_>]) -> String {
    let len = parts
        .iter()
        .map(|p| match p {
            Part::S(s) => s.len(),
            Part::N(_) => 10,
        })
        .sum();
    let mut out = String::with_capacity(len);
    for p in parts {
        match *p {
            Part::S(s) => out.push_str(s),
            Part::N(n) => {
                if n < 0 {
                    out.push('-');
                }
                let mut buf = [0; 20];
                out.extend(
                    portier_core::decimal(n.unsigned_abs(), &mut buf)
                        .iter()
                        .map(|&d| char::from(d)),
                );
            }
        }
    }
    out
}

/// One piece of [`concat`].
#[derive(Clone, Copy)]
pub(crate) enum Part<'a> {
    S(&'a str),
    N(i64),
}
