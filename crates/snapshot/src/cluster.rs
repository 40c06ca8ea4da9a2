use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Index of a [`Cluster`] in its snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterId(u32);

/// The ready endpoints behind one Service port: what a route proxies to.
#[derive(Debug)]
pub struct Cluster {
    /// `namespace/service:port`, as metrics and logs show it.
    pub name: Arc<str>,
    /// `namespace/service`, the metric label.
    pub service: Arc<str>,
    pub endpoints: Arc<[SocketAddr]>,
    /// The endpoint when there is exactly one (most Services in a cluster of many): picking it
    /// then reads no line beyond this one. With 10,000 hosts each cluster is cold.
    single: Option<SocketAddr>,
    next: AtomicUsize,
}

// === impl ClusterId ===

impl ClusterId {
    pub fn new(index: usize) -> Self {
        Self(u32::try_from(index).unwrap_or(u32::MAX))
    }

    pub fn index(self) -> usize {
        self.0 as usize
    }
}

// === impl Cluster ===

impl Cluster {
    pub fn new(name: impl Into<Arc<str>>, service: impl Into<Arc<str>>, endpoints: Vec<SocketAddr>) -> Self {
        Self {
            name: name.into(),
            service: service.into(),
            single: match endpoints[..] {
                [one] => Some(one),
                _ => None,
            },
            endpoints: endpoints.into(),
            next: AtomicUsize::new(0),
        }
    }

    /// Round-robin over the ready endpoints; `None` when there is none (the caller answers 503).
    pub fn pick(&self) -> Option<SocketAddr> {
        if self.single.is_some() {
            return self.single;
        }
        match self.endpoints.len() {
            0 => None,
            n => Some(self.endpoints[self.next.fetch_add(1, Ordering::Relaxed) % n]),
        }
    }

    pub fn same_content(&self, other: &Cluster) -> bool {
        self.name == other.name && self.service == other.service && self.endpoints == other.endpoints
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_visits_every_endpoint() {
        let eps: Vec<SocketAddr> = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let c = Cluster::new("ns/s:80", "ns/s", eps.clone());
        let picked: Vec<_> = (0..6).map(|_| c.pick().unwrap()).collect();
        assert_eq!(picked[..3], eps[..]);
        assert_eq!(picked[3..], eps[..]);
        assert_eq!(Cluster::new("x", "x", vec![]).pick(), None);
        assert_eq!(Cluster::new("x", "x", eps[..1].to_vec()).pick(), Some(eps[0]));
    }
}
