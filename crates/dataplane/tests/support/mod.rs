//! Test harness: a data plane on 127.0.0.1:0, upstream mocks, snapshot and certificate builders,
//! and small clients. Every wait has a timeout that names what it waited for (STYLE.md §11).
#![allow(dead_code)] // each test uses a different part of the harness

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use portier_core::HostMatch;
use portier_dataplane::{Dataplane, DataplaneConfig};
use portier_snapshot::{
    Action, CertEntry, Cluster, PathMatch, PathType, Route, RoutePolicy, RouteTableBuilder, Snapshot, SnapshotCell,
    TlsStore,
};
use portier_telemetry::{AccessLog, Metrics};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const WAIT: Duration = Duration::from_secs(5);

/// Awaits `fut`, failing the test with `what` after [`WAIT`].
pub async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

// === the gateway ===

pub struct Gateway {
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub cell: Arc<SnapshotCell>,
    pub metrics: Arc<Metrics>,
    pub access_log: AccessLog,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<()>,
}

pub fn config() -> DataplaneConfig {
    DataplaneConfig {
        https_redirect_port: 8443,
        drain_timeout: Duration::from_secs(5),
        workers: 1,
    }
}

impl Gateway {
    pub async fn start(snapshot: Snapshot) -> Gateway {
        Self::start_with(snapshot, config(), AccessLog::off()).await
    }

    pub async fn start_with(snapshot: Snapshot, cfg: DataplaneConfig, access_log: AccessLog) -> Gateway {
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let https = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::start_on(snapshot, cfg, access_log, http, https)
    }

    /// With listeners bound by `portier_dataplane::bind` for `cfg.workers`: with more than one,
    /// each worker accepts on a socket of its own.
    pub async fn start_sharded(snapshot: Snapshot, cfg: DataplaneConfig) -> Gateway {
        let any = "127.0.0.1:0".parse().unwrap();
        let http = portier_dataplane::bind(any, cfg.workers).unwrap();
        let https = portier_dataplane::bind(any, cfg.workers).unwrap();
        Self::start_on(snapshot, cfg, AccessLog::off(), http, https)
    }

    fn start_on(
        snapshot: Snapshot,
        cfg: DataplaneConfig,
        access_log: AccessLog,
        http: TcpListener,
        https: TcpListener,
    ) -> Gateway {
        let cell = Arc::new(SnapshotCell::new(Snapshot::new(
            RouteTableBuilder::new().build(),
            tls_store(),
            vec![],
            vec![],
        )));
        cell.publish(snapshot);
        let metrics = Arc::new(Metrics::new());
        let (http_addr, https_addr) = (http.local_addr().unwrap(), https.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let dp = Dataplane::new(cell.clone(), metrics.clone(), access_log.clone(), cfg);
        let task = tokio::spawn(dp.run(Some(http), Some(https), shutdown.clone()));
        Gateway {
            http: http_addr,
            https: https_addr,
            cell,
            metrics,
            access_log,
            shutdown,
            task,
        }
    }

    /// Waits until the metrics contain `line`: an exchange is recorded when the server is done
    /// with the response body, which may be just after the client has read it.
    pub async fn metric(&self, line: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let text = self.metrics.encode();
            if text.contains(line) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("timed out waiting for metric {line} in\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// GET over a fresh HTTP/1.1 connection.
    pub async fn get(&self, host: &str, path: &str) -> Reply {
        let mut client = h1(self.http).await;
        client.send(get(host, path)).await
    }
}

// === snapshots ===

pub fn route(host: &str, path: &str, action: Action) -> Route {
    Route {
        host: (!host.is_empty()).then(|| HostMatch::from_str(host).unwrap()),
        path: PathMatch::new(PathType::Prefix, path),
        path_type: PathType::Prefix,
        ingress: Arc::from("shop/web"),
        backend: Arc::from("shop/web:80"),
        action,
        https_redirect: false,
        policy: Default::default(),
        attached: Default::default(),
    }
}

/// A route with its own policy.
pub fn route_with(host: &str, path: &str, action: Action, policy: RoutePolicy) -> Route {
    let mut r = route(host, path, action);
    r.policy = Arc::new(policy);
    r
}

pub fn snapshot(routes: Vec<Route>, clusters: Vec<Cluster>) -> Snapshot {
    snapshot_with_tls(routes, clusters, tls_store())
}

pub fn snapshot_with_tls(routes: Vec<Route>, clusters: Vec<Cluster>, tls: TlsStore) -> Snapshot {
    let mut b = RouteTableBuilder::new();
    for r in routes {
        b.add(r).unwrap();
    }
    Snapshot::new(b.build(), tls, clusters, vec![])
}

/// A TLS store with only a self-signed fallback for `fallback.invalid`.
pub fn tls_store() -> TlsStore {
    TlsStore::builder(cert(&["fallback.invalid"]).0).build()
}

/// A fresh self-signed certificate for `names`, as a store entry and as a trust anchor.
pub fn cert(names: &[&str]) -> (CertEntry, CertificateDer<'static>) {
    let generated =
        rcgen::generate_simple_self_signed(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let der = generated.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(generated.signing_key.serialize_der().into());
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let certified = rustls::sign::CertifiedKey::from_der(vec![der.clone()], key, &provider).unwrap();
    (
        CertEntry {
            certified: Arc::new(certified),
            source: Arc::from(format!("test/{}", names[0])),
        },
        der,
    )
}

// === upstreams ===

/// An HTTP/1.1 upstream that answers with its name, the request line and the request headers, one
/// per line. `/slow` waits 300 ms first. Responses carry hop-by-hop headers the gateway must drop.
pub async fn upstream(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(move |req| echo(name, req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

async fn echo(name: &'static str, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/slow" {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut text = format!("{name}\n{} {} {:?}\n", req.method(), req.uri(), req.version());
    for (k, v) in req.headers() {
        text.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    text.push_str(&format!("body-bytes: {}\n", body.len()));
    Ok(Response::builder()
        .header("x-upstream", name)
        .header("keep-alive", "timeout=5")
        .header("connection", "x-up-hop")
        .header("x-up-hop", "1")
        .body(Full::new(Bytes::from(text)))
        .unwrap())
}

/// Accepts connections and never answers.
pub async fn silent_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    addr
}

/// An address nobody listens on.
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// A raw upstream that answers any request with 101 and then echoes every byte.
pub async fn echo_upgrade_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let head = read_head(&mut stream).await;
                assert!(head.to_ascii_lowercase().contains("upgrade: echo"), "{head}");
                stream
                    .write_all(b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n")
                    .await
                    .unwrap();
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// Reads up to the end of an HTTP head; returns it as text.
pub async fn read_head<R: AsyncRead + Unpin>(stream: &mut R) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.unwrap() == 0 {
            break;
        }
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

// === clients ===

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// The value of a request header as the upstream echoed it.
    pub fn seen(&self, header: &str) -> Option<&str> {
        let prefix = format!("{header}: ");
        self.body.lines().find_map(|l| l.strip_prefix(prefix.as_str()))
    }

    pub fn upstream(&self) -> Option<&str> {
        self.headers.get("x-upstream").and_then(|v| v.to_str().ok())
    }

    pub fn error(&self) -> Option<&str> {
        self.headers.get("x-portier-error").and_then(|v| v.to_str().ok())
    }
}

pub fn get(host: &str, path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

pub enum Client {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Client {
    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> Reply {
        let resp = match self {
            Client::H1(s) => within("response", s.send_request(req)).await.unwrap(),
            Client::H2(s) => within("response", s.send_request(req)).await.unwrap(),
        };
        let (parts, body) = resp.into_parts();
        let body = within("response body", body.collect()).await.unwrap().to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }
}

/// One HTTP/1.1 connection.
pub async fn h1(addr: SocketAddr) -> Client {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    Client::H1(send)
}

/// One HTTP/2 connection with prior knowledge over plain TCP.
pub async fn h2c(addr: SocketAddr) -> Client {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    Client::H2(send)
}

/// A TLS connection to `addr` with SNI `name`, trusting only `root`, offering h2 and http/1.1.
pub async fn tls_connect(
    addr: SocketAddr,
    name: &str,
    root: &CertificateDer<'static>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let stream = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_owned()).unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, stream)
        .await
}

/// HTTP/2 over an established TLS connection.
pub async fn h2_over(tls: tokio_rustls::client::TlsStream<TcpStream>) -> Client {
    let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    Client::H2(send)
}

pub fn empty_get(uri: &str) -> Request<Empty<Bytes>> {
    Request::get(uri).body(Empty::new()).unwrap()
}

/// A raw HTTP/1.1 upstream that counts the connections it accepts and answers every request
/// `200 ok` with keep-alive; with `close_after_answer` it closes each connection right after its
/// first answer without saying so, as an upstream whose keep-alive timeout fires does.
pub async fn counting_upstream(close_after_answer: bool) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                loop {
                    let head = read_head(&mut stream).await;
                    if head.is_empty() {
                        return;
                    }
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if stream.write_all(answer).await.is_err() || close_after_answer {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}
