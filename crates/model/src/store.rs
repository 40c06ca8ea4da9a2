use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use portier_core::{Diagnostic, ObjectRef};

use crate::{Change, Resource};

/// Names a provider, so that one provider's `Resync` replaces only its own objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProviderId(pub &'static str);

/// An immutable set of objects, as compile sees it.
#[derive(Debug, Clone, Default)]
pub struct Model {
    objects: BTreeMap<ObjectRef, Arc<Resource>>,
    /// Problems found while reading, before any object could be built (a file that does not parse).
    diagnostics: Vec<Diagnostic>,
}

/// Applies [`Change`]s from any number of providers and produces [`Model`]s. When two providers
/// supply the same object, the later provider (by [`ProviderId`] order) wins.
#[derive(Debug, Default)]
pub struct ModelStore {
    by_provider: BTreeMap<ProviderId, ProviderSet>,
}

#[derive(Debug, Default)]
struct ProviderSet {
    objects: HashMap<ObjectRef, Arc<Resource>>,
    diagnostics: Vec<Diagnostic>,
}

// === impl Model ===

impl Model {
    pub fn from_resources(resources: impl IntoIterator<Item = Arc<Resource>>, diagnostics: Vec<Diagnostic>) -> Self {
        let objects = resources.into_iter().map(|r| (r.id.clone(), r)).collect();
        Self { objects, diagnostics }
    }

    pub fn get(&self, id: &ObjectRef) -> Option<&Arc<Resource>> {
        self.objects.get(id)
    }

    /// Every object, in `ObjectRef` order (kind, namespace, name): deterministic for compile.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Resource>> {
        self.objects.values()
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }
}

// === impl ModelStore ===

impl ModelStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn apply(&mut self, provider: ProviderId, change: Change) {
        let set = self.by_provider.entry(provider).or_default();
        match change {
            Change::Apply(r) => {
                set.objects.insert(r.id.clone(), r);
            }
            Change::Delete(id) => {
                set.objects.remove(&id);
            }
            Change::Resync { resources, diagnostics } => {
                set.objects = resources.into_iter().map(|r| (r.id.clone(), r)).collect();
                set.diagnostics = diagnostics;
            }
        }
    }

    pub fn model(&self) -> Model {
        let mut objects = BTreeMap::new();
        let mut diagnostics = Vec::new();
        for set in self.by_provider.values() {
            for (k, v) in &set.objects {
                objects.insert(k.clone(), v.clone());
            }
            diagnostics.extend(set.diagnostics.iter().cloned());
        }
        Model { objects, diagnostics }
    }
}
