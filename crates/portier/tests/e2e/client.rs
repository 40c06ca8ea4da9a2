//! Clients: hyper HTTP/1.1 and HTTP/2 over plain TCP or TLS, rustls configurations that trust only
//! the test CA (or, with `danger` in the name, anything), and raw sockets for exact bytes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme, SupportedProtocolVersion};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::fixture;

/// A fully read response.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Which server certificates a TLS client accepts.
#[derive(Debug, Clone, Copy)]
pub enum Trust {
    /// Only chains to the test CA, valid for the SNI name.
    TestCa,
    /// Anything: for looking at the fallback certificate.
    DangerAcceptAny,
}

/// A keep-alive HTTP/1.1 connection that sends requests one after the other.
pub struct H1Conn {
    sender: http1::SendRequest<Full<Bytes>>,
}

// === impl Resp ===

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {:?}", self.text()))
    }

    /// A header as a string; `None` when absent or not visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

// === impl H1Conn ===

impl H1Conn {
    pub async fn connect(addr: SocketAddr) -> H1Conn {
        let tcp = TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
        let (sender, conn) = http1::handshake(TokioIo::new(tcp)).await.expect("HTTP/1.1 handshake");
        tokio::spawn(conn);
        H1Conn { sender }
    }

    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> Resp {
        let what = format!("{} {}", req.method(), req.uri());
        self.sender
            .ready()
            .await
            .unwrap_or_else(|e| panic!("{what}: keep-alive connection not ready: {e}"));
        let resp = self
            .sender
            .send_request(req)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        read(resp, &what).await
    }
}

/// A request with a `Host` header and an origin-form target, for HTTP/1.1.
pub fn req(method: Method, host: &str, path: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, host)
        .body(Full::new(Bytes::new()))
        .expect("valid request parts")
}

/// A request with an absolute URI, as HTTP/2 needs (`:scheme` and `:authority`).
pub fn req_h2(scheme: &str, authority: &str, path: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .uri(format!("{scheme}://{authority}{path}"))
        .body(Full::new(Bytes::new()))
        .expect("valid request parts")
}

/// `GET path` with `Host: host` over a fresh HTTP/1.1 connection.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> Resp {
    send_h1(addr, req(Method::GET, host, path)).await
}

/// One request over a fresh HTTP/1.1 connection.
pub async fn send_h1(addr: SocketAddr, req: Request<Full<Bytes>>) -> Resp {
    let tcp = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    send_h1_over(tcp, req).await
}

/// One request over an already open stream (TCP or TLS), speaking HTTP/1.1.
pub async fn send_h1_over<IO>(io: IO, req: Request<Full<Bytes>>) -> Resp
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let what = format!("{} {}", req.method(), req.uri());
    let (mut sender, conn) = http1::handshake(TokioIo::new(io)).await.expect("HTTP/1.1 handshake");
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.unwrap_or_else(|e| panic!("{what}: {e}"));
    read(resp, &what).await
}

/// `GET https://host/path` on a TLS connection, in HTTP/2 or HTTP/1.1 as ALPN decided.
pub async fn https_get(tls: TlsStream<TcpStream>, host: &str, path: &str) -> Resp {
    if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
        let mut sender = h2_handshake(tls).await;
        send_h2(&mut sender, req_h2("https", host, path)).await
    } else {
        send_h1_over(tls, req(Method::GET, host, path)).await
    }
}

/// An HTTP/2 connection (prior knowledge on TCP, or after ALPN `h2` on TLS).
pub async fn h2_handshake<IO>(io: IO) -> http2::SendRequest<Full<Bytes>>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(io))
        .await
        .expect("HTTP/2 handshake");
    tokio::spawn(conn);
    sender
}

/// One request on an HTTP/2 connection.
pub async fn send_h2(sender: &mut http2::SendRequest<Full<Bytes>>, req: Request<Full<Bytes>>) -> Resp {
    let what = format!("{} {} (HTTP/2)", req.method(), req.uri());
    sender
        .ready()
        .await
        .unwrap_or_else(|e| panic!("{what}: connection not ready: {e}"));
    let resp = sender.send_request(req).await.unwrap_or_else(|e| panic!("{what}: {e}"));
    read(resp, &what).await
}

/// A TLS client configuration. `alpn` lists protocols in preference order; `versions` limits
/// the TLS versions offered.
pub fn tls_config(trust: Trust, alpn: &[&[u8]], versions: &[&'static SupportedProtocolVersion]) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .expect("the aws-lc-rs provider supports these TLS versions");
    let mut cfg = match trust {
        Trust::TestCa => {
            let mut roots = RootCertStore::empty();
            roots
                .add(fixture::ca().der.clone())
                .expect("the test CA is a valid root");
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::DangerAcceptAny => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(DangerAcceptAny(provider)))
            .with_no_client_auth(),
    };
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

/// The default client: TLS 1.3 and 1.2, ALPN h2 then http/1.1, trusting only the test CA.
pub fn tls_default() -> Arc<ClientConfig> {
    tls_config(Trust::TestCa, &[b"h2", b"http/1.1"], rustls::ALL_VERSIONS)
}

/// Connects and completes a TLS handshake, sending `sni` (a DNS name sends SNI; an IP address
/// does not).
pub async fn tls_connect(addr: SocketAddr, sni: &str, cfg: Arc<ClientConfig>) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_owned()).expect("a valid server name");
    TlsConnector::from(cfg).connect(name, tcp).await
}

/// The leaf certificate the server presented.
pub fn peer_leaf(tls: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    tls.get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .expect("the server presented a certificate")
        .clone()
        .into_owned()
}

/// Writes `request` on a fresh connection and reads until the server closes it (or 5 s pass).
/// The request should say `Connection: close`.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut tcp = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    tcp.write_all(request).await.expect("writing the raw request");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits a raw HTTP/1.1 response into status code, lower-cased headers and body (no chunked
/// decoding: use `Content-Length` answers or `raw_body` yourself).
pub fn parse_raw(resp: &str) -> (u16, Vec<(String, String)>, String) {
    let (head, body) = resp
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {resp:?}"));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let code = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (code, headers, body.to_owned())
}

async fn read(resp: http::Response<hyper::body::Incoming>, what: &str) -> Resp {
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{what}: reading the response body: {e}"))
        .to_bytes();
    Resp {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body,
    }
}

/// Accepts any server certificate; signatures are still checked so the handshake is real.
#[derive(Debug)]
struct DangerAcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for DangerAcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
