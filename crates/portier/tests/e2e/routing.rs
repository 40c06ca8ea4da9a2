//! Route selection seen through the wire: which backend answers which Host and path. Every
//! backend is a StaticResponse whose body names it, so the answer says which route matched.

use crate::fixture::{self, Fixture};
use crate::harness::{within, Portier};

/// StaticResponses named after what they stand for; each answers its own name.
const BACKENDS: [&str; 7] = [
    "exact",
    "wildcard",
    "foo",
    "exact-foo-bar",
    "prefix-foo-bar",
    "root",
    "catch-all",
];

fn routing_fixture() -> Fixture {
    let f = Fixture::new();
    let statics: Vec<String> = BACKENDS.iter().map(|b| fixture::static_response(b, 200, b)).collect();
    f.write("static.yaml", &statics.join("---\n"));
    f.write(
        "hosts.yaml",
        &[
            fixture::ingress_static("exact", Some("exact.wild.e2e.test"), &[("/", "Prefix", "exact")]),
            fixture::ingress_static("wildcard", Some("*.wild.e2e.test"), &[("/", "Prefix", "wildcard")]),
            fixture::ingress_static(
                "paths",
                Some("paths.e2e.test"),
                &[
                    ("/", "Prefix", "root"),
                    ("/foo", "Prefix", "foo"),
                    ("/foo/bar", "Exact", "exact-foo-bar"),
                    ("/foo/bar/", "Prefix", "prefix-foo-bar"),
                ],
            ),
        ]
        .join("---\n"),
    );
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_and_path_precedence() {
    within(20, "routing table", async {
        let f = routing_fixture();
        let portier = Portier::start(f.path(), &[]).await;
        let port = portier.http.port();
        let exact_with_port = format!("exact.wild.e2e.test:{port}");
        // (Host header, path, the backend that must answer; None = 404 no-route)
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("exact.wild.e2e.test", "/", Some("exact")),
            ("a.wild.e2e.test", "/x", Some("wildcard")),
            // A wildcard covers exactly one label.
            ("a.b.wild.e2e.test", "/", None),
            ("wild.e2e.test", "/", None),
            // Host matching ignores case and the port.
            ("EXACT.Wild.E2E.test", "/", Some("exact")),
            (&exact_with_port, "/", Some("exact")),
            ("A.WILD.e2e.test:80", "/", Some("wildcard")),
            // Prefix matches whole path elements.
            ("paths.e2e.test", "/foo", Some("foo")),
            ("paths.e2e.test", "/foo/", Some("foo")),
            ("paths.e2e.test", "/foo/baz", Some("foo")),
            ("paths.e2e.test", "/foobar", Some("root")),
            ("paths.e2e.test", "/FOO", Some("root")),
            // Exact beats Prefix at the same length; the query is not part of the path.
            ("paths.e2e.test", "/foo/bar", Some("exact-foo-bar")),
            ("paths.e2e.test", "/foo/bar?x=1", Some("exact-foo-bar")),
            ("paths.e2e.test", "/foo/bar/", Some("prefix-foo-bar")),
            ("paths.e2e.test", "/foo/bar/baz", Some("prefix-foo-bar")),
            ("paths.e2e.test", "/foo/barn", Some("foo")),
            ("unknown.e2e.test", "/", None),
        ];
        for (host, path, want) in cases {
            let r = portier.get(host, path).await;
            match want {
                Some(backend) => {
                    assert_eq!(r.status, 200, "{host}{path}: {}", r.text());
                    assert_eq!(r.text(), *backend, "{host}{path}");
                }
                None => {
                    assert_eq!(r.status, 404, "{host}{path}: {}", r.text());
                    assert_eq!(r.header("x-portier-error"), Some("no-route"), "{host}{path}");
                }
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_backends_catch_what_rules_do_not() {
    within(20, "default backends", async {
        let f = routing_fixture();
        let backend = fixture::static_backend("catch-all");
        f.write(
            "default.yaml",
            &format!(
                "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: catch-all}}\n\
                 spec: {{defaultBackend: {backend}}}\n"
            ),
        );
        f.write(
            "own-default.yaml",
            &format!(
                "{}---\n{}  defaultBackend: {}\n",
                fixture::static_response("own", 200, "own-default"),
                fixture::ingress_static("own", Some("own.e2e.test"), &[("/only", "Exact", "exact")]),
                fixture::static_backend("own")
            ),
        );
        let portier = Portier::start(f.path(), &[]).await;
        let cases = [
            ("unknown.e2e.test", "/", "catch-all"),
            ("", "/anything", "catch-all"),
            ("exact.wild.e2e.test", "/", "exact"),
            ("own.e2e.test", "/only", "exact"),
            ("own.e2e.test", "/other", "own-default"),
        ];
        for (host, path, want) in cases {
            let r = portier.get(host, path).await;
            assert_eq!(r.status, 200, "{host:?}{path}: {}", r.text());
            assert_eq!(r.text(), want, "{host:?}{path}");
        }
    })
    .await;
}
