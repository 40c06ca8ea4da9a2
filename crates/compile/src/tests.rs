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
            Object::AcmeChallenge(portier_model::AcmeChallenge {
                metadata: portier_model::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                    name: Some(token.to_owned()),
                    ..Default::default()
                },
                token: token.to_owned(),
                key_authorization: format!("{token}.thumb"),
            }),
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
