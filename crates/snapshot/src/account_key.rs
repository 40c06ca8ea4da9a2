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
    use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
    use aws_lc_rs::rsa::KeySize;
    use aws_lc_rs::signature::KeyPair as _;

    fn pem(label: &str, der: &[u8]) -> String {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        format!("-----BEGIN {label}-----\n{b64}\n-----END {label}-----\n")
    }

    /// An ECDSA key as PKCS#8 and as SEC1 (`openssl ecparam -genkey`) PEM.
    fn ecdsa(alg: &'static aws_lc_rs::signature::EcdsaSigningAlgorithm) -> (EcdsaKeyPair, String, String) {
        let pair = EcdsaKeyPair::generate(alg).expect("generate");
        let pkcs8 = pem("PRIVATE KEY", pair.to_pkcs8v1().expect("PKCS#8").as_ref());
        let sec1 = pem("EC PRIVATE KEY", pair.private_key().as_der().expect("SEC1").as_ref());
        (pair, pkcs8, sec1)
    }

    #[test]
    fn account_keys_must_be_ecdsa_p256() {
        let (p256, pkcs8, sec1) = ecdsa(&ECDSA_P256_SHA256_FIXED_SIGNING);
        let der = account_key_pkcs8(pkcs8.as_bytes()).expect("PKCS#8 P-256 is used as is");
        assert_eq!(pem("PRIVATE KEY", der.secret_pkcs8_der()), pkcs8);
        let wrapped = account_key_pkcs8(sec1.as_bytes()).expect("SEC1 P-256 is wrapped in PKCS#8");
        let same =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, wrapped.secret_pkcs8_der()).expect("loads");
        assert_eq!(
            same.public_key().as_ref(),
            p256.public_key().as_ref(),
            "the same key, so the same account"
        );

        let rsa = RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA");
        let rsa: Pkcs8V1Der<'_> = rsa.as_der().expect("PKCS#8");
        let (_, p384, p384_sec1) = ecdsa(&ECDSA_P384_SHA384_FIXED_SIGNING);
        let ed = Ed25519KeyPair::generate()
            .expect("Ed25519")
            .to_pkcs8v1()
            .expect("PKCS#8");
        for (name, text, want) in [
            // The label alone decides: what cert-manager writes for its ACME accounts.
            (
                "PKCS#1 RSA (cert-manager's)",
                pem("RSA PRIVATE KEY", b"\x30\x00"),
                "RSA",
            ),
            ("PKCS#8 RSA", pem("PRIVATE KEY", rsa.as_ref()), "RSA"),
            ("P-384", p384, "P-384"),
            ("SEC1 P-384", p384_sec1, "P-384"),
            ("Ed25519", pem("PRIVATE KEY", ed.as_ref()), "Ed25519"),
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
