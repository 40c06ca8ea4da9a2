//! TLS termination: the rustls server configuration and a certificate resolver that reads the
//! live snapshot at every handshake, so a rotated certificate is served from the next handshake on.

use std::sync::Arc;

use portier_snapshot::{normalize_host, SnapshotCell};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

/// Picks the certificate for a handshake from the snapshot live at that moment.
#[derive(Debug)]
struct SnapshotResolver {
    cell: Arc<SnapshotCell>,
}

/// Every suite the TLS listener offers, strongest first.
const CIPHER_SUITES: &[rustls::SupportedCipherSuite] = {
    use rustls::crypto::aws_lc_rs::cipher_suite::*;
    &[
        TLS13_AES_256_GCM_SHA384,
        TLS13_AES_128_GCM_SHA256,
        TLS13_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ]
};

/// The server configuration of the TLS listener: aws-lc-rs, TLS 1.2 and 1.3 only, ALPN `h2` then
/// `http/1.1`, certificates from the snapshot.
pub(crate) fn server_config(cell: Arc<SnapshotCell>) -> Arc<ServerConfig> {
    // The provider is named explicitly: a process-wide default may be unset or another provider.
    // So are the suites: AEAD only (AES-GCM, ChaCha20-Poly1305), forward-secret ECDHE key exchange
    // for TLS 1.2; no CBC, no RSA key exchange. rustls offers nothing else, but a dependency
    // update must not widen this list silently.
    let provider = Arc::new(rustls::crypto::CryptoProvider {
        cipher_suites: CIPHER_SUITES.to_vec(),
        ..rustls::crypto::aws_lc_rs::default_provider()
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("the aws-lc-rs default provider has cipher suites for TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SnapshotResolver { cell }));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Stateless resumption spares a full handshake on reconnect; without it clients still connect.
    match rustls::crypto::aws_lc_rs::Ticketer::new() {
        Ok(ticketer) => config.ticketer = ticketer,
        Err(e) => tracing::warn!(error = %e, "tls session tickets disabled"),
    }
    Arc::new(config)
}

impl ResolvesServerCert for SnapshotResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let snap = self.cell.load_guard();
        // Same normalization as request hosts: lower case, no trailing dot.
        let sni = hello.server_name().map(normalize_host);
        let entry = snap.tls().resolve(sni.as_deref());
        tracing::Span::current().record("tls.cert", &*entry.source);
        Some(entry.certified.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_aead_suites_and_tls12_or_later() {
        for suite in CIPHER_SUITES {
            let name = format!("{:?}", suite.suite());
            assert!(name.contains("GCM") || name.contains("CHACHA20_POLY1305"), "{name}");
            assert!(name.starts_with("TLS13_") || name.starts_with("TLS_ECDHE_"), "{name}");
            assert!(
                u16::from(suite.version().version) >= u16::from(rustls::ProtocolVersion::TLSv1_2),
                "{name}"
            );
        }
    }
}
