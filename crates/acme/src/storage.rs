//! Where ACME account keys persist: Secret manifests under the state directory, which the files
//! provider loads like any other Secret. A cluster deployment implements [`Storage`] with the
//! API server's Secrets.
//!
//! cert-manager keeps an ACME account's private key in the Secret named by the issuer's
//! `privateKeySecretRef`, as PEM under the data key `tls.key`, type `Opaque`; a ClusterIssuer's
//! Secret lives in the cluster resource namespace (`cert-manager`). [`FileStorage`] writes
//! exactly that Secret, as `STATE_DIR/secrets/NAMESPACE/NAME.yaml`, mode 0600, atomically.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use futures_util::future::BoxFuture;

use crate::issuer::SecretRef;

/// The namespace of a ClusterIssuer's Secrets: cert-manager's default cluster resource namespace
/// (compile resolves a ClusterIssuer's TSIG and EAB Secrets there too).
pub const CLUSTER_RESOURCE_NAMESPACE: &str = "cert-manager";

/// The data key of the account's private key in its Secret, as cert-manager writes it.
pub const ACCOUNT_KEY_DATA_KEY: &str = "tls.key";

/// The annotation (value `"true"`) on the account key Secrets [`FileStorage`] writes. The wiring
/// keeps these out of the model: the engine reads its own keys from storage, and a Secret of the
/// same name in the configuration directory must not be hidden by portier's copy.
pub const ACCOUNT_KEY_ANNOTATION: &str = "portier.dev/acme-account-key";

/// Persists ACME account keys (PEM, PKCS#8 ECDSA P-256), keyed by the issuer's
/// `privateKeySecretRef`. Implementations must be safe to call concurrently.
pub trait Storage: Send + Sync {
    /// The stored account key PEM, or `None` when there is none yet.
    fn load_account_key<'a>(&'a self, secret: &'a SecretRef) -> BoxFuture<'a, Result<Option<String>, StorageError>>;
    /// Stores (replaces) the account key PEM.
    fn store_account_key<'a>(&'a self, secret: &'a SecretRef, pem: &'a str) -> BoxFuture<'a, Result<(), StorageError>>;
}

/// Account keys as `Opaque` Secret manifests: `STATE_DIR/secrets/NAMESPACE/NAME.yaml` with the
/// PEM under `tls.key` (namespace [`CLUSTER_RESOURCE_NAMESPACE`] for a ClusterIssuer's key).
///
/// Keys written by earlier versions as `STATE_DIR/accounts/NAMESPACE/NAME.pem` (`_cluster` for a
/// ClusterIssuer) are still read when the Secret is missing, and moved into the Secret then.
#[derive(Debug, Clone)]
pub struct FileStorage {
    dir: PathBuf,
}

/// A Secret manifest as the files provider reads it (JSON, which is YAML).
#[derive(Debug, Clone)]
pub struct SecretManifest<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    /// `Opaque`, `kubernetes.io/tls`, ...
    pub kind: &'a str,
    pub annotations: BTreeMap<&'a str, &'a str>,
    pub string_data: BTreeMap<&'a str, &'a str>,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("account key {secret}: {path}: {source}")]
    Io {
        secret: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("account key {secret}: name {name:?} cannot be a file name: use a DNS-1123 Secret name")]
    BadName { secret: String, name: String },
    /// The Secret exists but holds no usable key. Never replaced silently: a new key would be a
    /// new ACME account, and the old one (with its rate limits and authorizations) would be lost.
    #[error("account key {secret}: {path}: {reason}: fix the Secret (PEM key under stringData or data `tls.key`), or delete the file to register a new ACME account")]
    Malformed {
        secret: String,
        path: PathBuf,
        reason: String,
    },
}

// === impl FileStorage ===

impl FileStorage {
    /// Keys go under `state_dir/secrets`; directories are created on the first store.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self { dir: state_dir.into() }
    }

    /// `state_dir/secrets`, the directory the files provider loads Secrets from.
    pub fn secrets_dir(&self) -> PathBuf {
        self.dir.join("secrets")
    }

    /// The Secret manifest that holds the key of `secret`.
    pub fn path_of(&self, secret: &SecretRef) -> Result<PathBuf, StorageError> {
        let ns = namespace_of(secret);
        secret_manifest_path(&self.secrets_dir(), ns, &secret.name).ok_or_else(|| StorageError::BadName {
            secret: secret.to_string(),
            name: if safe_name(ns) {
                secret.name.clone()
            } else {
                ns.to_owned()
            },
        })
    }

    /// Where versions before the Secret manifests kept the key.
    fn legacy_path(&self, secret: &SecretRef) -> Result<PathBuf, StorageError> {
        let ns = secret.namespace.as_deref().unwrap_or("_cluster");
        for part in [ns, secret.name.as_str()] {
            let ok = !part.is_empty()
                && part.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
                && !part.starts_with('.');
            if !ok {
                return Err(StorageError::BadName {
                    secret: secret.to_string(),
                    name: part.to_owned(),
                });
            }
        }
        Ok(self.dir.join("accounts").join(ns).join(format!("{}.pem", secret.name)))
    }

    fn load(&self, secret: &SecretRef) -> Result<Option<String>, StorageError> {
        let path = self.path_of(secret)?;
        let io = |path: &Path, source| StorageError::Io {
            secret: secret.to_string(),
            path: path.to_owned(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                return secret_data(&text, ACCOUNT_KEY_DATA_KEY)
                    .map(Some)
                    .map_err(|reason| StorageError::Malformed {
                        secret: secret.to_string(),
                        path,
                        reason,
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path, e)),
        }
        // Migration: a key from before the Secret manifests becomes the Secret.
        let legacy = self.legacy_path(secret)?;
        match std::fs::read_to_string(&legacy) {
            Ok(pem) => {
                self.store(secret, &pem)?;
                tracing::info!(
                    account_key = %secret,
                    from = %legacy.display(),
                    to = %path.display(),
                    "ACME account key moved into its Secret manifest; the old file can be deleted"
                );
                Ok(Some(pem))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&legacy, e)),
        }
    }

    fn store(&self, secret: &SecretRef, pem: &str) -> Result<(), StorageError> {
        let path = self.path_of(secret)?;
        let manifest = SecretManifest {
            namespace: namespace_of(secret),
            name: &secret.name,
            kind: "Opaque",
            annotations: BTreeMap::from([(ACCOUNT_KEY_ANNOTATION, "true")]),
            string_data: BTreeMap::from([(ACCOUNT_KEY_DATA_KEY, pem)]),
        };
        write_secret(&self.secrets_dir(), &manifest)
            .map(|_| ())
            .map_err(|source| StorageError::Io {
                secret: secret.to_string(),
                path,
                source,
            })
    }
}

impl Storage for FileStorage {
    fn load_account_key<'a>(&'a self, secret: &'a SecretRef) -> BoxFuture<'a, Result<Option<String>, StorageError>> {
        Box::pin(async move { self.load(secret) })
    }

    fn store_account_key<'a>(&'a self, secret: &'a SecretRef, pem: &'a str) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move { self.store(secret, pem) })
    }
}

/// The namespace an account key Secret lives in.
fn namespace_of(secret: &SecretRef) -> &str {
    secret.namespace.as_deref().unwrap_or(CLUSTER_RESOURCE_NAMESPACE)
}

/// A namespace or Secret name that is safe as one path component: DNS-1123 characters, not
/// starting with a dot (the files provider skips dot files; `..` would leave the directory).
fn safe_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && !s.starts_with('.')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "-.".contains(c))
}

/// `secrets_dir/NAMESPACE/NAME.yaml`; `None` for a name that is not a safe file name.
pub fn secret_manifest_path(secrets_dir: &Path, namespace: &str, name: &str) -> Option<PathBuf> {
    (safe_name(namespace) && safe_name(name)).then(|| secrets_dir.join(namespace).join(format!("{name}.yaml")))
}

/// Writes `secrets_dir/NAMESPACE/NAME.yaml` atomically with mode 0600 and returns its path.
///
/// The manifest goes to a dot file first (the files provider skips those, so a half-written
/// Secret is never read), created 0600 so the key is never readable by others, not even
/// briefly, and is then renamed over the old one.
pub fn write_secret(secrets_dir: &Path, m: &SecretManifest<'_>) -> std::io::Result<PathBuf> {
    let invalid = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "Secret {}/{} cannot be a file name: use DNS-1123 names",
                m.namespace, m.name
            ),
        )
    };
    let path = secret_manifest_path(secrets_dir, m.namespace, m.name).ok_or_else(invalid)?;
    let mut metadata = serde_json::json!({ "name": m.name, "namespace": m.namespace });
    if !m.annotations.is_empty() {
        metadata["annotations"] = serde_json::json!(m.annotations);
    }
    let manifest = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": m.kind,
        "metadata": metadata,
        "stringData": m.string_data,
    });
    let text = serde_json::to_string_pretty(&manifest).map_err(std::io::Error::other)?;
    let dir = path.parent().ok_or_else(invalid)?;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.yaml.tmp", m.name));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    // An existing tmp file keeps its mode through `open`: make sure of 0600 before writing.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// The value of data key `key` in a Secret manifest (JSON): `stringData` as is, or `data`
/// base64-decoded. The error says what is wrong, for a person to fix.
pub fn secret_data(manifest: &str, key: &str) -> Result<String, String> {
    let v: serde_json::Value =
        serde_json::from_str(manifest).map_err(|e| format!("not a JSON Secret manifest ({e})"))?;
    if v["kind"] != "Secret" {
        return Err("not a Secret (kind is not Secret)".into());
    }
    if let Some(s) = v["stringData"][key].as_str() {
        return Ok(s.to_owned());
    }
    if let Some(b64) = v["data"][key].as_str() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| format!("data.{key} is not base64 ({e})"))?;
        return String::from_utf8(bytes).map_err(|_| format!("data.{key} is not PEM text"));
    }
    Err(format!("the Secret has no {key}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("portier-acme-storage-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn stores_keys_as_secret_manifests_0600_and_reads_them_back() {
        let dir = tempdir("rw");
        let s = FileStorage::new(&dir);
        let cluster = SecretRef::new(None, "letsencrypt-account-key");
        assert_eq!(s.load_account_key(&cluster).await.ok().flatten(), None);
        s.store_account_key(&cluster, "PEM1").await.expect("store");
        s.store_account_key(&cluster, "PEM2").await.expect("replace");
        assert_eq!(
            s.load_account_key(&cluster).await.ok().flatten().as_deref(),
            Some("PEM2")
        );

        let path = s.path_of(&cluster).expect("valid name");
        assert_eq!(
            path,
            dir.join("secrets/cert-manager/letsencrypt-account-key.yaml"),
            "a ClusterIssuer's key lives in cert-manager's cluster resource namespace"
        );
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("JSON manifest");
        assert_eq!(v["kind"], "Secret");
        assert_eq!(v["type"], "Opaque");
        assert_eq!(v["metadata"]["namespace"], "cert-manager");
        assert_eq!(v["metadata"]["name"], "letsencrypt-account-key");
        assert_eq!(v["stringData"]["tls.key"], "PEM2");
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600, "{}", path.display());

        let namespaced = SecretRef::new(Some("shop"), "acme-key");
        s.store_account_key(&namespaced, "PEM3").await.expect("store");
        assert_eq!(
            s.path_of(&namespaced).expect("valid"),
            dir.join("secrets/shop/acme-key.yaml")
        );
        assert_eq!(
            std::fs::read_dir(dir.join("secrets/shop")).expect("dir").count(),
            1,
            "no temporary file left behind"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_legacy_pem_key_moves_into_the_secret() {
        let dir = tempdir("legacy");
        let s = FileStorage::new(&dir);
        let r = SecretRef::new(None, "old-account");
        let legacy = dir.join("accounts/_cluster/old-account.pem");
        std::fs::create_dir_all(legacy.parent().expect("parent")).expect("mkdir");
        std::fs::write(&legacy, "LEGACY PEM").expect("write");
        assert_eq!(
            s.load_account_key(&r).await.expect("load").as_deref(),
            Some("LEGACY PEM")
        );
        let path = s.path_of(&r).expect("valid");
        assert_eq!(
            secret_data(&std::fs::read_to_string(&path).expect("migrated"), "tls.key").as_deref(),
            Ok("LEGACY PEM")
        );
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);
        // The Secret wins from now on.
        s.store_account_key(&r, "NEW").await.expect("store");
        assert_eq!(s.load_account_key(&r).await.expect("load").as_deref(), Some("NEW"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_secret_without_a_key_is_an_error_not_a_new_account() {
        let dir = tempdir("bad");
        let s = FileStorage::new(&dir);
        let r = SecretRef::new(Some("shop"), "k");
        let path = s.path_of(&r).expect("valid");
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        for (text, want) in [
            ("{", "not a JSON Secret manifest"),
            (r#"{"kind":"ConfigMap"}"#, "not a Secret"),
            (r#"{"kind":"Secret","stringData":{"other":"x"}}"#, "no tls.key"),
            (r#"{"kind":"Secret","data":{"tls.key":"%%%"}}"#, "not base64"),
        ] {
            std::fs::write(&path, text).expect("write");
            let err = s.load_account_key(&r).await.expect_err(text).to_string();
            assert!(err.contains(want) && err.contains("delete the file"), "{text}: {err}");
        }
        std::fs::write(&path, r#"{"kind":"Secret","data":{"tls.key":"UEVN"}}"#).expect("write");
        assert_eq!(s.load_account_key(&r).await.expect("data").as_deref(), Some("PEM"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn names_cannot_escape_the_directory() {
        let s = FileStorage::new("/state");
        for (ns, name, ok) in [
            (Some("shop"), "key", true),
            (None, "key", true),
            (None, "../etc", false),
            (Some(".."), "k", false),
            (Some("a/b"), "k", false),
            (Some("shop"), ".hidden", false),
            (None, "", false),
        ] {
            assert_eq!(s.path_of(&SecretRef::new(ns, name)).is_ok(), ok, "{ns:?}/{name}");
        }
    }
}
