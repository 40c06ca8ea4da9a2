//! SIGTERM: stop accepting, let in-flight requests finish within the drain timeout, exit 0.

use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use crate::client;
use crate::fixture::{self, Fixture};
use crate::harness::{eventually, within, Portier};
use crate::upstream::Upstream;

async fn slow_setup(drain_timeout: &str) -> (Fixture, Upstream, Portier) {
    let up = Upstream::echo("slow").await;
    let f = Fixture::new();
    f.write("svc.yaml", &fixture::service("slow", &[&up]));
    f.write(
        "ingress.yaml",
        &fixture::ingress("slow", Some("slow.e2e.test"), &[("/", "Prefix", "slow")]),
    );
    let portier = Portier::start(f.path(), &["--drain-timeout", drain_timeout]).await;
    (f, up, portier)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_exits_zero() {
    within(20, "graceful shutdown", async {
        let (_f, up, mut portier) = slow_setup("5").await;
        let http = portier.http;
        let slow = tokio::spawn(async move { client::get(http, "slow.e2e.test", "/?sleep_ms=1500").await });
        eventually(
            Duration::from_secs(5),
            "the slow request to reach the upstream",
            || async { (up.hits() == 1).then_some(()) },
        )
        .await;

        let signalled = Instant::now();
        portier.terminate();
        eventually(
            Duration::from_secs(1),
            "connections to the HTTP listener to be refused after SIGTERM",
            || async {
                match TcpStream::connect(http).await {
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(()),
                    _ => None,
                }
            },
        )
        .await;

        let r = slow.await.expect("slow request task");
        assert_eq!(r.status, 200, "in-flight request during shutdown: {}", r.text());
        let status = portier.wait_exit(Duration::from_secs(5)).await;
        assert!(status.success(), "exit status after SIGTERM: {status}");
        assert!(
            signalled.elapsed() < Duration::from_secs(4),
            "shutdown took {:?}; it should end soon after the last request",
            signalled.elapsed()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_timeout_bounds_shutdown() {
    within(20, "drain timeout", async {
        let (_f, up, mut portier) = slow_setup("1").await;
        let http = portier.http;
        let slow = tokio::spawn(async move {
            let tcp = TcpStream::connect(http).await.expect("connect");
            let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .expect("handshake");
            tokio::spawn(conn);
            sender
                .send_request(client::req(http::Method::GET, "slow.e2e.test", "/?sleep_ms=10000"))
                .await
                .map(|r| r.status())
        });
        eventually(
            Duration::from_secs(5),
            "the slow request to reach the upstream",
            || async { (up.hits() == 1).then_some(()) },
        )
        .await;
        let signalled = Instant::now();
        portier.terminate();
        let status = portier.wait_exit(Duration::from_secs(4)).await;
        let took = signalled.elapsed();
        assert!(status.success(), "exit status after SIGTERM: {status}");
        assert!(
            took >= Duration::from_millis(900),
            "exited after {took:?}, before the 1 s drain timeout"
        );
        let outcome = tokio::time::timeout(Duration::from_secs(2), slow)
            .await
            .expect("the cut-off request must end when the process exits")
            .expect("slow request task");
        assert!(
            outcome.is_err() || outcome.as_ref().is_ok_and(|s| !s.is_success()),
            "request past the drain timeout: {outcome:?}"
        );
    })
    .await;
}
