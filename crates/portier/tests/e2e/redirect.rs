//! HTTP → HTTPS redirects for hosts in `spec.tls`, and the annotation that turns them off.

use http::Method;

use crate::client::{self, tls_connect, tls_default};
use crate::fixture::{self, Fixture, Leaf};
use crate::harness::{within, Portier};

fn redirect_fixture() -> Fixture {
    let leaf = Leaf::new(&["secure.e2e.test", "plain.e2e.test"]);
    let f = Fixture::new();
    f.write(
        "secret.yaml",
        &fixture::tls_secret("both-tls", &leaf.cert_pem, &leaf.key_pem),
    );
    let plain = fixture::ingress_static("plain", Some("plain.e2e.test"), &[("/", "Prefix", "plain")]);
    let plain = fixture::annotate(&plain, "nginx.ingress.kubernetes.io/ssl-redirect", "false");
    f.write(
        "ingress.yaml",
        &[
            fixture::static_response("secure", 200, "secure"),
            fixture::static_response("plain", 200, "plain"),
            fixture::with_tls(
                &fixture::ingress_static("secure", Some("secure.e2e.test"), &[("/", "Prefix", "secure")]),
                &["secure.e2e.test"],
                "both-tls",
            ),
            fixture::with_tls(&plain, &["plain.e2e.test"], "both-tls"),
        ]
        .join("---\n"),
    );
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_hosts_redirect_to_the_https_listener() {
    within(20, "redirects", async {
        let f = redirect_fixture();
        let portier = Portier::start(f.path(), &[]).await;
        let https = portier.https.port();
        let host_with_port = format!("secure.e2e.test:{}", portier.http.port());
        // (method, Host, target, Location)
        let cases = [
            (
                Method::GET,
                "secure.e2e.test",
                "/",
                format!("https://secure.e2e.test:{https}/"),
            ),
            (
                Method::GET,
                "secure.e2e.test",
                "/a/b?x=1&y=%20z",
                format!("https://secure.e2e.test:{https}/a/b?x=1&y=%20z"),
            ),
            (
                Method::POST,
                "secure.e2e.test",
                "/form",
                format!("https://secure.e2e.test:{https}/form"),
            ),
            (
                Method::GET,
                host_with_port.as_str(),
                "/p?q",
                format!("https://secure.e2e.test:{https}/p?q"),
            ),
        ];
        for (method, host, target, location) in cases {
            let r = client::send_h1(portier.http, client::req(method.clone(), host, target)).await;
            assert_eq!(r.status, 308, "{method} {host}{target}: {}", r.text());
            assert_eq!(r.header("location"), Some(location.as_str()), "{method} {host}{target}");
        }

        let r = portier.get("plain.e2e.test", "/x").await;
        assert_eq!(
            (r.status.as_u16(), r.text()),
            (200, "plain".to_owned()),
            "ssl-redirect: \"false\" serves HTTP"
        );

        // The redirect target itself answers.
        let tls = tls_connect(portier.https, "secure.e2e.test", tls_default())
            .await
            .expect("TLS handshake");
        let r = client::https_get(tls, "secure.e2e.test", "/a/b?x=1").await;
        assert_eq!((r.status.as_u16(), r.text()), (200, "secure".to_owned()), "over HTTPS");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_port_flag_overrides_the_listener_port() {
    within(20, "--https-redirect-port", async {
        let f = redirect_fixture();
        for (port, location) in [
            ("443", "https://secure.e2e.test/a?b=c"),
            ("8443", "https://secure.e2e.test:8443/a?b=c"),
        ] {
            let portier = Portier::start(f.path(), &["--https-redirect-port", port]).await;
            let r = portier.get("secure.e2e.test", "/a?b=c").await;
            assert_eq!(r.status, 308, "--https-redirect-port {port}: {}", r.text());
            assert_eq!(r.header("location"), Some(location), "--https-redirect-port {port}");
        }
    })
    .await;
}
