//! Manifest directories for a test, and the test CA that signs their TLS certificates.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::OnceLock;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::CertificateDer;
use tempfile::TempDir;

use crate::upstream::Upstream;

/// The shipped example configuration.
pub const QUICKSTART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/quickstart");

/// The default IngressClass of the controller, as every fixture starts with it.
pub const INGRESS_CLASS: &str = "\
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: portier
  annotations:
    ingressclass.kubernetes.io/is-default-class: \"true\"
spec:
  controller: portier.dev/ingress-controller
";

/// A temporary manifest directory, removed on drop.
pub struct Fixture {
    dir: TempDir,
}

/// The CA every test certificate chains to. Clients trust only this.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pub der: CertificateDer<'static>,
}

/// A leaf certificate signed by the test CA, with its key.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

// === impl Fixture ===

impl Fixture {
    /// A directory holding the default IngressClass.
    pub fn new() -> Fixture {
        let f = Fixture::empty();
        f.write("class.yaml", INGRESS_CLASS);
        f
    }

    pub fn empty() -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("portier-e2e-")
            .tempdir()
            .expect("creating a temporary manifest directory");
        Fixture { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a manifest file atomically (a hidden temporary file renamed into place), so the
    /// watcher never scans a half-written file.
    pub fn write(&self, name: &str, content: &str) -> &Fixture {
        self.write_bytes(name, content.as_bytes())
    }

    pub fn write_bytes(&self, name: &str, content: &[u8]) -> &Fixture {
        let tmp = self.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, content).unwrap_or_else(|e| panic!("writing {}: {e}", tmp.display()));
        let dest = self.path().join(name);
        std::fs::rename(&tmp, &dest).unwrap_or_else(|e| panic!("renaming to {}: {e}", dest.display()));
        self
    }

    pub fn remove(&self, name: &str) {
        let p = self.path().join(name);
        std::fs::remove_file(&p).unwrap_or_else(|e| panic!("removing {}: {e}", p.display()));
    }
}

// === impl Leaf ===

impl Leaf {
    /// Signed by the test CA for `names` (`*.x` names make wildcard certificates).
    pub fn new(names: &[&str]) -> Leaf {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("generating a leaf key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("leaf certificate parameters");
        params.distinguished_name.push(DnType::CommonName, names[0].clone());
        let cert = params
            .signed_by(&key, &ca().issuer)
            .expect("signing a leaf certificate");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }
}

/// The process-wide test CA, made on first use.
pub fn ca() -> &'static TestCa {
    static CA: OnceLock<TestCa> = OnceLock::new();
    CA.get_or_init(|| {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("generating the CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params
            .distinguished_name
            .push(DnType::CommonName, "portier e2e test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, key).expect("self-signing the test CA");
        let der = issuer.der().clone();
        TestCa { issuer, der }
    })
}

/// A Service `name` with port 80 (named `web`, targetPort `web`) and one EndpointSlice per
/// upstream, each on 127.0.0.1 and the upstream's port, all ready.
pub fn service(name: &str, upstreams: &[&Upstream]) -> String {
    let mut out = service_only(name);
    for (i, u) in upstreams.iter().enumerate() {
        out.push_str("---\n");
        out.push_str(&endpoint_slice(&format!("{name}-{i}"), name, u.addr.port(), true));
    }
    out
}

/// A Service with port 80 named `web` whose targetPort is the port named `web`.
pub fn service_only(name: &str) -> String {
    format!(
        "\
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  ports:
  - {{name: web, port: 80, targetPort: web}}
"
    )
}

/// An EndpointSlice of `service` with one endpoint 127.0.0.1 on `port` (port named `web`).
pub fn endpoint_slice(slice: &str, service: &str, port: u16, ready: bool) -> String {
    format!(
        "\
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {slice}
  labels: {{kubernetes.io/service-name: {service}}}
addressType: IPv4
ports: [{{name: web, port: {port}, protocol: TCP}}]
endpoints:
- addresses: [127.0.0.1]
  conditions: {{ready: {ready}}}
"
    )
}

/// An Ingress with one rule: `host` (or no host) and `(path, pathType, service)` paths, each to
/// port 80 of the service.
pub fn ingress(name: &str, host: Option<&str>, paths: &[(&str, &str, &str)]) -> String {
    let paths: Vec<(&str, &str, String)> = paths
        .iter()
        .map(|(p, t, svc)| (*p, *t, format!("{{service: {{name: {svc}, port: {{number: 80}}}}}}")))
        .collect();
    ingress_raw(name, host, &paths)
}

/// Like [`ingress`], with `(path, pathType, StaticResponse name)` paths.
pub fn ingress_static(name: &str, host: Option<&str>, paths: &[(&str, &str, &str)]) -> String {
    let paths: Vec<(&str, &str, String)> = paths.iter().map(|(p, t, sr)| (*p, *t, static_backend(sr))).collect();
    ingress_raw(name, host, &paths)
}

/// An Ingress with one rule whose paths name their backend as inline YAML.
pub fn ingress_raw(name: &str, host: Option<&str>, paths: &[(&str, &str, String)]) -> String {
    let mut out = format!(
        "\
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
spec:
  rules:
  - "
    );
    if let Some(h) = host {
        let _ = write!(out, "host: \"{h}\"\n    ");
    }
    out.push_str("http:\n      paths:\n");
    for (path, path_type, backend) in paths {
        let _ = writeln!(
            out,
            "      - {{path: \"{path}\", pathType: {path_type}, backend: {backend}}}"
        );
    }
    out
}

/// Adds an annotation to a manifest made by [`ingress`].
pub fn annotate(yaml: &str, key: &str, value: &str) -> String {
    let (head, rest) = yaml
        .split_once("\nspec:\n")
        .expect("an Ingress made by fixture::ingress");
    format!("{head}\n  annotations: {{{key}: \"{value}\"}}\nspec:\n{rest}")
}

/// Appends a `spec.tls` entry to a manifest made by [`ingress`] (whose last key is `spec`).
pub fn with_tls(yaml: &str, hosts: &[&str], secret: &str) -> String {
    let hosts: Vec<String> = hosts.iter().map(|h| format!("\"{h}\"")).collect();
    format!(
        "{yaml}  tls:\n  - hosts: [{}]\n    secretName: {secret}\n",
        hosts.join(", ")
    )
}

/// A StaticResponse answering `status` with `body` as text/plain.
pub fn static_response(name: &str, status: u16, body: &str) -> String {
    format!(
        "\
apiVersion: portier.dev/v1alpha1
kind: StaticResponse
metadata: {{name: {name}}}
spec: {{statusCode: {status}, contentType: text/plain, body: \"{body}\"}}
"
    )
}

/// The backend block pointing at a StaticResponse, for inline Ingress YAML.
pub fn static_backend(name: &str) -> String {
    format!("{{resource: {{apiGroup: portier.dev, kind: StaticResponse, name: {name}}}}}")
}

/// A `kubernetes.io/tls` Secret with base64 `data`.
pub fn tls_secret(name: &str, cert_pem: &str, key_pem: &str) -> String {
    format!(
        "\
apiVersion: v1
kind: Secret
type: kubernetes.io/tls
metadata: {{name: {name}}}
data:
  tls.crt: {}
  tls.key: {}
",
        base64(cert_pem.as_bytes()),
        base64(key_pem.as_bytes())
    )
}

/// A `kubernetes.io/tls` Secret with `stringData` (literal PEM).
pub fn tls_secret_string_data(name: &str, cert_pem: &str, key_pem: &str) -> String {
    format!(
        "\
apiVersion: v1
kind: Secret
type: kubernetes.io/tls
metadata: {{name: {name}}}
stringData:
  tls.crt: |
{}
  tls.key: |
{}
",
        indent(cert_pem, 4),
        indent(key_pem, 4)
    )
}

fn indent(s: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    s.lines().map(|l| format!("{pad}{l}")).collect::<Vec<_>>().join("\n")
}

/// Standard base64 with padding (RFC 4648 §4), as Kubernetes writes Secret data.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
