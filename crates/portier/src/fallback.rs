//! The fallback certificate: served when no configured certificate matches the SNI name, so a
//! handshake completes and the client sees a certificate error rather than a reset.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use portier_snapshot::CertEntry;

const CERT_FILE: &str = "fallback.crt";
const KEY_FILE: &str = "fallback.key";

/// A fresh self-signed ECDSA P-256 certificate.
pub fn generate() -> anyhow::Result<CertEntry> {
    let (cert_pem, key_pem) = self_signed()?;
    entry(cert_pem.as_bytes(), key_pem.as_bytes())
}

/// The fallback certificate kept in `state_dir`, created on first use, so that restarts keep
/// presenting the same certificate.
pub fn load_or_create(state_dir: &Path) -> anyhow::Result<CertEntry> {
    let cert_path = state_dir.join(CERT_FILE);
    let key_path = state_dir.join(KEY_FILE);
    if let (Ok(c), Ok(k)) = (std::fs::read(&cert_path), std::fs::read(&key_path)) {
        match entry(&c, &k) {
            Ok(e) => return Ok(e),
            Err(e) => {
                tracing::warn!(error = %e, path = %cert_path.display(), "fallback certificate unreadable, making a new one")
            }
        }
    }
    std::fs::create_dir_all(state_dir).with_context(|| format!("creating state directory {}", state_dir.display()))?;
    let (cert_pem, key_pem) = self_signed()?;
    write_private(&key_path, key_pem.as_bytes())?;
    std::fs::write(&cert_path, cert_pem.as_bytes()).with_context(|| format!("writing {}", cert_path.display()))?;
    entry(cert_pem.as_bytes(), key_pem.as_bytes())
}

fn self_signed() -> anyhow::Result<(String, String)> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).context("fallback certificate parameters")?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "portier fallback certificate");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).context("generating fallback key")?;
    let cert = params.self_signed(&key).context("signing fallback certificate")?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn entry(cert_pem: &[u8], key_pem: &[u8]) -> anyhow::Result<CertEntry> {
    let (ck, _) = portier_compile::certified_key_from_pem(cert_pem, key_pem).context("loading fallback certificate")?;
    Ok(CertEntry {
        certified: Arc::new(ck),
        source: "fallback".into(),
    })
}

/// Private keys are written with mode 0600.
fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path).with_context(|| format!("writing {}", path.display()))?;
    f.write_all(data)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
