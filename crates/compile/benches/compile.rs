//! Compile cost as the model grows: 100 and 10,000 hosts, each an Ingress (one rule, one Prefix
//! path) with its own Service and EndpointSlice, as the peer benchmark's `routes` scenario
//! generates them (bench/candidate.py). This is the work every reload does.
//!
//! `cargo bench -p portier-compile --bench compile`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use portier_compile::{certified_key_from_pem, compile, Options};
use portier_core::Kind;
use portier_model::{Model, Object, Origin, Resource};
use portier_snapshot::CertEntry;
use serde_json::json;

fn res(kind: Kind, v: serde_json::Value) -> Arc<Resource> {
    Arc::new(Resource::new(
        Object::from_json(kind, v).expect("valid bench object"),
        Origin::none(),
    ))
}

/// IngressClass `portier` plus, per host, an Ingress, a Service and an EndpointSlice.
fn model(hosts: usize) -> Model {
    let mut objects = vec![res(
        Kind::IngressClass,
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
            "metadata": {"name": "portier"}, "spec": {"controller": "portier.dev/ingress-controller"}}),
    )];
    for i in 0..hosts {
        let svc = format!("svc-{i}");
        objects.push(res(
            Kind::Ingress,
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                "metadata": {"name": format!("route-{i}"), "namespace": "bench",
                    "creationTimestamp": "2025-01-01T00:00:00Z"},
                "spec": {"ingressClassName": "portier", "rules": [{"host": format!("h{i:05}.example.test"),
                    "http": {"paths": [{"path": "/api/", "pathType": "Prefix",
                        "backend": {"service": {"name": svc, "port": {"name": "http"}}}}]}}]}}),
        ));
        objects.push(res(
            Kind::Service,
            json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": svc, "namespace": "bench"},
                "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}),
        ));
        objects.push(res(
            Kind::EndpointSlice,
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": format!("{svc}-1"), "namespace": "bench",
                    "labels": {"kubernetes.io/service-name": svc}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080}],
                "endpoints": [{"addresses": [format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255)]}]}),
        ));
    }
    Model::from_resources(objects, Vec::new())
}

fn options() -> Options {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let cert = rcgen::CertificateParams::new(vec!["fallback.test".to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    let (ck, _) = certified_key_from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).expect("loads");
    Options {
        ingress_class: "portier".into(),
        controller_name: "portier.dev/ingress-controller".into(),
        fallback_cert: CertEntry {
            certified: Arc::new(ck),
            source: "fallback".into(),
        },
        configmap: None,
    }
}

fn compile_model(c: &mut Criterion) {
    let opts = options();
    let mut group = c.benchmark_group("compile");
    for hosts in [100, 10_000] {
        let model = model(hosts);
        // The bench measures a clean compile: every host routed, nothing refused.
        let compiled = compile(&model, &opts);
        assert!(!compiled.has_errors(), "{:#?}", compiled.diagnostics);
        assert_eq!(compiled.snapshot.routes().len(), hosts);
        if hosts > 1_000 {
            // ~tens of ms per compile: keep the whole bench within a few seconds.
            group.sample_size(10);
        }
        group.bench_with_input(
            BenchmarkId::new("ingress_service_endpointslice", hosts),
            &model,
            |b, m| {
                // Dropping a 10,000-route snapshot is not part of a reload's critical path.
                b.iter_with_large_drop(|| compile(black_box(m), &opts))
            },
        );
    }
    group.finish();
}

criterion_group!(benches, compile_model);
criterion_main!(benches);
