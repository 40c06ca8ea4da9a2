use std::collections::BTreeMap;
use std::sync::Arc;

use portier_core::{Diagnostic, Kind, ObjectRef};

use crate::{Change, Resource};

/// Names a provider, so that one provider's `Resync` replaces only its own objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProviderId(pub &'static str);

/// An immutable set of objects, as compile sees it.
#[derive(Debug, Clone, Default)]
pub struct Model {
    /// Sorted by id, one per id. A sorted list rather than a map: each object already carries its
    /// id, and a map would hold a second copy of every one.
    objects: Vec<Arc<Resource>>,
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
    /// Sorted by id, one per id.
    objects: Vec<Arc<Resource>>,
    diagnostics: Vec<Diagnostic>,
}

// === impl Model ===

impl Model {
    /// A model of `resources`; of two with the same id, the later one is kept.
    pub fn from_resources(resources: impl IntoIterator<Item = Arc<Resource>>, diagnostics: Vec<Diagnostic>) -> Self {
        Self {
            objects: by_id(resources.into_iter().collect()),
            diagnostics,
        }
    }

    pub fn get(&self, id: &ObjectRef) -> Option<&Arc<Resource>> {
        find(&self.objects, id).ok().map(|i| &self.objects[i])
    }

    /// Every object, in `ObjectRef` order (kind, namespace, name): deterministic for compile.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Resource>> {
        self.objects.iter()
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
            Change::Apply(r) => match find(&set.objects, &r.id) {
                Ok(i) => set.objects[i] = r,
                Err(i) => set.objects.insert(i, r),
            },
            Change::Delete(id) => {
                if let Ok(i) = find(&set.objects, &id) {
                    set.objects.remove(i);
                }
            }
            Change::Resync { resources, diagnostics } => {
                // The same ids in the same places as the sorted set it replaces (the usual reload):
                // sorted already. Objects shared with that set compare by address alone.
                let same_ids = resources.len() == set.objects.len()
                    && resources
                        .iter()
                        .zip(&set.objects)
                        .all(|(a, b)| Arc::ptr_eq(a, b) || a.id == b.id);
                set.objects = if same_ids { resources } else { by_id(resources) };
                set.diagnostics = diagnostics;
            }
        }
    }

    pub fn model(&self) -> Model {
        let mut diagnostics = Vec::new();
        let mut sets = self.by_provider.values();
        let mut objects = match sets.next() {
            Some(first) => {
                diagnostics.extend(first.diagnostics.iter().cloned());
                first.objects.clone()
            }
            None => Vec::new(),
        };
        for set in sets {
            if !set.objects.is_empty() {
                // Later providers win: chain after the earlier ones, and keep the last of equal ids.
                objects.extend(set.objects.iter().cloned());
                objects = by_id(objects);
            }
            diagnostics.extend(set.diagnostics.iter().cloned());
        }
        Model { objects, diagnostics }
    }
}

/// Sorts by id and keeps, of equal ids, the one that came last.
fn by_id(objects: Vec<Arc<Resource>>) -> Vec<Arc<Resource>> {
    // The files provider sends its objects in this order already.
    if objects.windows(2).all(|w| w[0].id < w[1].id) {
        return objects;
    }
    let order = order_by_id(objects.iter().map(|r| &r.id));
    let mut slots: Vec<Option<Arc<Resource>>> = objects.into_iter().map(Some).collect();
    let mut out: Vec<Arc<Resource>> = Vec::with_capacity(slots.len());
    for i in order {
        let Some(r) = slots[i].take() else { continue };
        match out.last_mut() {
            // Stable order: of equal ids, the latest comes last and replaces the others.
            Some(last) if last.id == r.id => *last = r,
            _ => out.push(r),
        }
    }
    out
}

/// The positions of `ids` in id order; equal ids keep their order. The ids are copied
/// into one buffer first: at ten thousand objects, comparing them where they live, one
/// allocation each, made sorting the slowest part of a reload.
pub fn order_by_id<'a>(ids: impl IntoIterator<Item = &'a ObjectRef>) -> Vec<usize> {
    struct Key {
        kind: Kind,
        namespace: Option<(usize, usize)>,
        name: (usize, usize),
    }
    let mut text = String::new();
    let mut push = |s: &str| {
        let start = text.len();
        text.push_str(s);
        (start, text.len())
    };
    let keys: Vec<Key> = ids
        .into_iter()
        .map(|id| Key {
            kind: id.kind,
            namespace: id.namespace.as_deref().map(&mut push),
            name: push(&id.name),
        })
        .collect();
    let get = |(start, end): (usize, usize)| &text[start..end];
    let mut order: Vec<usize> = (0..keys.len()).collect();
    // Stable, and the same order as `ObjectRef`'s: kind, then namespace (none first), then name.
    order.sort_by(|&a, &b| {
        let (a, b) = (&keys[a], &keys[b]);
        a.kind
            .cmp(&b.kind)
            .then_with(|| a.namespace.map(get).cmp(&b.namespace.map(get)))
            .then_with(|| get(a.name).cmp(get(b.name)))
    });
    order
}

fn find(objects: &[Arc<Resource>], id: &ObjectRef) -> Result<usize, usize> {
    objects.binary_search_by(|r| r.id.cmp(id))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{Object, Origin};
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn config_map(ns: &str, name: &str, port: &str) -> Arc<Resource> {
        let mut meta = ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(ns.to_owned()),
            ..ObjectMeta::default()
        };
        meta.labels = Some([("port".to_owned(), port.to_owned())].into());
        Arc::new(Resource::new(
            Object::ConfigMap(Box::new(ConfigMap {
                metadata: meta,
                ..ConfigMap::default()
            })),
            Origin::none(),
        ))
    }

    fn view(model: &Model) -> Vec<String> {
        model
            .iter()
            .map(|r| format!("{} {}", r.id, r.labels()["port"]))
            .collect()
    }

    #[test]
    fn objects_are_kept_by_id_and_later_ones_win() {
        let mut store = ModelStore::new();
        let (a, b) = (ProviderId("a"), ProviderId("b"));
        let resync = |resources| Change::Resync {
            resources,
            diagnostics: Vec::new(),
        };
        store.apply(
            a,
            resync(vec![
                config_map("ns", "z", "1"),
                config_map("ns", "x", "1"),
                config_map("ns", "z", "2"),
            ]),
        );
        store.apply(b, resync(vec![config_map("ns", "x", "3"), config_map("a", "y", "3")]));
        store.apply(a, Change::Apply(config_map("ns", "w", "4")));
        assert_eq!(
            view(&store.model()),
            [
                "ConfigMap a/y 3",
                "ConfigMap ns/w 4",
                "ConfigMap ns/x 3",
                "ConfigMap ns/z 2"
            ]
        );
        store.apply(b, Change::Delete(ObjectRef::namespaced(Kind::ConfigMap, "ns", "x")));
        store.apply(a, Change::Delete(ObjectRef::namespaced(Kind::ConfigMap, "ns", "w")));
        let model = store.model();
        assert_eq!(
            view(&model),
            ["ConfigMap a/y 3", "ConfigMap ns/x 1", "ConfigMap ns/z 2"]
        );
        let id = ObjectRef::namespaced(Kind::ConfigMap, "ns", "z");
        assert_eq!(model.get(&id).map(|r| r.id.clone()), Some(id));
        assert!(model.get(&ObjectRef::namespaced(Kind::ConfigMap, "ns", "w")).is_none());
    }
}
