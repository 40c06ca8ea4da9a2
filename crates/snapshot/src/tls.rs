use std::collections::HashMap;
use std::sync::Arc;

use rustls::sign::CertifiedKey;

/// The server certificates, chosen by SNI: exact name, then `*.` wildcard (one label), then the
/// fallback certificate, so a handshake always completes and the client sees a clear certificate
/// error rather than a reset.
#[derive(Debug, Clone)]
pub struct TlsStore {
    exact: HashMap<Box<str>, CertEntry>,
    wildcard: HashMap<Box<str>, CertEntry>,
    fallback: CertEntry,
}

/// A certificate with its private key and where it came from.
#[derive(Debug, Clone)]
pub struct CertEntry {
    pub certified: Arc<CertifiedKey>,
    /// `namespace/name` of the Secret, or `fallback`.
    pub source: Arc<str>,
}

#[derive(Debug)]
pub struct TlsStoreBuilder {
    store: TlsStore,
}

// === impl TlsStore ===

impl TlsStore {
    pub fn builder(fallback: CertEntry) -> TlsStoreBuilder {
        TlsStoreBuilder {
            store: TlsStore {
                exact: HashMap::new(),
                wildcard: HashMap::new(),
                fallback,
            },
        }
    }

    /// The certificate for a server name. `sni` must already be lower-case (rustls lower-cases it).
    pub fn resolve(&self, sni: Option<&str>) -> &CertEntry {
        self.lookup(sni).unwrap_or(&self.fallback)
    }

    /// The certificate configured for a name, without the fallback.
    pub fn lookup(&self, sni: Option<&str>) -> Option<&CertEntry> {
        let name = sni?;
        if let Some(e) = self.exact.get(name) {
            return Some(e);
        }
        let (first, parent) = name.split_once('.')?;
        if first.is_empty() {
            return None;
        }
        self.wildcard.get(parent)
    }

    pub fn fallback(&self) -> &CertEntry {
        &self.fallback
    }

    /// Every configured name with its certificate, sorted by name.
    pub fn names(&self) -> Vec<(String, &CertEntry)> {
        let mut v: Vec<(String, &CertEntry)> = self
            .exact
            .iter()
            .map(|(k, e)| (k.to_string(), e))
            .chain(self.wildcard.iter().map(|(k, e)| (format!("*.{k}"), e)))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    pub(crate) fn same_content(&self, other: &TlsStore) -> bool {
        fn same_map(a: &HashMap<Box<str>, CertEntry>, b: &HashMap<Box<str>, CertEntry>) -> bool {
            a.len() == b.len() && a.iter().all(|(k, e)| b.get(k).is_some_and(|o| e.same(o)))
        }
        same_map(&self.exact, &other.exact)
            && same_map(&self.wildcard, &other.wildcard)
            && self.fallback.same(&other.fallback)
    }
}

// === impl CertEntry ===

impl CertEntry {
    fn same(&self, other: &CertEntry) -> bool {
        Arc::ptr_eq(&self.certified, &other.certified)
            || (self.source == other.source && self.certified.cert == other.certified.cert)
    }
}

// === impl TlsStoreBuilder ===

impl TlsStoreBuilder {
    /// Serves `entry` for `name` (`app.example.com` or `*.example.com`, lower-case). Returns false,
    /// leaving the first one in place, when the name already has a certificate.
    pub fn insert(&mut self, name: &str, entry: CertEntry) -> bool {
        let (map, key) = match name.strip_prefix("*.") {
            Some(parent) => (&mut self.store.wildcard, parent),
            None => (&mut self.store.exact, name),
        };
        if map.contains_key(key) {
            return false;
        }
        map.insert(key.into(), entry);
        true
    }

    pub fn build(self) -> TlsStore {
        self.store
    }
}
