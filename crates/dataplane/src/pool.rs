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
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, TrySendError};
use hyper_util::rt::TokioIo;
use pin_project_lite::pin_project;
use tokio::net::TcpStream;
use tracing::debug;

use crate::body::RequestBody;

/// Idle connections kept per endpoint and thread; more are closed when they come back.
/// ingress-nginx's `upstream-keepalive-connections` default, which is also per worker.
pub(crate) const MAX_IDLE_PER_ENDPOINT: usize = 320;

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
    /// The same, on a connection of [`crate::h1`].
    Io(io::Error),
    /// The upstream's response broke HTTP/1.1; says what it did ("sent …").
    Protocol(&'static str),
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

/// What hyper's `try_send_request` resolves to.
pub(crate) type Sent = Result<Response<Incoming>, TrySendError<Request<RequestBody>>>;

/// How a request is handed to a connection: `SendRequest::try_send_request`, whose future type
/// has no name; carrying the function lets [`Sending`] start a retry without naming it.
pub(crate) type TrySend<F> = fn(&mut http1::SendRequest<RequestBody>, Request<RequestBody>) -> F;

pin_project! {
    /// `req` on its way to `addr`: on an idle connection of this thread, or a new one made
    /// within `connect_timeout`. A pooled connection that turns out to be closed before the
    /// request could be written to it is replaced by another, so an upstream closing idle
    /// connections never fails a request.
    ///
    /// A hand-written future rather than an `async fn`: it is part of every request's future,
    /// which hyper keeps per connection, and an `async fn` keeps its by-value arguments twice
    /// (as argument and as local), which made it 832 bytes instead of ~400.
    pub(crate) struct Sending<F> {
        #[pin]
        state: SendState<F>,
        addr: SocketAddr,
        cfg: PoolConfig,
        connect_timeout: Duration,
        try_send: TrySend<F>,
    }
}

pin_project! {
    #[project = SendStateProj]
    enum SendState<F> {
        // Boxed: the connect path is rare, and its TCP and handshake state is large.
        Connecting {
            connecting: Pin<Box<dyn Future<Output = Result<(Pooled, Request<RequestBody>), SendError>> + Send>>,
        },
        Exchanging {
            #[pin]
            exchange: F,
            pooled: Option<Pooled>,
            reused: bool,
        },
    }
}

/// Starts sending `req` to `addr` (see [`Sending`]); the request is handed to a pooled
/// connection right away.
pub(crate) fn send(
    cfg: PoolConfig,
    addr: SocketAddr,
    req: Request<RequestBody>,
    connect_timeout: Duration,
) -> Sending<impl Future<Output = Sent> + Send> {
    fn try_send(
        tx: &mut http1::SendRequest<RequestBody>,
        req: Request<RequestBody>,
    ) -> impl Future<Output = Sent> + Send {
        tx.try_send_request(req)
    }
    let try_send: TrySend<_> = try_send;
    Sending {
        state: start(cfg, addr, req, connect_timeout, try_send),
        addr,
        cfg,
        connect_timeout,
        try_send,
    }
}

fn start<F>(
    cfg: PoolConfig,
    addr: SocketAddr,
    req: Request<RequestBody>,
    limit: Duration,
    try_send: TrySend<F>,
) -> SendState<F> {
    match checkout(addr) {
        Some(mut pooled) => {
            pooled.idle.busy.store(true, Ordering::Relaxed);
            let exchange = try_send(&mut pooled.tx, req);
            SendState::Exchanging {
                exchange,
                pooled: Some(pooled),
                reused: true,
            }
        }
        None => SendState::Connecting {
            connecting: Box::pin(async move {
                let pooled = connect(cfg, addr, limit).await?;
                Ok((pooled, req))
            }),
        },
    }
}

impl<F: Future<Output = Sent>> Future for Sending<F> {
    type Output = Result<(Response<Incoming>, Lease), SendError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                SendStateProj::Connecting { connecting } => {
                    let (mut pooled, req) = ready!(connecting.as_mut().poll(cx))?;
                    let exchange = (this.try_send)(&mut pooled.tx, req);
                    this.state.set(SendState::Exchanging {
                        exchange,
                        pooled: Some(pooled),
                        reused: false,
                    });
                }
                SendStateProj::Exchanging {
                    exchange,
                    pooled,
                    reused,
                } => match ready!(exchange.poll(cx)) {
                    Ok(resp) => {
                        let lease = Lease {
                            conn: pooled.take(),
                            addr: *this.addr,
                            max_idle: MAX_IDLE_PER_ENDPOINT,
                        };
                        return Poll::Ready(Ok((resp, lease)));
                    }
                    Err(mut e) => match e.take_message() {
                        // Never written: the connection closed while idle. Another one gets it.
                        Some(back) if *reused => {
                            debug!(upstream = %this.addr, error = %e.error(), "pooled connection was closed; retrying");
                            let next = start(*this.cfg, *this.addr, back, *this.connect_timeout, *this.try_send);
                            this.state.set(next);
                        }
                        _ => return Poll::Ready(Err(SendError::Exchange(e.into_error()))),
                    },
                },
            }
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

/// A new TCP connection to `addr` within `limit`, with Nagle off: request heads are small and
/// must go out at once.
pub(crate) async fn dial(addr: SocketAddr, limit: Duration) -> Result<TcpStream, SendError> {
    let stream = match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(SendError::Connect(e)),
        Err(_) => return Err(SendError::ConnectTimeout),
    };
    if let Err(e) = stream.set_nodelay(true) {
        debug!(error = %e, "cannot set TCP_NODELAY upstream");
    }
    Ok(stream)
}

async fn connect(cfg: PoolConfig, addr: SocketAddr, limit: Duration) -> Result<Pooled, SendError> {
    let stream = dial(addr, limit).await?;
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
