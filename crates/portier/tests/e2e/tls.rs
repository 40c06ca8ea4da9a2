//! TLS on the HTTPS listener: certificate selection by SNI, the fallback certificate, ALPN and
//! protocol versions, a broken Secret that must not take anything else down, and failed
//! handshakes counted by reason.

use std::time::Duration;

use http::{Method, Version};
use rustls::ProtocolVersion;

use crate::client::{self, peer_leaf, tls_config, tls_connect, tls_default, Trust};
use crate::fixture::{self, Fixture, Leaf};
use crate::harness::{eventually, within, Portier};

/// ALPN protocols a client offers, in preference order.
type Alpn = &'static [&'static [u8]];
/// TLS versions a client offers.
type Versions = &'static [&'static rustls::SupportedProtocolVersion];

static TLS13_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
static TLS12_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS12];

struct Certs {
    app: Leaf,
    wild: Leaf,
}

/// `app.e2e.test` (Secret with base64 `data`) and `*.wild.e2e.test` (Secret with `stringData`),
/// each answered by a StaticResponse naming it.
fn tls_fixture() -> (Fixture, Certs) {
    let certs = Certs {
        app: Leaf::new(&["app.e2e.test"]),
        wild: Leaf::new(&["*.wild.e2e.test"]),
    };
    let f = Fixture::new();
    f.write(
        "secrets.yaml",
        &[
            fixture::tls_secret("app-tls", &certs.app.cert_pem, &certs.app.key_pem),
            fixture::tls_secret_string_data("wild-tls", &certs.wild.cert_pem, &certs.wild.key_pem),
        ]
        .join("---\n"),
    );
    f.write(
        "ingress.yaml",
        &[
            fixture::static_response("app", 200, "app"),
            fixture::static_response("wild", 200, "wild"),
            fixture::with_tls(
                &fixture::ingress_static("app", Some("app.e2e.test"), &[("/", "Prefix", "app")]),
                &["app.e2e.test"],
                "app-tls",
            ),
            fixture::with_tls(
                &fixture::ingress_static("wild", Some("*.wild.e2e.test"), &[("/", "Prefix", "wild")]),
                &["*.wild.e2e.test"],
                "wild-tls",
            ),
        ]
        .join("---\n"),
    );
    (f, certs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_selects_the_secret_certificate() {
    within(20, "SNI", async {
        let (f, certs) = tls_fixture();
        let portier = Portier::start(f.path(), &[]).await;
        let cases = [
            ("app.e2e.test", &certs.app, "app"),
            ("x.wild.e2e.test", &certs.wild, "wild"),
        ];
        for (sni, leaf, body) in cases {
            let tls = tls_connect(portier.https, sni, tls_default())
                .await
                .unwrap_or_else(|e| panic!("{sni}: handshake verifying against the test CA: {e}"));
            assert!(
                peer_leaf(&tls) == leaf.der,
                "{sni}: served certificate is not the Secret's"
            );
            let r = client::https_get(tls, sni, "/").await;
            assert_eq!((r.status.as_u16(), r.text()), (200, body.to_owned()), "{sni}");
        }
        let certificates = portier.admin_json("/api/v1/certificates").await;
        let names: Vec<&str> = certificates
            .as_array()
            .unwrap_or_else(|| panic!("certificates view is not a list: {certificates}"))
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        for want in ["app.e2e.test", "*.wild.e2e.test"] {
            assert!(
                names.contains(&want),
                "/api/v1/certificates lacks {want}: {certificates}"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_sni_gets_the_fallback_certificate() {
    within(20, "fallback certificate", async {
        let (f, certs) = tls_fixture();
        let portier = Portier::start(f.path(), &[]).await;
        // An unknown name, a name two labels under the wildcard, and no SNI at all (IP address).
        for sni in ["unknown.e2e.test", "a.b.wild.e2e.test", "127.0.0.1"] {
            let verified = tls_connect(portier.https, sni, tls_default()).await;
            let err = verified.err().unwrap_or_else(|| {
                panic!("{sni}: handshake verified against the test CA; expected the fallback certificate")
            });
            assert!(
                err.to_string().contains("certificate"),
                "{sni}: expected a certificate error, got {err}"
            );
            let cfg = tls_config(Trust::DangerAcceptAny, &[b"http/1.1"], rustls::ALL_VERSIONS);
            let tls = tls_connect(portier.https, sni, cfg)
                .await
                .unwrap_or_else(|e| panic!("{sni}: handshake without verification: {e}"));
            let served = peer_leaf(&tls);
            assert!(
                served != certs.app.der && served != certs.wild.der,
                "{sni}: served a Secret's certificate"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_and_tls_versions() {
    within(20, "ALPN and versions", async {
        let (f, _certs) = tls_fixture();
        let portier = Portier::start(f.path(), &[]).await;
        let h2_h1: Alpn = &[b"h2", b"http/1.1"];
        let h1: Alpn = &[b"http/1.1"];
        let (tls13, tls12): (Versions, Versions) = (&TLS13_ONLY, &TLS12_ONLY);
        let (v13, v12) = (ProtocolVersion::TLSv1_3, ProtocolVersion::TLSv1_2);
        // (name, ALPN offered, versions offered, ALPN wanted, version wanted)
        let cases = [
            ("h2 first", h2_h1, rustls::ALL_VERSIONS, Some(&b"h2"[..]), v13),
            ("http/1.1 only", h1, rustls::ALL_VERSIONS, Some(b"http/1.1"), v13),
            ("no ALPN", &[], tls13, None, v13),
            ("TLS 1.2 h2", h2_h1, tls12, Some(b"h2"), v12),
            ("TLS 1.2 http/1.1", h1, tls12, Some(b"http/1.1"), v12),
        ];
        for (name, alpn, versions, want_alpn, want_version) in cases {
            let cfg = tls_config(Trust::TestCa, alpn, versions);
            let tls = tls_connect(portier.https, "app.e2e.test", cfg)
                .await
                .unwrap_or_else(|e| panic!("{name}: handshake: {e}"));
            let conn = tls.get_ref().1;
            assert_eq!(conn.alpn_protocol(), want_alpn, "{name}: negotiated ALPN");
            assert_eq!(conn.protocol_version(), Some(want_version), "{name}: TLS version");
            let resp = if want_alpn == Some(b"h2") {
                let mut sender = client::h2_handshake(tls).await;
                client::send_h2(&mut sender, client::req_h2("https", "app.e2e.test", "/")).await
            } else {
                client::send_h1_over(tls, client::req(Method::GET, "app.e2e.test", "/")).await
            };
            let want_http = if want_alpn == Some(b"h2") {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            };
            assert_eq!(resp.version, want_http, "{name}: HTTP version");
            assert_eq!((resp.status.as_u16(), resp.text()), (200, "app".to_owned()), "{name}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mismatched_secret_is_diagnosed_and_the_rest_keeps_serving() {
    within(20, "mismatched key", async {
        let (f, certs) = tls_fixture();
        let other = Leaf::new(&["bad.e2e.test"]);
        // The certificate of app.e2e.test with somebody else's key.
        f.write(
            "bad.yaml",
            &[
                fixture::tls_secret("bad-tls", &certs.app.cert_pem, &other.key_pem),
                fixture::with_tls(
                    &fixture::ingress_static("bad", Some("bad.e2e.test"), &[("/", "Prefix", "app")]),
                    &["bad.e2e.test"],
                    "bad-tls",
                ),
            ]
            .join("---\n"),
        );
        let portier = Portier::start(f.path(), &[]).await;

        let diags = portier.diagnostics().await;
        let found = diags["diagnostics"].as_array().is_some_and(|ds| {
            ds.iter()
                .any(|d| d["severity"] == "error" && d["message"].as_str().is_some_and(|m| m.contains("bad-tls")))
        });
        assert!(found, "no error about Secret bad-tls in /api/v1/diagnostics: {diags}");
        assert!(diags["errors"].as_u64().unwrap_or(0) >= 1, "{diags}");

        let tls = tls_connect(portier.https, "app.e2e.test", tls_default())
            .await
            .expect("app.e2e.test still verifies");
        let r = client::https_get(tls, "app.e2e.test", "/").await;
        assert_eq!(r.status, 200, "app.e2e.test keeps serving");

        let cfg = tls_config(Trust::DangerAcceptAny, &[b"http/1.1"], rustls::ALL_VERSIONS);
        let tls = tls_connect(portier.https, "bad.e2e.test", cfg)
            .await
            .expect("bad.e2e.test completes a handshake with the fallback certificate");
        assert!(
            peer_leaf(&tls) != certs.app.der,
            "bad.e2e.test must not be served the mismatched pair"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_handshakes_are_counted_by_reason() {
    within(20, "handshake failures", async {
        let (f, _certs) = tls_fixture();
        let portier = Portier::start(f.path(), &[]).await;
        // A client that does not trust the certificate it is shown (the fallback, for an unknown
        // name) ends the handshake with an alert.
        let rejected = tls_connect(portier.https, "unknown.e2e.test", tls_default()).await;
        assert!(
            rejected.is_err(),
            "the fallback certificate verified against the test CA"
        );
        // Plain HTTP on the HTTPS port is not TLS.
        client::raw(
            portier.https,
            b"GET / HTTP/1.1\r\nHost: app.e2e.test\r\nConnection: close\r\n\r\n",
        )
        .await;
        // A port probe: connected, then gone.
        drop(tokio::net::TcpStream::connect(portier.https).await.expect("connecting"));
        // And a handshake that succeeds counts nowhere.
        tls_connect(portier.https, "app.e2e.test", tls_default())
            .await
            .expect("app.e2e.test verifies");

        let want = [("client_alert", 1), ("protocol", 1), ("closed", 1)];
        eventually(Duration::from_secs(5), "the three failures on /metrics", || async {
            let text = portier.admin_get("/metrics").await.text();
            want.iter()
                .all(|(reason, n)| {
                    text.lines()
                        .any(|l| l == format!("portier_tls_handshake_failures_total{{reason=\"{reason}\"}} {n}"))
                })
                .then_some(())
        })
        .await;
        let text = portier.admin_get("/metrics").await.text();
        assert!(
            !text.contains("reason=\"timeout\""),
            "no handshake timed out, yet:\n{text}"
        );
    })
    .await;
}
