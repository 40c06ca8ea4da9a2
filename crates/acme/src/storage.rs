//! Where ACME account keys persist. Files under the state directory by default; a cluster
//! deployment implements [`Storage`] with Secrets.

use std::io::Write;
use std::path::{Path, PathBuf};

use futures_util::future::BoxFuture;

use crate::issuer::SecretRef;

/// Persists ACME account keys (PEM, PKCS#8 ECDSA P-256), keyed by the issuer's
/// `privateKeySecretRef`. Implementations must be safe to call concurrently.
pub trait Storage: Send + Sync {
    /// The stored account key PEM, or `None` when there is none yet.
    fn load_account_key<'a>(&'a self, secret: &'a SecretRef) -> BoxFuture<'a, Result<Option<String>, StorageError>>;
    /// Stores (replaces) the account key PEM.
    fn store_account_key<'a>(&'a self, secret: &'a SecretRef, pem: &'a str) -> BoxFuture<'a, Result<(), StorageError>>;
}

/// Account keys as files: `DIR/accounts/NAMESPACE/NAME.pem` (`_cluster` for a ClusterIssuer's
/// key), written atomically with mode 0600.
#[derive(Debug, Clone)]
pub struct FileStorage {
    dir: PathBuf,
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
}

// === impl FileStorage ===

impl FileStorage {
    /// Keys go under `state_dir/accounts`; directories are created on the first store.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self { dir: state_dir.into() }
    }

    /// The file that holds the key of `secret`.
    pub fn path_of(&self, secret: &SecretRef) -> Result<PathBuf, StorageError> {
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
        match std::fs::read_to_string(&path) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StorageError::Io {
                secret: secret.to_string(),
                path,
                source,
            }),
        }
    }

    fn store(&self, secret: &SecretRef, pem: &str) -> Result<(), StorageError> {
        let path = self.path_of(secret)?;
        let io = |path: &Path, source| StorageError::Io {
            secret: secret.to_string(),
            path: path.to_owned(),
            source,
        };
        let parent = path.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        // Write a sibling file created 0600 and rename it over the old one, so a crash never
        // leaves a half-written key and the key is never readable by others, not even briefly.
        let tmp = path.with_extension("pem.tmp");
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).map_err(|e| io(&tmp, e))?;
        f.write_all(pem.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("portier-acme-storage-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[tokio::test]
    async fn stores_keys_0600_and_reads_them_back() {
        let dir = tempdir("rw");
        let s = FileStorage::new(&dir);
        let r = SecretRef::new(None, "letsencrypt-account-key");
        assert_eq!(s.load_account_key(&r).await.ok().flatten(), None);
        s.store_account_key(&r, "PEM1").await.expect("store");
        s.store_account_key(&r, "PEM2").await.expect("replace");
        assert_eq!(s.load_account_key(&r).await.ok().flatten().as_deref(), Some("PEM2"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let path = s.path_of(&r).expect("valid name");
            let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", path.display());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn names_cannot_escape_the_directory() {
        let s = FileStorage::new("/state");
        for (ns, name, ok) in [
            (Some("shop"), "key", true),
            (None, "../etc", false),
            (Some(".."), "k", false),
            (Some("a/b"), "k", false),
            (None, "", false),
        ] {
            assert_eq!(s.path_of(&SecretRef::new(ns, name)).is_ok(), ok, "{ns:?}/{name}");
        }
    }
}
