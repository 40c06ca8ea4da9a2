//! What the upstream receives: the request as the client sent it, minus hop-by-hop headers, plus
//! the `X-Forwarded-*` family; and bodies streamed both ways.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client::{self, parse_raw, raw, tls_connect, tls_default};
use crate::fixture::{self, Fixture, Leaf};
use crate::harness::{within, Portier};
use crate::upstream::{echoed_header, Upstream};

const HOST: &str = "proxy.e2e.test";

/// An echo upstream behind `proxy.e2e.test` (Prefix /), with a certificate for HTTPS.
async fn setup() -> (Fixture, Upstream, Portier) {
    let up = Upstream::echo("echo").await;
    let leaf = Leaf::new(&[HOST]);
    let f = Fixture::new();
    f.write("svc.yaml", &fixture::service("echo", &[&up]));
    f.write(
        "tls.yaml",
        &fixture::tls_secret("proxy-tls", &leaf.cert_pem, &leaf.key_pem),
    );
    let ingress = fixture::ingress("proxy", Some(HOST), &[("/", "Prefix", "echo")]);
    let ingress = fixture::annotate(&ingress, "nginx.ingress.kubernetes.io/ssl-redirect", "false");
    f.write("ingress.yaml", &fixture::with_tls(&ingress, &[HOST], "proxy-tls"));
    let p = Portier::start(f.path(), &[]).await;
    (f, up, p)
}

/// Sends `GET target` with `Host: host` on a raw connection; returns the status and, for a 200,
/// what the echo upstream received.
async fn raw_get(portier: &Portier, host: &str, target: &str) -> (u16, String, Option<serde_json::Value>) {
    let request = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let (status, headers, body) = parse_raw(&raw(portier.http, request.as_bytes()).await);
    let error = headers
        .iter()
        .find(|(k, _)| k == "x-portier-error")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let echo = (status == 200)
        .then(|| serde_json::from_str(&body).unwrap_or_else(|e| panic!("{host} {target}: {e}: {body:?}")));
    (status, error, echo)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_and_raw_target_are_forwarded_byte_exact() {
    within(20, "byte-exact forwarding", async {
        let (_f, _up, portier) = setup().await;
        let with_port = format!("{HOST}:{}", portier.http.port());
        // Paths that are already normal (see the next test) reach the upstream byte for byte.
        let cases = [
            (HOST, "/echo/a%2Fb?x=1&y=%20z"),
            (HOST, "/search?q=%E2%9C%93&empty=&q=a+b&q=%2B"),
            (HOST, "/semi;colon=1/x,y/"),
            (HOST, "/q?a=//b&c=%7e&d=/../x"),
            (with_port.as_str(), "/with-port"),
            ("PROXY.E2E.test", "/upper-case-host"),
        ];
        for (host, target) in cases {
            let (status, error, echo) = raw_get(&portier, host, target).await;
            assert_eq!(status, 200, "{host} {target}: {error}");
            let echo = echo.expect("a 200 carries the echo");
            assert_eq!(
                echo["uri"], target,
                "{host} {target}: request target as the upstream received it"
            );
            assert_eq!(
                echoed_header(&echo, "host"),
                [host],
                "{host} {target}: Host as the upstream received it"
            );
        }
    })
    .await;
}

/// The path is normalized before routing and forwarded normalized, so the gateway and the upstream
/// agree on it (`portier_snapshot::normalize_path`); the query is never touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_normal_paths_are_forwarded_normalized_or_refused() {
    within(20, "path normalization", async {
        let (_f, _up, portier) = setup().await;
        // (sent, forwarded; None = refused with 400 bad-path)
        let cases = [
            ("/a//b/?x=//y", Some("/a/b/?x=//y")),
            ("/%7Euser/f.txt?q=%7e", Some("/~user/f.txt?q=%7e")),
            ("/a/./b/../c", Some("/a/c")),
            ("/a%2fb", Some("/a%2Fb")),
            ("/%2e%2e/admin", Some("/admin")),
            ("/../../etc/passwd", Some("/etc/passwd")),
            ("/a%00b", None),
            ("/a%zzb", None),
            ("/a\\b", None),
        ];
        for (sent, forwarded) in cases {
            let (status, error, echo) = raw_get(&portier, HOST, sent).await;
            match forwarded {
                Some(want) => {
                    assert_eq!(status, 200, "{sent}: {error}");
                    assert_eq!(
                        echo.expect("a 200 carries the echo")["uri"],
                        want,
                        "{sent}: forwarded target"
                    );
                }
                None => {
                    assert_eq!((status, error.as_str()), (400, "bad-path"), "{sent}");
                }
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_describe_the_client_hop() {
    within(20, "X-Forwarded-*", async {
        let (_f, _up, portier) = setup().await;

        let mut plain = client::req(Method::GET, HOST, "/fwd");
        plain
            .headers_mut()
            .insert("x-forwarded-for", "203.0.113.7".parse().expect("header value"));
        plain
            .headers_mut()
            .insert("x-forwarded-proto", "https".parse().expect("header value"));
        plain
            .headers_mut()
            .insert("x-real-ip", "198.51.100.1".parse().expect("header value"));
        let over_http = client::send_h1(portier.http, plain).await;

        let tls = tls_connect(portier.https, HOST, tls_default())
            .await
            .expect("TLS handshake");
        let over_https = client::https_get(tls, HOST, "/fwd").await;

        let http_port = portier.http.port().to_string();
        let https_port = portier.https.port().to_string();
        let cases = [
            ("http", &over_http, "203.0.113.7, 127.0.0.1", "http", http_port.as_str()),
            ("https", &over_https, "127.0.0.1", "https", https_port.as_str()),
        ];
        for (name, resp, xff, proto, port) in cases {
            assert_eq!(resp.status, 200, "{name}: {}", resp.text());
            let echo = resp.json();
            assert_eq!(
                echoed_header(&echo, "x-forwarded-for"),
                [xff],
                "{name}: X-Forwarded-For"
            );
            assert_eq!(echoed_header(&echo, "x-real-ip"), ["127.0.0.1"], "{name}: X-Real-IP");
            assert_eq!(
                echoed_header(&echo, "x-forwarded-proto"),
                [proto],
                "{name}: X-Forwarded-Proto"
            );
            assert_eq!(
                echoed_header(&echo, "x-forwarded-host"),
                [HOST],
                "{name}: X-Forwarded-Host"
            );
            assert_eq!(
                echoed_header(&echo, "x-forwarded-port"),
                [port],
                "{name}: X-Forwarded-Port"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_not_forwarded() {
    within(20, "hop-by-hop", async {
        let (_f, _up, portier) = setup().await;
        let request = format!(
            "GET /hop HTTP/1.1\r\nHost: {HOST}\r\nConnection: close, X-Custom\r\nX-Custom: secret\r\n\
             Keep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\n\
             Proxy-Connection: keep-alive\r\nX-Keep-Me: yes\r\n\r\n"
        );
        let (status, _, body) = parse_raw(&raw(portier.http, request.as_bytes()).await);
        assert_eq!(status, 200, "{body}");
        let echo: serde_json::Value = serde_json::from_str(&body).expect("echo JSON");
        for name in [
            "x-custom",
            "keep-alive",
            "te",
            "proxy-authorization",
            "proxy-connection",
        ] {
            assert!(
                echoed_header(&echo, name).is_empty(),
                "hop-by-hop header {name} reached the upstream: {echo}"
            );
        }
        assert_eq!(
            echoed_header(&echo, "x-keep-me"),
            ["yes"],
            "end-to-end header dropped: {echo}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_arrive_intact_both_ways() {
    within(30, "1 MiB POST", async {
        let (_f, up, portier) = setup().await;
        let body: Vec<u8> = (0..1024 * 1024u32).map(|i| (i.wrapping_mul(31) % 251) as u8).collect();
        let mut req = client::req(Method::POST, HOST, "/upload");
        *req.body_mut() = Full::new(Bytes::from(body.clone()));
        let resp = client::send_h1(portier.http, req).await;
        assert_eq!(
            resp.status,
            200,
            "POST 1 MiB: {}",
            resp.header("x-portier-error").unwrap_or("")
        );
        assert_eq!(
            resp.header("x-upstream"),
            Some(&*up.name),
            "answered by the echo upstream"
        );
        assert_eq!(resp.body.len(), body.len(), "echoed body length");
        assert!(resp.body[..] == body[..], "echoed body differs from what was sent");
    })
    .await;
}

/// Many streams at once on one HTTP/2 connection over TLS, with bodies on both sides of every
/// size at which h2 and portier's write path change course (h2 copies a DATA frame under 1 KiB
/// into its buffer and writes a larger one on its own; portier holds writes under 2 KiB back to
/// join the next): every response arrives whole, on its own stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_streams_of_every_size_arrive_intact_over_tls() {
    within(30, "HTTP/2 streams", async {
        let (_f, _up, portier) = setup().await;
        let tls = tls_connect(portier.https, HOST, tls_default())
            .await
            .expect("TLS handshake");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let sender = client::h2_handshake(tls).await;
        let sizes = [
            0, 1, 255, 256, 257, 1023, 1024, 1025, 1033, 2047, 2048, 2049, 16_383, 16_384, 16_393, 70_000,
        ];
        let mut streams = tokio::task::JoinSet::new();
        for (i, &size) in sizes.iter().chain(sizes.iter()).enumerate() {
            let mut sender = sender.clone();
            streams.spawn(async move {
                let body: Vec<u8> = (0..size).map(|b| ((b * 7 + i) % 251) as u8).collect();
                let mut req = client::req_h2("https", HOST, &format!("/upload/{i}"));
                *req.method_mut() = Method::POST;
                *req.body_mut() = Full::new(Bytes::from(body.clone()));
                let resp = client::send_h2(&mut sender, req).await;
                assert_eq!(resp.status, 200, "stream {i} ({size} bytes)");
                assert!(
                    resp.body[..] == body[..],
                    "stream {i}: {size} bytes echoed as {}",
                    resp.body.len()
                );
            });
        }
        while let Some(done) = streams.join_next().await {
            done.expect("stream task");
        }
    })
    .await;
}

/// The request body reaches the upstream while the client is still sending it, and the upstream's
/// answer reaches the client while the upstream is still writing it: nothing is buffered whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_streamed_not_buffered() {
    within(20, "streaming", async {
        let (_f, _up, portier) = setup().await;

        // Request side: send one chunk, wait for the echo of it, only then finish the body.
        let mut tcp = TcpStream::connect(portier.http).await.expect("connect");
        let head = format!(
            "POST /stream-up HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        );
        tcp.write_all(head.as_bytes()).await.expect("write head");
        tcp.write_all(b"b\r\nfirst-chunk\r\n").await.expect("write chunk");
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        let echoed = tokio::time::timeout(Duration::from_secs(3), async {
            while !String::from_utf8_lossy(&seen).contains("first-chunk") {
                let n = tcp.read(&mut buf).await.expect("read");
                if n == 0 {
                    return false;
                }
                seen.extend_from_slice(&buf[..n]);
            }
            true
        })
        .await;
        assert_eq!(
            echoed,
            Ok(true),
            "the first request chunk was not echoed back before the request body ended: the request \
             body is buffered, not streamed; got so far: {:?}",
            String::from_utf8_lossy(&seen)
        );
        tcp.write_all(b"c\r\nsecond-chunk\r\n0\r\n\r\n")
            .await
            .expect("write end");
        let _ = tokio::time::timeout(Duration::from_secs(3), tcp.read_to_end(&mut seen)).await;
        let text = String::from_utf8_lossy(&seen);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.contains("second-chunk"), "second chunk not echoed: {text:?}");

        // Response side: 5 chunks 300 ms apart; the first must arrive long before the last.
        let tls = tls_connect(portier.https, HOST, tls_default())
            .await
            .expect("TLS handshake");
        let mut sender = client::h2_handshake(tls).await;
        let started = Instant::now();
        let resp = sender
            .send_request(client::req_h2("https", HOST, "/stream-down?chunks=5&every_ms=300"))
            .await
            .expect("streamed response");
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let first = http_body_util::BodyExt::frame(&mut body)
            .await
            .expect("a first frame")
            .expect("frame ok");
        let first_at = started.elapsed();
        assert_eq!(first.data_ref().map(|d| &d[..]), Some(&b"chunk 0\n"[..]), "first frame");
        assert!(
            first_at < Duration::from_millis(900),
            "first chunk took {first_at:?}: the response body is buffered, not streamed"
        );
        let rest = http_body_util::BodyExt::collect(body)
            .await
            .expect("rest of body")
            .to_bytes();
        assert_eq!(&rest[..], b"chunk 1\nchunk 2\nchunk 3\nchunk 4\n");
    })
    .await;
}
