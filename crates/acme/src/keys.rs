//! Certificate keys, CSRs and reading back what the CA issued.

use std::time::SystemTime;

use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, RsaKeySize};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

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

/// An ACME account key as PKCS#8 DER, the only form instant-acme 0.8 loads, which signs with
/// ECDSA P-256 only. PKCS#8 (`PRIVATE KEY`, what portier writes) and SEC1 (`EC PRIVATE KEY`, what
/// `openssl ecparam -genkey` writes) P-256 keys are accepted; anything else is an error that
/// names the key type. cert-manager's account keys are RSA (`RSA PRIVATE KEY`): they cannot be
/// used, and the error says so rather than a new account being registered.
pub(crate) fn account_key_pkcs8(pem: &[u8]) -> Result<PrivatePkcs8KeyDer<'static>, String> {
    let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => {
            "no PEM private key (PKCS#8 PRIVATE KEY or SEC1 EC PRIVATE KEY) in it".to_owned()
        }
        other => format!("not a PEM private key ({other})"),
    })?;
    let unusable = |der: &PrivateKeyDer<'_>| unusable_account_key(&key_kind(der));
    let pkcs8 = match &der {
        PrivateKeyDer::Pkcs8(k) => k.clone_key(),
        // aws-lc reads SEC1 and writes the same key as PKCS#8; a key on another curve is refused.
        PrivateKeyDer::Sec1(k) => {
            EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, k.secret_sec1_der())
                .ok()
                .and_then(|pair| pair.to_pkcs8v1().ok())
                .map(|doc| PrivatePkcs8KeyDer::from(doc.as_ref().to_vec()))
                .ok_or_else(|| unusable(&der))?
        }
        PrivateKeyDer::Pkcs1(_) => {
            return Err(unusable_account_key(
                "an RSA key (PKCS#1 RSA PRIVATE KEY, the kind cert-manager creates for ACME accounts)",
            ))
        }
        _ => return Err("an unknown kind of PEM private key".into()),
    };
    match instant_acme::Key::from_pkcs8_der(pkcs8.clone_key()) {
        Ok(_) => Ok(pkcs8),
        Err(_) => Err(unusable(&der)),
    }
}

/// What kind of key `der` is, for the error that says it cannot sign for an account.
fn key_kind(der: &PrivateKeyDer<'_>) -> String {
    match KeyPair::try_from(der).map(|k| k.algorithm()) {
        Ok(a) if a == &rcgen::PKCS_RSA_SHA256 => {
            "an RSA key (the kind cert-manager creates for ACME accounts)".to_owned()
        }
        Ok(a) if a == &rcgen::PKCS_ED25519 => "an Ed25519 key".to_owned(),
        Ok(a) if a == &rcgen::PKCS_ECDSA_P384_SHA384 => "an ECDSA P-384 key".to_owned(),
        Ok(a) if a == &rcgen::PKCS_ECDSA_P521_SHA512 => "an ECDSA P-521 key".to_owned(),
        Ok(a) => format!("a {a:?} key"),
        Err(e) => format!("a private key that cannot be loaded ({e})"),
    }
}

fn unusable_account_key(what: &str) -> String {
    format!("{what}; portier's ACME client (instant-acme 0.8) signs with ECDSA P-256 account keys only")
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

    /// The content of element `n` inside the outer SEQUENCE of `der`: element 2 of a PKCS#8 key
    /// is the OCTET STRING holding the SEC1 or PKCS#1 key.
    fn nth_element(der: &[u8], n: usize) -> Vec<u8> {
        fn header(d: &[u8]) -> (usize, usize) {
            let first = d[1] as usize;
            if first < 0x80 {
                (2, first)
            } else {
                let k = first & 0x7f;
                let len = d[2..2 + k].iter().fold(0usize, |a, b| (a << 8) | *b as usize);
                (2 + k, len)
            }
        }
        let (h, _) = header(der);
        let mut rest = &der[h..];
        for _ in 0..n {
            let (h, l) = header(rest);
            rest = &rest[h + l..];
        }
        let (h, l) = header(rest);
        rest[h..h + l].to_vec()
    }

    fn pem(label: &str, der: &[u8]) -> String {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap_or_default())
            .collect();
        format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
    }

    #[test]
    fn account_keys_must_be_ecdsa_p256() {
        let p256 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256");
        let pkcs8 = account_key_pkcs8(p256.serialize_pem().as_bytes()).expect("PKCS#8 P-256 is used as is");
        assert_eq!(pkcs8.secret_pkcs8_der(), p256.serialized_der());

        // The same key as SEC1 (`openssl ecparam -genkey`): the PKCS#8 body's OCTET STRING.
        let sec1 = pem("EC PRIVATE KEY", &nth_element(p256.serialized_der(), 2));
        let wrapped = account_key_pkcs8(sec1.as_bytes()).expect("SEC1 P-256 is wrapped in PKCS#8");
        instant_acme::Key::from_pkcs8_der(wrapped.clone_key()).expect("instant-acme loads the wrapped key");
        let same = KeyPair::try_from(&PrivateKeyDer::Pkcs8(wrapped)).expect("parses");
        assert_eq!(
            same.public_key_raw(),
            p256.public_key_raw(),
            "the same key, so the same account"
        );

        let rsa = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048).expect("RSA");
        let pkcs1 = pem("RSA PRIVATE KEY", &nth_element(rsa.serialized_der(), 2));
        let p384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("P-384");
        let ed = KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("Ed25519");
        for (name, text, want) in [
            ("PKCS#1 RSA (cert-manager's)", pkcs1, "RSA"),
            ("PKCS#8 RSA", rsa.serialize_pem(), "RSA"),
            ("P-384", p384.serialize_pem(), "P-384"),
            (
                "SEC1 P-384",
                pem("EC PRIVATE KEY", &nth_element(p384.serialized_der(), 2)),
                "P-384",
            ),
            ("Ed25519", ed.serialize_pem(), "Ed25519"),
            ("garbage", "not a key".to_owned(), "no PEM private key"),
        ] {
            let err = account_key_pkcs8(text.as_bytes()).expect_err(name);
            assert!(err.contains(want), "{name}: {err}");
            if want != "no PEM private key" {
                assert!(err.contains("ECDSA P-256 account keys only"), "{name}: {err}");
            }
        }
    }
}
