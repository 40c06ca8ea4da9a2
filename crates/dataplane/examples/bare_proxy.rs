//! A reverse proxy made of nothing but the libraries portier is built on, used as they come: what
//! those libraries cost by themselves, measured side by side with portier
//! (`BARE=PATH bench/cpu-split.sh`).
//!
//! One current-thread tokio runtime; rustls (aws-lc-rs, as portier) terminates TLS; hyper serves
//! HTTP/1.1 and HTTP/2 (hyper-util's auto builder, which reads the preface) and forwards every
//! request, whatever its host and path, to one upstream over HTTP/1.1 through hyper's
//! `client::conn`, with a pool of idle connections. Nothing else: no routing, no forwarding
//! headers, no metrics, no limits, no timeouts. Not a gateway; a measuring stick.
//!
//!   cargo run --release -p portier-dataplane --example bare_proxy -- \
//!       CERT.pem KEY.pem HTTP_ADDR HTTPS_ADDR UPSTREAM_ADDR

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderValue, Request, Response, StatusCode, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};

type Pool = Arc<Mutex<Vec<SendRequest<Incoming>>>>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [cert, key, http, https, upstream] = args.as_slice() else {
        return Err("usage: bare_proxy CERT.pem KEY.pem HTTP_ADDR HTTPS_ADDR UPSTREAM_ADDR".into());
    };
    let certs = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key)?;
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let upstream: SocketAddr = upstream.parse()?;
    let (http, https): (SocketAddr, SocketAddr) = (http.parse()?, https.parse()?);

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let pool: Pool = Arc::default();
        let plain = TcpListener::bind(http).await?;
        let secure = TcpListener::bind(https).await?;
        loop {
            let (stream, tls) = tokio::select! {
                r = plain.accept() => (r?.0, false),
                r = secure.accept() => (r?.0, true),
            };
            stream.set_nodelay(true)?;
            let (pool, acceptor) = (pool.clone(), acceptor.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req| forward(req, pool.clone(), upstream));
                let builder = auto::Builder::new(TokioExecutor::new());
                let _ = if tls {
                    match acceptor.accept(stream).await {
                        Ok(s) => builder.serve_connection(TokioIo::new(s), svc).await,
                        Err(_) => return,
                    }
                } else {
                    builder.serve_connection(TokioIo::new(stream), svc).await
                };
            });
        }
    })
}

async fn forward(
    mut req: Request<Incoming>,
    pool: Pool,
    upstream: SocketAddr,
) -> Result<Response<Returning>, Infallible> {
    // HTTP/1.1 to the upstream: origin-form target, and the authority of an HTTP/2 request as Host.
    if let Some(auth) = req.uri().authority() {
        if !req.headers().contains_key(HOST) {
            if let Ok(v) = HeaderValue::from_str(auth.as_str()) {
                req.headers_mut().insert(HOST, v);
            }
        }
    }
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    *req.uri_mut() = pq.parse::<Uri>().unwrap_or_else(|_| Uri::from_static("/"));
    *req.version_mut() = Version::HTTP_11;

    let idle = pool.lock().map(|mut p| p.pop()).unwrap_or(None);
    // Back in the pool when its response's body ended, a connection may not have seen its own
    // reader finish yet: wait for it, and replace one that has closed.
    let idle = match idle {
        Some(mut s) => s.ready().await.ok().map(|()| s),
        None => None,
    };
    let mut sender = match idle {
        Some(s) => s,
        None => match connect(upstream).await {
            Ok(s) => s,
            Err(_) => return Ok(bad_gateway()),
        },
    };
    match sender.send_request(req).await {
        Ok(resp) => Ok(resp.map(|body| Returning {
            body: Some(body),
            sender: Some(sender),
            pool,
        })),
        Err(_) => Ok(bad_gateway()),
    }
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Incoming>, Box<dyn std::error::Error + Send + Sync>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

fn bad_gateway() -> Response<Returning> {
    let mut r = Response::new(Returning {
        body: None,
        sender: None,
        pool: Arc::default(),
    });
    *r.status_mut() = StatusCode::BAD_GATEWAY;
    r
}

/// The upstream's response body; once it has ended, its connection goes back to the pool.
struct Returning {
    body: Option<Incoming>,
    sender: Option<SendRequest<Incoming>>,
    pool: Pool,
}

impl Returning {
    fn done(&mut self) {
        if let Some(s) = self.sender.take() {
            if let Ok(mut p) = self.pool.lock() {
                p.push(s);
            }
        }
    }
}

impl Body for Returning {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let Some(body) = this.body.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.done(),
            Poll::Ready(Some(Ok(_))) if this.body.as_ref().is_some_and(Body::is_end_stream) => this.done(),
            Poll::Ready(Some(Err(_))) => this.sender = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}
