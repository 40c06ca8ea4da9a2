//! TLS Secrets → certified keys for the snapshot's TLS store.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use portier_model::k8s_openapi::api::core::v1::Secret;
use portier_snapshot::CertEntry;

/// Why a TLS Secret cannot be served. Each message says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    #[error("Secret has no {0} key")]
    MissingKey(&'static str),
    #[error("tls.crt holds no PEM certificate")]
    NoCertificate,
    #[error("tls.crt is not valid PEM: {0}")]
    BadCertificatePem(String),
    #[error("tls.key holds no PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC)")]
    NoPrivateKey,
    #[error("tls.key cannot be used: {0}")]
    BadPrivateKey(String),
    #[error("tls.key does not belong to the certificate in tls.crt")]
    KeyMismatch,
    #[error("tls.crt leaf certificate cannot be parsed: {0}")]
    BadCertificate(String),
}

/// What a parsed certificate offers, for checks and views.
#[derive(Debug, Clone)]
pub struct CertInfo {
    /// DNS names from the subjectAltName extension (lower-case), or the subject CN when there is none.
    pub dns_names: Vec<String>,
    /// Seconds since the Unix epoch.
    pub not_after: i64,
    pub not_before: i64,
}

/// Loads a PEM chain and key into a rustls certified key, checking that the key matches.
pub fn certified_key_from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<(CertifiedKey, CertInfo), TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::BadCertificatePem(e.to_string()))?;
    let Some(leaf) = certs.first() else {
        return Err(TlsError::NoCertificate);
    };
    let info = cert_info(leaf)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::NoPrivateKey,
        other => TlsError::BadPrivateKey(other.to_string()),
    })?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::BadPrivateKey(e.to_string()))?;
    let ck = CertifiedKey::new(certs, signing);
    match ck.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(TlsError::KeyMismatch)
        }
        // The key type cannot report its public key: nothing to compare, the handshake will tell.
        Err(_) => {}
    }
    Ok((ck, info))
}

fn cert_info(leaf: &CertificateDer<'_>) -> Result<CertInfo, TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).map_err(|e| TlsError::BadCertificate(e.to_string()))?;
    let mut dns_names: Vec<String> = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(n) = name {
                dns_names.push(n.to_ascii_lowercase());
            }
        }
    }
    if dns_names.is_empty() {
        if let Some(cn) = cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()) {
            dns_names.push(cn.to_ascii_lowercase());
        }
    }
    Ok(CertInfo {
        dns_names,
        not_after: cert.validity().not_after.timestamp(),
        not_before: cert.validity().not_before.timestamp(),
    })
}

/// Whether a certificate name covers a host (RFC 6125: a `*` covers exactly one label).
pub(crate) fn cert_covers(cert_names: &[String], host: &str) -> bool {
    cert_names.iter().any(|n| {
        n == host
            || match (n.strip_prefix("*."), host.split_once('.')) {
                (Some(parent), Some((first, rest))) => !first.is_empty() && rest == parent,
                _ => false,
            }
    })
}

/// A loaded TLS Secret: the certificate to serve and what it covers.
pub(crate) type LoadedCert = (CertEntry, Arc<CertInfo>);

/// Each Secret is parsed once per compile, however many Ingresses name it.
#[derive(Default)]
pub(crate) struct SecretCache {
    loaded: HashMap<(String, String), Result<LoadedCert, TlsError>>,
}

impl SecretCache {
    pub fn load(
        &mut self,
        namespace: &str,
        name: &str,
        secret: &Secret,
    ) -> Result<(CertEntry, Arc<CertInfo>), TlsError> {
        self.loaded
            .entry((namespace.to_owned(), name.to_owned()))
            .or_insert_with(|| {
                let cert = secret_value(secret, "tls.crt").ok_or(TlsError::MissingKey("tls.crt"))?;
                let key = secret_value(secret, "tls.key").ok_or(TlsError::MissingKey("tls.key"))?;
                let (ck, info) = certified_key_from_pem(&cert, &key)?;
                Ok((
                    CertEntry {
                        certified: Arc::new(ck),
                        source: format!("{namespace}/{name}").into(),
                    },
                    Arc::new(info),
                ))
            })
            .clone()
    }
}

/// A Secret value as the API server would store it: `stringData` overrides `data`.
fn secret_value(secret: &Secret, key: &str) -> Option<Vec<u8>> {
    if let Some(v) = secret.string_data.as_ref().and_then(|d| d.get(key)) {
        return Some(v.as_bytes().to_vec());
    }
    secret.data.as_ref().and_then(|d| d.get(key)).map(|b| b.0.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_cert_names_cover_one_label() {
        let names = vec!["*.example.com".to_owned(), "example.com".to_owned()];
        let cases = [
            ("example.com", true),
            ("a.example.com", true),
            ("a.b.example.com", false),
            ("other.com", false),
        ];
        for (host, want) in cases {
            assert_eq!(cert_covers(&names, host), want, "{host}");
        }
    }
}
