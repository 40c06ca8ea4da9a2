//! Golden tests for compile: each directory under `tests/golden/` holds `input/*.yaml`; the runner
//! loads it with the files provider (the same code `serve` and `check` use), compiles it, and
//! compares the rendered snapshot and diagnostics with `snapshot.txt` and `diagnostics.txt`.
//! `PORTIER_BLESS=1 cargo test -p portier-compile --test golden` rewrites the expected files.
//! An optional `configmap` file holds `namespace/name` for `Options::configmap` (`--configmap`).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use portier_compile::values::format_size;
use portier_compile::{certified_key_from_pem, compile, Options};
use portier_model::{ModelStore, ProviderId};
use portier_provider_files::FileProvider;
use portier_snapshot::certificates::SolverKind;
use portier_snapshot::{Action, CertEntry, GlobalSettings, RoutePolicy, Snapshot, SourceFilter};

#[test]
fn golden() {
    let root = Path::new("tests/golden");
    let mut cases: Vec<_> = std::fs::read_dir(root)
        .expect("tests/golden exists")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no golden cases found");
    let bless = std::env::var_os("PORTIER_BLESS").is_some();
    let mut failures = Vec::new();
    for case in &cases {
        let (snapshot_txt, diagnostics_txt) = run_case(case);
        for (file, got) in [("snapshot.txt", &snapshot_txt), ("diagnostics.txt", &diagnostics_txt)] {
            let path = case.join(file);
            if bless {
                std::fs::write(&path, got).expect("write golden file");
                continue;
            }
            let want = std::fs::read_to_string(&path).unwrap_or_default();
            if &want != got {
                failures.push(format!(
                    "{}: differs from the expected output (PORTIER_BLESS=1 rewrites it)\n--- want\n{want}\n--- got\n{got}",
                    path.display()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn run_case(case: &Path) -> (String, String) {
    let mut provider = FileProvider::new(case.join("input"));
    let change = provider.scan().expect("golden input directory is readable");
    let mut store = ModelStore::new();
    store.apply(ProviderId("files"), change);
    let mut opts = options();
    if let Ok(text) = std::fs::read_to_string(case.join("configmap")) {
        let (ns, name) = text
            .trim()
            .split_once('/')
            .expect("the configmap file holds namespace/name");
        opts.configmap = Some((ns.to_owned(), name.to_owned()));
    }
    let compiled = compile(&store.model(), &opts);
    let mut diags = String::new();
    for d in &compiled.diagnostics {
        writeln!(diags, "{d}\n").expect("write to String");
    }
    (render(&compiled.snapshot), diags)
}

fn render(snap: &Snapshot) -> String {
    let mut out = String::new();
    let settings = render_settings(snap.settings());
    if !settings.is_empty() {
        writeln!(out, "settings:{settings}").expect("write to String");
    }
    out.push_str("routes:\n");
    for (r, is_default) in snap.routes().entries() {
        let host = r.host.as_ref().map_or_else(|| "*".to_owned(), ToString::to_string);
        let path = if is_default {
            "(default backend)".to_owned()
        } else {
            format!("{} {}", r.path_type.as_str(), r.path.as_str())
        };
        let action = match &r.action {
            Action::Proxy(id) => {
                let c = snap.cluster(*id).expect("compile hands out ids into its own snapshot");
                let eps: Vec<String> = c.endpoints.iter().map(ToString::to_string).collect();
                format!("proxy {} [{}]", c.name, eps.join(", "))
            }
            Action::Static(s) => format!(
                "static {} {} {:?}",
                r.backend,
                s.status.as_u16(),
                String::from_utf8_lossy(&s.body)
            ),
            Action::Unavailable { reason } => format!("503 ({reason})"),
        };
        let redirect = if r.https_redirect { " https-redirect" } else { "" };
        let policy = render_policy(&r.policy);
        let policy = if policy.is_empty() {
            String::new()
        } else {
            format!(" policy({})", policy.trim_start())
        };
        writeln!(
            out,
            "  {host} {path} -> {action} ingress={}{redirect}{policy}",
            r.ingress
        )
        .expect("write to String");
    }
    out.push_str("certificates:\n");
    for (name, e) in snap.tls().names() {
        writeln!(out, "  {name} <- {}", e.source).expect("write to String");
    }
    render_demand(snap, &mut out);
    out
}

/// Issuers and demanded certificates, when there are any.
fn render_demand(snap: &Snapshot, out: &mut String) {
    let demand = snap.certificates();
    if !demand.issuers.is_empty() {
        out.push_str("issuers:\n");
        for issuer in demand.issuers.values() {
            let a = &issuer.acme;
            let solvers: Vec<String> = a
                .solvers
                .iter()
                .map(|s| {
                    let kind = match &s.kind {
                        SolverKind::Http01 { .. } => "http01".to_owned(),
                        SolverKind::Dns01 { rfc2136 } => {
                            format!("dns01 rfc2136 {} key={}", rfc2136.nameserver, rfc2136.tsig_key_name)
                        }
                    };
                    let sel = &s.selector;
                    if sel.dns_names.is_empty() && sel.dns_zones.is_empty() && sel.match_labels.is_empty() {
                        kind
                    } else {
                        format!(
                            "{kind} names={:?} zones={:?} labels={:?}",
                            sel.dns_names, sel.dns_zones, sel.match_labels
                        )
                    }
                })
                .collect();
            writeln!(
                out,
                "  {} server={} account-key={} eab={} ca-bundle={} solvers=[{}]",
                issuer.reference,
                a.server,
                a.private_key_secret_ref,
                a.external_account_binding.as_ref().map_or("-", |e| e.key_id.as_str()),
                a.ca_bundle.is_some(),
                solvers.join("; ")
            )
            .expect("write to String");
        }
    }
    if !demand.certificates.is_empty() {
        out.push_str("certificate demand:\n");
        for c in &demand.certificates {
            let r = &c.request;
            writeln!(
                out,
                "  {} <- {}: {} cn={:?} duration={:?} renew-before={:?} key={:?} current={}",
                r.secret,
                r.issuer,
                r.dns_names.join(", "),
                r.common_name,
                r.duration,
                r.renew_before,
                r.private_key,
                c.current
                    .as_ref()
                    .map_or_else(|| "none".to_owned(), |cur| cur.dns_names.join(","))
            )
            .expect("write to String");
        }
    }
}

/// The fields of a route policy that differ from the default, as ` key=value` pairs.
fn render_policy(p: &RoutePolicy) -> String {
    let RoutePolicy {
        max_body_bytes,
        connect_timeout,
        read_timeout,
        send_timeout,
        source,
    } = p;
    let d = RoutePolicy::default();
    let mut out = String::new();
    if *max_body_bytes != d.max_body_bytes {
        let v = max_body_bytes.map_or_else(|| "unlimited".to_owned(), format_size);
        write!(out, " body={v}").expect("write to String");
    }
    for (name, v, dv) in [
        ("connect", connect_timeout, d.connect_timeout),
        ("read", read_timeout, d.read_timeout),
        ("send", send_timeout, d.send_timeout),
    ] {
        if *v != dv {
            write!(out, " {name}={v:?}").expect("write to String");
        }
    }
    if let Some(SourceFilter { allow, deny }) = source {
        let list = |l: &[ipnet::IpNet]| l.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        write!(out, " allow=[{}] deny=[{}]", list(allow), list(deny)).expect("write to String");
    }
    out
}

/// The global settings that differ from the default, one per line.
fn render_settings(s: &GlobalSettings) -> String {
    let GlobalSettings {
        client_header_timeout,
        client_body_timeout,
        max_header_bytes,
        max_header_line_bytes,
        max_header_count,
        keep_alive_timeout,
        keep_alive_requests,
        upstream_keepalive_timeout,
        http2_max_concurrent_streams,
        default_policy,
    } = s;
    let d = GlobalSettings::default();
    let mut out = String::new();
    let mut line = |name: &str, differs: bool, v: String| {
        if differs {
            write!(out, "\n  {name}: {v}").expect("write to String");
        }
    };
    line(
        "client_header_timeout",
        *client_header_timeout != d.client_header_timeout,
        format!("{client_header_timeout:?}"),
    );
    line(
        "client_body_timeout",
        *client_body_timeout != d.client_body_timeout,
        format!("{client_body_timeout:?}"),
    );
    line(
        "max_header_bytes",
        *max_header_bytes != d.max_header_bytes,
        max_header_bytes.to_string(),
    );
    line(
        "max_header_line_bytes",
        *max_header_line_bytes != d.max_header_line_bytes,
        max_header_line_bytes.to_string(),
    );
    line(
        "max_header_count",
        *max_header_count != d.max_header_count,
        max_header_count.to_string(),
    );
    line(
        "keep_alive_timeout",
        *keep_alive_timeout != d.keep_alive_timeout,
        format!("{keep_alive_timeout:?}"),
    );
    line(
        "keep_alive_requests",
        *keep_alive_requests != d.keep_alive_requests,
        keep_alive_requests.to_string(),
    );
    line(
        "upstream_keepalive_timeout",
        *upstream_keepalive_timeout != d.upstream_keepalive_timeout,
        format!("{upstream_keepalive_timeout:?}"),
    );
    line(
        "http2_max_concurrent_streams",
        *http2_max_concurrent_streams != d.http2_max_concurrent_streams,
        http2_max_concurrent_streams.to_string(),
    );
    let policy = render_policy(default_policy);
    line("default_policy", !policy.is_empty(), policy.trim_start().to_owned());
    out
}

fn options() -> Options {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("generate key");
    let cert = rcgen::CertificateParams::new(vec!["fallback.test".to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("self-sign");
    let (ck, _) =
        certified_key_from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).expect("fallback loads");
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
