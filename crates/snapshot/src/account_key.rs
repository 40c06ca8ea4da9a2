//! Which ACME account keys portier can sign with: one rule, read by compile (to report a user's
//! unusable key against the Secret) and by the ACME client (to load it).

use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING,
    ECDSA_P521_SHA512_FIXED_SIGNING,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// An ACME account key as PKCS#8 DER, the only form instant-acme 0.8 loads, which signs with
/// ECDSA P-256 only. PKCS#8 (`PRIVATE KEY`, what portier writes) and SEC1 (`EC PRIVATE KEY`, what
/// `openssl ecparam -genkey` writes) P-256 keys are accepted. cert-manager's account keys are RSA
/// (`RSA PRIVATE KEY`): they cannot be used, and the error says so rather than a new account
/// being registered. The error says what the PEM holds: "… holds {error}".
pub fn account_key_pkcs8(pem: &[u8]) -> Result<PrivatePkcs8KeyDer<'static>, String> {
    let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => {
            "no PEM private key (PKCS#8 PRIVATE KEY or SEC1 EC PRIVATE KEY)".to_owned()
        }
        other => format!("a malformed PEM private key ({other})"),
    })?;
    let unusable = |what: &str| {
        format!("{what}; portier's ACME client (instant-acme 0.8) signs with ECDSA P-256 account keys only")
    };
    match &der {
        PrivateKeyDer::Pkcs8(k) => {
            let d = k.secret_pkcs8_der();
            if EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, d).is_ok() {
                return Ok(k.clone_key());
            }
            Err(unusable(&if RsaKeyPair::from_pkcs8(d).is_ok() {
                "an RSA key (the kind cert-manager creates for ACME accounts)".to_owned()
            } else if Ed25519KeyPair::from_pkcs8_maybe_unchecked(d).is_ok() {
                "an Ed25519 key".to_owned()
            } else {
                ecdsa_curve(|alg| EcdsaKeyPair::from_pkcs8(alg, d).is_ok())
            }))
        }
        // aws-lc reads SEC1 and writes the same key as PKCS#8.
        PrivateKeyDer::Sec1(k) => {
            let d = k.secret_sec1_der();
            EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, d)
                .ok()
                .and_then(|pair| pair.to_pkcs8v1().ok())
                .map(|doc| PrivatePkcs8KeyDer::from(doc.as_ref().to_vec()))
                .ok_or_else(|| unusable(&ecdsa_curve(|alg| EcdsaKeyPair::from_private_key_der(alg, d).is_ok())))
        }
        PrivateKeyDer::Pkcs1(_) => Err(unusable(
            "an RSA key (PKCS#1 RSA PRIVATE KEY, the kind cert-manager creates for ACME accounts)",
        )),
        _ => Err(unusable("an unknown kind of PEM private key")),
    }
}

/// Names the curve of an ECDSA key that is not P-256, as far as `loads` tells.
fn ecdsa_curve(loads: impl Fn(&'static aws_lc_rs::signature::EcdsaSigningAlgorithm) -> bool) -> String {
    if loads(&ECDSA_P384_SHA384_FIXED_SIGNING) {
        "an ECDSA P-384 key".to_owned()
    } else if loads(&ECDSA_P521_SHA512_FIXED_SIGNING) {
        "an ECDSA P-521 key".to_owned()
    } else {
        "a private key that cannot be loaded".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{KeyPair, RsaKeySize};

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
        let b64 = base64_encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap_or_default())
            .collect();
        format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
    }

    fn base64_encode(der: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(der)
    }

    #[test]
    fn account_keys_must_be_ecdsa_p256() {
        let p256 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256");
        let pkcs8 = account_key_pkcs8(p256.serialize_pem().as_bytes()).expect("PKCS#8 P-256 is used as is");
        assert_eq!(pkcs8.secret_pkcs8_der(), p256.serialized_der());

        // The same key as SEC1 (`openssl ecparam -genkey`): the PKCS#8 body's OCTET STRING.
        let sec1 = pem("EC PRIVATE KEY", &nth_element(p256.serialized_der(), 2));
        let wrapped = account_key_pkcs8(sec1.as_bytes()).expect("SEC1 P-256 is wrapped in PKCS#8");
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
