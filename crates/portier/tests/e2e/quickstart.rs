//! The shipped quickstart works as its README says.

use std::path::Path;

use crate::fixture::QUICKSTART;
use crate::harness::{eventually, within, Portier};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_serves_static_responses_and_admin() {
    within(20, "quickstart", async {
        let portier = Portier::start(Path::new(QUICKSTART), &[]).await;

        let hello = portier.get("localhost", "/").await;
        assert_eq!(hello.status, 200, "GET /: {}", hello.text());
        assert!(
            hello.text().contains("Hello from portier!"),
            "GET / body: {:?}",
            hello.text()
        );

        let status = portier.get("localhost:8080", "/api/status").await;
        assert_eq!(status.status, 200, "GET /api/status: {}", status.text());
        assert_eq!(
            status.header("content-type"),
            Some("application/json"),
            "GET /api/status"
        );
        assert_eq!(status.header("cache-control"), Some("no-store"), "GET /api/status");
        assert_eq!(status.json(), serde_json::json!({"status": "ok"}), "GET /api/status");

        for path in ["/healthz", "/readyz"] {
            let r = portier.admin_get(path).await;
            assert_eq!(r.status, 200, "admin {path}: {}", r.text());
        }

        // The request counter is updated when the response is finished; poll briefly for it.
        let metrics = eventually(
            std::time::Duration::from_secs(3),
            "portier_http_requests_total for default/quickstart on /metrics",
            || async {
                let m = portier.admin_get("/metrics").await.text();
                let counted = m.lines().any(|l| {
                    l.starts_with("portier_http_requests_total{")
                        && l.contains("ingress=\"default/quickstart\"")
                        && l.contains("code=\"200\"")
                });
                counted.then_some(m)
            },
        )
        .await;
        for family in [
            "portier_http_request_duration_seconds",
            "portier_config_reloads_total",
            "portier_config_last_reload_successful",
            "portier_config_generation",
        ] {
            assert!(metrics.contains(family), "/metrics lacks {family}:\n{metrics}");
        }
        assert!(
            metrics.lines().any(|l| l == "portier_config_generation 1"),
            "/metrics should report generation 1:\n{metrics}"
        );
    })
    .await;
}
