//! Upstream HTTP/1.1 connections, kept alive and reused per endpoint.
//!
//! The pool is per worker thread: a checkout and a checkin touch only a `RefCell` of the thread
//! that runs them, with no lock and no atomic read-modify-write shared between threads. A request
//! that moves to another thread while it waits for its response returns its connection to that
//! thread's pool, which is harmless: the pools are caches of interchangeable connections.
//! (hyper-util's legacy client, measured before this, spent ~30% more instructions per request:
//! a shared pool behind a mutex, a spawned task per checkin, and URI authority handling.)
//!
//! A connection is returned to the pool when its response body has been read to the end
//! ([`Lease::release`]); one dropped earlier is closed, since its stream position is unknown.
//! Each connection's driver task closes it once it has been idle for `idle_timeout`.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tracing::debug;

use crate::body::RequestBody;

/// Idle connections kept per endpoint and thread; more are closed when they come back.
/// ingress-nginx's `upstream-keepalive-connections` default, which is also per worker.
const MAX_IDLE_PER_ENDPOINT: usize = 320;

/// Settings of the upstream pools.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolConfig {
    /// An idle connection is closed after this long.
    pub(crate) idle_timeout: Duration,
}

/// Why a request could not be sent, or got no response.
#[derive(Debug)]
pub(crate) enum SendError {
    Connect(io::Error),
    ConnectTimeout,
    /// The request went out on a connection (or could not be written to it) and failed there.
    Exchange(hyper::Error),
}

/// A connection lent to one exchange. [`release`](Lease::release) returns it to the pool;
/// dropping it closes the connection once hyper is done with it.
#[derive(Debug)]
pub(crate) struct Lease {
    conn: Option<Pooled>,
    addr: SocketAddr,
    max_idle: usize,
}

#[derive(Debug)]
struct Pooled {
    tx: http1::SendRequest<RequestBody>,
    idle: Arc<IdleClock>,
}

/// Shared by a pooled connection and its driver task, which closes the connection when it has
/// been idle for too long.
#[derive(Debug)]
struct IdleClock {
    busy: AtomicBool,
    /// Milliseconds since [`epoch`] at the last release.
    released_at: AtomicU64,
}

/// Per endpoint, oldest first.
type IdleMap = HashMap<SocketAddr, VecDeque<Pooled>, BuildHasherDefault<AddrHasher>>;

thread_local! {
    static IDLE: RefCell<IdleMap> = RefCell::new(IdleMap::default());
}

/// Sends `req` to `addr` on an idle connection of this thread, or a new one made within
/// `connect_timeout`. A pooled connection that turns out to be closed before the request could
/// be written to it is replaced by another, so an upstream closing idle connections never fails
/// a request.
pub(crate) async fn send(
    cfg: PoolConfig,
    addr: SocketAddr,
    mut req: Request<RequestBody>,
    connect_timeout: Duration,
) -> Result<(Response<Incoming>, Lease), SendError> {
    loop {
        let (mut pooled, reused) = match checkout(addr) {
            Some(p) => (p, true),
            // Boxed: the connect path is rare, and inline it would make every request's future
            // (moved by value into hyper's dispatcher) larger by the TCP and handshake state.
            None => (Box::pin(connect(cfg, addr, connect_timeout)).await?, false),
        };
        pooled.idle.busy.store(true, Ordering::Relaxed);
        match pooled.tx.try_send_request(req).await {
            Ok(resp) => {
                let lease = Lease {
                    conn: Some(pooled),
                    addr,
                    max_idle: MAX_IDLE_PER_ENDPOINT,
                };
                return Ok((resp, lease));
            }
            Err(mut e) => match e.take_message() {
                // Never written: the connection closed while idle. Another one gets it.
                Some(back) if reused => {
                    debug!(upstream = %addr, error = %e.error(), "pooled connection was closed; retrying");
                    req = back;
                }
                _ => return Err(SendError::Exchange(e.into_error())),
            },
        }
    }
}

fn checkout(addr: SocketAddr) -> Option<Pooled> {
    IDLE.with_borrow_mut(|map| {
        let idle = map.get_mut(&addr)?;
        // Most recently used first: it is the least likely to have been closed by the upstream.
        while let Some(p) = idle.pop_back() {
            // Not ready means closed, or still finishing its previous exchange (its request body
            // outlived the response); either way it cannot take a request now.
            if p.tx.is_ready() {
                return Some(p);
            }
        }
        None
    })
}

async fn connect(cfg: PoolConfig, addr: SocketAddr, limit: Duration) -> Result<Pooled, SendError> {
    let stream = match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(SendError::Connect(e)),
        Err(_) => return Err(SendError::ConnectTimeout),
    };
    if let Err(e) = stream.set_nodelay(true) {
        debug!(error = %e, "cannot set TCP_NODELAY upstream");
    }
    let (tx, conn) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(SendError::Exchange)?;
    let idle = Arc::new(IdleClock {
        busy: AtomicBool::new(true),
        released_at: AtomicU64::new(now_ms()),
    });
    let clock = idle.clone();
    let timeout = cfg.idle_timeout;
    tokio::spawn(async move {
        tokio::select! {
            r = conn.with_upgrades() => if let Err(e) = r {
                debug!(upstream = %addr, error = %e, "upstream connection ended with an error");
            },
            () = clock.expired(timeout) => debug!(upstream = %addr, "idle upstream connection closed"),
        }
    });
    Ok(Pooled { tx, idle })
}

// === impl Lease ===

impl Lease {
    /// The response has been read to its end: the connection can take the next request.
    pub(crate) fn release(&mut self) {
        let Some(p) = self.conn.take() else { return };
        p.idle.released_at.store(now_ms(), Ordering::Relaxed);
        p.idle.busy.store(false, Ordering::Relaxed);
        let (addr, max_idle) = (self.addr, self.max_idle);
        // `try_with`: a body dropped while the thread exits has no pool to go back to.
        let _ = IDLE.try_with(|cell| {
            let mut map = cell.borrow_mut();
            let idle = map.entry(addr).or_default();
            // The oldest are the ones the idle timeout closes first; drop them here, so an
            // endpoint that is rarely used does not keep closed connections around.
            while idle.front().is_some_and(|p| p.tx.is_closed()) {
                idle.pop_front();
            }
            if idle.len() < max_idle {
                idle.push_back(p);
            }
        });
    }

    /// The connection is not reusable (it was upgraded, or its exchange broke off).
    pub(crate) fn discard(&mut self) {
        self.conn = None;
    }
}

// === impl IdleClock ===

impl IdleClock {
    /// Resolves once the connection has been idle for `timeout`.
    async fn expired(&self, timeout: Duration) {
        let limit = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        loop {
            let wait = if self.busy.load(Ordering::Relaxed) {
                limit
            } else {
                let idle_for = now_ms().saturating_sub(self.released_at.load(Ordering::Relaxed));
                match limit.checked_sub(idle_for) {
                    Some(left) if left > 0 => left,
                    _ => return,
                }
            };
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
    }
}

fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// FNV-1a over the few bytes of an address: the keys are endpoints from the configuration, not
/// attacker-chosen, so SipHash's flooding resistance is not needed on this per-request lookup.
#[derive(Debug)]
pub(crate) struct AddrHasher(u64);

impl Default for AddrHasher {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for AddrHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    #[test]
    fn addresses_hash_apart() {
        let build = BuildHasherDefault::<AddrHasher>::default();
        let hash = |s: &str| build.hash_one(s.parse::<SocketAddr>().unwrap());
        let all = ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.1:81", "[::1]:80", "[::2]:80"].map(hash);
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
