//! `--worker-threads`: one thread running everything, or worker threads sharing the connections.

use std::path::Path;
use std::time::Duration;

use http::Method;

use crate::client::{self, tls_config, H1Conn, Trust};
use crate::fixture::QUICKSTART;
use crate::harness::{eventually, within, Portier};

/// The names of the process's threads that serve connections.
fn worker_threads(pid: u32) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .map(|n| n.trim().to_owned())
                .filter(|n| n.starts_with("portier-w"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_thread_or_several_serve_the_same_and_count_connections_per_worker() {
    within(30, "worker threads", async {
        for workers in [1usize, 3] {
            let n = workers.to_string();
            let portier = Portier::start(Path::new(QUICKSTART), &["--worker-threads", &n]).await;
            let expected: Vec<String> = if workers == 1 {
                Vec::new()
            } else {
                (0..workers).map(|i| format!("portier-w{i}")).collect()
            };
            assert_eq!(worker_threads(portier.pid()), expected, "--worker-threads {n}");

            // Six keep-alive connections stay open, each asked twice; one over TLS with HTTP/2.
            let mut conns = Vec::new();
            for _ in 0..6 {
                conns.push(H1Conn::connect(portier.http).await);
            }
            for _ in 0..2 {
                for conn in &mut conns {
                    let r = conn.send(client::req(Method::GET, "localhost", "/")).await;
                    assert_eq!(r.status, 200, "--worker-threads {n}: {}", r.text());
                }
            }
            let cfg = tls_config(Trust::DangerAcceptAny, &[b"h2"], rustls::ALL_VERSIONS);
            let tls = client::tls_connect(portier.https, "localhost", cfg)
                .await
                .expect("TLS handshake");
            let r = client::https_get(tls, "localhost", "/api/status").await;
            assert_eq!(r.status, 200, "--worker-threads {n} over TLS: {}", r.text());

            // With workers, each accepts on a socket of its own: every one has its gauge, and
            // together they count the six open connections.
            let counts = eventually(Duration::from_secs(3), "the worker gauges", || async {
                let m = portier.admin_get("/metrics").await.text();
                let counts: Vec<(String, i64)> = m
                    .lines()
                    .filter_map(|l| l.strip_prefix("portier_worker_connections{worker=\""))
                    .filter_map(|l| {
                        let (worker, value) = l.split_once("\"} ")?;
                        Some((worker.to_owned(), value.parse().ok()?))
                    })
                    .collect();
                (counts.iter().map(|(_, c)| c).sum::<i64>() == if workers > 1 { 6 } else { 0 }).then_some(counts)
            })
            .await;
            let mut named: Vec<String> = counts.into_iter().map(|(w, _)| w).collect();
            named.sort();
            let expected: Vec<String> = (0..workers).filter(|_| workers > 1).map(|i| i.to_string()).collect();
            assert_eq!(named, expected, "--worker-threads {n}");
        }
    })
    .await;
}
