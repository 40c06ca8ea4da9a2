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
pub use metrics::{ConnectionGauge, ConnectionGuard, Metrics, RouteMetrics};

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

/// Installs the process-wide `tracing` subscriber: JSON lines on stderr, filtered by `RUST_LOG`
/// (default `info`). A second call keeps the first subscriber and does nothing, so tests and the
/// binary may both call it.
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
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
    fn init_tracing_twice_does_not_panic() {
        super::init_tracing();
        super::init_tracing();
    }
}
