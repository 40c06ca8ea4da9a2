//! Automatic HTTPS against a real ACME CA: pebble from `scripts/acme-env-up`, validating HTTP-01
//! against portier's own HTTP listener. Skipped without the ACME env, except under `CI=true`.
//!
//! ```text
//! . "$(scripts/acme-env-up)"; cargo test -p portier --test e2e acme; scripts/acme-env-down
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

use crate::client::{https_get, peer_leaf, tls_connect};
use crate::fixture::{self, Fixture};
use crate::harness::{eventually, within, Portier, BIN};

struct Env {
    directory: String,
    tls_ca_pem: String,
    issuer_root: CertificateDer<'static>,
    http01_port: u16,
}

fn env() -> Option<Env> {
    let Ok(directory) = std::env::var("PORTIER_ACME_DIRECTORY_URL") else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("PORTIER_ACME_DIRECTORY_URL is not set under CI=true: run `. \"$(scripts/acme-env-up)\"` before the tests");
        }
        eprintln!(
            "SKIPPED: PORTIER_ACME_DIRECTORY_URL not set; run `. \"$(scripts/acme-env-up)\"` to test against pebble"
        );
        return None;
    };
    let var = |k: &str| {
        std::env::var(k).unwrap_or_else(|_| panic!("{k} not set: source the env file scripts/acme-env-up printed"))
    };
    let read = |k: &str| std::fs::read_to_string(var(k)).unwrap_or_else(|e| panic!("{k}: {e}"));
    Some(Env {
        directory,
        tls_ca_pem: read("PORTIER_ACME_TLS_CA"),
        issuer_root: CertificateDer::from_pem_slice(read("PORTIER_ACME_ISSUER_ROOT").as_bytes())
            .expect("PORTIER_ACME_ISSUER_ROOT holds a PEM certificate"),
        http01_port: var("PORTIER_ACME_HTTP01_PORT")
            .parse()
            .expect("PORTIER_ACME_HTTP01_PORT is a port"),
    })
}

/// A client that trusts only pebble's issuing root.
fn trusting(root: &CertificateDer<'static>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(root.clone()).expect("pebble's root is a valid trust anchor");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    // A resumed session shows the certificate of the first handshake: every connection must see
    // what the server serves now.
    cfg.resumption = rustls::client::Resumption::disabled();
    Arc::new(cfg)
}

fn issuer_and_ingress(env: &Env, host: &str) -> String {
    let issuer = format!(
        "apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata: {{name: pebble}}
spec:
  acme:
    server: {}
    email: e2e@portier.test
    privateKeySecretRef: {{name: pebble-account-key}}
    caBundle: {}
    solvers:
    - http01: {{ingress: {{ingressClassName: portier}}}}
",
        env.directory,
        serde_json::to_string(&env.tls_ca_pem).expect("a string encodes as JSON")
    );
    let ingress = fixture::with_tls(
        &fixture::annotate(
            &fixture::ingress_static("app", Some(host), &[("/", "Prefix", "ok")]),
            "cert-manager.io/cluster-issuer",
            "pebble",
        ),
        &[host],
        "app-tls",
    );
    [issuer, fixture::static_response("ok", 200, "issued"), ingress].join("---\n")
}

/// Polls the HTTPS listener until the certificate for `host` verifies against pebble's root.
async fn verified_leaf(
    portier: &Portier,
    host: &str,
    cfg: &Arc<ClientConfig>,
    timeout: Duration,
) -> CertificateDer<'static> {
    let started = Instant::now();
    loop {
        if let Ok(tls) = tls_connect(portier.https, host, cfg.clone()).await {
            let leaf = peer_leaf(&tls);
            let resp = https_get(tls, host, "/").await;
            assert_eq!(resp.status, 200, "GET https://{host}/");
            assert_eq!(resp.text(), "issued");
            return leaf;
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for a certificate for {host} that verifies against pebble's root; ACME status: {}",
            portier.admin_json("/api/v1/acme/certificates").await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn issues_over_http01_and_reuses_the_certificate_after_a_restart() {
    let Some(env) = env() else { return };
    within(180, "ACME issuance and restart", async {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let host = format!("e2e-{}-{nanos:x}.portier.test", std::process::id());
        let f = Fixture::new();
        // Start without the issuer and the Ingress, then write them: the measured time is the
        // user's, from the manifest written to a verified HTTPS answer.
        f.write("acme.yaml", &fixture::static_response("ok", 200, "issued"));
        let state = tempfile::Builder::new()
            .prefix("portier-e2e-state-")
            .tempdir()
            .expect("state dir");
        let state_path = state.path().to_str().expect("a UTF-8 temp path");
        let http = format!("127.0.0.1:{}", env.http01_port);
        let args = ["--http-listen", http.as_str(), "--state-dir", state_path];
        let cfg = trusting(&env.issuer_root);

        let first = Portier::start(f.path(), &args).await;
        first.wait_for_watcher().await;
        let written = Instant::now();
        f.write("acme.yaml", &issuer_and_ingress(&env, &host));
        let leaf = verified_leaf(&first, &host, &cfg, Duration::from_secs(60)).await;
        let secs = written.elapsed().as_secs_f64();
        eprintln!("ACME: Ingress written to verified HTTPS for {host} in {secs:.2} s");

        let certs = first.admin_json("/api/v1/acme/certificates").await;
        assert_eq!(certs[0]["secret"]["name"], "app-tls", "{certs}");
        let ready = certs[0]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
            .map(|c| c["status"].clone());
        assert_eq!(ready, Some(serde_json::json!("True")), "{certs}");
        let expiry = r#"portier_acme_certificate_expiry_timestamp_seconds{secret="default/app-tls"}"#;
        let metrics = eventually(Duration::from_secs(10), "the certificate expiry metric", || async {
            let text = first.admin_get("/metrics").await.text();
            text.contains(expiry).then_some(text)
        })
        .await;
        assert!(
            metrics.contains(r#"portier_acme_certificate_issuances_total{result="success"} 1"#),
            "{metrics}"
        );
        let admin = first.admin.to_string();
        for (args, want) in [
            (vec!["get", "certificates"], "app-tls"),
            (vec!["get", "orders"], "valid"),
            (vec!["get", "challenges"], "HTTP-01"),
            (vec!["describe", "certificate", "default/app-tls"], "Ready"),
        ] {
            let out = std::process::Command::new(BIN)
                .args(&args)
                .args(["--admin", admin.as_str()])
                .output()
                .expect("running portier get/describe");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "portier {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(stdout.contains(want), "portier {args:?} shows {want:?}:\n{stdout}");
            eprintln!("$ portier {}\n{stdout}", args.join(" "));
        }
        let secret_file = state.path().join("secrets/default/app-tls.yaml");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&secret_file)
                .expect("the issued Secret is stored")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{}", secret_file.display());
        }
        drop(first);

        let second = Portier::start(f.path(), &args).await;
        second.wait_for_generation(1).await;
        let again = verified_leaf(&second, &host, &cfg, Duration::from_secs(10)).await;
        assert_eq!(again, leaf, "the restarted process serves the stored certificate");
        let leaf_before_renewal = leaf.clone();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let certs = second.admin_json("/api/v1/acme/certificates").await;
        assert_eq!(certs[0]["secret"]["name"], "app-tls", "{certs}");
        assert_eq!(
            certs[0]["history"],
            serde_json::json!([]),
            "nothing is ordered after a restart: {certs}"
        );
        assert_eq!(
            certs[0]["conditions"][0]["status"], "True",
            "served from --state-dir: {certs}"
        );

        // Renewal: a renewBefore just under the lifetime puts the renewal time one second after
        // notBefore, so the certificate is due now; the new one is swapped in on the next handshake.
        let lifetime =
            certs[0]["notAfter"].as_u64().expect("notAfter") - certs[0]["notBefore"].as_u64().expect("notBefore");
        second.wait_for_watcher().await;
        let renew_before = format!("{}s", lifetime - 1);
        f.write(
            "acme.yaml",
            &issuer_and_ingress(&env, &host).replace(
                "{cert-manager.io/cluster-issuer: \"pebble\"}",
                &format!(
                    "{{cert-manager.io/cluster-issuer: \"pebble\", cert-manager.io/renew-before: \"{renew_before}\"}}"
                ),
            ),
        );
        let renewed_at = Instant::now();
        let renewed = eventually(Duration::from_secs(60), "a renewed certificate", || async {
            let leaf = verified_leaf(&second, &host, &cfg, Duration::from_secs(10)).await;
            (leaf != leaf_before_renewal).then_some(leaf)
        })
        .await;
        eprintln!("ACME: renewed in {:.2} s", renewed_at.elapsed().as_secs_f64());
        assert_ne!(renewed, leaf);
    })
    .await;
}

#[tokio::test]
async fn a_failed_http01_validation_is_explained_by_describe() {
    let Some(env) = env() else { return };
    within(120, "a failing ACME order", async {
        // A name under mock.test (answered by challtestsrv) pointing where nothing listens, so
        // pebble cannot reach port 80 for it.
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let host = format!("e2e-fail-{}-{nanos:x}.mock.test", std::process::id());
        let challtestsrv = std::env::var("PORTIER_ACME_CHALLTESTSRV_URL").expect("PORTIER_ACME_CHALLTESTSRV_URL set");
        let body = format!(r#"{{"host":"{host}.","addresses":["127.0.0.77"]}}"#);
        let ok = std::process::Command::new("curl")
            .args(["-sf", "-d", &body, &format!("{challtestsrv}/add-a")])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "challtestsrv /add-a for {host}");

        let f = Fixture::new();
        f.write("acme.yaml", &issuer_and_ingress(&env, &host));
        let state = tempfile::Builder::new()
            .prefix("portier-e2e-state-")
            .tempdir()
            .expect("state dir");
        let state_path = state.path().to_str().expect("a UTF-8 temp path");
        let portier = Portier::start(f.path(), &["--state-dir", state_path]).await;

        let admin = portier.admin.to_string();
        let started = Instant::now();
        let out = loop {
            let out = std::process::Command::new(BIN)
                .args(["describe", "certificate", "app-tls", "--admin", admin.as_str()])
                .output()
                .expect("running portier describe");
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            if stdout.contains("likely cause") {
                break stdout;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "no failed attempt with a likely cause after 60 s:\n{stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        eprintln!("$ portier describe certificate app-tls\n{out}");
        assert!(out.contains("Failed"), "{out}");
        assert!(out.contains("port 80"), "the plain-words cause names port 80:\n{out}");
        // The host keeps the fallback certificate meanwhile: a handshake still completes.
        let fallback = tls_connect(
            portier.https,
            &host,
            crate::client::tls_config(
                crate::client::Trust::DangerAcceptAny,
                &[b"http/1.1"],
                rustls::ALL_VERSIONS,
            ),
        )
        .await;
        assert!(fallback.is_ok(), "the fallback certificate serves while issuance fails");
    })
    .await;
}

#[tokio::test]
async fn issues_a_wildcard_over_dns01_with_rfc2136() {
    let Some(env) = env() else { return };
    within(120, "DNS-01 issuance through bind9", async {
        let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} not set"));
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let zone = format!("w{}-{nanos:x}.portier.test", std::process::id());
        let wildcard = format!("*.{zone}");
        let issuer = format!(
            "apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata: {{name: pebble-dns}}
spec:
  acme:
    server: {}
    privateKeySecretRef: {{name: pebble-dns-account-key}}
    caBundle: {}
    solvers:
    - dns01:
        rfc2136:
          nameserver: {}
          tsigKeyName: {}
          tsigAlgorithm: HMACSHA256
          tsigSecretSecretRef: {{name: tsig, key: secret}}
---
apiVersion: v1
kind: Secret
metadata: {{name: tsig, namespace: cert-manager}}
stringData: {{secret: {}}}
",
            env.directory,
            serde_json::to_string(&env.tls_ca_pem).expect("JSON string"),
            var("PORTIER_ACME_DNS_SERVER"),
            var("PORTIER_ACME_TSIG_KEY_NAME"),
            serde_json::to_string(&var("PORTIER_ACME_TSIG_SECRET")).expect("JSON string"),
        );
        let ingress = fixture::with_tls(
            &fixture::annotate(
                &fixture::ingress_static("wild", Some(&wildcard), &[("/", "Prefix", "ok")]),
                "cert-manager.io/cluster-issuer",
                "pebble-dns",
            ),
            &[&wildcard],
            "wild-tls",
        );
        let f = Fixture::new();
        f.write(
            "acme.yaml",
            &[issuer, fixture::static_response("ok", 200, "issued"), ingress].join("---\n"),
        );
        let state = tempfile::Builder::new()
            .prefix("portier-e2e-state-")
            .tempdir()
            .expect("state dir");
        let state_path = state.path().to_str().expect("a UTF-8 temp path");
        let started = Instant::now();
        let portier = Portier::start(f.path(), &["--state-dir", state_path]).await;
        let host = format!("any.{zone}");
        verified_leaf(&portier, &host, &trusting(&env.issuer_root), Duration::from_secs(60)).await;
        eprintln!(
            "ACME DNS-01: start to verified HTTPS for {wildcard} in {:.2} s",
            started.elapsed().as_secs_f64()
        );
        let challenges = portier.admin_json("/api/v1/acme/challenges").await;
        assert_eq!(challenges[0]["type"], "DNS-01", "{challenges}");
        assert_eq!(challenges[0]["state"], "valid", "{challenges}");
    })
    .await;
}
