use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use portier_core::Generation;

use crate::Snapshot;

/// Holds the live snapshot. Readers take one lock-free load; the control plane publishes with one
/// atomic store. A reader keeps its `Arc` for the whole exchange, so an old snapshot lives exactly as
/// long as the requests that still use it.
#[derive(Debug)]
pub struct SnapshotCell {
    current: ArcSwap<Snapshot>,
    next_generation: AtomicU64,
}

// === impl SnapshotCell ===

impl SnapshotCell {
    /// A cell holding `initial` as generation 0, which means "not ready": nothing has been published yet.
    pub fn new(initial: Snapshot) -> Self {
        let mut initial = initial;
        initial.generation = 0;
        Self {
            current: ArcSwap::from_pointee(initial),
            next_generation: AtomicU64::new(1),
        }
    }

    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// A guard for the hot path: cheaper than [`load`](Self::load) when held briefly.
    pub fn load_guard(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// Stamps the next generation on `snapshot` and makes it live. Returns the generation.
    pub fn publish(&self, snapshot: Snapshot) -> Generation {
        self.replace(snapshot).0
    }

    /// [`publish`](Self::publish), handing back the snapshot it replaced, so the caller chooses
    /// the thread that frees it: a snapshot of 10,000 routes takes milliseconds to drop.
    pub fn replace(&self, mut snapshot: Snapshot) -> (Generation, Arc<Snapshot>) {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        snapshot.generation = generation;
        (generation, self.current.swap(Arc::new(snapshot)))
    }

    /// True once a first snapshot has been published.
    pub fn is_ready(&self) -> bool {
        self.current.load().generation > 0
    }
}
