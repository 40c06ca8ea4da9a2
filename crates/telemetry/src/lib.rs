//! Telemetry for every crate of portier: `tracing` setup, the Prometheus metrics registry, and the
//! access log, a stable per-request record written by a background task (STYLE.md §8: access logs
//! are not `tracing` events).

// Tests may unwrap: a panic there is a failed assertion, not a crash on input (STYLE.md §6).

mod access_log;
mod metrics;
mod time;

pub use time::rfc3339_millis;

use std::path::PathBuf;

pub use access_log::{AccessLog, AccessLogTarget, AccessRecord};
pub use metrics::{ConnectionGauge, ConnectionGuard, HandshakeFailure, Metrics, RouteMetrics, WorkerGauge};

/// Errors of the telemetry sinks.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot open access log {path}: check that the directory exists and is writable")]
    OpenAccessLog {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the access log needs a running tokio runtime: start it from inside the runtime")]
    NoRuntime,
    #[error("empty access log target: use stdout, off, or a file path")]
    EmptyAccessLogTarget,
}

/// What is logged without `RUST_LOG`. rustls logs at warn what a client can cause on every
/// handshake (an IP address sent as SNI, as wrk and some libraries do; warning alerts; unexpected
/// messages): at info, any client could fill the log, one line per connection. Handshake failures
/// that matter are portier's own events.
pub const DEFAULT_LOG_FILTER: &str = "info,rustls=error";

/// Installs the process-wide `tracing` subscriber: JSON lines on stderr, filtered by `RUST_LOG`
/// (default [`DEFAULT_LOG_FILTER`]). A second call keeps the first subscriber and does nothing,
/// so tests and the binary may both call it.
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    // try_init: a subscriber may already be set (a test, or a second call); that is not an error.
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_current_span(true)
        .with_span_list(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    #[test]
    fn rustls_warnings_are_off_by_default() {
        use tracing::Level;
        use tracing_subscriber::layer::SubscriberExt;
        let sub =
            tracing_subscriber::Registry::default().with(tracing_subscriber::EnvFilter::new(super::DEFAULT_LOG_FILTER));
        tracing::subscriber::with_default(sub, || {
            assert!(!tracing::enabled!(target: "rustls::msgs::handshake", Level::WARN));
            assert!(tracing::enabled!(target: "rustls::msgs::handshake", Level::ERROR));
            assert!(tracing::enabled!(target: "portier_dataplane::server", Level::INFO));
            assert!(!tracing::enabled!(target: "portier_dataplane::server", Level::DEBUG));
        });
    }

    #[test]
    fn init_tracing_twice_does_not_panic() {
        super::init_tracing();
        super::init_tracing();
    }
}
