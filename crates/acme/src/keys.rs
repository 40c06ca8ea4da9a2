//! Certificate keys, CSRs and reading back what the CA issued.

use std::time::SystemTime;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, RsaKeySize};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::error::AcmeError;
use crate::issuer::{KeyAlgorithm, PrivateKeySpec, RotationPolicy};
use crate::status::Timestamp;

/// The key for this issuance: the current one when the policy is `Never` and it still fits
/// the requested algorithm, otherwise a fresh one.
pub(crate) fn certificate_key(spec: &PrivateKeySpec, current_pem: Option<&str>) -> Result<KeyPair, AcmeError> {
    let alg = signature_algorithm(spec);
    if spec.rotation_policy == RotationPolicy::Never {
        if let Some(key) = current_pem.and_then(|pem| KeyPair::from_pem(pem).ok()) {
            if key.is_compatible(alg) && rsa_size_matches(spec, &key) {
                return Ok(key);
            }
        }
    }
    let generated = match spec.algorithm {
        KeyAlgorithm::Rsa => {
            let size = match spec.size {
                Some(4096) => RsaKeySize::_4096,
                Some(3072) => RsaKeySize::_3072,
                _ => RsaKeySize::_2048,
            };
            KeyPair::generate_rsa_for(alg, size)
        }
        KeyAlgorithm::Ecdsa | KeyAlgorithm::Ed25519 => KeyPair::generate_for(alg),
    };
    generated.map_err(|e| AcmeError::Key(format!("cannot generate a {:?} key: {e}", spec.algorithm)))
}

/// A CSR for `names` (SANs) with `common_name` as the subject CN when given.
pub(crate) fn csr_der(names: &[String], common_name: Option<&str>, key: &KeyPair) -> Result<Vec<u8>, AcmeError> {
    let mut params = CertificateParams::new(names.to_vec())
        .map_err(|e| AcmeError::Key(format!("cannot build a CSR for {names:?}: {e}")))?;
    let mut dn = DistinguishedName::new();
    if let Some(cn) = common_name {
        dn.push(DnType::CommonName, cn);
    }
    params.distinguished_name = dn;
    let csr = params
        .serialize_request(key)
        .map_err(|e| AcmeError::Key(format!("cannot sign the CSR: {e}")))?;
    Ok(csr.der().to_vec())
}

/// notBefore and notAfter of the first certificate (the leaf) of a PEM chain.
pub fn leaf_validity(chain_pem: &str) -> Result<(SystemTime, SystemTime), AcmeError> {
    let leaf = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()
        .ok_or_else(|| AcmeError::Certificate("no certificate in the chain".into()))?
        .map_err(|e| AcmeError::Certificate(format!("bad PEM: {e}")))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf)
        .map_err(|e| AcmeError::Certificate(format!("bad leaf certificate: {e}")))?;
    let v = cert.validity();
    let ts = |t: i64| Timestamp(u64::try_from(t).unwrap_or(0)).to_system_time();
    Ok((ts(v.not_before.timestamp()), ts(v.not_after.timestamp())))
}

fn signature_algorithm(spec: &PrivateKeySpec) -> &'static rcgen::SignatureAlgorithm {
    match (spec.algorithm, spec.size) {
        (KeyAlgorithm::Rsa, _) => &rcgen::PKCS_RSA_SHA256,
        (KeyAlgorithm::Ecdsa, Some(384)) => &rcgen::PKCS_ECDSA_P384_SHA384,
        (KeyAlgorithm::Ecdsa, _) => &rcgen::PKCS_ECDSA_P256_SHA256,
        (KeyAlgorithm::Ed25519, _) => &rcgen::PKCS_ED25519,
    }
}

fn rsa_size_matches(spec: &PrivateKeySpec, key: &KeyPair) -> bool {
    if spec.algorithm != KeyAlgorithm::Rsa {
        return true;
    }
    // A PKCS#8 RSA key's DER grows with its modulus: about 1.2 kB for 2048 bits, 1.8 kB for
    // 3072, 2.4 kB for 4096. Good enough to notice that the requested size changed.
    let bits = match key.serialized_der().len() {
        0..=1400 => 2048,
        1401..=2000 => 3072,
        _ => 4096,
    };
    bits == spec.size.unwrap_or(2048)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_spec() {
        let cases = [
            (KeyAlgorithm::Ecdsa, None, &rcgen::PKCS_ECDSA_P256_SHA256),
            (KeyAlgorithm::Ecdsa, Some(384), &rcgen::PKCS_ECDSA_P384_SHA384),
            (KeyAlgorithm::Ed25519, None, &rcgen::PKCS_ED25519),
            (KeyAlgorithm::Rsa, None, &rcgen::PKCS_RSA_SHA256),
        ];
        for (algorithm, size, want) in cases {
            let spec = PrivateKeySpec {
                algorithm,
                size,
                rotation_policy: RotationPolicy::Always,
            };
            let key = certificate_key(&spec, None).expect("generate");
            assert!(key.is_compatible(want), "{algorithm:?} {size:?}");
            let csr = csr_der(&["a.portier.test".into()], Some("a.portier.test"), &key).expect("csr");
            assert!(!csr.is_empty());
        }
    }

    #[test]
    fn rotation_never_keeps_a_fitting_key() {
        let spec = PrivateKeySpec {
            algorithm: KeyAlgorithm::Ecdsa,
            size: None,
            rotation_policy: RotationPolicy::Never,
        };
        let first = certificate_key(&spec, None).expect("generate").serialize_pem();
        let again = certificate_key(&spec, Some(&first)).expect("reuse").serialize_pem();
        assert_eq!(first, again, "Never reuses the current key");
        let always = PrivateKeySpec {
            rotation_policy: RotationPolicy::Always,
            ..spec
        };
        assert_ne!(
            certificate_key(&always, Some(&first)).expect("fresh").serialize_pem(),
            first
        );
        let ed = PrivateKeySpec {
            algorithm: KeyAlgorithm::Ed25519,
            ..spec
        };
        assert_ne!(
            certificate_key(&ed, Some(&first)).expect("fresh").serialize_pem(),
            first,
            "algorithm changed"
        );
    }

    /// The shared rule (`portier_snapshot::account_key`) hands over a key instant-acme loads,
    /// also when the user's PEM is SEC1 (`openssl ecparam -genkey`).
    #[test]
    fn instant_acme_loads_the_account_keys_portier_accepts() {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        use base64::Engine as _;
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("P-256");
        let sec1: aws_lc_rs::encoding::EcPrivateKeyRfc5915Der<'_> = pair.private_key().as_der().expect("SEC1");
        let b64 = base64::engine::general_purpose::STANDARD.encode(sec1.as_ref());
        let pem = format!("-----BEGIN EC PRIVATE KEY-----\n{b64}\n-----END EC PRIVATE KEY-----\n");
        let der = portier_snapshot::account_key::account_key_pkcs8(pem.as_bytes()).expect("SEC1 P-256 accepted");
        instant_acme::Key::from_pkcs8_der(der).expect("instant-acme loads it");
    }
}
