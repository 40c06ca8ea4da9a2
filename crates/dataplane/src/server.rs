//! Listeners and connections: accept loops, TLS handshakes, protocol selection, HTTP serving,
//! upgraded tunnels, and the drain on shutdown.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use std::sync::atomic::AtomicU64;

use http::HeaderValue;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioIo, TokioTimer};
use portier_snapshot::{GlobalSettings, SnapshotCell};
use portier_telemetry::{AccessLog, ConnectionGauge, ConnectionGuard, HandshakeFailure, Metrics, WorkerGauge};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, debug_span, field, info, warn, Instrument};

use crate::coalesce::Coalesced;
use crate::guard::{GuardState, Guarded, HeadLimits};
use crate::pool::PoolConfig;
use crate::workers::{Job, Workers};
use crate::DataplaneConfig;

/// State shared by every connection of one [`Dataplane`](crate::Dataplane).
pub(crate) struct Shared {
    pub(crate) cell: Arc<SnapshotCell>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) access_log: AccessLog,
    pub(crate) cfg: DataplaneConfig,
    /// Upstream keep-alive settings (the pools themselves are per thread, see [`crate::pool`]).
    pub(crate) pool: PoolConfig,
    /// Idle connections of the upstream path most requests take (see [`crate::h1`]).
    pub(crate) h1: Arc<crate::h1::Pool>,
    tls: TlsAcceptor,
    /// Every connection and tunnel task, so shutdown can wait for them.
    pub(crate) tracker: TaskTracker,
    /// Cancelled when the drain deadline passes: whatever is still open is closed.
    force: CancellationToken,
}

/// One client connection, shared by its requests.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) shared: Arc<Shared>,
    pub(crate) client: SocketAddr,
    pub(crate) tls: bool,
    /// The client IP as a header value, built once per connection for `X-Real-IP`/`X-Forwarded-For`.
    pub(crate) client_ip: HeaderValue,
    /// The listener port as a header value, for `X-Forwarded-Port`.
    pub(crate) local_port: HeaderValue,
    /// The global settings of the snapshot live when the connection was accepted.
    pub(crate) settings: Arc<GlobalSettings>,
    /// The TLS server name the client asked for, lower-case; `None` on plain connections.
    pub(crate) sni: Option<Box<str>>,
    /// Requests started on this connection: the index of the next one.
    pub(crate) requests: AtomicU64,
    /// HTTP/1 connections: what the head inspection found (see [`crate::guard`]).
    pub(crate) guard: Option<Arc<GuardState>>,
    /// Counts the connection as open until every request, response body and tunnel of it is done.
    _open: ConnectionGuard,
    /// The same, against the worker thread serving it.
    _load: Option<ConnectionGuard>,
}

/// A connection between accept and its first request: the [`Conn`] is built once the TLS server
/// name and the protocol are known.
pub(crate) struct Accepted {
    pub(crate) shared: Arc<Shared>,
    pub(crate) client: SocketAddr,
    pub(crate) tls: bool,
    pub(crate) local_port: HeaderValue,
    pub(crate) open: ConnectionGuard,
    pub(crate) load: Option<ConnectionGuard>,
    /// The socket has TCP_NODELAY already, from its listener.
    pub(crate) nodelay: bool,
}

/// One listener being served.
pub(crate) struct Listener {
    socket: TcpListener,
    /// Accepted sockets come with TCP_NODELAY (see [`serve_tcp`]).
    nodelay: bool,
    tls: bool,
    gauge: ConnectionGauge,
    port: HeaderValue,
}

/// The first bytes of an HTTP/2 connection with prior knowledge (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Pause after an accept error that is not about one connection (EMFILE, ENOBUFS): retrying at
/// once would spin while the process is out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// After the drain deadline, how long closing the remaining connections may take.
const FORCE_GRACE: Duration = Duration::from_secs(1);
/// HTTP/2: streams the client may reset before the server accepts them, per connection; more is
/// a rapid-reset attack (CVE-2023-44487) and ends the connection with GOAWAY (ENHANCE_YOUR_CALM).
const H2_MAX_PENDING_ACCEPT_RESET: usize = 20;
/// HTTP/2: streams the server may reset because of client errors before it sends GOAWAY.
const H2_MAX_LOCAL_ERROR_RESET: usize = 256;
/// HTTP/2: bytes buffered per stream for sending before the stream waits for the client.
const H2_MAX_SEND_BUF: usize = 256 * 1024;
/// HTTP/2: a PING every so often on a quiet connection, and how long its ACK may take before the
/// connection is considered dead.
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(10);

// === impl Shared ===

impl Shared {
    pub(crate) fn new(
        cell: Arc<SnapshotCell>,
        metrics: Arc<Metrics>,
        access_log: AccessLog,
        cfg: DataplaneConfig,
    ) -> Self {
        // The pool idle timeout is read once, at startup: the pool is shared by all snapshots.
        let pool = PoolConfig {
            idle_timeout: cell.load().settings().upstream_keepalive_timeout,
        };

        let tls = TlsAcceptor::from(crate::tls::server_config(cell.clone()));
        Self {
            cell,
            metrics,
            access_log,
            cfg,
            pool,
            h1: Arc::new(crate::h1::Pool::new(pool.idle_timeout)),
            tls,
            tracker: TaskTracker::new(),
            force: CancellationToken::new(),
        }
    }

    /// The same settings, snapshot and drain for a worker thread, with upstream pools of its own.
    pub(crate) fn for_worker(&self) -> Self {
        Self {
            cell: self.cell.clone(),
            metrics: self.metrics.clone(),
            access_log: self.access_log.clone(),
            cfg: self.cfg.clone(),
            pool: self.pool,
            h1: Arc::new(crate::h1::Pool::new(self.pool.idle_timeout)),
            tls: self.tls.clone(),
            tracker: self.tracker.clone(),
            force: self.force.clone(),
        }
    }

    /// Splices an upgraded client connection with the upgraded upstream connection. The tunnel
    /// holds no snapshot, so it survives reloads; it ends when either side closes, or at the drain
    /// deadline.
    pub(crate) fn spawn_tunnel(&self, conn: Arc<Conn>, client: OnUpgrade, upstream: OnUpgrade) {
        let force = self.force.clone();
        self.tracker.spawn(
            async move {
                // Both upgrades complete once the 101 has been written to the client.
                let (client, upstream) = match tokio::try_join!(client, upstream) {
                    Ok(pair) => pair,
                    Err(e) => {
                        debug!(error = %e, "upgrade failed");
                        return;
                    }
                };
                let mut client = TokioIo::new(client);
                let mut upstream = TokioIo::new(upstream);
                tokio::select! {
                    r = tokio::io::copy_bidirectional(&mut client, &mut upstream) => match r {
                        Ok((up, down)) => debug!(bytes.up = up, bytes.down = down, "tunnel closed"),
                        Err(e) => debug!(error = %e, "tunnel closed with an error"),
                    },
                    _ = force.cancelled() => debug!("tunnel closed at the drain deadline"),
                }
                drop(conn);
            }
            .in_current_span(),
        );
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

/// Accepts on both listeners until `shutdown`, then drains (see [`Dataplane::run`](crate::Dataplane::run)).
pub(crate) async fn run(
    shared: Arc<Shared>,
    http: Option<TcpListener>,
    https: Option<TcpListener>,
    shutdown: CancellationToken,
) {
    let mut sockets: Vec<(TcpListener, bool)> = [(http, false), (https, true)]
        .into_iter()
        .filter_map(|(socket, tls)| Some((socket?, tls)))
        .collect();
    for (socket, tls) in &sockets {
        // `portier serve` logs `listening` with the address when it binds; a second line of the
        // same message would read as a second listener to whoever watches the log.
        let addr = socket.local_addr().map(|a| a.to_string()).unwrap_or_default();
        debug!(listener = listener_name(*tls), %addr, "accepting");
    }
    let workers = match shared.cfg.workers {
        0 | 1 => None,
        n => match Workers::start(&shared, n, &shutdown) {
            Ok(w) => Some(w),
            Err(e) => {
                warn!(error = %e, workers = n, "cannot start the worker threads; serving on one thread");
                None
            }
        },
    };
    match &workers {
        Some(w) => {
            // Each worker accepts on a socket of its own when the listeners allow it; otherwise
            // this runtime accepts and hands the connections over.
            match crate::workers::shard(sockets, w.len()) {
                Ok(per_worker) => {
                    w.listen(per_worker);
                    sockets = Vec::new();
                }
                Err(back) => sockets = back,
            }
            debug!(
                workers = w.len(),
                accepting_here = !sockets.is_empty(),
                "serving on worker threads"
            );
        }
        None => drop(tokio::spawn(crate::h1::sweep_idle(Arc::downgrade(&shared.h1)))),
    }
    let dest = workers.as_ref().map_or(Dest::Here(None), Dest::HandOver);
    let listeners = sockets.into_iter().map(|(socket, tls)| {
        accept_loop(
            shared.clone(),
            listener(&shared, socket, tls),
            shutdown.clone(),
            dest.clone(),
        )
    });
    futures_util::future::join_all(listeners).await;
    shutdown.cancelled().await;

    // The listeners are closed now: new connections are refused while the old ones drain.
    shared.tracker.close();
    info!(connections = shared.tracker.len(), "draining connections");
    if tokio::time::timeout(shared.cfg.drain_timeout, shared.tracker.wait())
        .await
        .is_err()
    {
        warn!(
            connections = shared.tracker.len(),
            "drain deadline passed; closing the remaining connections"
        );
        shared.force.cancel();
        if tokio::time::timeout(FORCE_GRACE, shared.tracker.wait()).await.is_err() {
            warn!(connections = shared.tracker.len(), "connections still closing at exit");
        }
    }
    if let Some(w) = workers {
        w.stop().await;
    }
    info!("data plane stopped");
}

/// Where an accept loop's connections are served.
#[derive(Clone)]
pub(crate) enum Dest<'a> {
    /// On the runtime accepting them; counted against the worker it belongs to, if any.
    Here(Option<WorkerGauge>),
    /// Handed to the least busy worker thread.
    HandOver(&'a Workers),
}

fn listener_name(tls: bool) -> &'static str {
    if tls {
        "https"
    } else {
        "http"
    }
}

pub(crate) fn listener(shared: &Shared, socket: TcpListener, tls: bool) -> Listener {
    let port = socket.local_addr().map(|a| a.port()).unwrap_or_default();
    // Linux copies a listener's TCP_NODELAY to the sockets it accepts.
    let nodelay = cfg!(target_os = "linux") && socket2::SockRef::from(&socket).tcp_nodelay().unwrap_or(false);
    Listener {
        socket,
        nodelay,
        tls,
        gauge: shared.metrics.connections(listener_name(tls)),
        port: HeaderValue::from(port),
    }
}

pub(crate) async fn accept_loop(shared: Arc<Shared>, listener: Listener, shutdown: CancellationToken, dest: Dest<'_>) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.socket.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) if is_connection_error(&e) => {
                debug!(error = %e, "connection failed during accept");
                continue;
            }
            Err(e) => {
                warn!(error = %e, "accept failed; retrying shortly");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // Debug level: entering an enabled span at every poll of the connection costs ~600
        // instructions per request (callgrind); lines logged above debug name the client
        // themselves. Its fields are computed only when it is enabled: the server address is a
        // system call per connection.
        let span = debug_span!(
            "conn",
            client.addr = %peer,
            server.addr = %stream.local_addr().unwrap_or_else(|_| unspecified()),
            tls.sni = field::Empty,
            tls.cert = field::Empty,
        );
        let mut accepted = Accepted {
            shared: shared.clone(),
            client: peer,
            tls: listener.tls,
            local_port: listener.port.clone(),
            open: listener.gauge.open(),
            load: None,
            nodelay: listener.nodelay,
        };
        match &dest {
            Dest::Here(worker) => {
                accepted.load = worker.as_ref().map(WorkerGauge::open);
                spawn_serve_tcp(accepted, stream, span, &shutdown);
            }
            // Off this thread's event loop, onto the worker's.
            Dest::HandOver(workers) => match stream.into_std() {
                Ok(stream) => workers.dispatch(Job { accepted, stream, span }, shared.tracker.token()),
                Err(e) => debug!(parent: &span, error = %e, "cannot hand the connection over; closed"),
            },
        }
    }
}

/// Serves an accepted connection on a tracked task of the runtime this runs on.
pub(crate) fn spawn_serve_tcp(
    accepted: Accepted,
    stream: TcpStream,
    span: tracing::Span,
    shutdown: &CancellationToken,
) {
    let tracker = accepted.shared.tracker.clone();
    tracker.spawn(serve_tcp(accepted, stream, shutdown.clone()).instrument(span));
}

async fn serve_tcp(accepted: Accepted, stream: TcpStream, shutdown: CancellationToken) {
    // Responses are written whole by hyper; Nagle would only delay the last segment. Sockets
    // accepted from a listener that has the option inherit it (Linux), which saves a system call
    // per connection (see [`crate::workers::bind`]).
    if !accepted.nodelay {
        if let Err(e) = stream.set_nodelay(true) {
            debug!(error = %e, "cannot set TCP_NODELAY");
        }
    }
    // The settings of the snapshot live now apply to the whole connection.
    let settings = accepted.shared.cell.load().settings().clone();
    let limit = settings.client_header_timeout;
    if accepted.tls {
        // Boxed: inline, the handshake's state would size every connection's task, plain HTTP
        // included.
        Box::pin(serve_tls(accepted, stream, settings, shutdown)).await;
    } else {
        // Decide the protocol ourselves, under a deadline: hyper's own detection waits for the
        // first bytes without one, so a silent client would hold the connection forever.
        let sniffed = tokio::select! {
            r = tokio::time::timeout(limit, starts_with_h2_preface(&stream)) => r,
            _ = shutdown.cancelled() => return,
        };
        match sniffed {
            Ok(Ok(Some(h2))) => spawn_http(accepted, settings, None, stream, h2, shutdown),
            Ok(Ok(None)) => debug!("connection closed before a request"),
            Ok(Err(e)) => debug!(error = %e, "connection failed before a request"),
            Err(_) => debug!("no request within the client header timeout"),
        }
    }
}

/// The TLS handshake under the client header deadline, then HTTP/1.1 or HTTP/2 by ALPN.
async fn serve_tls(accepted: Accepted, stream: TcpStream, settings: Arc<GlobalSettings>, shutdown: CancellationToken) {
    let limit = settings.client_header_timeout;
    let handshake = tokio::select! {
        r = tokio::time::timeout(limit, accepted.shared.tls.accept(stream)) => r,
        _ = shutdown.cancelled() => return,
    };
    let tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            accepted.shared.metrics.tls_handshake_failed(handshake_failure(&e));
            return debug!(error = %e, "tls handshake failed");
        }
        Err(_) => {
            accepted.shared.metrics.tls_handshake_failed(HandshakeFailure::Timeout);
            return debug!("tls handshake timed out");
        }
    };
    let session = tls.get_ref().1;
    let sni: Option<Box<str>> = session
        .server_name()
        .map(|s| portier_snapshot::normalize_host(s).into());
    if let Some(sni) = &sni {
        tracing::Span::current().record("tls.sni", &**sni);
    }
    let h2 = session.alpn_protocol() == Some(b"h2");
    spawn_http(accepted, settings, sni, tls, h2, shutdown);
}

/// What a failed handshake's error says about its cause. tokio-rustls reports rustls's errors as
/// `InvalidData` with the rustls error inside; any other error is the socket's.
fn handshake_failure(e: &io::Error) -> HandshakeFailure {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::AlertReceived(_)) => HandshakeFailure::ClientAlert,
        Some(_) => HandshakeFailure::Protocol,
        None => HandshakeFailure::Closed,
    }
}

/// Serves HTTP on one connection, on a task of its own, until it ends. On shutdown, asks hyper to
/// finish the requests in flight and close (HTTP/1.1: no more keep-alive; HTTP/2: GOAWAY); at the
/// drain deadline, drops it.
///
/// A task of its own, of the protocol's own type, and the accepting task ends: the connection
/// keeps neither the accepting task (which the TLS handshake's state sizes: 2.9 KB) nor a box
/// for a future of another task (DHAT). Spawned from a tracked task, onto the same tracker: the
/// drain never sees the connection untracked.
fn spawn_http<I>(
    accepted: Accepted,
    settings: Arc<GlobalSettings>,
    sni: Option<Box<str>>,
    io: I,
    h2: bool,
    shutdown: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Accepted {
        shared,
        client,
        tls,
        local_port,
        open,
        load,
        nodelay: _,
    } = accepted;
    let conn = Conn {
        shared: shared.clone(),
        client,
        tls,
        client_ip: ip_header(client),
        local_port,
        settings: settings.clone(),
        sni,
        requests: AtomicU64::new(0),
        guard: None,
        _open: open,
        _load: load,
    };
    let tracker = shared.tracker.clone();
    let span = tracing::Span::current();
    if h2 {
        tracker.spawn(serve_h2(conn, shared, settings, io, shutdown).instrument(span));
    } else {
        tracker.spawn(serve_h1(conn, shared, settings, io, shutdown).instrument(span));
    }
}

async fn serve_h2<I>(conn: Conn, shared: Arc<Shared>, s: Arc<GlobalSettings>, io: I, shutdown: CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = Arc::new(conn);
    let service = service_fn(move |req| crate::proxy::handle(conn.clone(), req));
    let spawner = crate::streams::Spawner::default();
    let mut builder = http2::Builder::new(spawner.clone());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(s.http2_max_concurrent_streams)
        .max_pending_accept_reset_streams(H2_MAX_PENDING_ACCEPT_RESET)
        .max_local_error_reset_streams(H2_MAX_LOCAL_ERROR_RESET)
        // HPACK-decoded size of a header block; over it h2 answers the stream with 431. The
        // same block is also bounded while CONTINUATION frames arrive (h2 >= 0.4.4).
        .max_header_list_size(u32::try_from(s.max_header_bytes).unwrap_or(u32::MAX))
        .max_send_buf_size(H2_MAX_SEND_BUF)
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_TIMEOUT);
    let connection = builder.serve_connection(TokioIo::new(Coalesced::new(io)), service);
    let connection = crate::streams::WithStreams::new(connection, spawner);
    drive(connection, &shared, &shutdown, |c| c.conn().graceful_shutdown()).await;
}

async fn serve_h1<I>(mut conn: Conn, shared: Arc<Shared>, s: Arc<GlobalSettings>, io: I, shutdown: CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (io, guard) = Guarded::new(
        io,
        HeadLimits {
            bytes: s.max_header_bytes,
            line: s.max_header_line_bytes,
            fields: s.max_header_count,
        },
        s.client_header_timeout,
        s.keep_alive_timeout,
    );
    conn.guard = Some(guard);
    let conn = Arc::new(conn);
    let service = service_fn(move |req| crate::proxy::handle(conn.clone(), req));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // nginx `keepalive_timeout 0`: no keep-alive, close after each response.
        .keep_alive(!s.keep_alive_timeout.is_zero())
        // `Guarded` times both the idle keep-alive period and each head (from its first byte);
        // hyper's own head timer (30 s by default) would add a timer per request.
        .header_read_timeout(None)
        // hyper's own limits are a backstop at twice ours: below them the guard sees the head
        // and the service answers 431 with `x-portier-error`; above, hyper answers a bare 431.
        .max_header_size(s.max_header_bytes.saturating_mul(2).max(1))
        .max_buf_size(s.max_header_bytes.saturating_mul(2).max(MIN_BUF) + MIN_BUF);
    if s.max_header_count > HYPER_DEFAULT_MAX_HEADERS {
        // Setting it at all costs an initialised field array per request (hyper allocates
        // `max_headers` slots); hyper's own 100 on the stack is the backstop otherwise.
        builder.max_headers(s.max_header_count.saturating_mul(2));
    }
    let connection = builder.serve_connection(TokioIo::new(io), service).with_upgrades();
    drive(connection, &shared, &shutdown, |c| c.graceful_shutdown()).await;
}

/// The number of header fields hyper accepts when `max_headers` is not set.
const HYPER_DEFAULT_MAX_HEADERS: usize = 100;

/// hyper's smallest accepted `max_buf_size`.
const MIN_BUF: usize = 8192;

async fn drive<C, E>(connection: C, shared: &Shared, shutdown: &CancellationToken, graceful: fn(Pin<&mut C>))
where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    tokio::pin!(connection);
    let result = tokio::select! {
        r = connection.as_mut() => r,
        _ = shutdown.cancelled() => {
            graceful(connection.as_mut());
            tokio::select! {
                r = connection.as_mut() => r,
                _ = shared.force.cancelled() => return,
            }
        }
    };
    if let Err(e) = result {
        debug!(error = %e, "connection ended with an error");
    }
}

/// `Some(true)` when the connection starts with the HTTP/2 preface, `Some(false)` as soon as it
/// cannot, `None` when the client closed first. Peeks, so hyper still reads every byte.
async fn starts_with_h2_preface(stream: &TcpStream) -> io::Result<Option<bool>> {
    let mut buf = [0u8; H2_PREFACE.len()];
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        if buf[..n] != H2_PREFACE[..n] {
            return Ok(Some(false));
        }
        if n == H2_PREFACE.len() {
            return Ok(Some(true));
        }
        // Part of the preface so far: peek would return the same bytes at once, so wait a little
        // for the rest instead of spinning.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Accept errors that concern only the connection being accepted; the listener is fine.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionRefused
    )
}

fn ip_header(peer: SocketAddr) -> HeaderValue {
    // An IPv4 client on a dual-stack listener shows as ::ffff:a.b.c.d; upstreams expect a.b.c.d.
    let ip = peer.ip().to_canonical().to_string();
    HeaderValue::try_from(ip).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

fn unspecified() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}
