//! Hot reload: file changes go live without a restart, and nothing already running is cut off.

use std::time::Duration;

use http::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client::{self, peer_leaf, tls_connect, tls_default, H1Conn};
use crate::fixture::{self, Fixture, Leaf};
use crate::harness::{eventually, within, Portier};
use crate::upstream::Upstream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_ingress_goes_live_on_open_keep_alive_connections() {
    within(20, "new Ingress", async {
        let up = Upstream::echo("late").await;
        let f = Fixture::new();
        f.write("svc.yaml", &fixture::service("late", &[&up]));
        let portier = Portier::start(f.path(), &[]).await;
        portier.wait_for_watcher().await;

        let mut conn = H1Conn::connect(portier.http).await;
        let r = conn.send(client::req(Method::GET, "late.e2e.test", "/before")).await;
        assert_eq!(r.status, 404, "no route yet: {}", r.text());

        f.write(
            "ingress.yaml",
            &fixture::ingress("late", Some("late.e2e.test"), &[("/", "Prefix", "late")]),
        );
        let routes = portier.wait_for_generation(2).await;
        assert!(
            routes["routes"]
                .as_array()
                .is_some_and(|rs| rs.iter().any(|r| r["host"] == "late.e2e.test")),
            "generation 2 lacks the new route: {routes}"
        );

        let r = conn.send(client::req(Method::GET, "late.e2e.test", "/after")).await;
        assert_eq!(
            r.status,
            200,
            "same keep-alive connection after the reload: {}",
            r.text()
        );
        assert_eq!(r.json()["name"], "late");
        let r = portier.get("late.e2e.test", "/fresh").await;
        assert_eq!(r.status, 200, "new connection after the reload: {}", r.text());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_request_completes_across_a_reload_that_removes_its_route() {
    within(20, "in-flight request", async {
        let up = Upstream::echo("slow").await;
        let f = Fixture::new();
        f.write("svc.yaml", &fixture::service("slow", &[&up]));
        f.write(
            "ingress.yaml",
            &fixture::ingress("slow", Some("slow.e2e.test"), &[("/", "Prefix", "slow")]),
        );
        let portier = Portier::start(f.path(), &[]).await;
        portier.wait_for_watcher().await;

        let http = portier.http;
        let slow = tokio::spawn(async move { client::get(http, "slow.e2e.test", "/?sleep_ms=2500").await });
        eventually(
            Duration::from_secs(5),
            "the slow request to reach the upstream",
            || async { (up.hits() == 1).then_some(()) },
        )
        .await;

        f.remove("ingress.yaml");
        portier.wait_for_generation(2).await;
        assert!(
            !slow.is_finished(),
            "the reload took longer than the slow request; the test proves nothing"
        );
        let r = portier.get("slow.e2e.test", "/").await;
        assert_eq!(r.status, 404, "route removed by the reload: {}", r.text());

        let r = slow.await.expect("slow request task");
        assert_eq!(r.status, 200, "in-flight request after the reload: {}", r.text());
        assert_eq!(r.json()["name"], "slow");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgraded_connection_keeps_echoing_after_a_reload() {
    within(20, "upgraded connection", async {
        let up = Upstream::upgrade_echo("tunnel").await;
        let f = Fixture::new();
        f.write("svc.yaml", &fixture::service("tunnel", &[&up]));
        f.write(
            "ingress.yaml",
            &fixture::ingress("tunnel", Some("ws.e2e.test"), &[("/", "Prefix", "tunnel")]),
        );
        let portier = Portier::start(f.path(), &[]).await;
        portier.wait_for_watcher().await;

        let mut tcp = TcpStream::connect(portier.http).await.expect("connect");
        tcp.write_all(b"GET /chat HTTP/1.1\r\nHost: ws.e2e.test\r\nConnection: Upgrade\r\nUpgrade: e2e-echo\r\n\r\n")
            .await
            .expect("write upgrade request");
        let head = read_head(&mut tcp).await;
        assert!(head.starts_with("HTTP/1.1 101"), "upgrade answer: {head:?}");
        assert!(
            head.to_ascii_lowercase().contains("upgrade: e2e-echo"),
            "Upgrade header in the 101: {head:?}"
        );
        assert_eq!(
            echo_round_trip(&mut tcp, b"ping-1").await,
            b"ping-1",
            "before the reload"
        );

        f.remove("ingress.yaml");
        portier.wait_for_generation(2).await;
        assert_eq!(
            echo_round_trip(&mut tcp, b"ping-2").await,
            b"ping-2",
            "after the reload"
        );

        let r = portier.get("ws.e2e.test", "/chat").await;
        assert_eq!(r.status, 404, "new requests see the removed route: {}", r.text());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yaml_syntax_error_keeps_the_previous_objects_of_the_file() {
    within(20, "YAML syntax error", async {
        let f = Fixture::new();
        let good = |body: &str| {
            format!(
                "{}---\n{}",
                fixture::static_response("app", 200, body),
                fixture::ingress_static("app", Some("app.e2e.test"), &[("/", "Prefix", "app")])
            )
        };
        f.write("app.yaml", &good("v1"));
        let portier = Portier::start(f.path(), &[]).await;
        portier.wait_for_watcher().await;
        assert_eq!(portier.get("app.e2e.test", "/").await.text(), "v1");

        // Line 4 opens a flow mapping that is never closed.
        let broken = good("v2").replacen("body: \"v2\"}", "body: \"v2\"", 1);
        assert_ne!(broken, good("v2"), "the fixture must actually break the file");
        f.write("app.yaml", &broken);
        portier.wait_for_generation(2).await;

        let diags = portier.diagnostics().await;
        let entry = diags["diagnostics"]
            .as_array()
            .and_then(|ds| {
                ds.iter().find(|d| {
                    d["severity"] == "error" && d["span"]["file"].as_str().is_some_and(|p| p.ends_with("app.yaml"))
                })
            })
            .unwrap_or_else(|| panic!("no error naming app.yaml in /api/v1/diagnostics: {diags}"));
        let line = entry["span"]["line"].as_u64().unwrap_or(0);
        assert!(
            (4..=6).contains(&line),
            "the error should point near line 4 of app.yaml: {entry}"
        );

        let r = portier.get("app.e2e.test", "/").await;
        assert_eq!(
            (r.status.as_u16(), r.text()),
            (200, "v1".to_owned()),
            "the file's previous objects keep serving"
        );
        assert_metric(&portier, "portier_config_last_reload_successful", "0").await;
        assert_metric(&portier, "portier_config_generation", "2").await;

        f.write("app.yaml", &good("v3"));
        portier.wait_for_generation(3).await;
        assert_eq!(
            portier.get("app.e2e.test", "/").await.text(),
            "v3",
            "after fixing the file"
        );
        let diags = portier.diagnostics().await;
        assert_eq!(diags["errors"], 0, "errors left after fixing the file: {diags}");
        assert_metric(&portier, "portier_config_last_reload_successful", "1").await;
        assert_metric(&portier, "portier_config_generation", "3").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_certificate_is_served_to_new_handshakes() {
    within(20, "certificate rotation", async {
        let first = Leaf::new(&["rotate.e2e.test"]);
        let second = Leaf::new(&["rotate.e2e.test"]);
        let f = Fixture::new();
        f.write(
            "secret.yaml",
            &fixture::tls_secret("rotate-tls", &first.cert_pem, &first.key_pem),
        );
        f.write(
            "ingress.yaml",
            &[
                fixture::static_response("rotate", 200, "rotate"),
                fixture::with_tls(
                    &fixture::ingress_static("rotate", Some("rotate.e2e.test"), &[("/", "Prefix", "rotate")]),
                    &["rotate.e2e.test"],
                    "rotate-tls",
                ),
            ]
            .join("---\n"),
        );
        let portier = Portier::start(f.path(), &[]).await;
        portier.wait_for_watcher().await;
        let before = tls_connect(portier.https, "rotate.e2e.test", tls_default())
            .await
            .expect("handshake");
        assert!(peer_leaf(&before) == first.der, "first certificate before the rotation");
        let mut before = client::h2_handshake(before).await;

        f.write(
            "secret.yaml",
            &fixture::tls_secret("rotate-tls", &second.cert_pem, &second.key_pem),
        );
        portier.wait_for_generation(2).await;
        let after = tls_connect(portier.https, "rotate.e2e.test", tls_default())
            .await
            .expect("handshake");
        assert!(
            peer_leaf(&after) == second.der,
            "new handshakes get the rotated certificate"
        );

        // A connection made before the rotation keeps working.
        let r = client::send_h2(&mut before, client::req_h2("https", "rotate.e2e.test", "/")).await;
        assert_eq!(
            (r.status.as_u16(), r.text()),
            (200, "rotate".to_owned()),
            "connection from before the rotation"
        );
    })
    .await;
}

/// A file written after the first configuration was read but before the watcher runs must still
/// be picked up. `portier serve` installs its file watcher only after the listeners are up and the
/// access log is open, so a change in that window is lost until some other file changes.
///
/// The window is made deterministic: the access log is a FIFO, so startup blocks in `open(2)` after
/// the `listening` lines until this test opens the reading end, and the Ingress is written meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_right_after_startup_is_picked_up() {
    within(20, "change during startup", async {
        let f = Fixture::new();
        f.write("static.yaml", &fixture::static_response("early", 200, "early"));
        let logs = tempfile::tempdir().expect("log directory");
        let fifo = logs.path().join("access.fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("running mkfifo");
        assert!(made.success(), "mkfifo {}", fifo.display());
        let fifo_arg = fifo.to_str().expect("UTF-8 temp path").to_owned();
        let portier = Portier::start(f.path(), &["--access-log", &fifo_arg]).await;

        f.write(
            "ingress.yaml",
            &fixture::ingress_static("early", Some("early.e2e.test"), &[("/", "Prefix", "early")]),
        );
        // Unblock startup, and keep draining the access log.
        std::thread::spawn(move || {
            if let Ok(mut reader) = std::fs::File::open(&fifo) {
                let _ = std::io::copy(&mut reader, &mut std::io::sink());
            }
        });
        eventually(
            Duration::from_secs(5),
            "the Ingress written during startup to go live (generation 2); the change was lost: the \
             file watcher is installed only after startup, so the file was never scanned",
            || async { (portier.routes().await["generation"].as_u64() >= Some(2)).then_some(()) },
        )
        .await;
        let r = portier.get("early.e2e.test", "/").await;
        assert_eq!((r.status.as_u16(), r.text()), (200, "early".to_owned()));
    })
    .await;
}

/// Asserts an unlabelled sample on `/metrics`.
async fn assert_metric(portier: &Portier, name: &str, want: &str) {
    let text = portier.admin_get("/metrics").await.text();
    let got = text
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no sample {name} on /metrics:\n{text}"));
    assert_eq!(got, want, "{name} on /metrics");
}

async fn read_head(tcp: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut byte))
            .await
            .expect("timed out reading response head")
            .expect("reading response head");
        assert!(
            n == 1,
            "connection closed in the response head: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

async fn echo_round_trip(tcp: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    tcp.write_all(msg).await.expect("writing on the upgraded connection");
    let mut buf = vec![0u8; msg.len()];
    tokio::time::timeout(Duration::from_secs(5), tcp.read_exact(&mut buf))
        .await
        .expect("timed out waiting for the echo on the upgraded connection")
        .expect("reading the echo on the upgraded connection");
    buf
}
