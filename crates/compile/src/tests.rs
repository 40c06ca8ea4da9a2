//! Properties of compile as a whole. Per-case behaviour is in the golden tests (`tests/golden`).

use std::sync::Arc;

use portier_core::Kind;
use portier_model::{Model, Object, Origin, Resource};
use portier_snapshot::{Action, CertEntry};
use proptest::prelude::*;

use super::*;

fn fallback() -> CertEntry {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let cert = rcgen::CertificateParams::new(vec!["fallback.test".to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    let (ck, _) = certified_key_from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).expect("loads");
    CertEntry {
        certified: Arc::new(ck),
        source: "fallback".into(),
    }
}

fn res(kind: Kind, v: serde_json::Value) -> Arc<Resource> {
    Arc::new(Resource::new(
        Object::from_json(kind, v).expect("valid test object"),
        Origin::none(),
    ))
}

/// An Ingress with one rule: `host` + Prefix `path` → StaticResponse named after the Ingress.
fn ingress(name: &str, created: &str, host: &str, path: &str) -> Arc<Resource> {
    res(
        Kind::Ingress,
        serde_json::json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": "ns", "creationTimestamp": created},
            "spec": {"ingressClassName": "portier", "rules": [{"host": host, "http": {"paths": [
                {"path": path, "pathType": "Prefix",
                 "backend": {"resource": {"apiGroup": "portier.dev", "kind": "StaticResponse", "name": name}}}]}}]}
        }),
    )
}

fn statics(name: &str) -> Arc<Resource> {
    res(
        Kind::StaticResponse,
        serde_json::json!({"apiVersion": "portier.dev/v1alpha1", "kind": "StaticResponse",
            "metadata": {"name": name, "namespace": "ns"}, "spec": {"body": name}}),
    )
}

fn class() -> Arc<Resource> {
    res(
        Kind::IngressClass,
        serde_json::json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
            "metadata": {"name": "portier"}, "spec": {"controller": "portier.dev/ingress-controller"}}),
    )
}

fn render(c: &Compiled) -> Vec<String> {
    c.snapshot
        .routes()
        .entries()
        .map(|(r, fallback)| {
            let body = match &r.action {
                Action::Static(s) => String::from_utf8_lossy(&s.body).into_owned(),
                other => format!("{other:?}"),
            };
            format!("{:?} {} {fallback} {body}", r.host, r.path)
        })
        .collect()
}

fn opts() -> Options {
    Options {
        ingress_class: "portier".into(),
        controller_name: "portier.dev/ingress-controller".into(),
        fallback_cert: fallback(),
        configmap: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The served routes and the conflict winners depend on the objects, never on the order in which
    /// a provider delivered them; the oldest Ingress wins every conflict.
    #[test]
    fn order_of_ingresses_does_not_matter(
        specs in prop::collection::vec((0u8..3, 0u8..3, 0u32..1000), 1..8),
        seed in any::<u64>(),
    ) {
        let mut objects = vec![class()];
        for (i, (h, p, age)) in specs.iter().enumerate() {
            let name = format!("ing{i}");
            let created = format!("2026-01-01T00:{:02}:{:02}Z", age / 60 % 60, age % 60);
            objects.push(ingress(&name, &created, &format!("h{h}.example"), &format!("/p{p}")));
            objects.push(statics(&name));
        }
        let mut shuffled = objects.clone();
        let mut s = seed;
        for i in (1..shuffled.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (s >> 33) as usize % (i + 1));
        }
        let opts = opts();
        let a = compile(&Model::from_resources(objects, Vec::new()), &opts);
        let b = compile(&Model::from_resources(shuffled, Vec::new()), &opts);
        prop_assert_eq!(render(&a), render(&b));
        prop_assert_eq!(&a.diagnostics, &b.diagnostics);

        // Every (host, path) is served by the oldest Ingress that declares it (ties: by name).
        for (h, p, _) in &specs {
            let winner = specs
                .iter()
                .enumerate()
                .filter(|(_, (h2, p2, _))| h2 == h && p2 == p)
                .min_by_key(|(i, (_, _, age))| (*age, format!("ing{i}")))
                .map(|(i, _)| format!("ing{i}"));
            let route = a.snapshot.routes().find(&format!("h{h}.example"), &format!("/p{p}"));
            let body = route.and_then(|r| match &r.action {
                Action::Static(s) => Some(String::from_utf8_lossy(&s.body).into_owned()),
                _ => None,
            });
            prop_assert_eq!(body, winner);
        }
    }
}

#[test]
fn compile_is_deterministic_and_reports_once() {
    let objects = vec![
        class(),
        ingress("a", "2026-01-01T00:00:00Z", "x.example", "/"),
        statics("a"),
    ];
    let m = Model::from_resources(objects, Vec::new());
    let opts = opts();
    let (a, b) = (compile(&m, &opts), compile(&m, &opts));
    assert!(a.snapshot.same_content(&b.snapshot));
    assert!(a.diagnostics.is_empty(), "{:?}", a.diagnostics);
}

#[test]
fn acme_challenges_become_http01_tokens() {
    let challenge = |token: &str| {
        Arc::new(Resource::new(
            Object::AcmeChallenge(Box::new(portier_model::AcmeChallenge {
                metadata: portier_model::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                    name: Some(token.to_owned()),
                    ..Default::default()
                },
                token: token.to_owned(),
                key_authorization: format!("{token}.thumb"),
            })),
            Origin::none(),
        ))
    };
    let model = Model::from_resources([class(), challenge("b"), challenge("a")], Vec::new());
    let compiled = compile(&model, &opts());
    let tokens: Vec<(&str, &str)> = compiled
        .snapshot
        .http01_tokens()
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(tokens, [("a", "a.thumb"), ("b", "b.thumb")]);
    assert!(compiled.diagnostics.is_empty(), "{:?}", compiled.diagnostics);
}

#[test]
fn concat_writes_what_format_writes() {
    use crate::{concat, Part::N, Part::S};
    for n in [0i64, 7, 10, 443, 65535, -1, -80, i64::MAX, i64::MIN] {
        assert_eq!(concat(&[S("ns/svc:"), N(n)]), format!("ns/svc:{n}"));
    }
    assert_eq!(
        concat(&[S("spec.rules["), N(3), S("].http.paths["), N(12), S("]")]),
        "spec.rules[3].http.paths[12]"
    );
    assert_eq!(concat(&[]), "");
}

/// PEM of `der` under `label`, as openssl writes it.
fn pem_of(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

/// The key inside a PKCS#8 DER key (its OCTET STRING, the third element): SEC1 for EC, PKCS#1
/// for RSA.
fn inner_key(pkcs8: &[u8]) -> Vec<u8> {
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
    rest[h..h + l].to_vec()
}

#[test]
fn a_users_account_key_secret_fills_the_issuer_or_is_diagnosed() {
    use portier_snapshot::certificates::{IssuerKind, IssuerRef};

    let p256 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256");
    let p256_pem = p256.serialize_pem();
    let sec1_pem = pem_of("EC PRIVATE KEY", &inner_key(p256.serialized_der()));
    let rsa = rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).expect("RSA");
    // cert-manager's account keys: PKCS#1 RSA.
    let pkcs1_pem = pem_of("RSA PRIVATE KEY", &inner_key(rsa.serialized_der()));
    let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)
        .expect("P-384")
        .serialize_pem();

    let issuers = "apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata: {name: le}
spec:
  acme:
    server: https://ca.test/dir
    privateKeySecretRef: {name: le-account-key}
    solvers:
    - http01: {ingress: {ingressClassName: portier}}
---
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {name: shop-le, namespace: shop}
spec:
  acme:
    server: https://ca.test/dir
    privateKeySecretRef: {name: shop-account-key, key: account.pem}
    solvers:
    - http01: {ingress: {ingressClassName: portier}}
";
    let secret = |ns: &str, name: &str, body: &str| {
        format!("---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {ns}}}\n{body}\n")
    };
    let json = |s: &str| serde_json::to_string(s).expect("JSON string");
    let b64 = |s: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    let cluster = IssuerRef {
        kind: IssuerKind::ClusterIssuer,
        namespace: None,
        name: "le".into(),
    };
    let shop = IssuerRef {
        kind: IssuerKind::Issuer,
        namespace: Some("shop".into()),
        name: "shop-le".into(),
    };
    // (case, Secrets, the ClusterIssuer's key or an error with these words)
    /// The ClusterIssuer's key, or an error with these words.
    type Want<'a> = Result<Option<&'a str>, &'a [&'a str]>;
    let cases: Vec<(&str, String, Want<'_>)> = vec![
        ("no Secret: the engine's own key", String::new(), Ok(None)),
        (
            "PKCS#8 P-256 under data (base64)",
            secret(
                "cert-manager",
                "le-account-key",
                &format!("data: {{tls.key: {}}}", b64(&p256_pem)),
            ),
            Ok(Some(&p256_pem)),
        ),
        (
            "SEC1 P-256 under stringData",
            secret(
                "cert-manager",
                "le-account-key",
                &format!("stringData: {{tls.key: {}}}", json(&sec1_pem)),
            ),
            Ok(Some(&sec1_pem)),
        ),
        (
            "a Secret of that name in another namespace is not the ClusterIssuer's",
            secret("default", "le-account-key", "stringData: {tls.key: nonsense}"),
            Ok(None),
        ),
        (
            "no tls.key",
            secret("cert-manager", "le-account-key", "stringData: {private-key: x}"),
            Err(&["has no \"tls.key\"", "never replaces"]),
        ),
        (
            "not PEM",
            secret("cert-manager", "le-account-key", "stringData: {tls.key: nonsense}"),
            Err(&["no PEM private key"]),
        ),
        (
            "cert-manager's RSA key",
            secret(
                "cert-manager",
                "le-account-key",
                &format!("stringData: {{tls.key: {}}}", json(&pkcs1_pem)),
            ),
            Err(&["RSA key", "cert-manager", "ECDSA P-256 account keys only"]),
        ),
        (
            "P-384",
            secret(
                "cert-manager",
                "le-account-key",
                &format!("stringData: {{tls.key: {}}}", json(&p384)),
            ),
            Err(&["ECDSA P-384 key", "ECDSA P-256 account keys only"]),
        ),
    ];
    for (case, secrets, want) in cases {
        let dir = std::env::temp_dir().join(format!(
            "portier-compile-account-key-{}-{}",
            std::process::id(),
            case.len()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        // The namespaced Issuer's key, under its own key name, in its own namespace, every time.
        let shop_secret = secret(
            "shop",
            "shop-account-key",
            &format!("stringData: {{account.pem: {}}}", json(&p256_pem)),
        );
        std::fs::write(dir.join("issuers.yaml"), format!("{issuers}{secrets}{shop_secret}")).expect("write");
        let change = portier_provider_files::FileProvider::new(&dir).scan().expect("scan");
        let mut store = portier_model::ModelStore::new();
        store.apply(portier_model::ProviderId("files"), change);
        let compiled = compile(&store.model(), &opts());
        let _ = std::fs::remove_dir_all(&dir);

        let demand = compiled.snapshot.certificates();
        let shop_key = demand.issuer(&shop).and_then(|i| i.acme.account_key.as_ref());
        assert_eq!(
            shop_key.map(|k| k.0.as_slice()),
            Some(p256_pem.as_bytes()),
            "{case}: Issuer shop/shop-le"
        );
        let key_diags: Vec<_> = compiled
            .diagnostics
            .iter()
            .filter(|d| {
                d.field
                    .as_ref()
                    .is_some_and(|f| f.as_str() == "spec.acme.privateKeySecretRef")
            })
            .collect();
        match want {
            Ok(key) => {
                let got = demand
                    .issuer(&cluster)
                    .map(|i| i.acme.account_key.as_ref().map(|k| k.0.clone()));
                assert_eq!(got, Some(key.map(|k| k.as_bytes().to_vec())), "{case}");
                assert!(key_diags.is_empty(), "{case}: {key_diags:?}");
            }
            Err(words) => {
                assert!(demand.issuer(&cluster).is_none(), "{case}: the issuer cannot be used");
                let [d] = key_diags.as_slice() else {
                    panic!(
                        "{case}: one diagnostic on privateKeySecretRef: {:?}",
                        compiled.diagnostics
                    )
                };
                assert_eq!(d.severity, Severity::Error, "{case}");
                let text = d.to_string();
                for w in words {
                    assert!(text.contains(w), "{case}: {w:?} in {text}");
                }
                assert!(
                    text.contains("cert-manager/le-account-key"),
                    "{case}: names the Secret: {text}"
                );
                let span = d.span.as_ref().expect("a file position");
                assert!(span.file.ends_with("issuers.yaml"), "{case}: {span:?}");
                assert_eq!(span.line, 7, "{case}: the privateKeySecretRef line");
                let help = d.help.as_deref().unwrap_or_default();
                assert!(help.contains("let portier register a new account"), "{case}: {d:?}");
                assert!(!text.contains("PRIVATE KEY-----"), "{case}: no key material: {text}");
            }
        }
    }
}
