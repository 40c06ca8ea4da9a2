//! The admin listener: `/healthz`, `/readyz`, `/metrics` and read-only JSON views of the live
//! snapshot under `/api/v1/`. It only reads; nothing here reaches back into the control plane.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use portier_admin_api::{CertificateView, DiagnosticsResponse, RouteView, RoutesResponse};
use portier_core::Severity;
use portier_snapshot::{Action, Snapshot, SnapshotCell};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Renders the Prometheus exposition; supplied by the binary so this crate needs no registry.
pub type MetricsText = Arc<dyn Fn() -> String + Send + Sync>;

/// Renders one ACME view (`certificates`, `orders`, `challenges`) as JSON; supplied by the binary,
/// which owns the ACME engine, so this crate needs no dependency on it. `None`: no such view.
pub type AcmeView = Arc<dyn Fn(&str) -> Option<serde_json::Value> + Send + Sync>;

#[derive(Clone)]
pub struct Admin {
    cell: Arc<SnapshotCell>,
    metrics: MetricsText,
    acme: Option<AcmeView>,
}

// === impl Admin ===

impl Admin {
    pub fn new(cell: Arc<SnapshotCell>, metrics: MetricsText) -> Self {
        Self {
            cell,
            metrics,
            acme: None,
        }
    }

    /// Serves `/api/v1/acme/{certificates,orders,challenges}` from `view`.
    pub fn with_acme(mut self, view: AcmeView) -> Self {
        self.acme = Some(view);
        self
    }

    /// Serves until `shutdown` is cancelled.
    pub async fn run(self, listener: TcpListener, shutdown: CancellationToken) {
        loop {
            let (stream, _) = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = listener.accept() => match r {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "admin accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let admin = self.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let admin = admin.clone();
                    async move { Ok::<_, Infallible>(admin.handle(&req)) }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection(TokioIo::new(stream), svc);
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => {}
                    _ = shutdown.cancelled() => {}
                }
            });
        }
    }

    /// Answers one admin request. Public so tests and other front ends can call it directly.
    pub fn handle(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        self.route(req.method(), req.uri().path())
    }

    pub fn route(&self, method: &Method, path: &str) -> Response<Full<Bytes>> {
        if method != Method::GET && method != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only GET is supported\n");
        }
        match path {
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" => {
                if self.cell.is_ready() {
                    text(StatusCode::OK, "ready\n")
                } else {
                    text(StatusCode::SERVICE_UNAVAILABLE, "not ready: no configuration published yet\n")
                }
            }
            "/metrics" => {
                let body = (self.metrics)();
                let mut r = Response::new(Full::new(Bytes::from(body)));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
                );
                r
            }
            "/api/v1/routes" => json(&routes_view(&self.cell.load())),
            "/api/v1/diagnostics" => json(&diagnostics_view(&self.cell.load())),
            "/api/v1/certificates" => json(&certificates_view(&self.cell.load())),
            p if p.starts_with("/api/v1/acme/") => {
                let view = &p["/api/v1/acme/".len()..];
                match self.acme.as_ref().and_then(|f| f(view)) {
                    Some(v) => json(&v),
                    None => text(StatusCode::NOT_FOUND, "not found; see /api/v1/acme/certificates, /api/v1/acme/orders, /api/v1/acme/challenges\n"),
                }
            }
            _ => text(StatusCode::NOT_FOUND, "not found; see /api/v1/routes, /api/v1/diagnostics, /api/v1/certificates, /metrics, /healthz, /readyz\n"),
        }
    }
}

pub fn routes_view(snap: &Snapshot) -> RoutesResponse {
    let routes = snap
        .routes()
        .entries()
        .map(|(r, is_default)| {
            let (action, endpoints, reason) = match &r.action {
                Action::Proxy(id) => (
                    "proxy",
                    snap.cluster(*id)
                        .map(|c| c.endpoints.iter().map(ToString::to_string).collect())
                        .unwrap_or_default(),
                    None,
                ),
                Action::Static(_) => ("static", Vec::new(), None),
                Action::Unavailable { reason } => ("unavailable", Vec::new(), Some(reason.to_string())),
            };
            RouteView {
                host: r.host.as_ref().map_or_else(|| "*".to_owned(), ToString::to_string),
                path: r.path.as_str().to_owned(),
                path_type: r.path_type.as_str().to_owned(),
                default_backend: is_default,
                ingress: r.ingress.to_string(),
                backend: r.backend.to_string(),
                action: action.to_owned(),
                endpoints,
                reason,
                https_redirect: r.https_redirect,
            }
        })
        .collect();
    RoutesResponse {
        generation: snap.generation(),
        routes,
    }
}

pub fn diagnostics_view(snap: &Snapshot) -> DiagnosticsResponse {
    let diagnostics = snap.diagnostics().to_vec();
    DiagnosticsResponse {
        generation: snap.generation(),
        errors: diagnostics.iter().filter(|d| d.severity == Severity::Error).count(),
        warnings: diagnostics.iter().filter(|d| d.severity == Severity::Warning).count(),
        diagnostics,
    }
}

pub fn certificates_view(snap: &Snapshot) -> Vec<CertificateView> {
    snap.tls()
        .names()
        .into_iter()
        .map(|(name, e)| CertificateView {
            name,
            source: e.source.to_string(),
        })
        .collect()
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json<T: serde::Serialize>(v: &T) -> Response<Full<Bytes>> {
    match serde_json::to_vec_pretty(v) {
        Ok(body) => {
            let mut r = Response::new(Full::new(Bytes::from(body)));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode response\n"),
    }
}
