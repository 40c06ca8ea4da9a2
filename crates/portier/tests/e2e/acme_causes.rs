//! Every failure cause a person can act on, explained by `portier describe certificate` against
//! the real servers of `scripts/acme-env-up` (pebble, challtestsrv, bind9). Port 80 not reachable
//! is `acme::a_failed_http01_validation_is_explained_by_describe`; the per-account rate limit is
//! tested at the engine level (`crates/acme/tests/pebble.rs`), since pebble never answers
//! `rateLimited`.

use std::time::{Duration, Instant};

use crate::acme::{acme_ingress, cluster_issuer, env, unique_host};
use crate::fixture::{self, Fixture};
use crate::harness::{eventually, within, Portier, BIN};

/// Runs `portier describe certificate NAME` until it shows a likely cause.
async fn describe_until_explained(portier: &Portier, name: &str) -> String {
    let admin = portier.admin.to_string();
    let started = Instant::now();
    loop {
        let out = std::process::Command::new(BIN)
            .args(["describe", "certificate", name, "--admin", admin.as_str()])
            .output()
            .expect("running portier describe");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if stdout.contains("likely cause") {
            eprintln!("$ portier describe certificate {name}\n{stdout}");
            return stdout;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no failed attempt with a likely cause after 60 s:\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn dns_elsewhere_wrong_solver_and_refused_tsig_are_explained_by_describe() {
    let Some(env) = env() else { return };
    within(120, "failing ACME orders, each explained", async {
        let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} not set"));
        // DNS: a name under mock.test (challtestsrv) whose lookups fail with SERVFAIL.
        let dns_host = unique_host("e2e-servfail", "mock.test");
        let body = format!(r#"{{"host":"{dns_host}."}}"#);
        let ok = std::process::Command::new("curl")
            .args(["-sf", "-d", &body, &format!("{}/set-servfail", env.challtestsrv)])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "challtestsrv /set-servfail for {dns_host}");
        // Wrong solver: the only solver is for another zone, and its class is not portier's.
        let zoned_host = unique_host("e2e-nosolver", "portier.test");
        // TSIG: the right key name and algorithm with a wrong secret; bind9 answers NOTAUTH.
        let tsig_host = unique_host("e2e-tsig", "portier.test");
        let ca_bundle = serde_json::to_string(&env.tls_ca_pem).expect("JSON string");
        let issuers = format!(
            "apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata: {{name: pebble-zoned}}
spec:
  acme:
    server: {dir}
    privateKeySecretRef: {{name: pebble-causes-account-key}}
    caBundle: {ca_bundle}
    solvers:
    - selector: {{dnsZones: [elsewhere.test]}}
      http01: {{ingress: {{ingressClassName: nginx}}}}
---
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata: {{name: pebble-badtsig}}
spec:
  acme:
    server: {dir}
    privateKeySecretRef: {{name: pebble-causes-account-key}}
    caBundle: {ca_bundle}
    solvers:
    - dns01:
        rfc2136:
          nameserver: {ns}
          tsigKeyName: {key}
          tsigAlgorithm: HMACSHA256
          tsigSecretSecretRef: {{name: wrong-tsig, key: secret}}
---
apiVersion: v1
kind: Secret
metadata: {{name: wrong-tsig, namespace: cert-manager}}
stringData: {{secret: {wrong}}}
",
            dir = env.directory,
            ns = var("PORTIER_ACME_DNS_SERVER"),
            key = var("PORTIER_ACME_TSIG_KEY_NAME"),
            wrong = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        );
        let with_issuer = |yaml: String, issuer: &str| yaml.replace("cluster-issuer: \"pebble\"", &format!("cluster-issuer: \"{issuer}\""));
        let f = Fixture::new();
        f.write(
            "acme.yaml",
            &[
                cluster_issuer(&env),
                issuers,
                fixture::static_response("ok", 200, "issued"),
                acme_ingress("dns", &dns_host, "dns-tls", None),
                with_issuer(acme_ingress("zoned", &zoned_host, "zoned-tls", None), "pebble-zoned"),
                with_issuer(acme_ingress("tsig", &tsig_host, "tsig-tls", None), "pebble-badtsig"),
            ]
            .join("---\n"),
        );
        let state = tempfile::Builder::new()
            .prefix("portier-e2e-state-")
            .tempdir()
            .expect("state dir");
        let state_path = state.path().to_str().expect("a UTF-8 temp path");
        let portier = Portier::start(f.path(), &["--state-dir", state_path]).await;

        // (certificate, what describe must say, the failure counter's cause)
        let cases = [
            ("dns-tls", "DNS for the name does not resolve or points elsewhere", "dnsPointsElsewhere"),
            ("zoned-tls", "no solver of the issuer fits this name", "wrongSolver"),
            ("tsig-tls", "the DNS server refused the TSIG-signed update", "tsigRefused"),
        ];
        for (name, words, _) in cases {
            let out = describe_until_explained(&portier, name).await;
            assert!(out.contains("Failed"), "{out}");
            assert!(out.contains(words), "describe certificate {name} says {words:?}:\n{out}");
        }
        // The CA's own words are kept beside the explanation.
        let dns = describe_until_explained(&portier, "dns-tls").await;
        assert!(dns.contains("CA said:") && dns.contains("could not resolve"), "{dns}");
        // Nothing was ordered for a name no solver fits: the attempt has no order.
        let zoned = describe_until_explained(&portier, "zoned-tls").await;
        assert!(!zoned.contains("    Order "), "{zoned}");
        // The class that is not portier's is a diagnostic of the configuration.
        let diagnostics = portier.diagnostics().await.to_string();
        assert!(
            diagnostics.contains("IngressClass nginx is not one of portier's"),
            "{diagnostics}"
        );

        let metrics = eventually(Duration::from_secs(10), "the failure counters", || async {
            let text = portier.admin_get("/metrics").await.text();
            cases
                .iter()
                .all(|(_, _, cause)| text.contains(&format!("cause=\"{cause}\"}} 1")))
                .then_some(text)
        })
        .await;
        for (issuer, cause) in [
            ("pebble", "dnsPointsElsewhere"),
            ("pebble-zoned", "wrongSolver"),
            ("pebble-badtsig", "tsigRefused"),
        ] {
            let want = format!(
                r#"portier_acme_certificate_failures_total{{issuer_kind="ClusterIssuer",issuer_name="{issuer}",cause="{cause}"}} 1"#
            );
            assert!(metrics.contains(&want), "{want}:\n{metrics}");
            let failed = format!(
                r#"portier_acme_certificate_issuances_total{{issuer_kind="ClusterIssuer",issuer_name="{issuer}",reason="issue",result="failure"}} 1"#
            );
            assert!(metrics.contains(&failed), "{failed}:\n{metrics}");
        }
    })
    .await;
}
