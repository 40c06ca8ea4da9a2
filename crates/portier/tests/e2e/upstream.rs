//! In-process upstreams on 127.0.0.1:0: an HTTP/1.1 echo server (which can also be slow or stream)
//! and an upgrade server that answers `101 Switching Protocols` and then echoes raw bytes.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

type Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// A mock upstream. Stops accepting when dropped.
pub struct Upstream {
    pub addr: SocketAddr,
    pub name: Arc<str>,
    hits: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

// === impl Upstream ===

impl Upstream {
    /// An HTTP/1.1 server. By default it answers JSON
    /// `{name, method, uri, version, headers: [[name, value], …]}` where `uri` is the request
    /// target exactly as received. A `POST` gets its body streamed back verbatim. Query
    /// parameters change the behaviour: `sleep_ms=N` waits before answering, and
    /// `chunks=N&every_ms=M` streams N lines `chunk i\n`, one every M ms.
    pub async fn echo(name: &str) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding an upstream");
        let addr = listener.local_addr().expect("upstream address");
        let name: Arc<str> = name.into();
        let hits = Arc::new(AtomicUsize::new(0));
        let task = {
            let name = name.clone();
            let hits = hits.clone();
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let name = name.clone();
                    let hits = hits.clone();
                    tokio::spawn(async move {
                        let svc = service_fn(move |req| echo(req, name.clone(), hits.clone()));
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            })
        };
        Upstream { addr, name, hits, task }
    }

    /// Answers an `Upgrade` request with `101 Switching Protocols` and then echoes every byte
    /// on the raw connection. Anything else gets `400`.
    pub async fn upgrade_echo(name: &str) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding an upstream");
        let addr = listener.local_addr().expect("upstream address");
        let hits = Arc::new(AtomicUsize::new(0));
        let task = {
            let hits = hits.clone();
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    hits.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(upgrade_conn(stream));
                }
            })
        };
        Upstream {
            addr,
            name: name.into(),
            hits,
            task,
        }
    }

    /// Requests (or, for the upgrade server, connections) received so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A port nothing listens on: bound, then closed.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a probe port");
    l.local_addr().expect("probe address").port()
}

/// All values of a header in an echo answer (names compare case-insensitively).
pub fn echoed_header(echo: &Value, name: &str) -> Vec<String> {
    echo["headers"]
        .as_array()
        .expect("echo answer has headers")
        .iter()
        .filter(|h| h[0].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)))
        .map(|h| h[1].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn echo(req: Request<Incoming>, name: Arc<str>, hits: Arc<AtomicUsize>) -> Result<Response<Body>, Infallible> {
    hits.fetch_add(1, Ordering::SeqCst);
    let query = req.uri().query().unwrap_or("").to_owned();
    let param = |key: &str| -> Option<u64> {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.parse().ok())
    };
    if let Some(ms) = param("sleep_ms") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let mut resp = if req.method() == Method::POST {
        Response::new(req.into_body().map_err(Into::into).boxed())
    } else if let Some(n) = param("chunks") {
        let every = Duration::from_millis(param("every_ms").unwrap_or(100));
        let stream = futures_util::stream::unfold(0, move |i| async move {
            if i >= n {
                return None;
            }
            if i > 0 {
                tokio::time::sleep(every).await;
            }
            let frame = Frame::data(Bytes::from(format!("chunk {i}\n")));
            Some((Ok::<_, Box<dyn std::error::Error + Send + Sync>>(frame), i + 1))
        });
        Response::new(BodyExt::boxed(StreamBody::new(stream)))
    } else {
        let headers: Vec<Value> = req
            .headers()
            .iter()
            .map(|(k, v)| json!([k.as_str(), String::from_utf8_lossy(v.as_bytes())]))
            .collect();
        let answer = json!({
            "name": &*name,
            "method": req.method().as_str(),
            "uri": req.uri().to_string(),
            "version": format!("{:?}", req.version()),
            "headers": headers,
        });
        let mut r = Response::new(full(answer.to_string()));
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        r
    };
    if let Ok(v) = http::HeaderValue::from_str(&name) {
        resp.headers_mut().insert("x-upstream", v);
    }
    Ok(resp)
}

fn full(s: String) -> Body {
    Full::new(Bytes::from(s)).map_err(|never| match never {}).boxed()
}

async fn upgrade_conn(mut stream: TcpStream) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let end = head
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(head.len(), |p| p + 4);
    let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
    if !text.contains("\r\nupgrade:") {
        let _ = stream
            .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 11\r\nconnection: close\r\n\r\nno upgrade\n")
            .await;
        return;
    }
    let _ = stream
        .write_all(b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: e2e-echo\r\n\r\n")
        .await;
    // Bytes that arrived together with the request head belong to the new protocol.
    if end < head.len() && stream.write_all(&head[end..]).await.is_err() {
        return;
    }
    let (mut r, mut w) = stream.split();
    let _ = tokio::io::copy(&mut r, &mut w).await;
}
