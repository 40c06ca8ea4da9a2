//! The Prometheus registry of the process and the families the data plane and the control plane
//! update. Recording is lock-free apart from the read lock of a label family, and takes no
//! allocation when the caller passes shared label strings ([`Metrics::request_shared`]).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Metric, Registry};

/// The metrics of one process, all under the `portier_` prefix. Share it as `Arc<Metrics>`.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<IngressLabels, DurationHistogram>,
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

/// The request metrics of one Ingress and backend, resolved once: recording through it skips
/// the label-set hashing and map lookups of [`Metrics::request_shared`] (~900 instructions per
/// request, callgrind).
///
/// The data plane keeps it on the route it resolved it for, by value rather than behind one
/// more `Arc`: with 10,000 routes each request's handle is cold, and every pointer between the
/// route and the counter cells is a cache miss.
#[derive(Debug, Clone)]
pub struct RouteMetrics {
    /// The `200` counter, made on the first 200 so a route that never answered one shows no
    /// zero series.
    ok: OnceLock<Counter>,
    duration: DurationHistogram,
    requests: Family<RequestLabels, Counter>,
    ingress: Arc<str>,
    service: Arc<str>,
}

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
#[derive(Debug, Clone, Default)]
struct DurationHistogram {
    inner: Arc<HistogramCells>,
}

// In field order: the sum and the first bucket (below 1 ms, where most proxied requests land)
// share a cache line, so an observation of a cold route's histogram misses once, not twice.
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
        let requests = Family::<RequestLabels, Counter>::default();
        let durations = Family::<IngressLabels, DurationHistogram>::default();
        let reloads = Family::<ResultLabels, Counter>::default();
        let last_reload_ok = Gauge::default();
        let generation = Gauge::default();
        let last_reload_time = Gauge::<f64, AtomicU64>::default();
        let connections = Family::<ListenerLabels, Gauge>::default();
        let worker_connections = Family::<WorkerLabels, Gauge>::default();
        let handshake_failures = Family::<HandshakeLabels, Counter>::default();

        // Counters get their `_total` suffix from the encoder (OpenMetrics naming).
        registry.register(
            "http_requests",
            "HTTP requests answered, by Ingress, backend service and status code",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from request headers to the end of the response body, by Ingress",
            durations.clone(),
        );
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
            durations,
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
        self.requests
            .get_or_create(&RequestLabels {
                ingress: ingress.clone(),
                service: service.clone(),
                code,
            })
            .inc();
        self.durations
            .get_or_create(&IngressLabels {
                ingress: ingress.clone(),
            })
            .observe(duration);
    }

    /// The shared empty label value, for requests without a route.
    /// The request metrics of `ingress` and `service`, for recording many requests.
    pub fn route(&self, ingress: &Arc<str>, service: &Arc<str>) -> RouteMetrics {
        let duration = self.durations.get_or_create_owned(&IngressLabels {
            ingress: ingress.clone(),
        });
        RouteMetrics {
            ok: OnceLock::new(),
            duration,
            requests: self.requests.clone(),
            ingress: ingress.clone(),
            service: service.clone(),
        }
    }

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

// === impl DurationHistogram ===

impl DurationHistogram {
    fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = DURATION_BUCKETS_US.partition_point(|&bound| bound < us);
        self.inner.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.inner.sum_us.fetch_add(us, Ordering::Relaxed);
    }
}

impl TypedMetric for DurationHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for DurationHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), fmt::Error> {
        let mut buckets = [(0.0, 0u64); DURATION_BUCKETS_US.len() + 1];
        let mut count = 0;
        for (i, cell) in self.inner.buckets.iter().enumerate() {
            let n = cell.load(Ordering::Relaxed);
            // `f64::MAX` is how prometheus-client spells the `+Inf` bucket.
            let bound = DURATION_BUCKETS_US.get(i).map_or(f64::MAX, |&us| us as f64 / 1e6);
            buckets[i] = (bound, n);
            count += n;
        }
        // Count is the sum of the buckets as read, so `+Inf` always equals `_count` in a scrape
        // even while observations race with it.
        let sum = self.inner.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

// === impl RouteMetrics ===

impl RouteMetrics {
    /// Counts one answered request and its duration, as [`Metrics::request_shared`] does.
    pub fn observe(&self, code: u16, duration: Duration) {
        let labels = || RequestLabels {
            ingress: self.ingress.clone(),
            service: self.service.clone(),
            code,
        };
        if code == 200 {
            self.ok
                .get_or_init(|| self.requests.get_or_create_owned(&labels()))
                .inc();
        } else {
            self.requests.get_or_create(&labels()).inc();
        }
        self.duration.observe(duration);
    }
}

// === impl WorkerGauge ===

impl WorkerGauge {
    pub fn get(&self) -> i64 {
        self.gauge.get()
    }

    pub fn inc(&self) {
        self.gauge.inc();
    }

    pub fn dec(&self) {
        self.gauge.dec();
    }
}

// === impl ConnectionGauge ===

impl ConnectionGauge {
    /// Counts a new connection until the guard is dropped.
    pub fn open(&self) -> ConnectionGuard {
        self.gauge.inc();
        ConnectionGuard {
            gauge: self.gauge.clone(),
        }
    }
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
