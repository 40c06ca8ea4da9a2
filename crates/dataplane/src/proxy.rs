//! The request path: find the route in the live snapshot, then redirect, answer statically, or
//! proxy to one endpoint of the route's cluster.

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{
    HeaderValue, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, LOCATION, TRANSFER_ENCODING, UPGRADE, USER_AGENT,
};
use http::uri::PathAndQuery;
use http::{Extensions, Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use pin_project_lite::pin_project;
use portier_snapshot::{normalize_host, normalize_path, Action, ClusterId, Route, RoutePolicy, Snapshot, StaticReply};
use portier_telemetry::AccessRecord;
use tokio::time::Sleep;
use tracing::{debug, debug_span, warn, Span};

use crate::body::{BodyFailure, BodyWatch, Finish, Observed, RequestBody, ResponseBody, UpstreamBody};
use crate::error::{ErrorKind, GatewayError, Side};
use crate::guard::Verdict;
use crate::h1;
use crate::headers::{self, Forwarded};
use crate::pool::{self, SendError};
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
///
/// Everything up to the upstream exchange runs here, before the first poll; the returned future
/// holds only what must live across that exchange. hyper keeps one such future per HTTP/1
/// connection, idle or not, and moves one into a task per HTTP/2 stream, so its size is memory
/// per connection and bytes copied per request: as a chain of `async fn`s, each keeping its
/// by-value arguments twice, it was 3.8 KB.
pub(crate) fn handle(conn: Arc<Conn>, req: Request<Incoming>) -> Handling<impl Future<Output = pool::Sent> + Send> {
    let start = Instant::now();
    let index = conn.requests.fetch_add(1, Ordering::Relaxed);
    let host = request_host(&req);
    let record = if conn.shared.access_log.is_enabled() {
        Some(Box::new(access_record(&conn, &req, host.as_ref().ok())))
    } else {
        None
    };
    // Only bodies and the access log need a watch: a bodiless GET allocates nothing here.
    let watch = (record.is_some() || !http_body::Body::is_end_stream(req.body())).then(|| Arc::new(BodyWatch::new()));
    let mut ex = Exchange::default();
    // Debug level: with the default `info` filter the span is never built on the hot path.
    let span = debug_span!("req", http.method = %req.method(), http.path = req.uri().path());
    let upgrade_asked = req.headers().contains_key(UPGRADE);
    let step = {
        let _entered = (!span.is_disabled()).then(|| span.enter());
        check_message(&conn, index, &req)
            .and(host)
            .and_then(|host| route(&conn, req, host, &mut ex, watch.clone(), upgrade_asked, start))
            .unwrap_or_else(|e| Step::answer(Err(e)))
    };
    Handling {
        step,
        ctx: Some(Ctx {
            conn,
            start,
            index,
            record,
            watch,
            ex,
            upgrade_asked,
            span,
        }),
    }
}

pin_project! {
    /// One request being served: see [`handle`].
    pub(crate) struct Handling<F> {
        #[pin]
        step: Step<F>,
        // Taken when the response is ready.
        ctx: Option<Ctx>,
    }
}

pin_project! {
    #[project = StepProj]
    enum Step<F> {
        /// Answered without an upstream (redirect, static reply, ACME token, error); taken once.
        Ready { result: Option<Result<Response<ResponseBody>, GatewayError>> },
        Upstream {
            #[pin]
            upstream: Upstream<F>,
        },
    }
}

/// What the request's end needs from its start.
#[derive(Debug)]
struct Ctx {
    conn: Arc<Conn>,
    start: Instant,
    index: u64,
    record: Option<Box<AccessRecord>>,
    watch: Option<Arc<BodyWatch>>,
    ex: Exchange,
    upgrade_asked: bool,
    span: Span,
}

impl<F: Future<Output = pool::Sent>> Future for Handling<F> {
    type Output = Result<Response<Observed>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(ctx) = this.ctx.as_ref() else {
            // Polled after completion: hyper never does; stay pending rather than panic.
            return Poll::Pending;
        };
        let result = match this.step.project() {
            StepProj::Ready { result } => result.take(),
            StepProj::Upstream { upstream } => {
                let _entered = (!ctx.span.is_disabled()).then(|| ctx.span.enter());
                Some(ready!(upstream.poll_response(cx, &ctx.conn)))
            }
        };
        match (result, this.ctx.take()) {
            (Some(result), Some(ctx)) => Poll::Ready(Ok(ctx.finish(result))),
            _ => Poll::Pending,
        }
    }
}

impl<F> Step<F> {
    fn answer(result: Result<Response<ResponseBody>, GatewayError>) -> Self {
        Step::Ready { result: Some(result) }
    }
}

impl Ctx {
    fn finish(self, result: Result<Response<ResponseBody>, GatewayError>) -> Response<Observed> {
        let Ctx {
            conn,
            start,
            index,
            mut record,
            watch,
            ex,
            upgrade_asked,
            span: _,
        } = self;
        let (mut resp, error) = match result {
            Ok(resp) => (resp, None),
            Err(e) => {
                report(&e, &ex, conn.client);
                (e.response(), Some(e.kind.as_str()))
            }
        };
        if conn.guard.is_some() {
            // HTTP/1: close after `keep_alive_requests` requests (nginx `keepalive_requests`), and
            // after an upgrade that did not happen (the head inspection stopped at it).
            let last = index.saturating_add(1) >= u64::from(conn.settings.keep_alive_requests);
            let refused_upgrade = upgrade_asked && resp.status() != StatusCode::SWITCHING_PROTOCOLS;
            if last || refused_upgrade {
                resp.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
            }
        }
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
            received: watch,
        };
        resp.map(|body| Observed::new(body, finish))
    }
}

/// Checks on the message itself, before anything about the route: what the HTTP/1 head
/// inspection found, the header count (HTTP/2; HTTP/1 counts in the inspection), and the framing
/// headers hyper leaves to us.
fn check_message<B>(conn: &Conn, index: u64, req: &Request<B>) -> Result<(), GatewayError> {
    if let Some(verdict) = conn.guard.as_ref().and_then(|g| g.verdict(index)) {
        return Err(match verdict {
            Verdict::Framing(why) => GatewayError::new(ErrorKind::BadFraming, why),
            Verdict::TooLarge => too_large(),
        });
    }
    if req.headers().len() > conn.settings.max_header_count {
        return Err(too_large());
    }
    let headers = req.headers();
    if req.version() == Version::HTTP_10 && headers.contains_key(TRANSFER_ENCODING) {
        // RFC 9112 §6.1: an HTTP/1.0 recipient cannot know chunked; hyper refuses it too.
        return Err(GatewayError::new(
            ErrorKind::BadFraming,
            "Transfer-Encoding on an HTTP/1.0 request",
        ));
    }
    let mut te = headers.get_all(TRANSFER_ENCODING).iter();
    if let Some(first) = te.next() {
        if te.next().is_some() || !first.as_bytes().eq_ignore_ascii_case(b"chunked") {
            return Err(GatewayError::new(
                ErrorKind::BadFraming,
                "Transfer-Encoding other than chunked",
            ));
        }
        if headers.contains_key(CONTENT_LENGTH) {
            return Err(GatewayError::new(
                ErrorKind::BadFraming,
                "Content-Length together with Transfer-Encoding",
            ));
        }
    }
    if headers.get_all(CONTENT_LENGTH).iter().nth(1).is_some() {
        return Err(GatewayError::new(ErrorKind::BadFraming, "more than one Content-Length"));
    }
    Ok(())
}

fn too_large() -> GatewayError {
    GatewayError::new(ErrorKind::HeaderTooLarge, "the request head is too large")
}

/// `upgrade_asked`: the request has an `Upgrade` field (looked up once, in [`handle`]).
fn route(
    conn: &Arc<Conn>,
    req: Request<Incoming>,
    host: RequestHost,
    ex: &mut Exchange,
    watch: Option<Arc<BodyWatch>>,
    upgrade_asked: bool,
    start: Instant,
) -> Result<Step<impl Future<Output = pool::Sent> + Send>, GatewayError> {
    if req.method() == Method::CONNECT {
        // An ingress is not a forward proxy: tunnelling to arbitrary authorities is refused.
        return Err(GatewayError::new(
            ErrorKind::MethodNotAllowed,
            "CONNECT is not supported",
        ));
    }
    // A clone shares the received bytes (no allocation); `path` borrows from it while `req` moves on.
    let uri = req.uri().clone();
    let path = request_path(req.method(), &uri)?;
    // The one snapshot load of this request; a proxied request keeps it until the response
    // headers are out.
    let snap = conn.shared.cell.load();
    // RFC 8555 §8.3: the CA fetches the token over plain HTTP on port 80, whatever the Host, and
    // follows no redirect we would send; answer it before routing and before the HTTPS redirect.
    if !conn.tls {
        if let Some(reply) = http01_answer(&snap, req.method(), &path) {
            return Ok(Step::answer(Ok(reply)));
        }
    }
    let name = normalize_host(host.raw.to_str().unwrap_or_default());
    check_misdirected(conn, &snap, &name)?;
    let Some(found) = snap.routes().find(&name, &path) else {
        return Err(GatewayError::new(
            ErrorKind::NoRoute,
            "no route matches this host and path",
        ));
    };
    // Borrowed from `ex` rather than the snapshot, which moves into the exchange below.
    let route = &**ex.route.insert(found.clone());
    // The lines this request reads next, each behind its own pointer from the route, all cold with
    // many hosts: asked for together, their misses overlap each other and the work until they
    // are read (for the cluster: building the upstream request's head, see `proxy`).
    crate::body::warm_route_metrics(&conn.shared.metrics, route);
    crate::prefetch::prefetch(&*route.policy);
    if let Action::Proxy(id) = &route.action {
        if let Some(cluster) = snap.cluster(*id) {
            crate::prefetch::prefetch(cluster);
        }
    }
    let policy = &route.policy;
    if !policy.admits(conn.client.ip()) {
        return Err(GatewayError::new(
            ErrorKind::Forbidden,
            "the client address is not allowed on this route",
        ));
    }
    check_declared_length(&req, policy)?;
    // Without a host there is nothing to redirect to; serve the route as it is.
    if !conn.tls && route.https_redirect && !name.is_empty() {
        return redirect(&name, req.uri(), conn.shared.cfg.https_redirect_port).map(|r| Step::answer(Ok(r)));
    }
    match &route.action {
        Action::Static(reply) => Ok(Step::answer(Ok(static_reply(reply)))),
        Action::Unavailable { reason } => Err(GatewayError::new(
            ErrorKind::BackendUnavailable,
            format!("backend {} is unavailable: {reason}", route.backend),
        )),
        Action::Proxy(id) => {
            let target = Target {
                path: &path,
                cluster: *id,
                backend: &route.backend,
                upstream: &mut ex.upstream,
                upgrade_asked,
                start,
            };
            let upstream = proxy(conn, req, host, target, policy, watch, snap)?;
            Ok(Step::Upstream { upstream })
        }
    }
}

/// The normalized request path (see `portier_snapshot::normalize_path`); `*` stays for OPTIONS.
fn request_path<'u>(method: &Method, uri: &'u Uri) -> Result<Cow<'u, str>, GatewayError> {
    let raw = uri.path();
    if raw == "*" && method == Method::OPTIONS {
        return Ok(Cow::Borrowed(raw));
    }
    normalize_path(raw).map_err(|e| GatewayError::new(ErrorKind::BadPath, e.to_string()))
}

/// RFC 9110 §15.5.20: a request on a TLS connection whose host would be served by another
/// certificate than the one the handshake chose (its SNI) is misdirected; connection reuse by
/// browsers across names of one certificate stays allowed.
fn check_misdirected(conn: &Conn, snap: &Snapshot, host: &str) -> Result<(), GatewayError> {
    let Some(sni) = conn.sni.as_deref() else {
        return Ok(());
    };
    if host.is_empty() || host == sni {
        return Ok(());
    }
    let tls = snap.tls();
    let same = match (tls.lookup(Some(sni)), tls.lookup(Some(host))) {
        (None, None) => true,
        (Some(a), Some(b)) => Arc::ptr_eq(&a.certified, &b.certified) || a.certified.cert == b.certified.cert,
        _ => false,
    };
    if same {
        Ok(())
    } else {
        Err(GatewayError::new(
            ErrorKind::Misdirected,
            "this host is not served by the certificate of this connection",
        ))
    }
}

/// 413 from `Content-Length` before the upstream is contacted; bodies without one are counted
/// as they stream (see [`RequestBody`]).
fn check_declared_length<B>(req: &Request<B>, policy: &RoutePolicy) -> Result<(), GatewayError> {
    let (Some(limit), Some(value)) = (policy.max_body_bytes, req.headers().get(CONTENT_LENGTH)) else {
        return Ok(());
    };
    let declared = value.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) if n <= limit => Ok(()),
        Some(_) => Err(body_too_large()),
        None => Err(GatewayError::new(ErrorKind::BadFraming, "invalid Content-Length")),
    }
}

fn body_too_large() -> GatewayError {
    GatewayError::new(
        ErrorKind::BodyTooLarge,
        "the request body is larger than this route allows",
    )
}

/// Where a proxied request goes.
struct Target<'a> {
    /// The normalized path, forwarded instead of the one received.
    path: &'a str,
    cluster: ClusterId,
    /// The route's backend label, for the error when the cluster is missing.
    backend: &'a str,
    /// Where the endpoint goes once picked (see [`pick_endpoint`]).
    upstream: &'a mut Option<SocketAddr>,
    /// The request has an `Upgrade` field (looked up once, in [`handle`]).
    upgrade_asked: bool,
    /// When [`handle`] took the request: the upstream deadlines count from it, which spares a
    /// clock read per request (each is ~20 ns in a VM, and a request made ~11).
    start: Instant,
}

/// Builds the upstream request from the client's and hands it to the pool.
fn proxy(
    conn: &Conn,
    req: Request<Incoming>,
    host: RequestHost,
    mut target: Target<'_>,
    policy: &RoutePolicy,
    watch: Option<Arc<BodyWatch>>,
    snap: Arc<Snapshot>,
) -> Result<Upstream<impl Future<Output = pool::Sent> + Send>, GatewayError> {
    let (mut parts, body) = req.into_parts();
    let upgrade = target.upgrade_asked && headers::is_upgrade_request(parts.version, &parts.headers);
    let client_upgrade = if upgrade {
        parts.extensions.remove::<OnUpgrade>()
    } else {
        None
    };

    let has_body = !http_body::Body::is_end_stream(&body);
    let timeouts = Timeouts {
        read: policy.read_timeout,
        send: policy.send_timeout,
    };
    let limit = policy.connect_timeout;
    let host_field = if host.from_uri && !host.raw.is_empty() {
        Some(host.raw.clone())
    } else if host.raw.is_empty() {
        // HTTP/1.1 needs a Host (RFC 9112 §3.2); a client without one (HTTP/1.0, HTTP/2 without
        // :authority) gets the endpoint's, as an HTTP client addressing it would send.
        Some(endpoint_host(pick_endpoint(&snap, &mut target)?))
    } else {
        None
    };
    let fwd = Forwarded {
        client_ip: &conn.client_ip,
        local_port: &conn.local_port,
        tls: conn.tls,
        host: &host.raw,
    };
    let join_cookies = parts.version == Version::HTTP_2;
    let uri = upstream_target(target.path, &parts.uri)?;

    if h1::eligible(&parts.method, has_body, upgrade) {
        // The head is written from the client's fields as they are (see headers::write_head).
        let target_pq = uri.path_and_query().map_or("/", PathAndQuery::as_str);
        let mut head = Vec::with_capacity(h1::head_capacity(
            &parts.method,
            target_pq,
            &parts.headers,
            host.raw.len(),
        ));
        h1::request_line(&mut head, &parts.method, target_pq);
        headers::write_head(&mut head, &parts.headers, host_field.as_ref(), join_cookies, &fwd);
        let endpoint = pick_endpoint(&snap, &mut target)?;
        let head_only = parts.method == Method::HEAD;
        let map = std::mem::take(&mut parts.headers);
        return Ok(Upstream {
            sender: Sender::H1 {
                exchange: h1::send(
                    &conn.shared.h1,
                    endpoint,
                    Bytes::from(head),
                    head_only,
                    limit,
                    map,
                    target.start,
                ),
            },
            deadline: tokio::time::sleep_until(tokio::time::Instant::from_std(target.start) + timeouts.read),
            upload: None,
            timeouts,
            client_upgrade: None,
            snap,
            cluster: target.cluster,
        });
    }

    // For hyper's client the upstream request is the client's, changed in place.
    let hdrs = &mut parts.headers;
    headers::strip_hop_by_hop(hdrs, upgrade);
    if join_cookies {
        headers::join_cookies(hdrs);
    }
    if let Some(host_field) = host_field {
        hdrs.insert(HOST, host_field);
    }
    headers::add_forwarded(hdrs, &fwd);
    let endpoint = pick_endpoint(&snap, &mut target)?;
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    // What hyper attached on the client side means nothing to the upstream connection.
    parts.extensions.clear();

    let upload = if has_body { watch.clone() } else { None };
    let up = Request::from_parts(
        parts,
        RequestBody::new(body, watch, policy.max_body_bytes, conn.settings.client_body_timeout),
    );
    let first = if upload.is_some() {
        timeouts.tick()
    } else {
        timeouts.read
    };
    Ok(Upstream {
        sender: Sender::Hyper {
            sending: Box::pin(pool::send(conn.shared.pool, endpoint, up, limit)),
        },
        deadline: tokio::time::sleep_until(tokio::time::Instant::from_std(target.start) + first),
        upload,
        timeouts,
        client_upgrade,
        snap,
        cluster: target.cluster,
    })
}

pin_project! {
    /// Who carries the exchange: [`crate::h1`] for the common request, hyper's client for the
    /// rest (bodies, upgrades, methods that must not be sent twice).
    #[project = SenderProj]
    enum Sender<F> {
        H1 { exchange: h1::Exchange },
        // Boxed: the rarer path, and its future is the larger (~400 bytes) of the two, which
        // every request future would otherwise be sized for and moved with.
        Hyper { sending: Pin<Box<pool::Sending<F>>> },
    }
}

pin_project! {
    /// The exchange with the upstream, raced against its deadlines (`biased`: the exchange is
    /// polled first, as `timeout` would).
    struct Upstream<F> {
        #[pin]
        sender: Sender<F>,
        // Without a request body: the read timeout. While one streams: a tick at which the
        // upload's progress is checked.
        #[pin]
        deadline: Sleep,
        upload: Option<Arc<BodyWatch>>,
        timeouts: Timeouts,
        client_upgrade: Option<OnUpgrade>,
        // For the cluster's name in errors.
        snap: Arc<Snapshot>,
        cluster: ClusterId,
    }
}

#[derive(Debug, Clone, Copy)]
struct Timeouts {
    /// No response headers within this long of the request (body included) being sent.
    read: Duration,
    /// The upstream stopped taking request body bytes for this long.
    send: Duration,
}

impl Timeouts {
    fn tick(self) -> Duration {
        (self.send.min(self.read) / 8).clamp(Duration::from_millis(5), Duration::from_secs(1))
    }
}

impl<F: Future<Output = pool::Sent>> Upstream<F> {
    fn poll_response(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        conn: &Arc<Conn>,
    ) -> Poll<Result<Response<ResponseBody>, GatewayError>> {
        let mut this = self.project();
        let cluster = this.snap.clusters().get(this.cluster.index());
        let backend = cluster.map_or("", |c| &c.name);
        let polled = match this.sender.project() {
            SenderProj::H1 { exchange } => Pin::new(exchange).poll(cx).map(|r| r.map(Sent::H1)),
            SenderProj::Hyper { sending } => sending
                .as_mut()
                .poll(cx)
                .map(|r| r.map(|(resp, lease)| Sent::Hyper(resp, lease))),
        };
        let sent = match polled {
            Poll::Ready(sent) => sent,
            Poll::Pending => {
                let stall = ready!(poll_stall(
                    this.deadline.as_mut(),
                    cx,
                    this.upload.as_deref(),
                    *this.timeouts
                ));
                return Poll::Ready(Err(stall.error(backend, *this.timeouts)));
            }
        };
        let sent = match sent {
            Ok(sent) => sent,
            Err(e) => {
                return Poll::Ready(Err(match this.upload.as_ref().and_then(|w| w.failure()) {
                    Some(BodyFailure::TooLarge) => body_too_large(),
                    Some(BodyFailure::Timeout) => GatewayError::new(
                        ErrorKind::BodyTimeout,
                        "the request body stalled for longer than the client body timeout",
                    ),
                    None => classify(&e, backend),
                }))
            }
        };

        let (mut rparts, body) = match sent {
            // crate::h1 left the hop-by-hop fields out while parsing.
            Sent::H1(resp) => {
                let (rparts, body) = resp.into_parts();
                (rparts, ResponseBody::H1(body))
            }
            Sent::Hyper(resp, mut lease) => {
                let (mut rparts, rbody) = resp.into_parts();
                let switching = rparts.status == StatusCode::SWITCHING_PROTOCOLS;
                if switching {
                    let (Some(client_io), Some(upstream_io)) =
                        (this.client_upgrade.take(), rparts.extensions.remove::<OnUpgrade>())
                    else {
                        return Poll::Ready(Err(GatewayError::new(
                            ErrorKind::UpstreamProtocol,
                            format!("backend {backend} switched protocols without an upgrade request"),
                        )));
                    };
                    conn.shared.spawn_tunnel(conn.clone(), client_io, upstream_io);
                    lease.discard();
                }
                headers::strip_hop_by_hop(&mut rparts.headers, switching);
                (rparts, ResponseBody::Upstream(UpstreamBody::new(rbody, lease)))
            }
        };
        // The client-side extensions mean nothing to the server connection; hyper picks the version.
        rparts.extensions = Extensions::new();
        rparts.version = Version::HTTP_11;
        Poll::Ready(Ok(Response::from_parts(rparts, body)))
    }
}

/// A response head from either sender.
enum Sent {
    H1(Response<h1::H1Body>),
    Hyper(Response<Incoming>, pool::Lease),
}

/// Resolves when the upstream stalls: no response within the read timeout; or, while a body
/// streams, the upstream holds a chunk for longer than the send timeout, or has had the whole
/// body for longer than the read timeout without answering. A stall on the client side is the
/// body's own `client_body_timeout`.
fn poll_stall(
    mut deadline: Pin<&mut Sleep>,
    cx: &mut Context<'_>,
    upload: Option<&BodyWatch>,
    timeouts: Timeouts,
) -> Poll<Stall> {
    loop {
        ready!(deadline.as_mut().poll(cx));
        let Some(w) = upload else {
            return Poll::Ready(Stall::Read);
        };
        if let Some(ended) = w.ended_for() {
            if ended >= timeouts.read {
                return Poll::Ready(Stall::Read);
            }
        } else if w.stalled_for().is_some_and(|s| s >= timeouts.send) {
            return Poll::Ready(Stall::Send);
        }
        deadline.as_mut().reset(tokio::time::Instant::now() + timeouts.tick());
    }
}

/// Which upstream deadline passed.
#[derive(Debug, Clone, Copy)]
enum Stall {
    Read,
    Send,
}

impl Stall {
    fn error(self, backend: &str, timeouts: Timeouts) -> GatewayError {
        match self {
            Stall::Read => GatewayError::new(
                ErrorKind::UpstreamTimeout,
                format!(
                    "backend {backend} sent no response within {}s",
                    timeouts.read.as_secs_f32()
                ),
            ),
            Stall::Send => GatewayError::new(
                ErrorKind::UpstreamSendTimeout,
                format!(
                    "backend {backend} stopped reading the request body for {}s",
                    timeouts.send.as_secs_f32()
                ),
            ),
        }
    }
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

/// The origin-form target sent upstream: the normalized path and the query byte for byte as the
/// client sent it.
fn upstream_target(path: &str, target: &Uri) -> Result<Uri, GatewayError> {
    let path_and_query = match target.path_and_query() {
        // Already normal: reuse the received bytes.
        Some(pq) if pq.path() == path => pq.clone(),
        Some(pq) => {
            let joined = match pq.query() {
                Some(q) => format!("{path}?{q}"),
                None => path.to_owned(),
            };
            PathAndQuery::try_from(joined)
                .map_err(|_| GatewayError::new(ErrorKind::BadRequest, "invalid request target"))?
        }
        None => PathAndQuery::from_static("/"),
    };
    Ok(Uri::from(path_and_query))
}

/// The request's endpoint, picked once (into `target.upstream`, which the access log and error
/// reports read) and as late as the request allows: with many hosts the cluster's line is cold,
/// and its miss, asked for in [`route`], overlaps the work before.
fn pick_endpoint(snap: &Snapshot, target: &mut Target<'_>) -> Result<SocketAddr, GatewayError> {
    if let Some(endpoint) = *target.upstream {
        return Ok(endpoint);
    }
    // Compile hands out ids into this very snapshot; a miss is a bug, answered, not a panic.
    let Some(cluster) = snap.cluster(target.cluster) else {
        return Err(GatewayError::new(
            ErrorKind::BackendUnavailable,
            format!("backend {} is missing from the configuration", target.backend),
        ));
    };
    let Some(endpoint) = cluster.pick() else {
        return Err(GatewayError::new(
            ErrorKind::NoEndpoints,
            format!("no ready endpoints for {}", cluster.name),
        ));
    };
    *target.upstream = Some(endpoint);
    Ok(endpoint)
}

fn endpoint_host(endpoint: SocketAddr) -> HeaderValue {
    HeaderValue::try_from(endpoint.to_string()).unwrap_or_else(|_| HeaderValue::from_static("localhost"))
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

/// The key authorization for a live HTTP-01 token; `None` (normal routing) for anything else.
fn http01_answer(snap: &Snapshot, method: &Method, path: &str) -> Option<Response<ResponseBody>> {
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    let token = path.strip_prefix("/.well-known/acme-challenge/")?;
    let key_authorization = snap.http01_key_authorization(token)?;
    let mut resp = Response::new(ResponseBody::full(Bytes::copy_from_slice(key_authorization.as_bytes())));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Some(resp)
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

/// Maps an upstream failure to what the user is told. The cause goes to the debug log only.
fn classify(e: &SendError, cluster: &str) -> GatewayError {
    debug!(error = ?e, backend = cluster, "upstream request failed");
    match e {
        SendError::ConnectTimeout => GatewayError::new(
            ErrorKind::UpstreamConnectTimeout,
            format!("connecting to backend {cluster} timed out"),
        ),
        SendError::Connect(io) => GatewayError::new(
            ErrorKind::UpstreamConnect,
            format!("cannot connect to backend {cluster} ({})", io.kind()),
        ),
        SendError::Exchange(h) if h.is_parse() || h.is_parse_status() => GatewayError::new(
            ErrorKind::UpstreamProtocol,
            format!("backend {cluster} sent an invalid response"),
        ),
        // The client's request body failed while being forwarded: the client went away or broke
        // the framing, so it is the client's error, not the backend's.
        SendError::Exchange(h) if h.is_user() || h.is_body_write_aborted() => {
            GatewayError::new(ErrorKind::BadRequest, "the request body could not be read")
        }
        SendError::Protocol(what) => {
            GatewayError::new(ErrorKind::UpstreamProtocol, format!("backend {cluster} {what}"))
        }
        SendError::Exchange(_) => GatewayError::new(
            ErrorKind::UpstreamReset,
            format!("backend {cluster} closed the connection before answering"),
        ),
        SendError::Io(io) => GatewayError::new(
            ErrorKind::UpstreamReset,
            format!(
                "backend {cluster} closed the connection before answering ({})",
                io.kind()
            ),
        ),
    }
}

fn report(e: &GatewayError, ex: &Exchange, client: SocketAddr) {
    let upstream = ex.upstream.map(tracing::field::display);
    match e.kind.side() {
        Side::Client | Side::Config => {
            debug!(error.kind = e.kind.as_str(), error.message = %e.message, upstream, "request not served")
        }
        Side::Upstream => {
            warn!(
                error.kind = e.kind.as_str(),
                error.message = %e.message,
                upstream,
                client.addr = %client,
                "upstream failed"
            )
        }
    }
}

/// The standard methods as static strings: no allocation per logged request.
fn method_name(m: &Method) -> std::borrow::Cow<'static, str> {
    match m.as_str() {
        "GET" => "GET".into(),
        "POST" => "POST".into(),
        "PUT" => "PUT".into(),
        "DELETE" => "DELETE".into(),
        "HEAD" => "HEAD".into(),
        "OPTIONS" => "OPTIONS".into(),
        "PATCH" => "PATCH".into(),
        "CONNECT" => "CONNECT".into(),
        "TRACE" => "TRACE".into(),
        other => other.to_owned().into(),
    }
}

fn access_record<B>(conn: &Conn, req: &Request<B>, host: Option<&RequestHost>) -> AccessRecord {
    let no_label = conn.shared.metrics.no_label();
    AccessRecord {
        time: SystemTime::now(),
        client: conn.client,
        method: method_name(req.method()),
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
    fn upstream_target_has_the_normalized_path_and_the_raw_query() {
        let cases = [
            ("/a%2Fb?q=%20x&y", "/a%2Fb?q=%20x&y"),
            ("/a/../%7e//b?q=/../%2e", "/~/b?q=/../%2e"),
            ("http://shop.example/p?q", "/p?q"),
        ];
        for (target, want) in cases {
            let uri: Uri = target.parse().unwrap();
            let path = normalize_path(uri.path()).unwrap().into_owned();
            assert_eq!(upstream_target(&path, &uri).unwrap().to_string(), want, "{target}");
        }
        let v6: SocketAddr = "[::1]:80".parse().unwrap();
        assert_eq!(endpoint_host(v6), "[::1]:80");
    }
}
