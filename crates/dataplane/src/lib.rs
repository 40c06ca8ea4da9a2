//! The data plane: accepts client connections on the plain and TLS listeners, serves HTTP/1.1 and
//! HTTP/2, routes every request through the live snapshot and proxies it to an endpoint.
//!
//! Each request loads the snapshot once and keeps it for the whole exchange (STYLE.md §2), so a
//! keep-alive connection or an HTTP/2 stream sees a newer snapshot at its next request, and a TLS
//! handshake picks the certificate from the snapshot live at that moment.

// Tests may unwrap: a panic there is a failed assertion, not a crash on input (STYLE.md §6).

mod body;
mod coalesce;
mod error;
mod guard;
mod h1;
mod headers;
mod pool;
mod prefetch;
mod proxy;
mod server;
mod streams;
mod tls;
mod workers;

pub use workers::bind;

use std::sync::Arc;
use std::time::Duration;

use portier_snapshot::SnapshotCell;
use portier_telemetry::{AccessLog, Metrics};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Tuning of the data plane that the snapshot does not carry; [`Default`] gives production values.
///
/// Timeouts and limits come from the snapshot: [`GlobalSettings`](portier_snapshot::GlobalSettings)
/// of the snapshot live when a connection is accepted (header, body, keep-alive, HTTP/2 limits),
/// and the matched route's [`RoutePolicy`](portier_snapshot::RoutePolicy) per request (body size,
/// upstream connect, read and send timeouts).
#[derive(Debug, Clone)]
pub struct DataplaneConfig {
    /// Port put in `https://` redirects; left out of the URL when 443.
    pub https_redirect_port: u16,
    /// After shutdown is requested, how long in-flight requests and tunnels may take before their
    /// connections are closed.
    pub drain_timeout: Duration,
    /// Threads serving connections, each with a single-threaded runtime of its own. Each accepts on
    /// a socket of its own when the listeners were made by [`bind`] for as many workers; given
    /// other listeners, the runtime that calls [`run`](Dataplane::run) accepts and hands each
    /// connection to the least busy. 0 or 1: connections are served on the runtime that calls
    /// `run`.
    pub workers: usize,
}

/// The data plane. Build it once, then [`run`](Dataplane::run) it until shutdown.
pub struct Dataplane {
    shared: Arc<server::Shared>,
}

// === impl DataplaneConfig ===

impl Default for DataplaneConfig {
    fn default() -> Self {
        Self {
            https_redirect_port: 443,
            drain_timeout: Duration::from_secs(30),
            workers: 1,
        }
    }
}

// === impl Dataplane ===

impl Dataplane {
    /// Prepares the data plane: the upstream connection pool, the HTTP server settings and the
    /// TLS configuration whose certificate resolver reads `cell` at every handshake.
    pub fn new(cell: Arc<SnapshotCell>, metrics: Arc<Metrics>, access_log: AccessLog, cfg: DataplaneConfig) -> Self {
        Self {
            shared: Arc::new(server::Shared::new(cell, metrics, access_log, cfg)),
        }
    }

    /// Serves plain HTTP (HTTP/1.1, and HTTP/2 with prior knowledge) on `http` and TLS (HTTP/2 or
    /// HTTP/1.1 by ALPN) on `https`; either may be `None`. Runs until `shutdown` is cancelled, then
    /// stops accepting, lets in-flight requests finish for up to `drain_timeout`, closes what
    /// remains, and returns.
    pub async fn run(self, http: Option<TcpListener>, https: Option<TcpListener>, shutdown: CancellationToken) {
        server::run(self.shared, http, https, shutdown).await;
    }
}

impl std::fmt::Debug for Dataplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataplane")
            .field("cfg", &self.shared.cfg)
            .finish_non_exhaustive()
    }
}

/// A seeded xorshift64 generator for the randomized tests: the same cases on every run.
#[cfg(test)]
fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}
