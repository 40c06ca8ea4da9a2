//! Hostile clients and failing upstreams (issue 3): each test names the rule it proves.

// Tests may unwrap: a panic there is a failed assertion, not a crash on input (STYLE.md §6).
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use portier_snapshot::{Action, Cluster, ClusterId, GlobalSettings, RoutePolicy, SourceFilter, StaticReply, TlsStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use support::*;

fn proxy_to(cluster: usize) -> Action {
    Action::Proxy(ClusterId::new(cluster))
}

fn ok_static(body: &'static str) -> Action {
    Action::Static(Arc::new(StaticReply {
        status: StatusCode::OK,
        headers: vec![],
        body: Bytes::from_static(body.as_bytes()),
    }))
}

/// Sends raw bytes and reads until the gateway closes the connection (failing after [`WAIT`]).
async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = within("the gateway to close the connection", stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// An HTTP/1.1 upstream answering 200 `ok` that counts the requests it sees.
async fn counting_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let c = c.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| {
                    c.fetch_add(1, Ordering::SeqCst);
                    async {
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, count)
}

fn status_of(resp: &str) -> u16 {
    resp.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// The tests that load the machine (an HTTP/2 flood, a thousand connections, 200 slow clients)
/// take turns. Two run at once on a 2-core machine; beside another test's flood, the latency
/// bounds below would measure that flood rather than the gateway.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn oversized_heads_are_431_on_http1_and_http2() {
    let settings = GlobalSettings {
        max_header_bytes: 4096,
        max_header_count: 20,
        ..GlobalSettings::default()
    };
    let gw = Gateway::start(snapshot(vec![route("", "/", ok_static("ok"))], vec![]).with_settings(settings)).await;
    let many: String = (0..30).map(|i| format!("x-h{i}: 1\r\n")).collect();
    let big = format!("x-big: {}\r\n", "a".repeat(5000));
    let huge = format!("x-big: {}\r\n", "a".repeat(20000));
    // (case, extra header lines, portier error expected)
    let cases = [
        ("too many fields", &many, true),
        ("too large", &big, true),
        ("far too large", &huge, false),
    ];
    for (name, extra, ours) in cases {
        let resp = raw(gw.http, format!("GET / HTTP/1.1\r\nhost: a\r\n{extra}\r\n").as_bytes()).await;
        assert_eq!(status_of(&resp), 431, "{name}: {resp}");
        if ours {
            assert!(resp.contains("x-portier-error: header-too-large"), "{name}: {resp}");
        }
    }
    assert_eq!(
        status_of(&raw(gw.http, b"GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n").await),
        200
    );

    // HTTP/2: too many fields is answered by the service, a too large block by h2 itself.
    for (name, fields, size) in [("too many fields", 30, 1), ("too large", 1, 6000)] {
        let mut client = h2c(gw.http).await;
        let mut req = Request::get("http://a/").body(Full::new(Bytes::new())).unwrap();
        for i in 0..fields {
            req.headers_mut().insert(
                http::HeaderName::from_bytes(format!("x-h{i}").as_bytes()).unwrap(),
                http::HeaderValue::from_str(&"v".repeat(size)).unwrap(),
            );
        }
        let Client::H2(send) = &mut client else { unreachable!() };
        match within("h2 response", send.send_request(req)).await {
            Ok(resp) => assert_eq!(resp.status().as_u16(), 431, "h2 {name}"),
            Err(e) => panic!("h2 {name}: {e}"),
        }
    }
}

#[tokio::test]
async fn body_limit_is_413_before_and_while_streaming() {
    let (up, count) = counting_upstream().await;
    let policy = RoutePolicy {
        max_body_bytes: Some(10),
        ..RoutePolicy::default()
    };
    let gw = Gateway::start(snapshot(
        vec![route_with("a", "/", proxy_to(0), policy)],
        vec![Cluster::new("s:80", "s", vec![up])],
    ))
    .await;
    let declared = raw(
        gw.http,
        b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 11\r\n\r\nhello world",
    )
    .await;
    assert_eq!(status_of(&declared), 413, "{declared}");
    assert!(declared.contains("x-portier-error: body-too-large"), "{declared}");
    assert_eq!(
        count.load(Ordering::SeqCst),
        0,
        "the upstream was contacted for a declared oversize body"
    );

    let chunked = raw(
        gw.http,
        b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&chunked), 413, "{chunked}");
    assert!(chunked.contains("x-portier-error: body-too-large"), "{chunked}");

    let small = raw(
        gw.http,
        b"POST / HTTP/1.1\r\nhost: a\r\nconnection: close\r\ncontent-length: 5\r\n\r\nhello",
    )
    .await;
    assert_eq!(status_of(&small), 200, "{small}");
}

#[tokio::test]
async fn paths_are_normalized_for_routing_and_forwarding() {
    let a = upstream("a").await;
    let gw = Gateway::start(snapshot(
        vec![
            route("a", "/public", proxy_to(0)),
            route("a", "/admin", ok_static("admin")),
        ],
        vec![Cluster::new("s:80", "s", vec![a])],
    ))
    .await;
    // (target, status, x-portier-error, body contains)
    let cases = [
        ("/public/../admin", 200, None, "admin"),
        ("/public/%2e%2E/admin/x", 200, None, "admin"),
        ("/public//a/./b?q=/../x", 200, None, "GET /public/a/b?q=/../x HTTP/1.1"),
        ("/public/%7euser%2fx", 200, None, "GET /public/~user%2Fx HTTP/1.1"),
        ("/admin%2Fx", 404, Some("no-route"), "no route"),
        ("/public/%00", 400, Some("bad-path"), "NUL"),
        ("/public/%zz", 400, Some("bad-path"), "percent"),
    ];
    for (target, status, error, body) in cases {
        let resp = raw(
            gw.http,
            format!("GET {target} HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(status_of(&resp), status, "{target}: {resp}");
        if let Some(error) = error {
            assert!(resp.contains(&format!("x-portier-error: {error}")), "{target}: {resp}");
        }
        assert!(resp.contains(body), "{target}: {resp}");
    }
    // A raw backslash never reaches routing (hyper's URI parser or ours refuses it).
    let resp = raw(
        gw.http,
        b"GET /public\\..\\admin HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 400, "{resp}");
}

#[tokio::test]
async fn smuggling_shapes_are_400_and_close() {
    let (up, count) = counting_upstream().await;
    let gw = Gateway::start(snapshot(
        vec![route("", "/", proxy_to(0))],
        vec![Cluster::new("s:80", "s", vec![up])],
    ))
    .await;
    let cases: [(&str, &[u8]); 14] = [
        (
            "te on 1.0",
            b"POST / HTTP/1.0\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "cl then te",
            b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "te then cl",
            b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n0\r\n\r\n",
        ),
        (
            "duplicate cl",
            b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\nhello",
        ),
        (
            "list cl",
            b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 5, 5\r\n\r\nhello",
        ),
        ("obs-fold", b"GET / HTTP/1.1\r\nhost: a\r\nx-a: 1\r\n b\r\n\r\n"),
        ("bare lf", b"GET / HTTP/1.1\nhost: a\n\n"),
        ("bare cr", b"GET / HTTP/1.1\r\nhost: a\r\nx-a: 1\r2\r\n\r\n"),
        (
            "te list",
            b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        ),
        (
            "te identity chunked",
            b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: identity, chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "te xchunked",
            b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: xchunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "te twice",
            b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "te folded",
            b"POST / HTTP/1.1\r\nhost: a\r\n transfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "te space before colon",
            b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding : chunked\r\n\r\n0\r\n\r\n",
        ),
    ];
    for (name, bytes) in cases {
        let resp = raw(gw.http, bytes).await;
        assert_eq!(status_of(&resp), 400, "{name}: {resp}");
        let who = if resp.contains("x-portier-error") {
            "portier"
        } else {
            "hyper"
        };
        eprintln!("{name}: refused by {who}");
    }
    assert_eq!(
        count.load(Ordering::SeqCst),
        0,
        "a smuggling shape reached the upstream"
    );
}

#[tokio::test]
async fn h2c_upgrade_is_served_as_http11() {
    let a = upstream("a").await;
    let gw = Gateway::start(snapshot(
        vec![route("a", "/", proxy_to(0))],
        vec![Cluster::new("s:80", "s", vec![a])],
    ))
    .await;
    let resp = raw(
        gw.http,
        b"GET /x HTTP/1.1\r\nhost: a\r\nconnection: Upgrade, HTTP2-Settings\r\nupgrade: h2c\r\nhttp2-settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    let lower = resp.to_ascii_lowercase();
    assert!(
        !lower.contains("upgrade: h2c") && !lower.contains("http2-settings"),
        "{resp}"
    );
    assert!(lower.contains("connection: close"), "{resp}");
}

/// An upstream that reads the request head, then writes `reply` and closes.
async fn dying_upstream(reply: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = read_head(&mut stream).await;
                let _ = stream.write_all(reply).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn upstream_faults_are_clean() {
    let early = dying_upstream(b"").await;
    let midway = dying_upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten..").await;
    let refused = closed_port().await;
    let gw = Gateway::start(snapshot(
        vec![
            route("early", "/", proxy_to(0)),
            route("midway", "/", proxy_to(1)),
            route("refused", "/", proxy_to(2)),
        ],
        vec![
            Cluster::new("s:80", "s", vec![early]),
            Cluster::new("m:80", "m", vec![midway]),
            Cluster::new("r:80", "r", vec![refused]),
        ],
    ))
    .await;
    let started = Instant::now();
    let resp = raw(gw.http, b"GET / HTTP/1.1\r\nhost: refused\r\nconnection: close\r\n\r\n").await;
    assert_eq!(status_of(&resp), 502, "{resp}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "refused took {:?}",
        started.elapsed()
    );
    let resp = raw(gw.http, b"GET / HTTP/1.1\r\nhost: early\r\nconnection: close\r\n\r\n").await;
    assert_eq!(status_of(&resp), 502, "{resp}");
    assert!(resp.contains("x-portier-error: upstream-reset"), "{resp}");
    // Headers went out: the client sees a truncated body and a closed connection.
    let resp = raw(gw.http, b"GET / HTTP/1.1\r\nhost: midway\r\n\r\n").await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert!(resp.ends_with("only ten.."), "{resp}");
    let resp = raw(gw.http, b"GET / HTTP/1.1\r\nhost: refused\r\nconnection: close\r\n\r\n").await;
    assert_eq!(status_of(&resp), 502, "the gateway stopped serving: {resp}");
}

#[tokio::test]
async fn stalled_request_body_is_408() {
    let a = upstream("a").await;
    let settings = GlobalSettings {
        client_body_timeout: Duration::from_millis(200),
        ..GlobalSettings::default()
    };
    let gw = Gateway::start(
        snapshot(
            vec![route("a", "/", proxy_to(0))],
            vec![Cluster::new("s:80", "s", vec![a])],
        )
        .with_settings(settings),
    )
    .await;
    let resp = raw(gw.http, b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 10\r\n\r\nabc").await;
    assert_eq!(status_of(&resp), 408, "{resp}");
    assert!(resp.contains("x-portier-error: body-timeout"), "{resp}");
}

#[tokio::test]
async fn keep_alive_requests_closes_after_n() {
    let settings = GlobalSettings {
        keep_alive_requests: 2,
        ..GlobalSettings::default()
    };
    let gw = Gateway::start(snapshot(vec![route("", "/", ok_static("ok"))], vec![]).with_settings(settings)).await;
    let req = b"GET / HTTP/1.1\r\nhost: a\r\n\r\n";
    let resp = raw(gw.http, &[&req[..], &req[..]].concat()).await;
    assert_eq!(resp.matches("HTTP/1.1 200").count(), 2, "{resp}");
    assert!(resp.contains("connection: close"), "{resp}");
}

#[tokio::test]
async fn source_ranges_are_403() {
    let deny = RoutePolicy {
        source: Some(SourceFilter {
            allow: vec!["10.0.0.0/8".parse().unwrap()],
            deny: vec![],
        }),
        ..RoutePolicy::default()
    };
    let gw = Gateway::start(snapshot(
        vec![
            route_with("a", "/", ok_static("secret"), deny),
            route("b", "/", ok_static("open")),
        ],
        vec![],
    ))
    .await;
    let reply = gw.get("a", "/").await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    assert_eq!(reply.error(), Some("forbidden"));
    assert_eq!(gw.get("b", "/").await.status, StatusCode::OK);
}

#[tokio::test]
async fn host_with_another_certificate_than_sni_is_421() {
    let (shop, root) = cert(&["shop.example", "*.shop.example"]);
    let (other, _) = cert(&["other.example"]);
    let mut tls = TlsStore::builder(cert(&["fallback.invalid"]).0);
    tls.insert("shop.example", shop.clone());
    tls.insert("*.shop.example", shop);
    tls.insert("other.example", other);
    let routes = vec![
        route("shop.example", "/", ok_static("shop")),
        route("www.shop.example", "/", ok_static("www")),
        route("other.example", "/", ok_static("other")),
    ];
    let gw = Gateway::start(snapshot_with_tls(routes, vec![], tls.build())).await;
    let stream = within("tls", tls_connect(gw.https, "shop.example", &root))
        .await
        .unwrap();
    let mut client = h2_over(stream).await;
    // (authority, status)
    for (host, status) in [("shop.example", 200), ("www.shop.example", 200), ("other.example", 421)] {
        let req = Request::get(format!("https://{host}/"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let reply = client.send(req).await;
        assert_eq!(reply.status.as_u16(), status, "{host}: {}", reply.body);
        if status == 421 {
            assert_eq!(reply.error(), Some("misdirected"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_is_bounded() {
    let _turn = HEAVY.lock().await;
    let (up, count) = counting_upstream().await;
    let gw = Gateway::start(snapshot(
        vec![route("", "/", proxy_to(0))],
        vec![Cluster::new("s:80", "s", vec![up])],
    ))
    .await;
    let started = Instant::now();
    let mut pairs = 0usize;
    let mut connections = 0usize;
    while pairs < 10_000 && started.elapsed() < Duration::from_secs(20) {
        connections += 1;
        let tcp = TcpStream::connect(gw.http).await.unwrap();
        let Ok((mut send, conn)) = h2::client::handshake(tcp).await else {
            continue;
        };
        tokio::spawn(conn);
        while pairs < 10_000 {
            let Ok(ready) = send.ready().await else { break };
            send = ready;
            let req = Request::get("http://a/").body(()).unwrap();
            let Ok((_resp, mut stream)) = send.send_request(req, true) else {
                break;
            };
            stream.send_reset(h2::Reason::CANCEL);
            pairs += 1;
        }
    }
    eprintln!(
        "{pairs} HEADERS+RST pairs over {connections} connections; upstream saw {}",
        count.load(Ordering::SeqCst)
    );
    let t = Instant::now();
    let reply = gw.get("a", "/").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "gateway slow after the flood: {:?}",
        t.elapsed()
    );
    assert!(
        count.load(Ordering::SeqCst) < 1000,
        "reset streams leaked to the upstream: {}",
        count.load(Ordering::SeqCst)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_does_not_starve_normal_clients() {
    let _turn = HEAVY.lock().await;
    let settings = GlobalSettings {
        client_header_timeout: Duration::from_secs(1),
        ..GlobalSettings::default()
    };
    let gw = Gateway::start(snapshot(vec![route("", "/", ok_static("ok"))], vec![]).with_settings(settings)).await;
    let addr = gw.http;
    let mut slow = Vec::new();
    for _ in 0..200 {
        slow.push(tokio::spawn(async move {
            let Ok(mut s) = TcpStream::connect(addr).await else {
                return false;
            };
            let started = Instant::now();
            for b in b"GET / HTTP/1.1\r\nhost: a\r\nx-slow: "
                .iter()
                .chain(std::iter::repeat(&b'a'))
            {
                if s.write_all(&[*b]).await.is_err() {
                    break;
                }
                if started.elapsed() > Duration::from_secs(4) {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            true
        }));
    }
    let mut worst = Duration::ZERO;
    for _ in 0..10 {
        let t = Instant::now();
        let reply = gw.get("a", "/").await;
        assert_eq!(reply.status, StatusCode::OK);
        worst = worst.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(worst < Duration::from_millis(500), "normal request took {worst:?}");
    for s in slow {
        assert!(
            within("slow client to be cut off", s).await.unwrap(),
            "a slowloris connection outlived the header timeout"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_keep_alive_connections() {
    let _turn = HEAVY.lock().await;
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft: u64 = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if soft < 2_200 {
        eprintln!("skipped: RLIMIT_NOFILE soft limit {soft} is below the 2200 this test needs");
        return;
    }
    let gw = Gateway::start(snapshot(vec![route("", "/", ok_static("ok"))], vec![])).await;
    let mut streams = Vec::new();
    for _ in 0..1000 {
        streams.push(TcpStream::connect(gw.http).await.unwrap());
    }
    for s in &mut streams {
        s.write_all(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n").await.unwrap();
    }
    let mut ok = 0;
    for s in &mut streams {
        let head = within("a response", read_head(s)).await;
        ok += usize::from(head.starts_with("HTTP/1.1 200"));
    }
    assert_eq!(ok, 1000);
}

/// Reads one response with a `content-length` body from `stream`; `None` when the gateway closed.
async fn read_response(stream: &mut TcpStream) -> Option<String> {
    let head = read_head(stream).await;
    if head.is_empty() {
        return None;
    }
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.unwrap();
    Some(head)
}

#[tokio::test]
async fn idle_keep_alive_connections_close_after_keep_alive_but_busy_ones_stay() {
    let up = upstream("a").await;
    let settings = GlobalSettings {
        keep_alive_timeout: Duration::from_millis(250),
        client_header_timeout: Duration::from_secs(5),
        ..GlobalSettings::default()
    };
    let gw = Gateway::start(
        snapshot(
            vec![route("shop.example", "/", proxy_to(0))],
            vec![Cluster::new("shop/web:80", "shop/web", vec![up])],
        )
        .with_settings(settings),
    )
    .await;
    let mut stream = TcpStream::connect(gw.http).await.unwrap();
    // Requests closer together than the idle limit keep the connection, and one that takes
    // longer than it (the upstream waits 300 ms on /slow) is not cut: it is not idle.
    for path in ["/", "/slow", "/", "/"] {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let req = format!("GET {path} HTTP/1.1\r\nhost: shop.example\r\n\r\n");
        stream.write_all(req.as_bytes()).await.unwrap();
        let head = within("a response", read_response(&mut stream)).await;
        assert!(
            head.as_deref().is_some_and(|h| h.starts_with("HTTP/1.1 200")),
            "{path}: {head:?}"
        );
    }
    // Then idle: closed after the limit, not before.
    let idle = Instant::now();
    let mut byte = [0u8; 1];
    let n = within("the idle close", stream.read(&mut byte)).await.unwrap_or(0);
    let waited = idle.elapsed();
    assert_eq!(n, 0, "the gateway sent data instead of closing");
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_millis(1500),
        "closed after {waited:?}"
    );
}

/// The upstream stops reading an upload (its buffers fill): 504 at the send timeout, not at the
/// read timeout, and not never.
#[tokio::test]
async fn upstream_not_reading_the_body_is_504_at_the_send_timeout() {
    let silent = silent_upstream().await;
    let policy = RoutePolicy {
        send_timeout: Duration::from_millis(300),
        read_timeout: Duration::from_secs(30),
        max_body_bytes: None,
        ..RoutePolicy::default()
    };
    let gw = Gateway::start(snapshot(
        vec![route_with("a", "/", proxy_to(0), policy)],
        vec![Cluster::new("s:80", "s", vec![silent])],
    ))
    .await;
    let started = Instant::now();
    let stream = TcpStream::connect(gw.http).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    // Far more than loopback socket buffers hold, so the upstream side stalls.
    let total: usize = 256 << 20;
    tokio::spawn(async move {
        let head = format!("POST / HTTP/1.1\r\nhost: a\r\ncontent-length: {total}\r\n\r\n");
        if wr.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let chunk = vec![b'x'; 64 << 10];
        for _ in 0..total / chunk.len() {
            if wr.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
    let resp = within("the 504", read_head(&mut rd)).await;
    assert_eq!(status_of(&resp), 504, "{resp}");
    assert!(resp.contains("x-portier-error: upstream-send-timeout"), "{resp}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

/// The whole upload went out and the upstream never answers: 504 at the read timeout.
#[tokio::test]
async fn upstream_silent_after_an_upload_is_504_at_the_read_timeout() {
    let silent = silent_upstream().await;
    let policy = RoutePolicy {
        send_timeout: Duration::from_secs(30),
        read_timeout: Duration::from_millis(300),
        ..RoutePolicy::default()
    };
    let gw = Gateway::start(snapshot(
        vec![route_with("a", "/", proxy_to(0), policy)],
        vec![Cluster::new("s:80", "s", vec![silent])],
    ))
    .await;
    let started = Instant::now();
    let resp = raw(
        gw.http,
        b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\nconnection: close\r\n\r\nabc",
    )
    .await;
    assert_eq!(status_of(&resp), 504, "{resp}");
    assert!(resp.contains("x-portier-error: upstream-timeout"), "{resp}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "took {took:?}"
    );
}

/// An upstream that answers the first request on each connection and never the next ones.
async fn answers_once_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                read_head(&mut stream).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                // Keep reading (and never answering) until the gateway gives up on the connection.
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// The read timeout holds on a reused upstream connection: for a request with the timeout the
/// connection was made for (timed by the connection's driver), and for one with a shorter
/// timeout than that (timed by a timer of its own).
#[tokio::test]
async fn read_timeout_holds_on_reused_upstream_connections() {
    let up = answers_once_upstream().await;
    let policy = |read_ms| RoutePolicy {
        read_timeout: Duration::from_millis(read_ms),
        ..RoutePolicy::default()
    };
    let gw = Gateway::start(snapshot(
        vec![
            route_with("short", "/", proxy_to(0), policy(300)),
            route_with("long", "/", proxy_to(0), policy(30_000)),
        ],
        vec![Cluster::new("s:80", "s", vec![up])],
    ))
    .await;
    for (first, second) in [("short", "short"), ("long", "short")] {
        let reply = gw.get(first, "/").await;
        assert_eq!(reply.status.as_u16(), 200, "{first}: {}", reply.body);
        let started = Instant::now();
        let reply = gw.get(second, "/").await;
        let took = started.elapsed();
        assert_eq!(reply.status.as_u16(), 504, "{first} then {second}: {}", reply.body);
        assert_eq!(reply.error(), Some("upstream-timeout"));
        assert!(
            took >= Duration::from_millis(290) && took < Duration::from_secs(3),
            "{first} then {second}: took {took:?}"
        );
    }
}

/// An upstream that answers each request with the canned reply its path names, byte for byte,
/// on one connection as long as the reply does not end with a close; counts its connections.
async fn scripted_upstream(replies: &'static [(&'static str, &'static [u8], bool)]) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                loop {
                    let head = read_head(&mut stream).await;
                    let Some(path) = head.split(' ').nth(1) else { return };
                    let Some((_, reply, close)) = replies.iter().find(|(p, _, _)| *p == path) else {
                        return;
                    };
                    // In two writes: the gateway must also put together a head that arrives in pieces.
                    let (a, b) = reply.split_at(reply.len() / 2);
                    let _ = stream.write_all(a).await;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    let _ = stream.write_all(b).await;
                    if *close {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn upstream_response_framing_is_followed() {
    static REPLIES: &[(&str, &[u8], bool)] = &[
        ("/length", b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello", false),
        (
            "/chunked",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: t\r\n\r\n",
            false,
        ),
        ("/interim", b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", false),
        ("/empty", b"HTTP/1.1 204 No Content\r\n\r\n", false),
        ("/not-modified", b"HTTP/1.1 304 Not Modified\r\ncontent-length: 99\r\n\r\n", false),
        ("/until-close", b"HTTP/1.0 200 OK\r\n\r\nall of it", true),
        ("/keep-alive-close", b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 3\r\n\r\nbye", true),
        ("/bad-length", b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd", true),
        ("/bad-chunk", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", true),
        ("/garbage", b"SMTP ready\r\n\r\n", true),
    ];
    let (up, accepted) = scripted_upstream(REPLIES).await;
    let gw = Gateway::start(snapshot(
        vec![route("up", "/", proxy_to(0))],
        vec![Cluster::new("u:80", "u", vec![up])],
    ))
    .await;
    let mut client = h1(gw.http).await;
    // Framed replies leave the upstream connection reusable: one connection for all of them.
    for (path, status, body) in [
        ("/length", 200, "hello"),
        ("/chunked", 200, "hello world"),
        ("/interim", 200, "ok"),
        ("/empty", 204, ""),
        ("/not-modified", 304, ""),
        ("/length", 200, "hello"),
    ] {
        let reply = client.send(get("up", path)).await;
        assert_eq!((reply.status.as_u16(), reply.body.as_str()), (status, body), "{path}");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    // A body delimited by the close, and a close announced: each costs its connection.
    for path in ["/until-close", "/keep-alive-close"] {
        let before = accepted.load(Ordering::SeqCst);
        let reply = client.send(get("up", path)).await;
        assert_eq!(reply.status, 200, "{path}");
        let reply = client.send(get("up", "/length")).await;
        assert_eq!(reply.body, "hello", "after {path}");
        assert_eq!(accepted.load(Ordering::SeqCst), before + 1, "after {path}");
    }
    let reply = client.send(get("up", "/until-close")).await;
    assert_eq!(reply.body, "all of it");

    // HEAD: no body, whatever the length says; the connection stays usable.
    let head = Request::head("/length")
        .header("host", "up")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reply = client.send(head).await;
    assert_eq!((reply.status.as_u16(), reply.body.as_str()), (200, ""));
    assert_eq!(reply.headers.get("content-length").unwrap(), "5");
    assert_eq!(client.send(get("up", "/length")).await.body, "hello");

    // Broken framing: 502 before the head went out, a cut-off body after.
    for path in ["/bad-length", "/garbage"] {
        let reply = client.send(get("up", path)).await;
        assert_eq!(reply.status, 502, "{path}");
        assert_eq!(reply.error(), Some("upstream-protocol"), "{path}");
    }
    let resp = raw(
        gw.http,
        b"GET /bad-chunk HTTP/1.1\r\nhost: up\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert!(!resp.contains("hello"), "{resp}");
}

#[tokio::test]
async fn idle_upstream_connections_are_closed_after_the_keep_alive_timeout() {
    static REPLIES: &[(&str, &[u8], bool)] = &[("/", b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", false)];
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    let (closed_tx, mut closed_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let closed = closed_tx.clone();
            tokio::spawn(async move {
                loop {
                    let head = read_head(&mut stream).await;
                    if head.is_empty() {
                        let _ = closed.send(());
                        return;
                    }
                    let _ = stream.write_all(REPLIES[0].1).await;
                }
            });
        }
    });
    let settings = GlobalSettings {
        upstream_keepalive_timeout: Duration::from_millis(300),
        ..GlobalSettings::default()
    };
    let gw = Gateway::start(
        snapshot(
            vec![route("up", "/", proxy_to(0))],
            vec![Cluster::new("u:80", "u", vec![up])],
        )
        .with_settings(settings),
    )
    .await;
    assert_eq!(gw.get("up", "/").await.status, 200);
    let started = Instant::now();
    within("the gateway to close its idle upstream connection", closed_rx.recv()).await;
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "closed after {:?}",
        started.elapsed()
    );
}
