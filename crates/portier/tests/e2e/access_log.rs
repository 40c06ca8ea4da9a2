//! `--access-log PATH`: one JSON object per request, with a stable set of fields.

use std::time::Duration;

use serde_json::Value;

use crate::fixture::{self, Fixture};
use crate::harness::{eventually, within, Portier};
use crate::upstream::Upstream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_json_line_per_request() {
    within(20, "access log", async {
        let up = Upstream::echo("logged").await;
        let f = Fixture::new();
        f.write("svc.yaml", &fixture::service("logged", &[&up]));
        f.write(
            "ingress.yaml",
            &fixture::ingress("logged", Some("log.e2e.test"), &[("/", "Prefix", "logged")]),
        );
        let logs = tempfile::tempdir().expect("log directory");
        let path = logs.path().join("access.log");
        let path_arg = path.to_str().expect("UTF-8 temp path");
        let portier = Portier::start(f.path(), &["--access-log", path_arg]).await;

        let proxied = portier.get("log.e2e.test", "/a?b=c").await;
        assert_eq!(proxied.status, 200);
        let unrouted = portier.get("nowhere.e2e.test", "/x").await;
        assert_eq!(unrouted.status, 404);

        let lines: Vec<Value> = eventually(Duration::from_secs(5), "two lines in the access log", || async {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            (lines.len() >= 2).then(|| {
                lines
                    .iter()
                    .map(|l| {
                        serde_json::from_str(l).unwrap_or_else(|e| panic!("access log line is not JSON ({e}): {l}"))
                    })
                    .collect()
            })
        })
        .await;
        assert_eq!(lines.len(), 2, "one line per request: {lines:?}");

        let upstream = up.addr.to_string();
        // (record, method, host, path, status, upstream, bytes_sent)
        let cases = [
            (
                &lines[0],
                "log.e2e.test",
                "/a?b=c",
                200,
                Some(upstream.as_str()),
                proxied.body.len(),
            ),
            (&lines[1], "nowhere.e2e.test", "/x", 404, None, unrouted.body.len()),
        ];
        for (rec, host, path, status, upstream, bytes) in cases {
            for field in [
                "time",
                "client",
                "method",
                "host",
                "path",
                "status",
                "upstream",
                "duration_ms",
                "bytes_sent",
            ] {
                assert!(rec.get(field).is_some(), "field {field} missing: {rec}");
            }
            assert!(
                rec["time"]
                    .as_str()
                    .is_some_and(|t| t.ends_with('Z') && t.contains('T')),
                "time: {rec}"
            );
            assert!(
                rec["client"].as_str().is_some_and(|c| c.starts_with("127.0.0.1:")),
                "client: {rec}"
            );
            assert_eq!(rec["method"], "GET", "{rec}");
            assert_eq!(rec["host"], host, "{rec}");
            assert_eq!(rec["path"], path, "{rec}");
            assert_eq!(rec["status"], status, "{rec}");
            assert_eq!(rec["upstream"].as_str(), upstream, "{rec}");
            assert!(
                rec["duration_ms"].as_f64().is_some_and(|d| d >= 0.0),
                "duration_ms: {rec}"
            );
            assert_eq!(rec["bytes_sent"], bytes as u64, "bytes_sent: {rec}");
        }
    })
    .await;
}
