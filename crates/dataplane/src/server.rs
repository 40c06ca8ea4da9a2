//! Listeners and connections: accept loops, TLS handshakes, protocol selection, HTTP serving,
//! upgraded tunnels, and the drain on shutdown.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use portier_snapshot::SnapshotCell;
use portier_telemetry::{AccessLog, ConnectionGauge, ConnectionGuard, Metrics};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, field, info, info_span, warn, Instrument};

use crate::body::RequestBody;
use crate::DataplaneConfig;

/// State shared by every connection of one [`Dataplane`](crate::Dataplane).
pub(crate) struct Shared {
    pub(crate) cell: Arc<SnapshotCell>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) access_log: AccessLog,
    pub(crate) cfg: DataplaneConfig,
    /// Keep-alive pool per endpoint address (the pool key is the URI authority).
    pub(crate) client: Client<HttpConnector, RequestBody>,
    /// HTTP/1.1 only: plain connections without the HTTP/2 preface, TLS without ALPN `h2`.
    h1: auto::Builder<TokioExecutor>,
    /// HTTP/2 only: plain connections with the preface (h2c prior knowledge), TLS with ALPN `h2`.
    h2: auto::Builder<TokioExecutor>,
    tls: TlsAcceptor,
    /// Every connection and tunnel task, so shutdown can wait for them.
    tracker: TaskTracker,
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
    /// Counts the connection as open until every request, response body and tunnel of it is done.
    _open: ConnectionGuard,
}

/// One listener being served.
struct Listener {
    socket: TcpListener,
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
/// How long an idle upstream connection stays in the pool.
const POOL_IDLE: Duration = Duration::from_secs(90);

// === impl Shared ===

impl Shared {
    pub(crate) fn new(
        cell: Arc<SnapshotCell>,
        metrics: Arc<Metrics>,
        access_log: AccessLog,
        cfg: DataplaneConfig,
    ) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(cfg.upstream_connect_timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE)
            .build(connector);

        let mut h1 = auto::Builder::new(TokioExecutor::new()).http1_only();
        h1.http1()
            .timer(TokioTimer::new())
            .keep_alive(true)
            // Also bounds the wait for the next request on an idle keep-alive connection.
            .header_read_timeout(cfg.header_read_timeout);
        let mut h2 = auto::Builder::new(TokioExecutor::new()).http2_only();
        h2.http2().timer(TokioTimer::new());

        let tls = TlsAcceptor::from(crate::tls::server_config(cell.clone()));
        Self {
            cell,
            metrics,
            access_log,
            cfg,
            client,
            h1,
            h2,
            tls,
            tracker: TaskTracker::new(),
            force: CancellationToken::new(),
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
    let listeners = [(http, false), (https, true)]
        .into_iter()
        .filter_map(|(socket, tls)| {
            let socket = socket?;
            let name = if tls { "https" } else { "http" };
            let port = socket.local_addr().map(|a| a.port()).unwrap_or_default();
            info!(listener = name, address = ?socket.local_addr().ok(), "listening");
            Some(Listener {
                socket,
                tls,
                gauge: shared.metrics.connections(name),
                port: HeaderValue::from(port),
            })
        })
        .map(|l| accept_loop(shared.clone(), l, shutdown.clone()));
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
    info!("data plane stopped");
}

async fn accept_loop(shared: Arc<Shared>, listener: Listener, shutdown: CancellationToken) {
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
        let local = stream.local_addr().unwrap_or_else(|_| unspecified());
        let span = info_span!(
            "conn",
            client.addr = %peer,
            server.addr = %local,
            tls.sni = field::Empty,
            tls.cert = field::Empty,
        );
        let conn = Arc::new(Conn {
            shared: shared.clone(),
            client: peer,
            tls: listener.tls,
            client_ip: ip_header(peer),
            local_port: listener.port.clone(),
            _open: listener.gauge.open(),
        });
        shared
            .tracker
            .spawn(serve_tcp(conn, stream, shutdown.clone()).instrument(span));
    }
}

async fn serve_tcp(conn: Arc<Conn>, stream: TcpStream, shutdown: CancellationToken) {
    // Responses are written whole by hyper; Nagle would only delay the last segment.
    if let Err(e) = stream.set_nodelay(true) {
        debug!(error = %e, "cannot set TCP_NODELAY");
    }
    let shared = conn.shared.clone();
    let limit = shared.cfg.header_read_timeout;
    if conn.tls {
        let handshake = tokio::select! {
            r = tokio::time::timeout(limit, shared.tls.accept(stream)) => r,
            _ = shutdown.cancelled() => return,
        };
        let tls = match handshake {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => return debug!(error = %e, "tls handshake failed"),
            Err(_) => return debug!("tls handshake timed out"),
        };
        let session = tls.get_ref().1;
        if let Some(sni) = session.server_name() {
            tracing::Span::current().record("tls.sni", sni);
        }
        let h2 = session.alpn_protocol() == Some(b"h2");
        serve_http(conn, tls, h2, &shutdown).await;
    } else {
        // Decide the protocol ourselves, under a deadline: hyper's own detection waits for the
        // first bytes without one, so a silent client would hold the connection forever.
        let sniffed = tokio::select! {
            r = tokio::time::timeout(limit, starts_with_h2_preface(&stream)) => r,
            _ = shutdown.cancelled() => return,
        };
        match sniffed {
            Ok(Ok(Some(h2))) => serve_http(conn, stream, h2, &shutdown).await,
            Ok(Ok(None)) => debug!("connection closed before a request"),
            Ok(Err(e)) => debug!(error = %e, "connection failed before a request"),
            Err(_) => debug!("no request within the header read timeout"),
        }
    }
}

/// Serves HTTP on one connection until it ends. On shutdown, asks hyper to finish the requests in
/// flight and close (HTTP/1.1: no more keep-alive; HTTP/2: GOAWAY); at the drain deadline, drops it.
async fn serve_http<I>(conn: Arc<Conn>, io: I, h2: bool, shutdown: &CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let shared = conn.shared.clone();
    let builder = if h2 { &shared.h2 } else { &shared.h1 };
    let service = service_fn(move |req| crate::proxy::handle(conn.clone(), req));
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        r = connection.as_mut() => r,
        _ = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
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
