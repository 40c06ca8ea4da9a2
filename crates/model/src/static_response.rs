use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

/// The API group an Ingress names in `backend.resource.apiGroup` to point at a [`StaticResponse`].
pub const STATIC_RESPONSE_API_GROUP: &str = "portier.dev";
pub(crate) const API_VERSION: &str = "portier.dev/v1alpha1";

/// portier's built-in backend: a fixed answer served by the gateway itself, named from an Ingress
/// through `backend.resource` (`apiGroup: portier.dev`, `kind: StaticResponse`). It lets a
/// configuration answer requests with no other server running, and serves maintenance pages.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StaticResponse {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: StaticResponseSpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StaticResponseSpec {
    /// HTTP status code, 200 when absent.
    pub status_code: Option<u16>,
    /// Response body, served as is.
    #[serde(default)]
    pub body: String,
    /// `Content-Type`, `text/plain; charset=utf-8` when absent.
    pub content_type: Option<String>,
    /// Extra response headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}
