//! Wire types of the admin API (`/api/v1/*`). The admin server, the MCP server and the CLI share
//! them, so an agent sees exactly what an operator sees.

use portier_core::Diagnostic;
use serde::{Deserialize, Serialize};

/// `GET /api/v1/routes`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoutesResponse {
    pub generation: u64,
    pub routes: Vec<RouteView>,
}

/// One route as the snapshot holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteView {
    /// The rule's host, `*.example.com` for wildcards, or `*` for rules without a host.
    pub host: String,
    pub path: String,
    pub path_type: String,
    /// True for a default backend (serves what no path of the host matches).
    pub default_backend: bool,
    /// `namespace/name` of the Ingress.
    pub ingress: String,
    /// `namespace/service:port` or `StaticResponse namespace/name`.
    pub backend: String,
    /// `proxy`, `static` or `unavailable`.
    pub action: String,
    /// Ready endpoints, for `proxy`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
    /// Why the route answers 503, for `unavailable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub https_redirect: bool,
}

/// `GET /api/v1/diagnostics`
#[derive(Debug, Clone, Serialize)]
pub struct DiagnosticsResponse {
    pub generation: u64,
    pub errors: usize,
    pub warnings: usize,
    pub diagnostics: Vec<Diagnostic>,
}

/// `GET /api/v1/certificates`: the certificates the TLS store serves, by name.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateView {
    /// Server name (`app.example.com` or `*.example.com`).
    pub name: String,
    /// `namespace/secret` the certificate comes from.
    pub source: String,
}
