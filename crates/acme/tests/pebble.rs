//! Issuance against real servers: pebble (ACME), bind9 (RFC 2136 + TSIG) and challtestsrv,
//! started by `scripts/acme-env-up`. No mocks.
//!
//! ```text
//! . "$(scripts/acme-env-up)"; cargo test -p portier-acme --test pebble; scripts/acme-env-down
//! ```
//! Without `PORTIER_ACME_DIRECTORY_URL` the tests skip, except under `CI=true`, where they fail.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use futures_util::future::BoxFuture;
use portier_acme::{
    AcmeError, AcmeIssuer, CertificateRequest, ChallengeState, ConditionStatus, ConditionType, Dns01Rfc2136, Engine,
    FileStorage, Http01Ingress, Http01Responder, Issued, Issuer, IssuerKind, IssuerRef, KeyAlgorithm, LikelyCause,
    PrivateKeySpec, ResponderError, Rfc2136Client, RotationPolicy, SecretBytes, SecretRef, Solver, SolverKind,
    SolverSelector, Storage, TsigAlgorithm,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Env {
    directory: String,
    tls_ca: String,
    issuer_root: String,
    http01_port: u16,
    dns_server: String,
    tsig_name: String,
    tsig_secret: Vec<u8>,
    challtestsrv: String,
}

fn env() -> Option<Env> {
    let Ok(directory) = std::env::var("PORTIER_ACME_DIRECTORY_URL") else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("PORTIER_ACME_DIRECTORY_URL is not set under CI=true: run `. \"$(scripts/acme-env-up)\"` before the tests");
        }
        eprintln!("SKIPPED: PORTIER_ACME_DIRECTORY_URL not set; run `. \"$(scripts/acme-env-up)\"` to test against pebble and bind9");
        return None;
    };
    let var = |k: &str| {
        std::env::var(k).unwrap_or_else(|_| panic!("{k} not set: source the env file scripts/acme-env-up printed"))
    };
    let read = |k: &str| std::fs::read_to_string(var(k)).unwrap_or_else(|e| panic!("{k}: {e}"));
    Some(Env {
        directory,
        tls_ca: read("PORTIER_ACME_TLS_CA"),
        issuer_root: read("PORTIER_ACME_ISSUER_ROOT"),
        http01_port: var("PORTIER_ACME_HTTP01_PORT")
            .parse()
            .expect("PORTIER_ACME_HTTP01_PORT is a port"),
        dns_server: var("PORTIER_ACME_DNS_SERVER"),
        tsig_name: var("PORTIER_ACME_TSIG_KEY_NAME"),
        tsig_secret: base64::engine::general_purpose::STANDARD
            .decode(var("PORTIER_ACME_TSIG_SECRET"))
            .expect("PORTIER_ACME_TSIG_SECRET is base64"),
        challtestsrv: var("PORTIER_ACME_CHALLTESTSRV_URL"),
    })
}

/// A name nobody else in this run uses, so pebble never reuses an authorization.
fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{nanos:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn state_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("portier-acme-test-{}", unique(tag)));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

// --------------------------------------------------------------------- HTTP-01 responder

type Tokens = Arc<Mutex<HashMap<String, String>>>;

/// One tiny HTTP server per test process on 127.0.0.1:$PORTIER_ACME_HTTP01_PORT, answering
/// `/.well-known/acme-challenge/<token>` from a shared map, 404 otherwise. It runs on its own
/// thread and runtime because each `#[tokio::test]` has a runtime that ends with the test.
fn token_server(port: u16) -> Tokens {
    static TOKENS: OnceLock<Tokens> = OnceLock::new();
    TOKENS
        .get_or_init(|| {
            let tokens: Tokens = Arc::default();
            let served = tokens.clone();
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                        .await
                        .unwrap_or_else(|e| panic!("bind 127.0.0.1:{port} for HTTP-01: {e}"));
                    let _ = ready_tx.send(());
                    loop {
                        let Ok((sock, _)) = listener.accept().await else {
                            continue;
                        };
                        tokio::spawn(answer(sock, served.clone()));
                    }
                });
            });
            ready_rx
                .recv_timeout(Duration::from_secs(5))
                .expect("HTTP-01 responder listening");
            tokens
        })
        .clone()
}

async fn answer(mut sock: tokio::net::TcpStream, tokens: Tokens) {
    let mut buf = vec![0u8; 4096];
    let mut n = 0;
    while n < buf.len() {
        match sock.read(&mut buf[n..]).await {
            Ok(0) | Err(_) => break,
            Ok(m) => n += m,
        }
        if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let req = String::from_utf8_lossy(&buf[..n]);
    let path = req.split_whitespace().nth(1).unwrap_or("");
    let body = path
        .strip_prefix("/.well-known/acme-challenge/")
        .and_then(|t| tokens.lock().ok()?.get(t).cloned());
    let rsp = match body {
        Some(b) => format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{b}",
            b.len()
        ),
        None => "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned(),
    };
    let _ = sock.write_all(rsp.as_bytes()).await;
    let _ = sock.shutdown().await;
}

/// Serves tokens through the shared server, as the data plane would.
struct MapResponder(Tokens);

impl Http01Responder for MapResponder {
    fn present<'a>(&'a self, token: &'a str, key_authorization: &'a str) -> BoxFuture<'a, Result<(), ResponderError>> {
        Box::pin(async move {
            self.0
                .lock()
                .map_err(|e| ResponderError(e.to_string()))?
                .insert(token.into(), key_authorization.into());
            Ok(())
        })
    }
    fn cleanup<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<(), ResponderError>> {
        Box::pin(async move {
            self.0.lock().map_err(|e| ResponderError(e.to_string()))?.remove(token);
            Ok(())
        })
    }
}

/// A [`MapResponder`] that remembers the tokens it presented: the map is shared by the tests
/// running in parallel, so a test checks its own tokens only.
struct TrackingResponder {
    inner: MapResponder,
    presented: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Http01Responder for TrackingResponder {
    fn present<'a>(&'a self, token: &'a str, key_authorization: &'a str) -> BoxFuture<'a, Result<(), ResponderError>> {
        if let Ok(mut p) = self.presented.lock() {
            p.push(token.to_owned());
        }
        self.inner.present(token, key_authorization)
    }
    fn cleanup<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<(), ResponderError>> {
        self.inner.cleanup(token)
    }
}

/// Says it serves the token but serves nothing: the CA gets a 404.
struct SilentResponder;

impl Http01Responder for SilentResponder {
    fn present<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, Result<(), ResponderError>> {
        Box::pin(async { Ok(()) })
    }
    fn cleanup<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), ResponderError>> {
        Box::pin(async { Ok(()) })
    }
}

// ------------------------------------------------------------------------- fixtures

fn issuer(env: &Env, account_secret: &str, solvers: Vec<Solver>) -> Issuer {
    Issuer {
        reference: IssuerRef {
            kind: IssuerKind::ClusterIssuer,
            namespace: None,
            name: "pebble".into(),
        },
        acme: AcmeIssuer {
            server: env.directory.clone(),
            email: Some("ops@portier.test".into()),
            private_key_secret_ref: SecretRef::new(None, account_secret),
            account_key: None,
            ca_bundle: Some(env.tls_ca.clone()),
            skip_tls_verify: false,
            external_account_binding: None,
            solvers,
        },
    }
}

fn http01() -> Solver {
    Solver {
        selector: SolverSelector::default(),
        kind: SolverKind::Http01 {
            ingress: Http01Ingress {
                ingress_class_name: Some("portier".into()),
                ..Default::default()
            },
        },
    }
}

fn dns01(env: &Env, secret: Vec<u8>) -> Solver {
    Solver {
        selector: SolverSelector {
            dns_zones: vec!["portier.test".into()],
            ..Default::default()
        },
        kind: SolverKind::Dns01 {
            rfc2136: Dns01Rfc2136 {
                nameserver: env.dns_server.clone(),
                tsig_key_name: env.tsig_name.clone(),
                tsig_algorithm: TsigAlgorithm::HmacSha256,
                tsig_secret: SecretBytes(secret),
            },
        },
    }
}

fn request(names: &[String], algorithm: KeyAlgorithm) -> CertificateRequest {
    CertificateRequest {
        secret: SecretRef::new(Some("shop"), &unique("tls")),
        issuer: IssuerRef {
            kind: IssuerKind::ClusterIssuer,
            namespace: None,
            name: "pebble".into(),
        },
        dns_names: names.to_vec(),
        common_name: None,
        duration: None,
        renew_before: None,
        private_key: PrivateKeySpec {
            algorithm,
            size: None,
            rotation_policy: RotationPolicy::Always,
        },
        labels: BTreeMap::new(),
    }
}

fn engine(dir: &std::path::Path, responder: Arc<dyn Http01Responder>) -> Engine {
    Engine::builder(Arc::new(FileStorage::new(dir)), responder)
        .poll_timeout(Duration::from_secs(60))
        .build()
}

/// The chain verifies to pebble's issuing root and covers every name.
fn verify(env: &Env, issued: &Issued, names: &[String]) {
    let root = CertificateDer::from_pem_slice(env.issuer_root.as_bytes()).expect("issuer root PEM");
    let anchor = webpki::anchor_from_trusted_cert(&root).expect("trust anchor");
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(issued.chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("chain PEM");
    let (leaf, intermediates) = chain.split_first().expect("non-empty chain");
    let ee = webpki::EndEntityCert::try_from(leaf).expect("leaf parses");
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &[anchor],
        intermediates,
        UnixTime::now(),
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .expect("chain verifies to pebble's issuing root");
    for n in names {
        let probe = n
            .strip_prefix("*.")
            .map(|p| format!("x.{p}"))
            .unwrap_or_else(|| n.clone());
        let sn = ServerName::try_from(probe.as_str()).expect("server name");
        ee.verify_is_valid_for_subject_name(&sn)
            .unwrap_or_else(|e| panic!("leaf not valid for {n}: {e:?}"));
    }
    assert!(issued.not_after > issued.not_before);
    assert!(issued.renewal_time > issued.not_before && issued.renewal_time < issued.not_after);
    assert!(issued.key_pem.contains("PRIVATE KEY"));
}

// ---------------------------------------------------------------------------- tests

#[tokio::test]
async fn http01_issues_a_certificate_that_verifies() {
    let Some(env) = env() else { return };
    let tokens = token_server(env.http01_port);
    let dir = state_dir("http01");
    let presented = Arc::new(std::sync::Mutex::new(Vec::new()));
    let responder = TrackingResponder {
        inner: MapResponder(tokens.clone()),
        presented: presented.clone(),
    };
    let engine = engine(&dir, Arc::new(responder));
    let names = vec![
        format!("{}.portier.test", unique("a")),
        format!("{}.portier.test", unique("b")),
    ];
    let issuer = issuer(&env, "pebble-account", vec![http01()]);
    let req = request(&names, KeyAlgorithm::Ecdsa);

    let t = Instant::now();
    let issued = engine.issue(&issuer, &req, None).await.expect("HTTP-01 issuance");
    eprintln!(
        "HTTP-01 issuance of {} names (incl. account registration): {} ms",
        names.len(),
        t.elapsed().as_millis()
    );
    verify(&env, &issued, &names);
    let presented = presented.lock().expect("presented").clone();
    // At most one per name: a CA may reuse a valid authorization (pebble's strict settings do).
    assert!(!presented.is_empty() && presented.len() <= names.len(), "{presented:?}");
    let left: Vec<String> = {
        let map = tokens.lock().expect("tokens");
        presented.into_iter().filter(|t| map.contains_key(t)).collect()
    };
    assert!(left.is_empty(), "tokens withdrawn after validation, left: {left:?}");

    let status = engine.status(&req.secret).expect("status recorded");
    assert_eq!(
        status.condition(ConditionType::Ready).map(|c| c.status),
        Some(ConditionStatus::True)
    );
    assert_eq!(
        status.condition(ConditionType::Issuing).map(|c| c.status),
        Some(ConditionStatus::False)
    );
    let last = status.history.last().expect("one attempt");
    assert_eq!(last.challenges.len(), 2);
    assert!(last
        .challenges
        .iter()
        .all(|c| c.state == ChallengeState::Valid && c.token.is_some()));
    assert!(status.renewal_time.is_some());

    // Second issuance on the same engine: account cached, shows the steady-state cost.
    let t = Instant::now();
    let names2 = vec![format!("{}.portier.test", unique("c"))];
    let issued2 = engine
        .issue(&issuer, &request(&names2, KeyAlgorithm::Rsa), None)
        .await
        .expect("RSA issuance");
    eprintln!(
        "HTTP-01 issuance, account cached, RSA-2048 key: {} ms",
        t.elapsed().as_millis()
    );
    verify(&env, &issued2, &names2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn dns01_over_rfc2136_issues_a_wildcard_and_cleans_up() {
    let Some(env) = env() else { return };
    let dir = state_dir("dns01");
    let engine = engine(&dir, Arc::new(SilentResponder));
    let base = format!("{}.portier.test", unique("d"));
    let names = vec![base.clone(), format!("*.{base}")];
    let solver = dns01(&env, env.tsig_secret.clone());
    let issuer = issuer(&env, "pebble-account-dns", vec![http01(), solver.clone()]);

    let t = Instant::now();
    let issued = engine
        .issue(&issuer, &request(&names, KeyAlgorithm::Ed25519), None)
        .await
        .expect("DNS-01 issuance");
    eprintln!(
        "DNS-01 issuance (apex + wildcard, RFC 2136 to bind9): {} ms",
        t.elapsed().as_millis()
    );
    verify(&env, &issued, &names);

    // Both values were written to the same name and both are gone now.
    let SolverKind::Dns01 { rfc2136 } = &solver.kind else {
        unreachable!("built as dns01")
    };
    let client = Rfc2136Client::new(rfc2136).expect("client");
    let left = client
        .txt(&format!("_acme-challenge.{base}."))
        .await
        .expect("query bind9");
    assert!(left.is_empty(), "TXT records left behind: {left:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_second_engine_reuses_the_stored_account() {
    let Some(env) = env() else { return };
    let tokens = token_server(env.http01_port);
    let dir = state_dir("reuse");
    let issuer = issuer(&env, "reused-account", vec![http01()]);

    let first = engine(&dir, Arc::new(MapResponder(tokens.clone())));
    let account1 = first.account(&issuer).await.expect("register");
    let storage = FileStorage::new(&dir);
    let key1 = storage
        .load_account_key(&issuer.acme.private_key_secret_ref)
        .await
        .expect("read")
        .expect("stored");

    // A new engine (a restart) with the same state directory: same key, same account URL.
    let second = engine(&dir, Arc::new(MapResponder(tokens)));
    let names = vec![format!("{}.portier.test", unique("r"))];
    let issued = second
        .issue(&issuer, &request(&names, KeyAlgorithm::Ecdsa), None)
        .await
        .expect("issuance");
    verify(&env, &issued, &names);
    let account2 = second.account(&issuer).await.expect("cached");
    assert_eq!(account1.id(), account2.id(), "same ACME account after restart");
    let key2 = storage
        .load_account_key(&issuer.acme.private_key_secret_ref)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(key1, key2, "account key not replaced");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let path = storage.path_of(&issuer.acme.private_key_secret_ref).expect("path");
        assert_eq!(
            std::fs::metadata(path).expect("stat").permissions().mode() & 0o777,
            0o600
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn http01_404_is_explained() {
    let Some(env) = env() else { return };
    let _ = token_server(env.http01_port); // listening, but this responder presents nothing
    let dir = state_dir("fail404");
    let engine = engine(&dir, Arc::new(SilentResponder));
    let issuer = issuer(&env, "failing-account", vec![http01()]);
    let req = request(&[format!("{}.portier.test", unique("f"))], KeyAlgorithm::Ecdsa);

    let err = engine.issue(&issuer, &req, None).await.expect_err("nothing served");
    let ch = err
        .challenges()
        .first()
        .unwrap_or_else(|| panic!("a failed challenge in {err}"));
    eprintln!("404 case: {err}");
    assert_eq!(ch.state, ChallengeState::Invalid);
    assert_eq!(ch.likely_cause, Some(LikelyCause::Http01WrongAnswer), "{ch:?}");
    let words = ch.explanation.as_deref().unwrap_or_default();
    assert!(words.contains("port 80") && words.contains("404"), "{words}");
    assert!(
        ch.error.as_deref().is_some_and(|e| e.contains("404")),
        "CA's own words kept: {ch:?}"
    );

    let status = engine.status(&req.secret).expect("status");
    assert_eq!(
        status.condition(ConditionType::Ready).map(|c| c.status),
        Some(ConditionStatus::False)
    );
    assert_eq!(status.failed_attempts, 1);
    assert!(status.next_attempt.is_some(), "backoff scheduled");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn http01_unreachable_port_is_explained() {
    let Some(env) = env() else { return };
    // A name under mock.test (forwarded to challtestsrv) pointing at an address where nothing listens.
    let name = format!("{}.mock.test", unique("u"));
    let body = format!(r#"{{"host":"{name}.","addresses":["127.0.0.77"]}}"#);
    let ok = std::process::Command::new("curl")
        .args(["-sf", "-d", &body, &format!("{}/add-a", env.challtestsrv)])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "challtestsrv /add-a for {name}");
    let dir = state_dir("unreach");
    let engine = engine(&dir, Arc::new(SilentResponder));
    let issuer = issuer(&env, "unreachable-account", vec![http01()]);
    let err = engine
        .issue(&issuer, &request(&[name], KeyAlgorithm::Ecdsa), None)
        .await
        .expect_err("nothing listens");
    eprintln!("unreachable case: {err}");
    assert_eq!(err.likely_cause(), Some(LikelyCause::Port80Unreachable), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn wrong_tsig_secret_is_explained_before_any_validation() {
    let Some(env) = env() else { return };
    let dir = state_dir("tsig");
    let engine = engine(&dir, Arc::new(SilentResponder));
    let issuer = issuer(&env, "tsig-account", vec![dns01(&env, vec![7u8; 32])]);
    let req = request(&[format!("{}.portier.test", unique("t"))], KeyAlgorithm::Ecdsa);
    let err = engine.issue(&issuer, &req, None).await.expect_err("wrong secret");
    eprintln!("TSIG case: {err}");
    assert!(matches!(err, AcmeError::Dns { .. }), "{err:?}");
    assert!(err.to_string().contains("TSIG"), "{err}");
    assert_eq!(err.likely_cause(), Some(LikelyCause::TsigRefused), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_per_account_order_limit_is_explained_and_sends_nothing() {
    let Some(env) = env() else { return };
    let tokens = token_server(env.http01_port);
    let dir = state_dir("limit");
    let engine = Engine::builder(Arc::new(FileStorage::new(&dir)), Arc::new(MapResponder(tokens)))
        .poll_timeout(Duration::from_secs(60))
        .orders_per_account_per_hour(1)
        .build();
    let issuer = issuer(&env, "limited-account", vec![http01()]);
    let first = request(&[format!("{}.portier.test", unique("l"))], KeyAlgorithm::Ecdsa);
    engine
        .issue(&issuer, &first, None)
        .await
        .expect("the first order is admitted");

    let second = request(&[format!("{}.portier.test", unique("l"))], KeyAlgorithm::Ecdsa);
    let err = engine
        .issue(&issuer, &second, None)
        .await
        .expect_err("the limit is reached");
    eprintln!("order limit case: {err}");
    assert!(matches!(err, AcmeError::OrderLimit { limit: 1, .. }), "{err:?}");
    assert_eq!(err.likely_cause(), Some(LikelyCause::RateLimited));
    let status = engine.status(&second.secret).expect("status");
    let ready = status.condition(ConditionType::Ready).expect("Ready condition");
    assert_eq!(ready.status, ConditionStatus::False);
    assert!(
        ready.message.contains("staging directory") && ready.message.contains("1 new orders per hour"),
        "{}",
        ready.message
    );
    let attempt = status.history.last().expect("the attempt is recorded");
    assert!(attempt.order.is_none(), "nothing was sent to the CA: {attempt:?}");
    let wait = status
        .next_attempt
        .and_then(|t| t.to_system_time().duration_since(SystemTime::now()).ok())
        .unwrap_or_default();
    assert!(
        wait > Duration::from_secs(3500),
        "the next attempt waits for the hour's window: {wait:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The SEC1 `EC PRIVATE KEY` PEM (what `openssl ecparam -genkey` writes) of a PKCS#8 EC key: the
/// content of the PKCS#8 body's third element.
fn sec1_pem(pkcs8: &[u8]) -> String {
    fn header(d: &[u8]) -> (usize, usize) {
        let first = usize::from(d[1]);
        if first < 0x80 {
            return (2, first);
        }
        let k = first & 0x7f;
        (2 + k, d[2..2 + k].iter().fold(0, |a, b| (a << 8) | usize::from(*b)))
    }
    let mut rest = &pkcs8[header(pkcs8).0..];
    for _ in 0..2 {
        let (h, l) = header(rest);
        rest = &rest[h + l..];
    }
    let (h, l) = header(rest);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&rest[h..h + l]);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    format!(
        "-----BEGIN EC PRIVATE KEY-----\n{}\n-----END EC PRIVATE KEY-----\n",
        lines.join("\n")
    )
}

/// cert-manager's model: the Secret named by `privateKeySecretRef` already holds the account key
/// (a migration). Its account is used, however portier's own stored key says otherwise, nothing
/// is written to storage, a changed Secret switches accounts, and without it portier's own
/// account comes back.
#[tokio::test]
async fn a_users_account_key_is_used_and_never_stored() {
    let Some(env) = env() else { return };
    let tokens = token_server(env.http01_port);
    let dir = state_dir("user-key");
    let storage = FileStorage::new(&dir);
    let mut issuer = issuer(&env, &unique("user-account-key"), vec![http01()]);
    let secret = issuer.acme.private_key_secret_ref.clone();

    // Before the user added the Secret, portier had registered its own account for this name.
    let portier = engine(&dir, Arc::new(MapResponder(tokens.clone())));
    let own = portier.account(&issuer).await.expect("portier's own account");
    let stored = storage.load_account_key(&secret).await.expect("read").expect("stored");

    // The user's key and its account, registered by another ACME client (instant-acme itself).
    let user = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key");
    let der = rustls_pki_types::PrivatePkcs8KeyDer::from(user.serialize_der());
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let ca = std::env::var("PORTIER_ACME_TLS_CA").expect("PORTIER_ACME_TLS_CA");
    let (theirs, _) = instant_acme::Account::builder_with_root(&ca)
        .expect("client trusting pebble")
        .create_from_key(
            (
                instant_acme::Key::from_pkcs8_der(der.clone_key()).expect("key"),
                rustls_pki_types::PrivateKeyDer::Pkcs8(der),
            ),
            env.directory.clone(),
        )
        .await
        .expect("the user's account");

    // compile puts the Secret's tls.key into the issuer; SEC1, as openssl writes EC keys.
    issuer.acme.account_key = Some(SecretBytes(sec1_pem(user.serialized_der()).into_bytes()));
    let used = portier.account(&issuer).await.expect("the user's account");
    eprintln!(
        "portier's own account {}; the user's {}; used {}",
        own.id(),
        theirs.id(),
        used.id()
    );
    assert_eq!(used.id(), theirs.id(), "the account of the key in the user's Secret");
    assert_ne!(used.id(), own.id());
    let names = vec![format!("{}.portier.test", unique("u"))];
    let issued = portier
        .issue(&issuer, &request(&names, KeyAlgorithm::Ecdsa), None)
        .await
        .expect("issuance with the user's account");
    verify(&env, &issued, &names);
    theirs
        .order(issued.order_url.clone())
        .await
        .expect("pebble says the order belongs to the user's account");
    assert!(
        own.order(issued.order_url.clone()).await.is_err(),
        "and not to portier's own"
    );
    assert_eq!(
        storage.load_account_key(&secret).await.expect("read").as_deref(),
        Some(stored.as_str()),
        "the user's key is never written to storage"
    );

    // A fresh state directory stays empty: no copy of the user's key.
    let empty = state_dir("user-key-only");
    let fresh = engine(&empty, Arc::new(MapResponder(tokens)));
    let again = fresh.account(&issuer).await.expect("the user's account");
    assert_eq!(again.id(), theirs.id());
    assert!(
        !empty.join("secrets").exists(),
        "nothing stored under a fresh state directory"
    );

    // The Secret changes: its new key's account (pebble registers it).
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key");
    issuer.acme.account_key = Some(SecretBytes(other.serialize_pem().into_bytes()));
    let switched = portier.account(&issuer).await.expect("the new key's account");
    assert_ne!(switched.id(), theirs.id(), "a changed Secret is a different account");
    assert_ne!(switched.id(), own.id());

    // The Secret is removed: portier's own stored account again.
    issuer.acme.account_key = None;
    let back = portier.account(&issuer).await.expect("portier's own account");
    assert_eq!(back.id(), own.id());

    // An RSA key (cert-manager's kind) is refused with the reason, not replaced by a new account.
    let rsa = rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).expect("RSA");
    issuer.acme.account_key = Some(SecretBytes(rsa.serialize_pem().into_bytes()));
    let Err(err) = portier.account(&issuer).await else {
        panic!("an RSA account key cannot sign for instant-acme");
    };
    eprintln!("RSA account key: {err}");
    assert!(err.to_string().contains("ECDSA P-256 account keys only"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&empty);
}
