//! Backends: Service ports by name, round robin, readiness, and the gateway's own answers when a
//! backend cannot be used.

use std::time::{Duration, Instant};

use crate::fixture::{self, Fixture};
use crate::harness::{within, Portier};
use crate::upstream::{closed_port, Upstream};

const HOST: &str = "backends.e2e.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_over_ready_endpoints_by_port_name() {
    within(20, "round robin", async {
        let a = Upstream::echo("a").await;
        let b = Upstream::echo("b").await;
        let not_ready = Upstream::echo("not-ready").await;
        let f = Fixture::new();
        // Port named `web`, two ready slices and one endpoint that is not ready.
        f.write(
            "svc.yaml",
            &format!(
                "{}---\n{}",
                fixture::service("pool", &[&a, &b]),
                fixture::endpoint_slice("pool-not-ready", "pool", not_ready.addr.port(), false)
            ),
        );
        let ingress = fixture::ingress_raw(
            "pool",
            Some(HOST),
            &[("/", "Prefix", "{service: {name: pool, port: {name: web}}}".to_owned())],
        );
        f.write("ingress.yaml", &ingress);
        let portier = Portier::start(f.path(), &[]).await;

        let routes = portier.routes().await;
        let mut endpoints: Vec<String> = routes["routes"][0]["endpoints"]
            .as_array()
            .unwrap_or_else(|| panic!("no endpoints in {routes}"))
            .iter()
            .map(|e| e.as_str().unwrap_or_default().to_owned())
            .collect();
        endpoints.sort();
        let mut want = vec![a.addr.to_string(), b.addr.to_string()];
        want.sort();
        assert_eq!(endpoints, want, "ready endpoints in /api/v1/routes");

        let mut names = Vec::new();
        for i in 0..8 {
            let r = portier.get(HOST, "/rr").await;
            assert_eq!(r.status, 200, "request {i}: {}", r.text());
            names.push(r.json()["name"].as_str().unwrap_or_default().to_owned());
        }
        for pair in names.windows(2) {
            assert_ne!(
                pair[0], pair[1],
                "round robin should alternate between a and b: {names:?}"
            );
        }
        assert_eq!((a.hits(), b.hits()), (4, 4), "requests per endpoint: {names:?}");
        assert_eq!(not_ready.hits(), 0, "an endpoint with ready: false got traffic");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_backends_get_gateway_answers() {
    within(20, "unusable backends", async {
        let legacy = Upstream::echo("legacy").await;
        let f = Fixture::new();
        let closed = closed_port();
        f.write(
            "svc.yaml",
            &[
                fixture::service_only("empty"),
                fixture::service_only("closed"),
                fixture::endpoint_slice("closed-0", "closed", closed, true),
                // A Service with only a legacy Endpoints object, no EndpointSlice.
                "apiVersion: v1\nkind: Service\nmetadata: {name: legacy}\nspec:\n  ports: [{port: 80, targetPort: 3000}]\n"
                    .to_owned(),
                format!(
                    "apiVersion: v1\nkind: Endpoints\nmetadata: {{name: legacy}}\nsubsets:\n\
                     - addresses: [{{ip: 127.0.0.1}}]\n  ports: [{{port: {}}}]\n",
                    legacy.addr.port()
                ),
            ]
            .join("---\n"),
        );
        f.write(
            "ingress.yaml",
            &fixture::ingress(
                "backends",
                Some(HOST),
                &[
                    ("/missing", "Prefix", "nope"),
                    ("/empty", "Prefix", "empty"),
                    ("/closed", "Prefix", "closed"),
                    ("/legacy", "Prefix", "legacy"),
                ],
            ),
        );
        let portier = Portier::start(f.path(), &[]).await;
        // (path, status, x-portier-error; None = answered by the upstream)
        let cases = [
            ("/missing", 503, Some("backend-unavailable")),
            ("/empty", 503, Some("no-endpoints")),
            ("/closed", 502, Some("upstream-connect")),
            ("/legacy", 200, None),
        ];
        for (path, status, error) in cases {
            let started = Instant::now();
            let r = portier.get(HOST, path).await;
            let took = started.elapsed();
            assert_eq!(r.status, status, "{path}: {}", r.text());
            assert_eq!(r.header("x-portier-error"), error, "{path}: x-portier-error");
            assert!(took < Duration::from_secs(2), "{path} took {took:?}; gateway errors must be quick");
            if error.is_none() {
                assert_eq!(r.json()["name"], "legacy", "{path}");
            }
        }
        let routes = portier.routes().await;
        let missing = routes["routes"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["path"] == "/missing"))
            .unwrap_or_else(|| panic!("no /missing route in {routes}"));
        assert_eq!(missing["action"], "unavailable", "{missing}");
        assert!(
            missing["reason"].as_str().is_some_and(|r| r.contains("nope")),
            "reason should name the missing Service: {missing}"
        );
    })
    .await;
}
