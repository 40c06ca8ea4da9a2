//! The Prometheus registry of the process and the families the data plane and the control plane
//! update. Recording is lock-free apart from the read lock of a label family, and takes no
//! allocation when the caller passes shared label strings ([`Metrics::request_shared`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Metric, Registry};

/// The metrics of one process, all under the `portier_` prefix. Share it as `Arc<Metrics>`.
pub struct Metrics {
    registry: Registry,
    requests: Arc<Requests>,
    reloads: Family<ResultLabels, Counter>,
    last_reload_ok: Gauge,
    generation: Gauge,
    last_reload_time: Gauge<f64, AtomicU64>,
    connections: Family<ListenerLabels, Gauge>,
    worker_connections: Family<WorkerLabels, Gauge>,
    handshake_failures: Family<HandshakeLabels, Counter>,
    /// The label value for requests that matched no route, shared so recording them allocates nothing.
    empty: Arc<str>,
}

/// The request metrics of one Ingress and backend: its `200` answers and its durations, in one
/// allocation that keeps its counts for the life of the process. Resolve it once with
/// [`Metrics::route`] and record through it: no label hashing, no lock.
///
/// The data plane keeps the `Arc` on the route it resolved it for. With 10,000 routes each
/// request's handle is cold, so what a request records is laid out to miss once: the owner, the
/// `200` count, the sum and the first five buckets (below 25 ms) share the first cache line.
/// Before, the handle, the `200` counter and the histogram were three allocations: ~5 more
/// simulated cache misses per request at 10,000 hosts (`CACHESIM=1 bench/hosts-cost.sh`).
#[repr(C, align(64))]
pub struct RouteMetrics {
    /// The address of the [`Requests`] this belongs to (see [`belongs_to`](Self::belongs_to)).
    owner: usize,
    /// `200` answers: the one code a healthy route mostly answers, counted here and shown as a
    /// series only once it is not zero.
    ok: AtomicU64,
    durations: HistogramCells,
    /// Every other code, by label lookup in the shared family.
    other_codes: Family<RequestLabels, Counter>,
    ingress: Arc<str>,
    service: Arc<str>,
}

// The owner, the `200` count, the sum and the first bucket on the first cache line.
const _: () =
    assert!(std::mem::offset_of!(RouteMetrics, durations) + std::mem::offset_of!(HistogramCells, buckets) + 8 <= 64);

/// The request counts and durations of every Ingress and backend, encoded by [`RequestsCollector`]
/// on each scrape: the `200` counts and the durations from each route's [`RouteMetrics`], the
/// other codes from a label family.
#[derive(Debug, Default)]
struct Requests {
    routes: RwLock<HashMap<RouteKey, Arc<RouteMetrics>>>,
    other_codes: Family<RequestLabels, Counter>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct RouteKey {
    ingress: Arc<str>,
    service: Arc<str>,
}

/// Encodes `portier_http_requests_total` and `portier_http_request_duration_seconds` from
/// [`Requests`].
#[derive(Debug)]
struct RequestsCollector(Arc<Requests>);

/// The open-connection gauge of one listener. Take it once per listener, then call
/// [`open`](Self::open) per accepted connection: no label lookup per connection.
#[derive(Debug, Clone)]
pub struct ConnectionGauge {
    gauge: Gauge,
}

/// The open connections of one worker thread (see [`Metrics::worker_connections`]); a default
/// one is registered nowhere.
#[derive(Debug, Clone, Default)]
pub struct WorkerGauge {
    gauge: Gauge,
}

/// Counts one open connection until dropped.
#[derive(Debug)]
pub struct ConnectionGuard {
    gauge: Gauge,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    ingress: Arc<str>,
    service: Arc<str>,
    code: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IngressLabels {
    ingress: Arc<str>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: Arc<str>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabels {
    worker: u32,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandshakeLabels {
    reason: &'static str,
}

/// Why a TLS handshake ended without a connection: the `reason` of
/// `portier_tls_handshake_failures_total`. Failed handshakes are logged at debug only (any client
/// can cause one per connection), so this counter is how an operator sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// No complete handshake within the client header timeout.
    Timeout,
    /// The client ended the handshake with an alert: most often, it does not trust the
    /// certificate it was shown (expired, wrong name, unknown issuer).
    ClientAlert,
    /// No protocol version, cipher suite or key exchange in common, or a malformed or unexpected
    /// message: an old or broken client, or something that is not TLS.
    Protocol,
    /// The connection closed or failed before the handshake completed (port probes included).
    Closed,
}

impl HandshakeFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::ClientAlert => "client_alert",
            Self::Protocol => "protocol",
            Self::Closed => "closed",
        }
    }
}

/// A request-duration histogram updated with atomics only. prometheus-client's `Histogram` takes a
/// write lock per observation, which every core serving the same Ingress would contend on.
// In field order: the sum and the first buckets (below 1 ms is where most proxied requests land)
// follow the route's `200` count on its first cache line.
#[derive(Debug, Default)]
#[repr(C)]
struct HistogramCells {
    /// Sum of observations in microseconds: an integer sum needs no compare-and-swap loop.
    sum_us: AtomicU64,
    /// Observations per bucket (not cumulative); the last cell is above the largest bound.
    buckets: [AtomicU64; DURATION_BUCKETS_US.len() + 1],
}

/// Request duration bucket bounds in microseconds, 1 ms to 10 s: below 1 ms is the gateway's own
/// overhead, above 10 s a stuck upstream rather than a latency.
const DURATION_BUCKETS_US: [u64; 14] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 7_500_000,
    10_000_000,
];

// === impl Metrics ===

impl Metrics {
    /// A registry with every family of portier registered and no samples yet.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("portier");
        let requests = Arc::new(Requests::default());
        let reloads = Family::<ResultLabels, Counter>::default();
        let last_reload_ok = Gauge::default();
        let generation = Gauge::default();
        let last_reload_time = Gauge::<f64, AtomicU64>::default();
        let connections = Family::<ListenerLabels, Gauge>::default();
        let worker_connections = Family::<WorkerLabels, Gauge>::default();
        let handshake_failures = Family::<HandshakeLabels, Counter>::default();

        // Counters get their `_total` suffix from the encoder (OpenMetrics naming).
        registry.register_collector(Box::new(RequestsCollector(requests.clone())));
        registry.register(
            "config_reloads",
            "Configuration reloads, by result (success or failure)",
            reloads.clone(),
        );
        registry.register(
            "config_last_reload_successful",
            "Whether the last configuration reload succeeded (1) or failed (0)",
            last_reload_ok.clone(),
        );
        registry.register(
            "config_generation",
            "Generation of the configuration snapshot now serving",
            generation.clone(),
        );
        registry.register(
            "config_last_reload_timestamp_seconds",
            "Unix time of the last configuration reload attempt",
            last_reload_time.clone(),
        );
        registry.register(
            "http_connections_active",
            "Open client connections, by listener",
            connections.clone(),
        );
        registry.register(
            "worker_connections",
            "Open client connections, by worker thread (with more than one)",
            worker_connections.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that ended without a connection, by reason (timeout, client_alert, protocol, closed)",
            handshake_failures.clone(),
        );
        Self {
            registry,
            requests,
            reloads,
            last_reload_ok,
            generation,
            last_reload_time,
            connections,
            worker_connections,
            handshake_failures,
            empty: Arc::from(""),
        }
    }

    /// Registers a family owned by another crate, under the `portier_` prefix. Call it before the
    /// registry is shared.
    pub fn register(&mut self, name: &str, help: &str, metric: impl Metric) {
        self.registry.register(name, help, metric);
    }

    /// Records one answered request. `ingress` and `service` are empty when no route matched.
    /// Allocates the label strings; the data plane uses [`request_shared`](Self::request_shared).
    pub fn request(&self, ingress: &str, service: &str, code: u16, duration: Duration) {
        let ingress = self.shared(ingress);
        let service = self.shared(service);
        self.request_shared(&ingress, &service, code, duration);
    }

    /// Records one answered request with label strings the caller already shares (the route's
    /// `ingress` and `backend`): costs reference-count updates, no allocation once the series exists.
    pub fn request_shared(&self, ingress: &Arc<str>, service: &Arc<str>, code: u16, duration: Duration) {
        let key = RouteKey {
            ingress: ingress.clone(),
            service: service.clone(),
        };
        let routes = self.requests.routes.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(route) = routes.get(&key) {
            route.observe(code, duration);
            return;
        }
        drop(routes);
        self.requests.route(key).observe(code, duration);
    }

    /// The request metrics of `ingress` and `service`, for recording many requests. Every call
    /// for the same pair returns the same counts, so a handle resolved after a reload continues
    /// the one before it.
    pub fn route(&self, ingress: &Arc<str>, service: &Arc<str>) -> Arc<RouteMetrics> {
        self.requests.route(RouteKey {
            ingress: ingress.clone(),
            service: service.clone(),
        })
    }

    /// The shared empty label value, for requests without a route.
    pub fn no_label(&self) -> &Arc<str> {
        &self.empty
    }

    /// Records a configuration reload attempt; `generation` is the snapshot generation serving after it.
    pub fn reload(&self, success: bool, generation: u64) {
        let result = if success { "success" } else { "failure" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
        self.last_reload_ok.set(i64::from(success));
        self.generation.set(i64::try_from(generation).unwrap_or(i64::MAX));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        self.last_reload_time.set(now);
    }

    /// The open-connection gauge of `listener` (e.g. `http`, `https`).
    pub fn connections(&self, listener: &str) -> ConnectionGauge {
        ConnectionGauge {
            gauge: self.connections.get_or_create_owned(&ListenerLabels {
                listener: Arc::from(listener),
            }),
        }
    }

    /// The open-connection gauge of worker thread `worker`; when the data plane hands
    /// connections to its workers, it also picks the least busy by it.
    pub fn worker_connections(&self, worker: u32) -> WorkerGauge {
        WorkerGauge {
            gauge: self.worker_connections.get_or_create_owned(&WorkerLabels { worker }),
        }
    }

    /// Counts a TLS handshake that failed. Not on the request path: one label lookup is fine.
    pub fn tls_handshake_failed(&self, why: HandshakeFailure) {
        self.handshake_failures
            .get_or_create(&HandshakeLabels { reason: why.as_str() })
            .inc();
    }

    /// Every family in the Prometheus/OpenMetrics text format, as `/metrics` serves it.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail; an encoder error would only come from a label value
        // that fails to format, and then the scrape returns what was written so far.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    fn shared(&self, s: &str) -> Arc<str> {
        if s.is_empty() {
            self.empty.clone()
        } else {
            Arc::from(s)
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

// === impl HistogramCells ===

impl HistogramCells {
    fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = DURATION_BUCKETS_US.partition_point(|&bound| bound < us);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Adds this histogram's counts to `buckets` (per bucket, not cumulative) and its sum to `sum_us`.
    fn add_to(&self, buckets: &mut [u64; DURATION_BUCKETS_US.len() + 1], sum_us: &mut u64) {
        for (total, cell) in buckets.iter_mut().zip(&self.buckets) {
            *total += cell.load(Ordering::Relaxed);
        }
        *sum_us += self.sum_us.load(Ordering::Relaxed);
    }
}

// === impl Requests ===

impl Requests {
    /// The metrics of one Ingress and backend, made on first use.
    fn route(self: &Arc<Self>, key: RouteKey) -> Arc<RouteMetrics> {
        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        let owner = Arc::as_ptr(self) as usize;
        let other_codes = &self.other_codes;
        routes
            .entry(key)
            .or_insert_with_key(|key| {
                Arc::new(RouteMetrics {
                    owner,
                    ok: AtomicU64::new(0),
                    durations: HistogramCells::default(),
                    other_codes: other_codes.clone(),
                    ingress: key.ingress.clone(),
                    service: key.service.clone(),
                })
            })
            .clone()
    }
}

// === impl RequestsCollector ===

impl Collector for RequestsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let requests = &self.0;
        // Sorted, so that a scrape lists an Ingress's series together and in a stable order.
        let mut routes: Vec<Arc<RouteMetrics>> = requests
            .routes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        routes.sort_unstable_by(|a, b| (&a.ingress, &a.service).cmp(&(&b.ingress, &b.service)));

        let answered_ok = routes.iter().any(|r| r.ok.load(Ordering::Relaxed) > 0);
        if answered_ok || !requests.other_codes.is_empty() {
            let mut family = encoder.encode_descriptor(
                "http_requests",
                "HTTP requests answered, by Ingress, backend service and status code",
                None,
                MetricType::Counter,
            )?;
            for route in &routes {
                let n = route.ok.load(Ordering::Relaxed);
                if n == 0 {
                    continue;
                }
                let labels = RequestLabels {
                    ingress: route.ingress.clone(),
                    service: route.service.clone(),
                    code: 200,
                };
                family
                    .encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
            }
            requests.other_codes.encode(family)?;
        }

        // One histogram per Ingress: the sum over its backends. An Ingress's appears with its
        // first answer: its cells exist from its first request's routing, before that.
        let mut histograms = Vec::new();
        for same in routes.chunk_by(|a, b| a.ingress == b.ingress) {
            let mut counts = [0u64; DURATION_BUCKETS_US.len() + 1];
            let mut sum_us = 0;
            for route in same {
                route.durations.add_to(&mut counts, &mut sum_us);
            }
            // Count is the sum of the buckets as read, so `+Inf` always equals `_count` in a
            // scrape even while observations race with it.
            let count: u64 = counts.iter().sum();
            if count > 0 {
                histograms.push((&same[0].ingress, counts, count, sum_us));
            }
        }
        if !histograms.is_empty() {
            let mut family = encoder.encode_descriptor(
                "http_request_duration_seconds",
                "Time from request headers to the end of the response body, by Ingress",
                None,
                MetricType::Histogram,
            )?;
            for (ingress, counts, count, sum_us) in histograms {
                let mut buckets = [(0.0, 0u64); DURATION_BUCKETS_US.len() + 1];
                for (i, n) in counts.into_iter().enumerate() {
                    // `f64::MAX` is how prometheus-client spells the `+Inf` bucket.
                    let bound = DURATION_BUCKETS_US.get(i).map_or(f64::MAX, |&us| us as f64 / 1e6);
                    buckets[i] = (bound, n);
                }
                let labels = IngressLabels {
                    ingress: ingress.clone(),
                };
                family.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
                    sum_us as f64 / 1e6,
                    count,
                    &buckets,
                    None,
                )?;
            }
        }
        Ok(())
    }
}

// === impl RouteMetrics ===

impl RouteMetrics {
    /// Counts one answered request and its duration, as [`Metrics::request_shared`] does.
    pub fn observe(&self, code: u16, duration: Duration) {
        if code == 200 {
            self.ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.other_codes
                .get_or_create(&RequestLabels {
                    ingress: self.ingress.clone(),
                    service: self.service.clone(),
                    code,
                })
                .inc();
        }
        self.durations.observe(duration);
    }

    /// Whether this records into `metrics` (a process may run two registries, as tests do).
    pub fn belongs_to(&self, metrics: &Metrics) -> bool {
        self.owner == Arc::as_ptr(&metrics.requests) as usize
    }
}

impl fmt::Debug for RouteMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteMetrics")
            .field("ingress", &self.ingress)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

// === impl WorkerGauge ===

impl WorkerGauge {
    pub fn get(&self) -> i64 {
        self.gauge.get()
    }

    /// Counts a connection against the worker until the guard is dropped.
    pub fn open(&self) -> ConnectionGuard {
        open(&self.gauge)
    }
}

// === impl ConnectionGauge ===

impl ConnectionGauge {
    /// Counts a new connection until the guard is dropped.
    pub fn open(&self) -> ConnectionGuard {
        open(&self.gauge)
    }
}

fn open(gauge: &Gauge) -> ConnectionGuard {
    gauge.inc();
    ConnectionGuard { gauge: gauge.clone() }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_failures_are_counted_by_reason_with_no_zero_series() {
        let m = Metrics::new();
        m.tls_handshake_failed(HandshakeFailure::ClientAlert);
        m.tls_handshake_failed(HandshakeFailure::ClientAlert);
        m.tls_handshake_failed(HandshakeFailure::Timeout);
        let text = m.encode();
        assert!(text.contains("# TYPE portier_tls_handshake_failures counter"), "{text}");
        assert!(
            text.contains(r#"portier_tls_handshake_failures_total{reason="client_alert"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"portier_tls_handshake_failures_total{reason="timeout"} 1"#),
            "{text}"
        );
        assert!(!text.contains(r#"reason="protocol""#), "{text}");
    }

    #[test]
    fn route_handle_records_what_request_records() {
        let (a, b) = (Metrics::new(), Metrics::new());
        let (ingress, service): (Arc<str>, Arc<str>) = (Arc::from("shop/web"), Arc::from("shop/web:80"));
        let handle = b.route(&ingress, &service);
        for (code, ms) in [(200, 3), (200, 30), (502, 1), (404, 2000)] {
            a.request_shared(&ingress, &service, code, Duration::from_millis(ms));
            handle.observe(code, Duration::from_millis(ms));
        }
        // Series order within a family follows a hash map: compare as sets of lines.
        let lines = |m: &Metrics| {
            let mut v: Vec<String> = m.encode().lines().map(str::to_owned).collect();
            v.sort();
            v
        };
        assert_eq!(lines(&a), lines(&b));
    }

    #[test]
    fn route_counts_outlive_the_handle_and_an_ingress_sums_its_backends() {
        let m = Metrics::new();
        let ingress: Arc<str> = Arc::from("shop/web");
        let (web, api): (Arc<str>, Arc<str>) = (Arc::from("shop/web:80"), Arc::from("shop/api:80"));
        // A handle resolved before a reload and one after it count into the same series.
        m.route(&ingress, &web).observe(200, Duration::from_micros(500));
        let again = m.route(&ingress, &web);
        again.observe(200, Duration::from_millis(3));
        assert!(again.belongs_to(&m));
        assert!(!again.belongs_to(&Metrics::new()));
        // A backend that never answered 200 shows no zero 200 series.
        m.route(&ingress, &api).observe(503, Duration::from_millis(20));
        let text = m.encode();
        for line in [
            r#"portier_http_requests_total{ingress="shop/web",service="shop/web:80",code="200"} 2"#,
            r#"portier_http_requests_total{ingress="shop/web",service="shop/api:80",code="503"} 1"#,
            r#"portier_http_request_duration_seconds_bucket{le="0.001",ingress="shop/web"} 1"#,
            r#"portier_http_request_duration_seconds_bucket{le="0.005",ingress="shop/web"} 2"#,
            r#"portier_http_request_duration_seconds_bucket{le="0.025",ingress="shop/web"} 3"#,
            r#"portier_http_request_duration_seconds_count{ingress="shop/web"} 3"#,
            r#"portier_http_request_duration_seconds_sum{ingress="shop/web"} 0.0235"#,
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        assert!(!text.contains(r#"service="shop/api:80",code="200""#), "{text}");
        assert_eq!(
            text.matches("# TYPE portier_http_requests counter").count(),
            1,
            "{text}"
        );
        assert_eq!(
            text.matches("portier_http_request_duration_seconds_count{").count(),
            1,
            "one histogram per Ingress:\n{text}"
        );
    }

    #[test]
    fn no_request_no_request_families() {
        let m = Metrics::new();
        let text = m.encode();
        assert!(!text.contains("portier_http_request"), "{text}");
        // Cells made for a request not answered yet (the data plane makes them when it routes
        // the request) show nothing until it is.
        let cells = m.route(&Arc::from("a/b"), &Arc::from("a/b:80"));
        let text = m.encode();
        assert!(!text.contains("portier_http_request"), "{text}");
        cells.observe(200, Duration::from_millis(3));
        let text = m.encode();
        assert!(
            text.contains(r#"portier_http_requests_total{ingress="a/b",service="a/b:80",code="200"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"portier_http_request_duration_seconds_count{ingress="a/b"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn encodes_every_family_with_prefix_and_labels() {
        let m = Metrics::new();
        m.request("shop/web", "shop/web:80", 200, Duration::from_millis(3));
        m.request("", "", 404, Duration::from_micros(200));
        m.reload(true, 7);
        let conns = m.connections("http");
        let guard = conns.open();
        let text = m.encode();
        let want = [
            r#"portier_http_requests_total{ingress="shop/web",service="shop/web:80",code="200"} 1"#,
            r#"portier_http_requests_total{ingress="",service="",code="404"} 1"#,
            r#"portier_http_request_duration_seconds_bucket{le="0.005",ingress="shop/web"} 1"#,
            r#"portier_config_reloads_total{result="success"} 1"#,
            "portier_config_last_reload_successful 1",
            "portier_config_generation 7",
            "portier_config_last_reload_timestamp_seconds ",
            r#"portier_http_request_duration_seconds_bucket{le="0.0025",ingress="shop/web"} 0"#,
            r#"portier_http_request_duration_seconds_bucket{le="+Inf",ingress="shop/web"} 1"#,
            r#"portier_http_request_duration_seconds_count{ingress="shop/web"} 1"#,
            r#"portier_http_request_duration_seconds_sum{ingress="shop/web"} 0.003"#,
            r#"portier_http_request_duration_seconds_bucket{le="0.001",ingress=""} 1"#,
            r#"portier_http_connections_active{listener="http"} 1"#,
        ];
        for line in want {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        drop(guard);
        assert!(m
            .encode()
            .contains(r#"portier_http_connections_active{listener="http"} 0"#));
        m.reload(false, 7);
        let text = m.encode();
        assert!(text.contains("portier_config_last_reload_successful 0"), "{text}");
        assert!(
            text.contains(r#"portier_config_reloads_total{result="failure"} 1"#),
            "{text}"
        );
    }
}
