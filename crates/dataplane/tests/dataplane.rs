//! The data plane against real sockets: a gateway on 127.0.0.1:0, real hyper upstreams, real
//! clients, and hand-built snapshots.

// Tests may unwrap: a panic there is a failed assertion, not a crash on input (STYLE.md §6).
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, StatusCode};
use http_body_util::Full;
use portier_snapshot::{Action, Cluster, ClusterId, GlobalSettings, RoutePolicy, StaticReply, TlsStore};
use portier_telemetry::{AccessLog, AccessLogTarget};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::*;

fn proxy_to(cluster: usize) -> Action {
    Action::Proxy(ClusterId::new(cluster))
}

fn static_action(status: u16, body: &'static str) -> Action {
    Action::Static(Arc::new(StaticReply {
        status: StatusCode::from_u16(status).unwrap(),
        headers: vec![(HeaderName::from_static("x-static"), HeaderValue::from_static("yes"))],
        body: Bytes::from_static(body.as_bytes()),
    }))
}

#[tokio::test]
async fn proxies_with_forwarded_headers_and_without_hop_by_hop() {
    let a = upstream("a").await;
    let log_path = std::env::temp_dir().join(format!("portier-dp-access-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log_path);
    let access_log = AccessLog::start(AccessLogTarget::File(log_path.clone())).unwrap();
    let gw = Gateway::start_with(
        snapshot(
            vec![route("shop.example", "/", proxy_to(0))],
            vec![Cluster::new("shop/web:80", "shop/web", vec![a])],
        ),
        config(),
        access_log,
    )
    .await;

    let req = Request::post("/p/a%2Fb?q=%20x")
        .header("host", "shop.example")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "secret")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic eA==")
        .header("x-forwarded-for", "1.2.3.4")
        .header("x-forwarded-proto", "https")
        .header("user-agent", "test/1")
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    let reply = h1(gw.http).await.send(req).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.upstream(), Some("a"));
    assert!(
        reply.body.contains("POST /p/a%2Fb?q=%20x HTTP/1.1"),
        "raw target not kept:\n{}",
        reply.body
    );

    let port = gw.http.port().to_string();
    let want = [
        ("host", Some("shop.example")),
        ("x-forwarded-for", Some("1.2.3.4, 127.0.0.1")),
        ("x-real-ip", Some("127.0.0.1")),
        ("x-forwarded-proto", Some("http")),
        ("x-forwarded-host", Some("shop.example")),
        ("x-forwarded-port", Some(port.as_str())),
        ("user-agent", Some("test/1")),
        ("body-bytes", Some("5")),
        ("x-hop", None),
        ("keep-alive", None),
        ("proxy-authorization", None),
    ];
    for (header, value) in want {
        assert_eq!(reply.seen(header), value, "upstream saw {header}:\n{}", reply.body);
    }
    for header in ["x-up-hop", "keep-alive"] {
        assert!(!reply.headers.contains_key(header), "response kept hop-by-hop {header}");
    }

    gw.metric(r#"portier_http_requests_total{ingress="shop/web",service="shop/web:80",code="200"} 1"#)
        .await;

    gw.access_log.shutdown().await;
    let log = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_file(&log_path);
    let record: serde_json::Value = serde_json::from_str(log.lines().next().expect("one access-log line")).unwrap();
    let checks = [
        ("method", serde_json::json!("POST")),
        ("host", serde_json::json!("shop.example")),
        ("path", serde_json::json!("/p/a%2Fb?q=%20x")),
        ("protocol", serde_json::json!("HTTP/1.1")),
        ("status", serde_json::json!(200)),
        ("upstream", serde_json::json!(a.to_string())),
        ("ingress", serde_json::json!("shop/web")),
        ("service", serde_json::json!("shop/web:80")),
        ("bytes_sent", serde_json::json!(reply.body.len())),
        ("bytes_received", serde_json::json!(5)),
        ("tls", serde_json::json!(false)),
        ("user_agent", serde_json::json!("test/1")),
        ("error", serde_json::Value::Null),
    ];
    for (field, want) in checks {
        assert_eq!(record[field], want, "access log {field}: {record}");
    }
}

#[tokio::test]
async fn gateway_errors_and_static_replies() {
    let gw = Gateway::start(snapshot(
        vec![
            route("shop.example", "/static", static_action(201, "hello")),
            route(
                "shop.example",
                "/down",
                Action::Unavailable {
                    reason: Arc::from("Service shop/gone not found"),
                },
            ),
            route("shop.example", "/empty", proxy_to(0)),
        ],
        vec![Cluster::new("shop/empty:80", "shop/empty", vec![])],
    ))
    .await;
    // (host, path, status, x-portier-error, body contains)
    let cases = [
        ("other.example", "/", 404, Some("no-route"), "no route"),
        ("shop.example", "/nothing", 404, Some("no-route"), "no route"),
        (
            "shop.example",
            "/down",
            503,
            Some("backend-unavailable"),
            "Service shop/gone not found",
        ),
        (
            "shop.example",
            "/empty",
            503,
            Some("no-endpoints"),
            "no ready endpoints for shop/empty:80",
        ),
        ("SHOP.example.:80", "/static/x", 201, None, "hello"),
    ];
    for (host, path, status, error, body) in cases {
        let reply = gw.get(host, path).await;
        assert_eq!(reply.status.as_u16(), status, "{host}{path}: {}", reply.body);
        assert_eq!(reply.error(), error, "{host}{path}");
        assert!(reply.body.contains(body), "{host}{path}: {:?}", reply.body);
    }
    let reply = gw.get("shop.example", "/static").await;
    assert_eq!(reply.headers["x-static"], "yes");
    gw.metric(r#"portier_http_requests_total{ingress="",service="",code="404"} 2"#)
        .await;
}

/// The metric handle kept on a route belongs to that snapshot's route; the counts behind it belong
/// to the Ingress and backend, so a reload (new routes, same names) continues them.
#[tokio::test]
async fn request_metrics_continue_across_a_reload() {
    let routes = || {
        vec![
            route("shop.example", "/", static_action(200, "ok")),
            route("shop.example", "/gone", static_action(410, "gone")),
        ]
    };
    let gw = Gateway::start(snapshot(routes(), vec![])).await;
    for path in ["/", "/", "/gone"] {
        gw.get("shop.example", path).await;
    }
    gw.metric(r#"portier_http_requests_total{ingress="shop/web",service="shop/web:80",code="200"} 2"#)
        .await;
    gw.cell.publish(snapshot(routes(), vec![]));
    for path in ["/", "/gone"] {
        gw.get("shop.example", path).await;
    }
    gw.metric(r#"portier_http_requests_total{ingress="shop/web",service="shop/web:80",code="200"} 3"#)
        .await;
    gw.metric(r#"portier_http_requests_total{ingress="shop/web",service="shop/web:80",code="410"} 2"#)
        .await;
    gw.metric(r#"portier_http_request_duration_seconds_count{ingress="shop/web"} 5"#)
        .await;
    let text = gw.metrics.encode();
    assert_eq!(
        text.matches("portier_http_request_duration_seconds_count{").count(),
        1,
        "one histogram for the Ingress:\n{text}"
    );
}

#[tokio::test]
async fn missing_host_on_http11_is_400() {
    let gw = Gateway::start(snapshot(vec![route("", "/", static_action(200, "ok"))], vec![])).await;
    let mut stream = TcpStream::connect(gw.http).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let head = within("400 head", read_head(&mut stream)).await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert!(head.contains("x-portier-error: bad-request"), "{head}");

    // HTTP/1.0 may omit Host: it is served by the rules without a host.
    let mut stream = TcpStream::connect(gw.http).await.unwrap();
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let head = within("1.0 head", read_head(&mut stream)).await;
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
}

#[tokio::test]
async fn plain_http_redirects_to_https_when_the_route_asks() {
    let mut r = route("secure.example", "/", static_action(200, "secret"));
    r.https_redirect = true;
    let gw = Gateway::start(snapshot(vec![r], vec![])).await;
    let reply = gw.get("secure.example:8080", "/a/b?c=1").await;
    assert_eq!(reply.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(reply.headers["location"], "https://secure.example:8443/a/b?c=1");
    assert!(reply.error().is_none());
}

#[tokio::test]
async fn http01_tokens_are_answered_before_routing_and_redirects() {
    let mut r = route("secure.example", "/", static_action(200, "secret"));
    r.https_redirect = true;
    let tokens = [("tok-1".to_owned(), "tok-1.thumbprint".to_owned())]
        .into_iter()
        .collect();
    let gw = Gateway::start(snapshot(vec![r], vec![]).with_http01_tokens(tokens)).await;
    // (host, path, status, body or location)
    let cases = [
        (
            "secure.example:8080",
            "/.well-known/acme-challenge/tok-1",
            200,
            "tok-1.thumbprint",
        ),
        (
            "unknown.example",
            "/.well-known/acme-challenge/tok-1",
            200,
            "tok-1.thumbprint",
        ),
        (
            "secure.example",
            "/.well-known/acme-challenge/other",
            308,
            "https://secure.example:8443/.well-known/acme-challenge/other",
        ),
        ("unknown.example", "/.well-known/acme-challenge/other", 404, ""),
    ];
    for (host, path, status, want) in cases {
        let reply = gw.get(host, path).await;
        assert_eq!(reply.status.as_u16(), status, "{host}{path}");
        match status {
            200 => {
                assert_eq!(reply.body, want, "{host}{path}");
                assert_eq!(reply.headers["content-type"], "text/plain", "{host}{path}");
            }
            308 => assert_eq!(reply.headers["location"], want, "{host}{path}"),
            _ => {}
        }
    }
}

#[tokio::test]
async fn round_robin_across_endpoints() {
    let (a, b) = (upstream("a").await, upstream("b").await);
    let gw = Gateway::start(snapshot(
        vec![route("shop.example", "/", proxy_to(0))],
        vec![Cluster::new("shop/web:80", "shop/web", vec![a, b])],
    ))
    .await;
    let mut client = h1(gw.http).await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        let reply = client.send(get("shop.example", "/")).await;
        seen.push(reply.upstream().unwrap_or("?").to_owned());
    }
    assert!(seen == ["a", "b", "a", "b"] || seen == ["b", "a", "b", "a"], "{seen:?}");
}

#[tokio::test]
async fn h2c_prior_knowledge_on_the_plain_listener() {
    let a = upstream("a").await;
    let gw = Gateway::start(snapshot(
        vec![route("shop.example", "/", proxy_to(0))],
        vec![Cluster::new("shop/web:80", "shop/web", vec![a])],
    ))
    .await;
    let mut client = h2c(gw.http).await;
    let req = Request::get("http://shop.example/h2c")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reply = client.send(req).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(reply.body.contains("GET /h2c HTTP/1.1"), "{}", reply.body);
    assert_eq!(reply.seen("host"), Some("shop.example"));

    // RFC 9113 §8.2.3: crumbs of a cookie split over several fields reach HTTP/1.1 as one field.
    let req = Request::get("http://shop.example/cookies")
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reply = client.send(req).await;
    assert_eq!(reply.seen("cookie"), Some("a=1; b=2"), "{}", reply.body);
    assert_eq!(reply.body.matches("\ncookie: ").count(), 1, "{}", reply.body);
}

#[tokio::test]
async fn http2_over_tls_with_sni_certificates_and_rotation() {
    let a = upstream("a").await;
    let (entry, root) = cert(&["shop.example"]);
    let mut tls = TlsStore::builder(cert(&["fallback.invalid"]).0);
    tls.insert("shop.example", entry);
    let routes = || vec![route("shop.example", "/", proxy_to(0))];
    let clusters = || vec![Cluster::new("shop/web:80", "shop/web", vec![a])];
    let gw = Gateway::start(snapshot_with_tls(routes(), clusters(), tls.build())).await;

    let stream = within("tls handshake", tls_connect(gw.https, "shop.example", &root))
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut client = h2_over(stream).await;
    let req = Request::get("https://shop.example/tls")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reply = client.send(req).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.seen("x-forwarded-proto"), Some("https"));
    assert_eq!(
        reply.seen("x-forwarded-port"),
        Some(gw.https.port().to_string().as_str())
    );
    assert_eq!(reply.seen("host"), Some("shop.example"));

    // An unknown name gets the fallback certificate, which the client rejects.
    let other = within("tls handshake", tls_connect(gw.https, "other.example", &root)).await;
    assert!(other.is_err(), "fallback certificate must not verify for other.example");

    // Rotation: a new snapshot with a new certificate is served from the next handshake on.
    let (entry2, root2) = cert(&["shop.example"]);
    let mut tls2 = TlsStore::builder(cert(&["fallback.invalid"]).0);
    tls2.insert("shop.example", entry2);
    gw.cell.publish(snapshot_with_tls(routes(), clusters(), tls2.build()));
    assert!(within("tls handshake", tls_connect(gw.https, "shop.example", &root2))
        .await
        .is_ok());
    assert!(within("tls handshake", tls_connect(gw.https, "shop.example", &root))
        .await
        .is_err());
}

#[tokio::test]
async fn upgrade_is_spliced_and_survives_a_reload() {
    let up = echo_upgrade_upstream().await;
    let gw = Gateway::start(snapshot(
        vec![route("ws.example", "/", proxy_to(0))],
        vec![Cluster::new("shop/ws:80", "shop/ws", vec![up])],
    ))
    .await;
    let mut stream = TcpStream::connect(gw.http).await.unwrap();
    stream
        .write_all(b"GET /chat HTTP/1.1\r\nhost: ws.example\r\nconnection: Upgrade\r\nupgrade: echo\r\n\r\n")
        .await
        .unwrap();
    let head = within("101 head", read_head(&mut stream)).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.to_ascii_lowercase().contains("upgrade: echo"), "{head}");

    // The tunnel holds no snapshot: removing the route does not affect it.
    gw.cell.publish(snapshot(vec![], vec![]));
    for msg in [&b"ping"[..], b"second message"] {
        stream.write_all(msg).await.unwrap();
        let mut buf = vec![0u8; msg.len()];
        within("echo", stream.read_exact(&mut buf)).await.unwrap();
        assert_eq!(buf, msg);
    }
}

#[tokio::test]
async fn upstream_failures_are_gateway_errors() {
    let refused = closed_port().await;
    let silent = silent_upstream().await;
    let policy = RoutePolicy {
        read_timeout: Duration::from_millis(300),
        ..RoutePolicy::default()
    };
    let gw = Gateway::start_with(
        snapshot(
            vec![
                route_with("refused.example", "/", proxy_to(0), policy.clone()),
                route_with("silent.example", "/", proxy_to(1), policy),
            ],
            vec![
                Cluster::new("shop/refused:80", "shop/refused", vec![refused]),
                Cluster::new("shop/silent:80", "shop/silent", vec![silent]),
            ],
        ),
        config(),
        AccessLog::off(),
    )
    .await;
    // (host, status, kind, body contains, at most)
    let cases = [
        (
            "refused.example",
            502,
            "upstream-connect",
            "cannot connect to backend shop/refused:80",
            1000,
        ),
        (
            "silent.example",
            504,
            "upstream-timeout",
            "backend shop/silent:80 sent no response",
            2000,
        ),
    ];
    for (host, status, kind, body, max_ms) in cases {
        let started = Instant::now();
        let reply = gw.get(host, "/").await;
        assert_eq!(reply.status.as_u16(), status, "{host}: {}", reply.body);
        assert_eq!(reply.error(), Some(kind), "{host}");
        assert!(reply.body.contains(body), "{host}: {:?}", reply.body);
        assert!(
            started.elapsed() < Duration::from_millis(max_ms),
            "{host} took {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn keep_alive_connection_sees_a_new_snapshot_at_its_next_request() {
    let gw = Gateway::start(snapshot(
        vec![route("shop.example", "/", static_action(200, "v1"))],
        vec![],
    ))
    .await;
    let mut client = h1(gw.http).await;
    assert_eq!(client.send(get("shop.example", "/")).await.body, "v1");
    gw.cell.publish(snapshot(
        vec![route("shop.example", "/", static_action(200, "v2"))],
        vec![],
    ));
    assert_eq!(client.send(get("shop.example", "/")).await.body, "v2");
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let a = upstream("a").await;
    let gw = Gateway::start(snapshot(
        vec![route("shop.example", "/", proxy_to(0))],
        vec![Cluster::new("shop/web:80", "shop/web", vec![a])],
    ))
    .await;
    drains_a_request_in_flight(gw, "shop.example").await;
}

/// Shuts `gw` down while a `/slow` request to `host` is in flight: the request is answered, `run`
/// returns, and the listener is closed.
async fn drains_a_request_in_flight(gw: Gateway, host: &'static str) {
    let mut client = h1(gw.http).await;
    let in_flight = tokio::spawn(async move { client.send(get(host, "/slow")).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    gw.shutdown.cancel();
    let reply = within("the in-flight request", in_flight).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    within("run to return", gw.task).await.unwrap();
    assert!(
        TcpStream::connect(gw.http).await.is_err(),
        "listener still accepting after shutdown"
    );
}

#[tokio::test]
async fn http2_shutdown_lets_in_flight_streams_finish() {
    let a = upstream("a").await;
    let gw = Gateway::start(snapshot(
        vec![route("shop.example", "/", proxy_to(0))],
        vec![Cluster::new("shop/web:80", "shop/web", vec![a])],
    ))
    .await;
    let Client::H2(send) = h2c(gw.http).await else {
        unreachable!()
    };
    let streams: Vec<_> = (0..2)
        .map(|_| {
            let mut send = send.clone();
            tokio::spawn(async move { send.send_request(get("shop.example", "/slow")).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    gw.shutdown.cancel();
    for stream in streams {
        let resp = within("an in-flight stream", stream).await.unwrap().unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
    within("run to return", gw.task).await.unwrap();
}

/// The streams of an HTTP/2 connection end with it: a request whose client has gone does not
/// keep waiting on its upstream (here for up to its 30 s read timeout).
#[tokio::test]
async fn http2_client_gone_ends_its_upstream_exchanges() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    let (closed_tx, closed) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        // The request, and never an answer: wait until the gateway closes the connection.
        let mut buf = [0u8; 4096];
        while let Ok(1..) = conn.read(&mut buf).await {}
        let _ = closed_tx.send(());
    });
    let policy = RoutePolicy {
        read_timeout: Duration::from_secs(30),
        ..RoutePolicy::default()
    };
    let gw = Gateway::start(snapshot(
        vec![route_with("shop.example", "/", proxy_to(0), policy)],
        vec![Cluster::new("s:80", "s", vec![up])],
    ))
    .await;
    let stream = TcpStream::connect(gw.http).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let request = tokio::spawn(async move { send.send_request(get("shop.example", "/")).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The client goes away: its connection (and socket) dropped.
    conn.abort();
    request.abort();
    within("the upstream connection to be closed", closed).await.unwrap();
}

#[tokio::test]
async fn drain_deadline_closes_what_is_left() {
    let silent = silent_upstream().await;
    let mut cfg = config();
    cfg.drain_timeout = Duration::from_millis(200);
    let policy = RoutePolicy {
        read_timeout: Duration::from_secs(30),
        ..RoutePolicy::default()
    };
    let gw = Gateway::start_with(
        snapshot(
            vec![route_with("shop.example", "/", proxy_to(0), policy)],
            vec![Cluster::new("s:80", "s", vec![silent])],
        ),
        cfg,
        AccessLog::off(),
    )
    .await;
    let stuck = h1(gw.http).await;
    let mut stuck = stuck;
    let request = tokio::spawn(async move {
        let Client::H1(send) = &mut stuck else { unreachable!() };
        send.send_request(get("shop.example", "/")).await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    gw.shutdown.cancel();
    within("run to return after the drain deadline", gw.task).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "drain took {:?}",
        started.elapsed()
    );
    let result = within("the stuck request to end", request).await.unwrap();
    assert!(result.is_err(), "the stuck request should see its connection closed");
}

#[tokio::test]
async fn silent_client_is_closed_after_the_client_header_timeout() {
    let settings = GlobalSettings {
        client_header_timeout: Duration::from_millis(200),
        ..GlobalSettings::default()
    };
    let gw = Gateway::start(snapshot(vec![], vec![]).with_settings(settings)).await;
    for tls in [false, true] {
        let addr = if tls { gw.https } else { gw.http };
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 16];
        let n = within("the gateway to close a silent connection", stream.read(&mut buf)).await;
        assert!(matches!(n, Ok(0) | Err(_)), "tls={tls}: {n:?}");
    }
}

#[tokio::test]
async fn upstream_connections_are_reused() {
    let (up, accepted) = counting_upstream(false).await;
    let gw = Gateway::start(snapshot(
        vec![route("shop.example", "/", proxy_to(0))],
        vec![Cluster::new("shop/web:80", "shop/web", vec![up])],
    ))
    .await;
    for _ in 0..3 {
        // A new client connection each time: the upstream connection outlives client connections.
        let mut client = h1(gw.http).await;
        for _ in 0..5 {
            let reply = client.send(get("shop.example", "/")).await;
            assert_eq!(reply.status, 200);
        }
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn upstream_closing_idle_connections_fails_no_request() {
    let (up, accepted) = counting_upstream(true).await;
    let gw = Gateway::start(snapshot(
        vec![route("shop.example", "/", proxy_to(0))],
        vec![Cluster::new("shop/web:80", "shop/web", vec![up])],
    ))
    .await;
    let mut client = h1(gw.http).await;
    for i in 0..20 {
        let reply = client.send(get("shop.example", "/")).await;
        assert_eq!(reply.status, 200, "request {i}: {:?}", reply.error());
        if i % 2 == 0 {
            // Give the close time to arrive, so both orders are exercised: closed before the next
            // checkout, and closed while the next request is being written.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 20);
}

/// With worker threads on listeners of the caller's own: this runtime accepts and hands each
/// connection to the least busy worker. Connections spread evenly, each worker keeps its own
/// upstream connections, HTTP/1.1 and HTTP/2 over TLS are served, and the drain covers every
/// worker.
#[tokio::test]
async fn worker_threads_given_connections_share_them_keep_their_own_pools_and_drain() {
    let (up, accepted) = counting_upstream(false).await;
    let slow = upstream("a").await;
    let (tls, root) = shop_tls();
    let mut cfg = config();
    cfg.workers = 3;
    let gw = Gateway::start_with(two_sites(up, slow, tls), cfg, AccessLog::off()).await;
    let open = twelve_clients_four_rounds(&gw, &root).await;
    // One request at a time: every worker reuses the one upstream connection of its own pool, so
    // the upstream saw one connection per worker, and only if every worker served some client.
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
    // Each new connection went to the worker with the fewest: 12 connections, 4 each.
    for worker in 0..3 {
        gw.metric(&format!("portier_worker_connections{{worker=\"{worker}\"}} 4"))
            .await;
    }
    drop(open);
    drains_a_request_in_flight(gw, "slow.example").await;
}

/// With worker threads on listeners from `portier_dataplane::bind`: each worker accepts on a
/// socket of its own (the kernel spreads the connections), with the same service and drain.
#[tokio::test]
async fn worker_threads_accepting_on_their_own_sockets_serve_and_drain() {
    let (up, accepted) = counting_upstream(false).await;
    let slow = upstream("a").await;
    let (tls, root) = shop_tls();
    let mut cfg = config();
    cfg.workers = 3;
    let gw = Gateway::start_sharded(two_sites(up, slow, tls), cfg).await;
    let open = twelve_clients_four_rounds(&gw, &root).await;
    // At most one upstream connection per worker that got clients (which the hash decides).
    let upstream_conns = accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        (1..=3).contains(&upstream_conns),
        "{upstream_conns} upstream connections"
    );
    // Every worker has a socket: the gauges of all three exist, and count the 12 connections.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = gw.metrics.encode();
        let counts: Vec<i64> = (0..3)
            .filter_map(|w| {
                let prefix = format!("portier_worker_connections{{worker=\"{w}\"}} ");
                text.lines().find_map(|l| l.strip_prefix(prefix.as_str())?.parse().ok())
            })
            .collect();
        if counts.len() == 3 && counts.iter().sum::<i64>() == 12 {
            break;
        }
        assert!(Instant::now() < deadline, "worker gauges {counts:?} in\n{text}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(open);
    drains_a_request_in_flight(gw, "slow.example").await;
}

fn shop_tls() -> (TlsStore, rustls::pki_types::CertificateDer<'static>) {
    let (entry, root) = cert(&["shop.example"]);
    let mut tls = TlsStore::builder(cert(&["fallback.invalid"]).0);
    tls.insert("shop.example", entry);
    (tls.build(), root)
}

/// `shop.example` proxied to `up`, `slow.example` to `slow`, over HTTP and HTTPS.
fn two_sites(up: std::net::SocketAddr, slow: std::net::SocketAddr, tls: TlsStore) -> portier_snapshot::Snapshot {
    snapshot_with_tls(
        vec![
            route("shop.example", "/", proxy_to(0)),
            route("slow.example", "/", proxy_to(1)),
        ],
        vec![
            Cluster::new("shop/web:80", "shop/web", vec![up]),
            Cluster::new("slow/web:80", "slow/web", vec![slow]),
        ],
        tls,
    )
}

/// Opens 9 HTTP/1.1 and 3 HTTP/2-over-TLS connections and sends 4 rounds of one request on each,
/// one at a time; returns the connections, still open.
async fn twelve_clients_four_rounds(gw: &Gateway, root: &rustls::pki_types::CertificateDer<'static>) -> Vec<Client> {
    let mut clients = Vec::new();
    for _ in 0..9 {
        clients.push(h1(gw.http).await);
    }
    for _ in 0..3 {
        let stream = within("tls handshake", tls_connect(gw.https, "shop.example", root))
            .await
            .unwrap();
        clients.push(h2_over(stream).await);
    }
    for _ in 0..4 {
        for client in &mut clients {
            let req = match client {
                Client::H1(_) => get("shop.example", "/"),
                _ => Request::get("https://shop.example/")
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            };
            let reply = client.send(req).await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        }
    }
    clients
}
