//! Where a reload's time goes at scale: scan, model store, compile and drop, each timed after a
//! one-document edit of `DIR/bench.yaml` (the file `bench/scale.py` and `bench/candidate.py`
//! write; the edit renames host h0500 and is undone at the end).
//!
//!     cargo run --profile quick-release -p portier-compile --example reload_timing -- DIR
use std::time::Instant;

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: reload_timing DIR   (a manifest directory with bench.yaml)");
        std::process::exit(2);
    };
    let file = format!("{dir}/bench.yaml");
    let opts = options();
    let mut p = portier_provider_files::FileProvider::new(&dir);
    let mut store = portier_model::ModelStore::new();
    let c = p.scan().expect("scan");
    store.apply(portier_model::ProviderId("files"), c);
    let text = std::fs::read_to_string(&file).expect("reads DIR/bench.yaml");
    for i in 0..6 {
        let t = text.replacen("h0500.example.test", &format!("x{i:03}5.example.test"), 1);
        std::fs::write(&file, &t).expect("writes");
        let t0 = Instant::now();
        let c = p.scan().expect("scan");
        let t1 = Instant::now();
        store.apply(portier_model::ProviderId("files"), c);
        let t2 = Instant::now();
        let m = store.model();
        let t3 = Instant::now();
        let compiled = portier_compile::compile(&m, &opts);
        let t4 = Instant::now();
        drop(compiled);
        drop(m);
        let t5 = Instant::now();
        println!(
            "scan {:?} apply {:?} model {:?} compile {:?} drop {:?}",
            t1 - t0,
            t2 - t1,
            t3 - t2,
            t4 - t3,
            t5 - t4
        );
    }
    std::fs::write(&file, &text).expect("restores");
}

fn options() -> portier_compile::Options {
    use std::sync::Arc;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let cert = rcgen::CertificateParams::new(vec!["fallback.test".to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    let (ck, _) =
        portier_compile::certified_key_from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).expect("loads");
    portier_compile::Options {
        ingress_class: "portier".into(),
        controller_name: "portier.dev/ingress-controller".into(),
        fallback_cert: portier_snapshot::CertEntry {
            certified: Arc::new(ck),
            source: "fallback".into(),
        },
        configmap: Some(("bench".into(), "portier".into())),
    }
}
