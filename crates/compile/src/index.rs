use foldhash::{HashMap, HashMapExt};

use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Secret};
use k8s_openapi::api::networking::v1::IngressClass;
use portier_model::slim::{EndpointSlice, Ingress, Service};
use portier_model::{k8s_openapi, AcmeChallenge, Model, Resource, StaticResponse, Stored};

/// Lookups compile needs, built once per compile from the model.
pub(crate) struct Index<'m> {
    pub ingresses: Vec<(&'m Resource, &'m Ingress)>,
    pub classes: HashMap<&'m str, (&'m Resource, &'m IngressClass)>,
    pub services: HashMap<(&'m str, &'m str), (&'m Resource, &'m Service)>,
    /// EndpointSlices by namespace and the Service named in their `kubernetes.io/service-name` label.
    pub slices: HashMap<(&'m str, &'m str), Vec<&'m EndpointSlice>>,
    pub endpoints: HashMap<(&'m str, &'m str), &'m Endpoints>,
    pub secrets: HashMap<(&'m str, &'m str), (&'m Resource, &'m Secret)>,
    pub statics: HashMap<(&'m str, &'m str), (&'m Resource, &'m StaticResponse)>,
    pub configmaps: HashMap<(&'m str, &'m str), (&'m Resource, &'m ConfigMap)>,
    /// ClusterIssuers and Issuers, in model order.
    pub issuers: Vec<&'m Resource>,
    pub certificates: Vec<&'m Resource>,
    pub challenges: Vec<&'m AcmeChallenge>,
}

impl<'m> Index<'m> {
    pub fn new(model: &'m Model) -> Self {
        // Sized up front: at ten thousand objects, growing the maps costs more than filling them.
        let mut count = [0usize; 5];
        for r in model.iter() {
            match &r.object {
                Stored::Ingress(_) => count[0] += 1,
                Stored::Service(_) => count[1] += 1,
                Stored::EndpointSlice(_) => count[2] += 1,
                Stored::Endpoints(_) => count[3] += 1,
                Stored::Secret(_) => count[4] += 1,
                _ => {}
            }
        }
        let mut ix = Index {
            ingresses: Vec::with_capacity(count[0]),
            classes: HashMap::new(),
            services: HashMap::with_capacity(count[1]),
            slices: HashMap::with_capacity(count[2]),
            endpoints: HashMap::with_capacity(count[3]),
            secrets: HashMap::with_capacity(count[4]),
            statics: HashMap::new(),
            configmaps: HashMap::new(),
            issuers: Vec::new(),
            certificates: Vec::new(),
            challenges: Vec::new(),
        };
        for r in model.iter() {
            let r: &'m Resource = r;
            let key = (r.namespace(), r.name());
            match &r.object {
                Stored::Ingress(o) => ix.ingresses.push((r, o)),
                Stored::IngressClass(o) => {
                    ix.classes.insert(r.name(), (r, o));
                }
                Stored::Service(o) => {
                    ix.services.insert(key, (r, o));
                }
                Stored::EndpointSlice(o) => {
                    if let Some(svc) = o.service_name.as_deref() {
                        ix.slices.entry((r.namespace(), svc)).or_default().push(o);
                    }
                }
                Stored::Endpoints(o) => {
                    ix.endpoints.insert(key, o);
                }
                Stored::Secret(o) => {
                    ix.secrets.insert(key, (r, o));
                }
                Stored::StaticResponse(o) => {
                    ix.statics.insert(key, (r, o));
                }
                Stored::ConfigMap(o) => {
                    ix.configmaps.insert(key, (r, o));
                }
                Stored::ClusterIssuer(_) | Stored::Issuer(_) => ix.issuers.push(r),
                Stored::Certificate(_) => ix.certificates.push(r),
                Stored::AcmeChallenge(o) => ix.challenges.push(o),
            }
        }
        ix
    }
}
