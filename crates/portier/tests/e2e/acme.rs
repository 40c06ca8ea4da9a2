//! Automatic HTTPS against a real ACME CA: pebble from `scripts/acme-env-up`, validating HTTP-01
//! against portier's own HTTP listener. Skipped without the ACME env, except under `CI=true`.
//!
//! ```text
//! . "$(scripts/acme-env-up)"; cargo test -p portier --test e2e acme; scripts/acme-env-down
//! ```
//!
//! `scripts/test.sh` runs these issuance tests a second time against pebble's strict settings
//! (`ACME_ENV_PRESET=strict`: bad nonces, validation sleeps, authorization reuse).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

use crate::client::{https_get, peer_leaf, tls_connect};
use crate::fixture::{self, Fixture};
use crate::harness::{eventually, within, Portier, BIN};

/// One ACME world from `scripts/acme-env-up`: pebble, challtestsrv and bind9.
pub(crate) struct Env {
    pub directory: String,
    pub tls_ca_pem: String,
    pub issuer_root: CertificateDer<'static>,
    pub http01_port: u16,
    pub challtestsrv: String,
}

/// The ACME world of the process environment (the sourced env file).
pub(crate) fn env() -> Option<Env> {
    let Ok(directory) = std::env::var("PORTIER_ACME_DIRECTORY_URL") else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("PORTIER_ACME_DIRECTORY_URL is not set under CI=true: run `. \"$(scripts/acme-env-up)\"` before the tests");
        }
        eprintln!(
            "SKIPPED: PORTIER_ACME_DIRECTORY_URL not set; run `. \"$(scripts/acme-env-up)\"` to test against pebble"
        );
        return None;
    };
    Some(Env::from_vars(&directory, |k| std::env::var(k).ok()))
}

// === impl Env ===

impl Env {
    fn from_vars(directory: &str, get: impl Fn(&str) -> Option<String>) -> Env {
        let var =
            |k: &str| get(k).unwrap_or_else(|| panic!("{k} not set: source the env file scripts/acme-env-up printed"));
        let read = |k: &str| std::fs::read_to_string(var(k)).unwrap_or_else(|e| panic!("{k}: {e}"));
        Env {
            directory: directory.to_owned(),
            tls_ca_pem: read("PORTIER_ACME_TLS_CA"),
            issuer_root: CertificateDer::from_pem_slice(read("PORTIER_ACME_ISSUER_ROOT").as_bytes())
                .expect("PORTIER_ACME_ISSUER_ROOT holds a PEM certificate"),
            http01_port: var("PORTIER_ACME_HTTP01_PORT")
                .parse()
                .expect("PORTIER_ACME_HTTP01_PORT is a port"),
            challtestsrv: var("PORTIER_ACME_CHALLTESTSRV_URL"),
        }
    }

    /// A second ACME world (another `ACME_ENV_PORT_BASE`), from the env file that
    /// `scripts/acme-env-up` printed, named by the variable `file_var`. `None` (the test skips)
    /// when the variable is not set, except under `CI=true`, where `scripts/test.sh` sets it.
    pub(crate) fn from_file_named_by(file_var: &str, how: &str) -> Option<Env> {
        let Ok(file) = std::env::var(file_var) else {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{file_var} is not set under CI=true: {how}");
            }
            eprintln!("SKIPPED: {file_var} not set; {how}");
            return None;
        };
        // The file is shell (`export K=V`, values quoted by printf %q): let bash read it.
        let out = std::process::Command::new("bash")
            .args(["-c", ". \"$0\" && env -0", file.as_str()])
            .env_clear()
            .output()
            .unwrap_or_else(|e| panic!("running bash to read {file}: {e}"));
        assert!(
            out.status.success(),
            "reading {file_var}={file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let vars: HashMap<String, String> = out
            .stdout
            .split(|b| *b == 0)
            .filter_map(|kv| {
                let kv = String::from_utf8_lossy(kv);
                let (k, v) = kv.split_once('=')?;
                Some((k.to_owned(), v.to_owned()))
            })
            .collect();
        let directory = vars
            .get("PORTIER_ACME_DIRECTORY_URL")
            .unwrap_or_else(|| panic!("{file} has no PORTIER_ACME_DIRECTORY_URL"));
        Some(Env::from_vars(directory, |k| vars.get(k).cloned()))
    }
}

/// A name no other test of this run orders.
pub(crate) fn unique_host(prefix: &str, zone: &str) -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}-{}-{n}-{nanos:x}.{zone}", std::process::id())
}

/// A client that trusts only pebble's issuing root.
pub(crate) fn trusting(root: &CertificateDer<'static>) -> Arc<ClientConfig> {
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

/// The ClusterIssuer `pebble` with an HTTP-01 solver.
pub(crate) fn cluster_issuer(env: &Env) -> String {
    format!(
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
    )
}

/// The ClusterIssuer `name` with an RFC 2136 DNS-01 solver (the bind9 of `scripts/acme-env-up`),
/// its account key in the Secret `account_key`, and the TSIG Secret the solver names.
pub(crate) fn dns01_cluster_issuer(env: &Env, name: &str, account_key: &str, email: Option<&str>) -> String {
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} not set"));
    let email = email.map(|e| format!("    email: {e}\n")).unwrap_or_default();
    format!(
        "apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata: {{name: {name}}}
spec:
  acme:
    server: {}
{email}    privateKeySecretRef: {{name: {account_key}}}
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
    )
}

/// An Ingress `name` for `host`, answered by the StaticResponse `ok`, whose certificate comes
/// from the ClusterIssuer `pebble` into the Secret `secret`; `renew_before` sets
/// `cert-manager.io/renew-before`.
pub(crate) fn acme_ingress(name: &str, host: &str, secret: &str, renew_before: Option<&str>) -> String {
    let annotated = fixture::annotate(
        &fixture::ingress_static(name, Some(host), &[("/", "Prefix", "ok")]),
        "cert-manager.io/cluster-issuer",
        "pebble",
    );
    let annotated = match renew_before {
        None => annotated,
        Some(rb) => annotated.replace(
            "{cert-manager.io/cluster-issuer: \"pebble\"}",
            &format!("{{cert-manager.io/cluster-issuer: \"pebble\", cert-manager.io/renew-before: \"{rb}\"}}"),
        ),
    };
    fixture::with_tls(&annotated, &[host], secret)
}

fn issuer_and_ingress(env: &Env, host: &str) -> String {
    [
        cluster_issuer(env),
        fixture::static_response("ok", 200, "issued"),
        acme_ingress("app", host, "app-tls", None),
    ]
    .join("---\n")
}

/// Polls the HTTPS listener until the certificate for `host` verifies against pebble's root.
pub(crate) async fn verified_leaf(
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
        for want in [
            r#"portier_acme_certificate_issuances_total{issuer_kind="ClusterIssuer",issuer_name="pebble",reason="issue",result="success"} 1"#,
            r#"portier_acme_challenge_duration_seconds_count{challenge_type="HTTP-01",result="valid"} 1"#,
            "portier_acme_order_duration_seconds_count 1",
        ] {
            assert!(metrics.contains(want), "{want} on /metrics:\n{metrics}");
        }
        assert!(
            !metrics.contains("portier_acme_certificate_failures_total{"),
            "no failure counted:\n{metrics}"
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
        // The certificate and the account key are Secret manifests, private keys mode 0600. A
        // ClusterIssuer's account key lives in cert-manager's cluster resource namespace.
        let secret_file = state.path().join("secrets/default/app-tls.yaml");
        let account_file = state.path().join("secrets/cert-manager/pebble-account-key.yaml");
        for file in [&secret_file, &account_file] {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(file)
                    .unwrap_or_else(|e| panic!("{} is stored: {e}", file.display()))
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600, "{}", file.display());
            }
        }
        let account: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&account_file).expect("account Secret")).expect("JSON");
        assert_eq!(account["kind"], "Secret", "{account}");
        assert_eq!(account["type"], "Opaque", "{account}");
        assert!(
            account["stringData"]["tls.key"]
                .as_str()
                .is_some_and(|k| k.contains("PRIVATE KEY")),
            "the account key is the Secret's tls.key"
        );
        assert!(
            !state.path().join("accounts").exists(),
            "no key outside the Secret manifests"
        );
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
            &[
                cluster_issuer(&env),
                fixture::static_response("ok", 200, "issued"),
                acme_ingress("app", &host, "app-tls", Some(&renew_before)),
            ]
            .join("---\n"),
        );
        let renewed_at = Instant::now();
        let renewed = eventually(Duration::from_secs(60), "a renewed certificate", || async {
            let leaf = verified_leaf(&second, &host, &cfg, Duration::from_secs(10)).await;
            (leaf != leaf_before_renewal).then_some(leaf)
        })
        .await;
        eprintln!("ACME: renewed in {:.2} s", renewed_at.elapsed().as_secs_f64());
        assert_ne!(renewed, leaf);
        let renewal = r#"portier_acme_certificate_issuances_total{issuer_kind="ClusterIssuer",issuer_name="pebble",reason="renew",result="success"} 1"#;
        eventually(Duration::from_secs(10), "the renewal counter", || async {
            second.admin_get("/metrics").await.text().contains(renewal).then_some(())
        })
        .await;
        let account_after: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&account_file).expect("account Secret")).expect("JSON");
        assert_eq!(
            account_after["stringData"]["tls.key"], account["stringData"]["tls.key"],
            "the restarted process reuses the account key"
        );
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
        let challtestsrv = &env.challtestsrv;
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
        let failure = r#"portier_acme_certificate_failures_total{issuer_kind="ClusterIssuer",issuer_name="pebble",cause="port80Unreachable"} 1"#;
        eventually(Duration::from_secs(10), "the failure counter", || async {
            portier.admin_get("/metrics").await.text().contains(failure).then_some(())
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn issues_a_wildcard_over_dns01_with_rfc2136() {
    let Some(env) = env() else { return };
    within(120, "DNS-01 issuance through bind9", async {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let zone = format!("w{}-{nanos:x}.portier.test", std::process::id());
        let wildcard = format!("*.{zone}");
        let issuer = dns01_cluster_issuer(&env, "pebble-dns", "pebble-dns-account-key", None);
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

/// Answers no challenge: the test engine below only loads accounts.
struct NoResponder;

impl portier_acme::Http01Responder for NoResponder {
    fn present<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<(), portier_acme::ResponderError>> {
        Box::pin(async { Ok(()) })
    }
    fn cleanup<'a>(
        &'a self,
        _: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<(), portier_acme::ResponderError>> {
        Box::pin(async { Ok(()) })
    }
}

#[tokio::test]
async fn a_users_account_key_secret_is_the_account_used() {
    let Some(env) = env() else { return };
    within(120, "issuance with the user's own ACME account key", async {
        // A migration from cert-manager: the config directory has the Secret named by
        // privateKeySecretRef, with an ECDSA P-256 account key. Portier wrote its own key for the
        // same name under --state-dir earlier; the user's Secret must win.
        let host = unique_host("e2e-userkey", "portier.test");
        let user_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .expect("P-256 key")
            .serialize_pem();
        let state = tempfile::Builder::new()
            .prefix("portier-e2e-state-")
            .tempdir()
            .expect("state dir");
        let key_ref = portier_acme::SecretRef::new(None, "pebble-account-key");
        let storage = portier_acme::FileStorage::new(state.path());
        let own_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .expect("P-256 key")
            .serialize_pem();
        {
            use portier_acme::Storage as _;
            storage
                .store_account_key(&key_ref, &own_key)
                .await
                .expect("portier's earlier key");
        }
        let account_file = storage.path_of(&key_ref).expect("a valid name");
        let before = std::fs::read(&account_file).expect("portier's account key Secret");

        let user_secret = format!(
            "apiVersion: v1
kind: Secret
metadata: {{name: pebble-account-key, namespace: cert-manager}}
type: Opaque
stringData:
  tls.key: {}
",
            serde_json::to_string(&user_key).expect("JSON string")
        );
        // DNS-01 through bind9: the HTTP-01 port belongs to the issuance test running beside this one.
        let issuer_yaml = dns01_cluster_issuer(&env, "pebble", "pebble-account-key", Some("e2e@portier.test"));
        let f = Fixture::new();
        f.write(
            "acme.yaml",
            &[
                issuer_yaml,
                user_secret,
                fixture::static_response("ok", 200, "issued"),
                acme_ingress("app", &host, "app-tls", None),
            ]
            .join("---\n"),
        );
        let state_path = state.path().to_str().expect("a UTF-8 temp path");
        let portier = Portier::start(f.path(), &["--state-dir", state_path]).await;
        verified_leaf(&portier, &host, &trusting(&env.issuer_root), Duration::from_secs(60)).await;
        let orders = portier.admin_json("/api/v1/acme/orders").await;
        let order_url = orders[0]["url"].as_str().expect("the order URL").to_owned();

        // Which account owns the order? pebble answers an order only to the account that made it.
        let issuer = |key: &str| portier_acme::Issuer {
            reference: portier_acme::IssuerRef {
                kind: portier_acme::IssuerKind::ClusterIssuer,
                namespace: None,
                name: "pebble".into(),
            },
            acme: portier_acme::AcmeIssuer {
                server: env.directory.clone(),
                email: None,
                private_key_secret_ref: key_ref.clone(),
                account_key: Some(portier_acme::SecretBytes(key.as_bytes().to_vec())),
                ca_bundle: Some(env.tls_ca_pem.clone()),
                skip_tls_verify: false,
                external_account_binding: None,
                solvers: Vec::new(),
            },
        };
        let scratch = tempfile::tempdir().expect("scratch dir");
        let engine = portier_acme::Engine::builder(
            Arc::new(portier_acme::FileStorage::new(scratch.path())),
            Arc::new(NoResponder),
        )
        .build();
        let Ok(users) = engine.account(&issuer(&user_key)).await else {
            panic!("the user's key has an account at pebble")
        };
        let Ok(owns) = engine.account(&issuer(&own_key)).await else {
            panic!("portier's earlier key loads")
        };
        eprintln!(
            "order {order_url}: user's account {}, portier's earlier key's account {}",
            users.id(),
            owns.id()
        );
        assert!(
            users.order(order_url.clone()).await.is_ok(),
            "the order was made with the account of the user's Secret"
        );
        assert!(
            owns.order(order_url).await.is_err(),
            "not with portier's own key from --state-dir"
        );
        assert_eq!(
            std::fs::read(&account_file).expect("portier's account key Secret"),
            before,
            "the user's key is not copied over portier's state"
        );
        let diagnostics = portier.admin_json("/api/v1/diagnostics").await;
        assert!(
            !diagnostics.to_string().contains("privateKeySecretRef"),
            "no diagnostic about the key: {diagnostics}"
        );
    })
    .await;
}
