//! The request path: find the route in the live snapshot, then redirect, answer statically, or
//! proxy to one endpoint of the route's cluster.

use std::convert::Infallible;
use std::error::Error as _;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::header::{HeaderValue, HOST, LOCATION, USER_AGENT};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Extensions, Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use portier_snapshot::{normalize_host, Action, Route, StaticReply};
use portier_telemetry::AccessRecord;
use tracing::{debug, debug_span, warn, Instrument};

use crate::body::{Finish, Observed, RequestBody, ResponseBody};
use crate::error::{ErrorKind, GatewayError, Side};
use crate::headers::{self, Forwarded};
use crate::server::Conn;

/// The host a request is for, as received.
#[derive(Debug)]
struct RequestHost {
    /// The `:authority`/absolute-form authority or the `Host` header; empty when there is none.
    /// Always valid UTF-8 (checked when built).
    raw: HeaderValue,
    /// Came from the request target rather than the `Host` header: the upstream's `Host` is set
    /// from it (RFC 9112 §3.2.2: a proxy replaces `Host` with the target's authority).
    from_uri: bool,
}

/// What the request path learned, for metrics and the access log.
#[derive(Debug, Default)]
struct Exchange {
    route: Option<Arc<Route>>,
    upstream: Option<SocketAddr>,
}

/// Serves one request. Never fails: every problem becomes a response from [`GatewayError`].
pub(crate) async fn handle(conn: Arc<Conn>, req: Request<Incoming>) -> Result<Response<Observed>, Infallible> {
    let start = Instant::now();
    let host = request_host(&req);
    let mut record = if conn.shared.access_log.is_enabled() {
        Some(Box::new(access_record(&conn, &req, host.as_ref().ok())))
    } else {
        None
    };
    let received = record.as_ref().map(|_| Arc::new(AtomicU64::new(0)));
    let mut ex = Exchange::default();
    // Debug level: with the default `info` filter the span is never built on the hot path.
    let span = debug_span!("req", http.method = %req.method(), http.path = req.uri().path());
    let result = match host {
        Ok(host) => {
            route(&conn, req, host, &mut ex, received.clone())
                .instrument(span)
                .await
        }
        Err(e) => Err(e),
    };
    let (resp, error) = match result {
        Ok(resp) => (resp, None),
        Err(e) => {
            report(&e, &ex);
            (e.response(), Some(e.kind.as_str()))
        }
    };
    if let Some(record) = record.as_mut() {
        record.upstream = ex.upstream;
    }
    let finish = Finish {
        conn,
        start,
        route: ex.route,
        status: resp.status().as_u16(),
        error,
        bytes_sent: 0,
        record,
        received,
    };
    Ok(resp.map(|body| Observed::new(body, finish)))
}

async fn route(
    conn: &Arc<Conn>,
    req: Request<Incoming>,
    host: RequestHost,
    ex: &mut Exchange,
    received: Option<Arc<AtomicU64>>,
) -> Result<Response<ResponseBody>, GatewayError> {
    if req.method() == Method::CONNECT {
        // An ingress is not a forward proxy: tunnelling to arbitrary authorities is refused.
        return Err(GatewayError::new(
            ErrorKind::MethodNotAllowed,
            "CONNECT is not supported",
        ));
    }
    // The one snapshot load of this request; it stays alive until the response headers are out.
    let snap = conn.shared.cell.load();
    let name = normalize_host(host.raw.to_str().unwrap_or_default());
    let Some(route) = snap.routes().find(&name, req.uri().path()) else {
        return Err(GatewayError::new(
            ErrorKind::NoRoute,
            "no route matches this host and path",
        ));
    };
    ex.route = Some(route.clone());
    // Without a host there is nothing to redirect to; serve the route as it is.
    if !conn.tls && route.https_redirect && !name.is_empty() {
        return redirect(&name, req.uri(), conn.shared.cfg.https_redirect_port);
    }
    match &route.action {
        Action::Static(reply) => Ok(static_reply(reply)),
        Action::Unavailable { reason } => Err(GatewayError::new(
            ErrorKind::BackendUnavailable,
            format!("backend {} is unavailable: {reason}", route.backend),
        )),
        Action::Proxy(id) => {
            // Compile hands out ids into this very snapshot; a miss is a bug, answered, not a panic.
            let Some(cluster) = snap.clusters().get(id.index()) else {
                return Err(GatewayError::new(
                    ErrorKind::BackendUnavailable,
                    format!("backend {} is missing from the configuration", route.backend),
                ));
            };
            let Some(endpoint) = cluster.pick() else {
                return Err(GatewayError::new(
                    ErrorKind::NoEndpoints,
                    format!("no ready endpoints for {}", cluster.name),
                ));
            };
            ex.upstream = Some(endpoint);
            proxy(conn, req, host, endpoint, &cluster.name, received).await
        }
    }
}

async fn proxy(
    conn: &Arc<Conn>,
    req: Request<Incoming>,
    host: RequestHost,
    endpoint: SocketAddr,
    cluster: &str,
    received: Option<Arc<AtomicU64>>,
) -> Result<Response<ResponseBody>, GatewayError> {
    let (mut parts, body) = req.into_parts();
    let upgrade = headers::is_upgrade_request(parts.version, &parts.headers);
    let client_upgrade = if upgrade {
        parts.extensions.remove::<OnUpgrade>()
    } else {
        None
    };

    let mut hdrs = std::mem::take(&mut parts.headers);
    headers::strip_hop_by_hop(&mut hdrs, upgrade);
    if host.from_uri && !host.raw.is_empty() {
        hdrs.insert(HOST, host.raw.clone());
    }
    headers::add_forwarded(
        &mut hdrs,
        &Forwarded {
            client_ip: &conn.client_ip,
            local_port: &conn.local_port,
            tls: conn.tls,
            host: &host.raw,
        },
    );

    let mut up = Request::new(RequestBody::new(body, received));
    *up.method_mut() = parts.method;
    *up.uri_mut() = upstream_uri(endpoint, &parts.uri)?;
    *up.version_mut() = Version::HTTP_11;
    *up.headers_mut() = hdrs;

    let shared = &conn.shared;
    let sent = tokio::time::timeout(shared.cfg.upstream_response_timeout, shared.client.request(up)).await;
    let resp = match sent {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => return Err(classify(&e, cluster)),
        Err(_) => {
            return Err(GatewayError::new(
                ErrorKind::UpstreamTimeout,
                format!(
                    "backend {cluster} sent no response within {}s",
                    shared.cfg.upstream_response_timeout.as_secs_f32()
                ),
            ))
        }
    };

    let (mut rparts, rbody) = resp.into_parts();
    let switching = rparts.status == StatusCode::SWITCHING_PROTOCOLS;
    if switching {
        let (Some(client_io), Some(upstream_io)) = (client_upgrade, rparts.extensions.remove::<OnUpgrade>()) else {
            return Err(GatewayError::new(
                ErrorKind::UpstreamProtocol,
                format!("backend {cluster} switched protocols without an upgrade request"),
            ));
        };
        shared.spawn_tunnel(conn.clone(), client_io, upstream_io);
    }
    headers::strip_hop_by_hop(&mut rparts.headers, switching);
    // The client-side extensions mean nothing to the server connection; hyper picks the version.
    rparts.extensions = Extensions::new();
    rparts.version = Version::HTTP_11;
    Ok(Response::from_parts(rparts, ResponseBody::Upstream(rbody)))
}

/// The host of a request: the authority of the target for HTTP/2 and absolute-form requests,
/// else the `Host` header. RFC 9112 §3.2: an HTTP/1.1 request without exactly one `Host` is a 400.
fn request_host<B>(req: &Request<B>) -> Result<RequestHost, GatewayError> {
    let hosts = req.headers().get_all(HOST);
    let mut iter = hosts.iter();
    let header = iter.next();
    if iter.next().is_some() {
        return Err(GatewayError::new(ErrorKind::BadRequest, "more than one Host header"));
    }
    if req.version() == Version::HTTP_11 && header.is_none() {
        return Err(GatewayError::new(
            ErrorKind::BadRequest,
            "an HTTP/1.1 request needs a Host header",
        ));
    }
    if let Some(authority) = req.uri().authority() {
        // Userinfo (`user@host`) is deprecated in http(s) URIs (RFC 9110 §4.2.4) and not part of the host.
        let host = authority.as_str().rsplit('@').next().unwrap_or_default();
        return match HeaderValue::from_str(host) {
            Ok(raw) => Ok(RequestHost { raw, from_uri: true }),
            Err(_) => Err(GatewayError::new(ErrorKind::BadRequest, "invalid request authority")),
        };
    }
    match header {
        Some(v) if v.to_str().is_err() => Err(GatewayError::new(ErrorKind::BadRequest, "invalid Host header")),
        Some(v) => Ok(RequestHost {
            raw: v.clone(),
            from_uri: false,
        }),
        None => Ok(RequestHost {
            raw: HeaderValue::from_static(""),
            from_uri: false,
        }),
    }
}

/// `http://endpoint/path?query`: the legacy client connects to the authority and sends the path
/// and query in origin form, byte for byte as the client sent them (no re-encoding).
fn upstream_uri(endpoint: SocketAddr, target: &Uri) -> Result<Uri, GatewayError> {
    let authority = Authority::try_from(endpoint.to_string())
        .map_err(|_| GatewayError::new(ErrorKind::BadRequest, "cannot address the endpoint"))?;
    let path = target
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(authority)
        .path_and_query(path)
        .build()
        .map_err(|_| GatewayError::new(ErrorKind::BadRequest, "invalid request target"))
}

/// 308 to the same host and target over HTTPS; 308 (not 301) keeps the method and body.
fn redirect(host: &str, target: &Uri, port: u16) -> Result<Response<ResponseBody>, GatewayError> {
    let path = target.path_and_query().map_or("/", PathAndQuery::as_str);
    let location = if port == 443 {
        format!("https://{host}{path}")
    } else {
        format!("https://{host}:{port}{path}")
    };
    let location = HeaderValue::try_from(location)
        .map_err(|_| GatewayError::new(ErrorKind::BadRequest, "cannot build the HTTPS redirect for this host"))?;
    let mut resp = Response::new(ResponseBody::empty());
    *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
    resp.headers_mut().insert(LOCATION, location);
    Ok(resp)
}

fn static_reply(reply: &StaticReply) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::full(reply.body.clone()));
    *resp.status_mut() = reply.status;
    let headers = resp.headers_mut();
    for (name, value) in &reply.headers {
        headers.append(name.clone(), value.clone());
    }
    resp
}

/// Maps a client error to what the user is told. The cause chain goes to the debug log only.
fn classify(e: &hyper_util::client::legacy::Error, cluster: &str) -> GatewayError {
    let mut timed_out = false;
    let mut hyper_err = None;
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            timed_out |= io.kind() == std::io::ErrorKind::TimedOut;
        }
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            hyper_err.get_or_insert(h);
        }
        source = s.source();
    }
    debug!(error = ?e, backend = cluster, "upstream request failed");
    if e.is_connect() {
        return if timed_out {
            GatewayError::new(
                ErrorKind::UpstreamConnectTimeout,
                format!("connecting to backend {cluster} timed out"),
            )
        } else {
            GatewayError::new(
                ErrorKind::UpstreamConnect,
                format!("cannot connect to backend {cluster}"),
            )
        };
    }
    match hyper_err {
        Some(h) if h.is_parse() || h.is_parse_status() => GatewayError::new(
            ErrorKind::UpstreamProtocol,
            format!("backend {cluster} sent an invalid response"),
        ),
        // The client's request body failed while being forwarded: the client went away or broke
        // the framing, so it is the client's error, not the backend's.
        Some(h) if h.is_user() || h.is_body_write_aborted() => {
            GatewayError::new(ErrorKind::BadRequest, "the request body could not be read")
        }
        _ => GatewayError::new(
            ErrorKind::UpstreamReset,
            format!("backend {cluster} closed the connection before answering"),
        ),
    }
}

fn report(e: &GatewayError, ex: &Exchange) {
    let upstream = ex.upstream.map(tracing::field::display);
    match e.kind.side() {
        Side::Client | Side::Config => {
            debug!(error.kind = e.kind.as_str(), error.message = %e.message, upstream, "request not served")
        }
        Side::Upstream => {
            warn!(error.kind = e.kind.as_str(), error.message = %e.message, upstream, "upstream failed")
        }
    }
}

fn access_record<B>(conn: &Conn, req: &Request<B>, host: Option<&RequestHost>) -> AccessRecord {
    let no_label = conn.shared.metrics.no_label();
    AccessRecord {
        time: SystemTime::now(),
        client: conn.client,
        method: req.method().as_str().into(),
        host: host.and_then(|h| h.raw.to_str().ok()).unwrap_or_default().into(),
        path: req.uri().path_and_query().map_or("", PathAndQuery::as_str).into(),
        protocol: match req.version() {
            Version::HTTP_09 => "HTTP/0.9",
            Version::HTTP_10 => "HTTP/1.0",
            Version::HTTP_2 => "HTTP/2.0",
            Version::HTTP_3 => "HTTP/3.0",
            _ => "HTTP/1.1",
        },
        status: 0,
        upstream: None,
        ingress: no_label.clone(),
        service: no_label.clone(),
        duration_ms: 0.0,
        bytes_sent: 0,
        bytes_received: 0,
        tls: conn.tls,
        user_agent: req
            .headers()
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(Into::into),
        error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_comes_from_authority_or_header() {
        // (version, uri, host headers, want host or None for 400, from_uri)
        type Case = (
            Version,
            &'static str,
            &'static [&'static str],
            Option<&'static str>,
            bool,
        );
        let cases: [Case; 7] = [
            (Version::HTTP_11, "/a", &["shop.example"], Some("shop.example"), false),
            (Version::HTTP_11, "/a", &[], None, false),
            (Version::HTTP_11, "/a", &["a", "b"], None, false),
            (Version::HTTP_10, "/a", &[], Some(""), false),
            (
                Version::HTTP_11,
                "http://abs.example:8080/a",
                &["other"],
                Some("abs.example:8080"),
                true,
            ),
            (Version::HTTP_2, "https://h2.example/a", &[], Some("h2.example"), true),
            (Version::HTTP_2, "/a", &[], Some(""), false),
        ];
        for (i, (version, uri, hosts, want, want_from_uri)) in cases.into_iter().enumerate() {
            let mut b = Request::builder().version(version).uri(uri);
            for h in hosts {
                b = b.header(HOST, *h);
            }
            let req = b.body(()).unwrap();
            match (request_host(&req), want) {
                (Ok(h), Some(want)) => {
                    assert_eq!(h.raw, want, "case {i}");
                    assert_eq!(h.from_uri, want_from_uri, "case {i}");
                }
                (Err(e), None) => assert_eq!(e.kind, ErrorKind::BadRequest, "case {i}"),
                (got, want) => panic!("case {i}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn redirect_location_omits_443() {
        let uri: Uri = "/cart?x=1".parse().unwrap();
        let cases = [
            (443, "https://shop.example/cart?x=1"),
            (8443, "https://shop.example:8443/cart?x=1"),
        ];
        for (port, want) in cases {
            let resp = redirect("shop.example", &uri, port).unwrap();
            assert_eq!(resp.status(), StatusCode::PERMANENT_REDIRECT);
            assert_eq!(resp.headers()[LOCATION], want, "port {port}");
        }
    }

    #[test]
    fn upstream_uri_keeps_the_raw_target() {
        let ep: SocketAddr = "10.0.0.1:8080".parse().unwrap();
        let cases = [
            ("/a%2Fb?q=%20x&y", "http://10.0.0.1:8080/a%2Fb?q=%20x&y"),
            ("http://shop.example/p?q", "http://10.0.0.1:8080/p?q"),
            ("*", "http://10.0.0.1:8080*"),
        ];
        for (target, want) in cases {
            let got = upstream_uri(ep, &target.parse().unwrap()).map(|u| u.to_string());
            // `*` (OPTIONS) has no path to forward; building it may fail, but must not panic.
            if target != "*" {
                assert_eq!(got.unwrap(), want, "{target}");
            }
        }
        let v6: SocketAddr = "[::1]:80".parse().unwrap();
        assert_eq!(
            upstream_uri(v6, &"/".parse().unwrap()).unwrap().to_string(),
            "http://[::1]:80/"
        );
    }
}
